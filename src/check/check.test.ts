import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTesseraError } from '../base/index.js';
import {
  HashedStringMap,
  type KvInput,
  type KvOutput,
  type EtcdRegisterInput,
  type EtcdRegisterOutput,
  type KvCasInput,
  type KvCasOutput,
  type NondeterministicModel,
  type Operation,
  checkOperations,
  etcdRegisterModel,
  fromNondeterministic,
  kvCasModel,
  kvModel,
} from './index.js';

type KvCasOp = Operation<KvCasInput, KvCasOutput>;
const UNKNOWN = { kind: 'unknown' } as const;

function op(clientId: number, input: KvCasInput, output: KvCasOutput, callMs: number, returnMs: number): KvCasOp {
  return { clientId, input, output, callMs, returnMs };
}
const put = (c: number, key: string, value: string, t0: number, t1: number, unknown = false): KvCasOp =>
  op(c, { kind: 'put', key, value }, unknown ? UNKNOWN : { kind: 'ok' }, t0, t1);
const get = (c: number, key: string, value: string | null, t0: number, t1: number): KvCasOp =>
  op(c, { kind: 'get', key }, { kind: 'ok', value }, t0, t1);
const cas = (c: number, key: string, expected: string | null, value: string, succeeded: boolean, t0: number, t1: number) =>
  op(c, { kind: 'cas', key, expected, value }, { kind: 'ok', succeeded }, t0, t1);

function verdict(ops: readonly KvCasOp[]): string {
  const partitioned = checkOperations(kvCasModel, ops).verdict;
  // Splitting by key must never change the answer (locality of linearizability).
  assert.equal(checkOperations(kvCasModel, ops, { partition: false }).verdict, partitioned);
  return partitioned;
}

test('a stale read after two sequential writes is caught, and the window names it', () => {
  const stale = get(2, 'x', 'a', 4, 5);
  const ops = [put(0, 'x', 'a', 0, 1), put(1, 'x', 'b', 2, 3), stale];
  const result = checkOperations(kvCasModel, ops);
  assert.equal(result.verdict, 'not-linearizable');
  assert.equal(result.failure?.blocked, stale);
  assert.deepEqual(result.failure?.window, [stale]);
  assert.equal(result.failure?.prefixLength, 2);
  assert.equal(result.failure?.stateAfterPrefix, '{"x":"b"}');
  assert.match(result.failure?.message ?? '', /get "x" -> "a"/);
});

test('concurrent operations may be reordered', () => {
  // The read overlaps the write, so it may see either value.
  assert.equal(verdict([put(0, 'x', 'a', 0, 10), get(1, 'x', 'a', 1, 2)]), 'linearizable');
  assert.equal(verdict([put(0, 'x', 'a', 0, 10), get(1, 'x', null, 1, 2)]), 'linearizable');
  // Two overlapping writes can land in either order.
  const writes = [put(0, 'x', 'a', 0, 5), put(1, 'x', 'b', 1, 6)];
  assert.equal(verdict([...writes, get(2, 'x', 'a', 7, 8)]), 'linearizable');
  assert.equal(verdict([...writes, get(2, 'x', 'b', 7, 8)]), 'linearizable');
  // ... but only one order per history.
  assert.equal(verdict([...writes, get(2, 'x', 'a', 7, 8), get(2, 'x', 'b', 9, 10)]), 'not-linearizable');
});

test('intervals are closed: touching at one instant counts as concurrent', () => {
  assert.equal(verdict([put(0, 'x', 'a', 0, 5), get(1, 'x', null, 5, 6)]), 'linearizable');
  assert.equal(verdict([put(0, 'x', 'a', 0, 5), get(1, 'x', null, 6, 7)]), 'not-linearizable');
});

test('an unknown operation may take effect at any later point or never', () => {
  const lost = put(0, 'x', 'a', 0, Infinity, true);
  assert.equal(verdict([lost, get(1, 'x', null, 1, 2), get(1, 'x', 'a', 3, 4)]), 'linearizable');
  assert.equal(verdict([lost, get(1, 'x', null, 10, 11)]), 'linearizable');
  assert.equal(verdict([lost, get(1, 'x', 'a', 1, 2)]), 'linearizable');
  // Once seen, it cannot be undone.
  assert.equal(verdict([lost, get(1, 'x', 'a', 1, 2), get(1, 'x', null, 3, 4)]), 'not-linearizable');
});

test('an unknown output with a finite return still stays open (it may land after the client gave up)', () => {
  const gaveUp = put(0, 'x', 'a', 0, 1, true);
  assert.equal(verdict([gaveUp, get(1, 'x', null, 5, 6), get(1, 'x', 'a', 7, 8)]), 'linearizable');
});

test('kv-cas: compare-and-set, delete and unknown cas', () => {
  assert.equal(verdict([cas(0, 'x', null, 'a', true, 0, 1), cas(1, 'x', null, 'b', true, 2, 3)]), 'not-linearizable');
  assert.equal(verdict([cas(0, 'x', null, 'a', true, 0, 1), cas(1, 'x', null, 'b', false, 2, 3)]), 'linearizable');
  assert.equal(verdict([cas(0, 'x', null, 'a', false, 0, 1)]), 'not-linearizable');
  const del = op(0, { kind: 'delete', key: 'x' }, { kind: 'ok' }, 2, 3);
  assert.equal(verdict([put(0, 'x', 'a', 0, 1), del, get(1, 'x', null, 4, 5)]), 'linearizable');
  assert.equal(verdict([put(0, 'x', 'a', 0, 1), del, get(1, 'x', 'a', 4, 5)]), 'not-linearizable');
  const maybeCas = op(2, { kind: 'cas', key: 'x', expected: 'a', value: 'c' }, UNKNOWN, 2, Infinity);
  assert.equal(verdict([put(0, 'x', 'a', 0, 1), maybeCas, get(1, 'x', 'c', 4, 5)]), 'linearizable');
  assert.equal(verdict([put(0, 'x', 'b', 0, 1), maybeCas, get(1, 'x', 'c', 4, 5)]), 'not-linearizable');
});

test('kv-cas: an ok get or cas without its result is a recording error', () => {
  const bad = op(0, { kind: 'get', key: 'x' }, { kind: 'ok' }, 0, 1);
  assert.throws(() => checkOperations(kvCasModel, [bad]), (e) => isTesseraError(e, 'INVALID_ARGUMENT'));
});

test('partitions: keys are checked separately and the failing key is reported', () => {
  const ops = [put(0, 'x', 'a', 0, 1), put(0, 'y', 'b', 2, 3), get(1, 'y', 'a', 4, 5), get(1, 'x', 'a', 6, 7)];
  const split = checkOperations(kvCasModel, ops);
  assert.equal(split.verdict, 'not-linearizable');
  assert.equal(split.partitions, 2);
  assert.equal(split.failure?.partition, 1);
  assert.deepEqual(split.failure?.window, [ops[2]]);
  const whole = checkOperations(kvCasModel, ops, { partition: false });
  assert.equal(whole.verdict, 'not-linearizable');
  assert.equal(whole.partitions, 1);
});

test('witness: each partition gets an order the model accepts', () => {
  const ops = [put(0, 'x', 'a', 0, 5), put(1, 'x', 'b', 1, 6), get(2, 'x', 'a', 7, 8), get(3, 'y', null, 0, 1)];
  const result = checkOperations(kvCasModel, ops, { witness: true });
  assert.equal(result.verdict, 'linearizable');
  assert.deepEqual(
    result.witness?.map((part) => part.map((o) => ops.indexOf(o))),
    [[1, 0, 2], [3]],
  );
});

/** n clients each writing then reading its own value concurrently: many orders to explore. */
function crowd(n: number): KvCasOp[] {
  const ops: KvCasOp[] = [];
  for (let c = 0; c < n; c++) ops.push(put(c, 'x', `v${c}`, 0, 100));
  for (let c = 0; c < n; c++) ops.push(get(c, 'x', 'never written', 101, 102));
  return ops;
}

test('budgets: a spent step or time budget answers unknown, not a verdict', () => {
  const steps = checkOperations(kvCasModel, crowd(8), { maxSteps: 10 });
  assert.equal(steps.verdict, 'unknown');
  assert.equal(steps.reason, 'step-budget');
  assert.equal(steps.partitionsChecked, 0);
  let now = 0;
  const clock = () => (now += 100);
  const timed = checkOperations(kvCasModel, crowd(8), { timeBudgetMs: 50, nowMs: clock });
  assert.equal(timed.verdict, 'unknown');
  assert.equal(timed.reason, 'time-budget');
  assert.ok((timed.elapsedMs ?? 0) > 0);
  const enough = checkOperations(kvCasModel, crowd(8), { maxSteps: 1_000_000 });
  assert.equal(enough.verdict, 'not-linearizable');
});

test('options and operations are validated', () => {
  const isInvalid = (e: unknown) => isTesseraError(e, 'INVALID_ARGUMENT');
  assert.throws(() => checkOperations(kvCasModel, [], { timeBudgetMs: 5 }), isInvalid);
  assert.throws(() => checkOperations(kvCasModel, [get(0, 'x', null, 5, 4)]), isInvalid);
  assert.throws(() => checkOperations(kvCasModel, [get(0, 'x', null, NaN, 4)]), isInvalid);
  assert.equal(checkOperations(kvCasModel, []).verdict, 'linearizable');
});

test('etcd register: empty start, cas semantics, unknown read', () => {
  const read = (value: number | null, t0: number, t1: number) =>
    ({ clientId: 0, input: { kind: 'read' }, output: { kind: 'ok', value }, callMs: t0, returnMs: t1 }) as const;
  const casOp = (from: number, to: number, succeeded: boolean, t0: number, t1: number) =>
    ({ clientId: 1, input: { kind: 'cas', from, to }, output: { kind: 'ok', succeeded }, callMs: t0, returnMs: t1 }) as const;
  const write = { clientId: 2, input: { kind: 'write', value: 1 }, output: { kind: 'ok' }, callMs: 2, returnMs: 3 } as const;
  const check = (ops: readonly Operation<EtcdRegisterInput, EtcdRegisterOutput>[]) =>
    checkOperations(etcdRegisterModel, ops).verdict;
  assert.equal(check([read(null, 0, 1), write, casOp(1, 2, true, 4, 5), read(2, 6, 7)]), 'linearizable');
  assert.equal(check([read(1, 0, 1), write]), 'not-linearizable');
  assert.equal(check([write, casOp(0, 2, true, 4, 5)]), 'not-linearizable');
  assert.equal(check([write, casOp(0, 2, false, 4, 5), read(1, 6, 7)]), 'linearizable');
  const timedOut = { clientId: 3, input: { kind: 'read' }, output: { kind: 'unknown' }, callMs: 0, returnMs: Infinity } as const;
  assert.equal(check([write, timedOut, read(1, 6, 7)]), 'linearizable');
});

test('kv model: a missing key reads "" and put "" equals absence', () => {
  const k = (input: KvInput, output: KvOutput, t: number): Operation<KvInput, KvOutput> => ({
    clientId: 0,
    input,
    output,
    callMs: t,
    returnMs: t + 1,
  });
  const ops = [
    k({ kind: 'get', key: 'a' }, { kind: 'ok', value: '' }, 0),
    k({ kind: 'append', key: 'a', value: 'x' }, { kind: 'ok' }, 2),
    k({ kind: 'append', key: 'a', value: 'y' }, { kind: 'ok' }, 4),
    k({ kind: 'get', key: 'a' }, { kind: 'ok', value: 'xy' }, 6),
    k({ kind: 'put', key: 'a', value: '' }, { kind: 'ok' }, 8),
    k({ kind: 'get', key: 'a' }, { kind: 'ok', value: '' }, 10),
  ];
  assert.equal(checkOperations(kvModel, ops).verdict, 'linearizable');
  const state = kvModel.step(kvModel.init(), { kind: 'put', key: 'a', value: '' }, { kind: 'ok' }).state;
  assert.ok(kvModel.equal?.(state, kvModel.init()));
  assert.equal(kvModel.hash(state), kvModel.hash(kvModel.init()));
});

test('HashedStringMap: equal contents hash equally whatever the path', () => {
  const a = HashedStringMap.EMPTY.set('k', 'ab').set('j', 'z');
  const b = HashedStringMap.EMPTY.set('j', 'y').append('k', 'a').append('k', 'b').set('j', 'z');
  assert.equal(a.hash(), b.hash());
  assert.ok(a.equals(b));
  assert.equal(a.encode(), '{"j":"z","k":"ab"}');
  const c = b.delete('j');
  assert.ok(!a.equals(c));
  assert.notEqual(a.hash(), c.hash());
  assert.equal(c.get('j'), undefined);
  assert.ok(c.delete('j').equals(HashedStringMap.EMPTY.set('k', 'ab')));
});

test('nondeterministic models: a lossy register may drop writes', () => {
  type Out = { value: number | null };
  const lossy: NondeterministicModel<number | null, { write?: number }, Out> = {
    name: 'lossy-register',
    init: () => [null],
    step: (s, input, output) =>
      input.write !== undefined ? [s, input.write] : output.value === s ? [s] : [],
    hash: (s) => String(s),
  };
  const model = fromNondeterministic(lossy);
  const ops: Operation<{ write?: number }, Out>[] = [
    { clientId: 0, input: { write: 1 }, output: { value: null }, callMs: 0, returnMs: 1 },
    { clientId: 1, input: {}, output: { value: null }, callMs: 2, returnMs: 3 },
    { clientId: 1, input: { write: 2 }, output: { value: null }, callMs: 4, returnMs: 5 },
    { clientId: 1, input: {}, output: { value: 2 }, callMs: 6, returnMs: 7 },
  ];
  assert.equal(checkOperations(model, ops).verdict, 'linearizable');
  const reads3 = { clientId: 1, input: {}, output: { value: 3 }, callMs: 8, returnMs: 9 };
  assert.equal(checkOperations(model, [...ops, reads3]).verdict, 'not-linearizable');
});
