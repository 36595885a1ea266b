import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SeededRng } from '../base/index.js';
import { generateKvHistory } from './generate.js';
import {
  type EtcdRegisterInput,
  type EtcdRegisterOutput,
  type KvCasInput,
  type KvCasOutput,
  type Model,
  type Operation,
  checkOperations,
  etcdRegisterModel,
  kvCasModel,
  kvModel,
} from './index.js';

type KvCasOp = Operation<KvCasInput, KvCasOutput>;

const key = fc.constantFrom('x', 'y');
const value = fc.constantFrom('a', 'b', 'c');
const kvCasInput: fc.Arbitrary<KvCasInput> = fc.oneof(
  fc.record({ kind: fc.constant('get' as const), key }),
  fc.record({ kind: fc.constant('put' as const), key, value }),
  fc.record({ kind: fc.constant('delete' as const), key }),
  fc.record({ kind: fc.constant('cas' as const), key, expected: fc.constantFrom(null, 'a', 'b'), value }),
);

/** The output a correct store gives for `input` in `state`, and the next state. */
function execute(state: Parameters<typeof kvCasModel.step>[0], input: KvCasInput) {
  const current = state.get(input.key) ?? null;
  const output: KvCasOutput =
    input.kind === 'get'
      ? { kind: 'ok', value: current }
      : input.kind === 'cas'
        ? { kind: 'ok', succeeded: current === input.expected }
        : { kind: 'ok' };
  const next = kvCasModel.step(state, input, output);
  assert.ok(next.ok);
  return { output, state: next.state };
}

/** Every linearizable-by-definition order, tried exhaustively (tiny histories only). */
function bruteForce<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[]): boolean {
  const done = new Array<boolean>(ops.length).fill(false);
  const search = (state: S, left: number): boolean => {
    if (left === 0) return true;
    for (let i = 0; i < ops.length; i++) {
      if (done[i]) continue;
      const op = ops[i]!;
      // i may go next only if no pending op returned before i was called.
      if (ops.some((other, j) => !done[j] && other.returnMs < op.callMs)) continue;
      const r = model.step(state, op.input, op.output);
      if (!r.ok) continue;
      done[i] = true;
      const found = search(r.state, left - 1);
      done[i] = false;
      if (found) return true;
    }
    return false;
  };
  return search(model.init(), ops.length);
}

const timing = fc.record({ call: fc.integer({ min: 0, max: 8 }), length: fc.integer({ min: 0, max: 4 }), unknown: fc.boolean() });

test('property: a sequential history produced by the model itself is linearizable', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(kvCasInput, fc.constantFrom('ok', 'ok', 'ok', 'applied', 'dropped')), { maxLength: 40 }), (steps) => {
      let state = kvCasModel.init();
      const ops: KvCasOp[] = steps.map(([input, fate], i) => {
        const run = execute(state, input);
        if (fate !== 'dropped') state = run.state;
        const output = fate === 'ok' ? run.output : ({ kind: 'unknown' } as const);
        return { clientId: i % 3, input, output, callMs: 2 * i, returnMs: fate === 'ok' ? 2 * i + 1 : Infinity };
      });
      assert.equal(checkOperations(kvCasModel, ops).verdict, 'linearizable');
      assert.equal(checkOperations(kvCasModel, ops, { partition: false }).verdict, 'linearizable');
    }),
    { numRuns: 300 },
  );
});

test('property: a concurrent history with a real linearization point per op is linearizable', () => {
  const opSpec = fc.record({ input: kvCasInput, call: fc.integer({ min: 0, max: 30 }), toPoint: fc.nat(5), toReturn: fc.nat(5), unknown: fc.boolean() });
  fc.assert(
    fc.property(fc.array(opSpec, { maxLength: 25 }), (specs) => {
      // Apply the operations at their linearization points, in point order.
      const order = specs.map((s, i) => ({ s, i, point: s.call + s.toPoint })).sort((a, b) => a.point - b.point || a.i - b.i);
      const outputs = new Array<KvCasOutput>(specs.length);
      let state = kvCasModel.init();
      for (const { s, i } of order) {
        const run = execute(state, s.input);
        state = run.state;
        outputs[i] = s.unknown ? { kind: 'unknown' } : run.output;
      }
      const ops: KvCasOp[] = specs.map((s, i) => ({
        clientId: i,
        input: s.input,
        output: outputs[i]!,
        callMs: s.call,
        returnMs: s.unknown ? Infinity : s.call + s.toPoint + s.toReturn,
      }));
      assert.equal(checkOperations(kvCasModel, ops).verdict, 'linearizable');
      assert.equal(checkOperations(kvCasModel, ops, { partition: false }).verdict, 'linearizable');
    }),
    { numRuns: 300 },
  );
});

test('property: changing one answer of a sequential history makes it non-linearizable', () => {
  fc.assert(
    fc.property(fc.array(kvCasInput, { minLength: 1, maxLength: 30 }), fc.nat(), (inputs, pick) => {
      let state = kvCasModel.init();
      const ops: KvCasOp[] = inputs.map((input, i) => {
        const run = execute(state, input);
        state = run.state;
        return { clientId: 0, input, output: run.output, callMs: 2 * i, returnMs: 2 * i + 1 };
      });
      const answered = ops.map((_, i) => i).filter((i) => ops[i]!.input.kind === 'get' || ops[i]!.input.kind === 'cas');
      fc.pre(answered.length > 0);
      const victim = answered[pick % answered.length]!;
      const o = ops[victim]!;
      const wrong: KvCasOutput =
        o.input.kind === 'get'
          ? { kind: 'ok', value: o.output.kind === 'ok' && o.output.value === 'zz' ? null : 'zz' }
          : { kind: 'ok', succeeded: !(o.output.kind === 'ok' && o.output.succeeded === true) };
      ops[victim] = { ...o, output: wrong };
      const result = checkOperations(kvCasModel, ops, { partition: false });
      assert.equal(result.verdict, 'not-linearizable');
      assert.equal(result.failure?.blocked, ops[victim]);
    }),
    { numRuns: 300 },
  );
});

test('property: on small random histories the search agrees with brute force (kv-cas)', () => {
  const randomOutput: fc.Arbitrary<KvCasOutput> = fc.record({
    kind: fc.constant('ok' as const),
    value: fc.constantFrom(null, 'a', 'b'),
    succeeded: fc.boolean(),
  });
  const opArb = fc.record({ input: kvCasInput, output: randomOutput, t: timing, client: fc.nat(3) });
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 7 }), (specs) => {
      const ops: KvCasOp[] = specs.map((s) => ({
        clientId: s.client,
        input: s.input,
        output: s.t.unknown ? { kind: 'unknown' } : s.output,
        callMs: s.t.call,
        returnMs: s.t.unknown ? Infinity : s.t.call + s.t.length,
      }));
      const expected = bruteForce(kvCasModel, ops) ? 'linearizable' : 'not-linearizable';
      assert.equal(checkOperations(kvCasModel, ops).verdict, expected);
      assert.equal(checkOperations(kvCasModel, ops, { partition: false }).verdict, expected);
    }),
    { numRuns: 1000 },
  );
});

test('property: on small random histories the search agrees with brute force (etcd register)', () => {
  const v = fc.integer({ min: 0, max: 2 });
  const input: fc.Arbitrary<EtcdRegisterInput> = fc.oneof(
    fc.constant({ kind: 'read' as const }),
    fc.record({ kind: fc.constant('write' as const), value: v }),
    fc.record({ kind: fc.constant('cas' as const), from: v, to: v }),
  );
  const output: fc.Arbitrary<EtcdRegisterOutput> = fc.record({
    kind: fc.constant('ok' as const),
    value: fc.option(v, { nil: null }),
    succeeded: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(fc.record({ input, output, t: timing }), { maxLength: 7 }), (specs) => {
      const ops: Operation<EtcdRegisterInput, EtcdRegisterOutput>[] = specs.map((s, i) => ({
        clientId: i,
        input: s.input,
        output: s.t.unknown ? { kind: 'unknown' } : s.output,
        callMs: s.t.call,
        returnMs: s.t.unknown ? Infinity : s.t.call + s.t.length,
      }));
      const expected = bruteForce(etcdRegisterModel, ops) ? 'linearizable' : 'not-linearizable';
      assert.equal(checkOperations(etcdRegisterModel, ops).verdict, expected);
    }),
    { numRuns: 1000 },
  );
});

test('property: the generator\'s histories have the verdict it claims (brute force, small sizes)', () => {
  const options = fc.record({
    seed: fc.nat(),
    clients: fc.integer({ min: 1, max: 4 }),
    operations: fc.integer({ min: 2, max: 8 }),
    violations: fc.constantFrom(0, 1),
    unknownShare: fc.constantFrom(0, 0.3),
    effectAnywhere: fc.boolean(),
  });
  fc.assert(
    fc.property(options, ({ seed, violations, ...rest }) => {
      const make = () => generateKvHistory(new SeededRng(seed), { ...rest, keys: 1, violations });
      // A history may have no answered get to falsify; that is an input error.
      let history;
      try {
        history = make();
      } catch {
        fc.pre(false);
        return;
      }
      const expected = violations === 0 ? 'linearizable' : 'not-linearizable';
      const open = history.ops.map((op) => (op.output.kind === 'unknown' ? { ...op, returnMs: Infinity } : op));
      assert.equal(bruteForce(kvModel, open) ? 'linearizable' : 'not-linearizable', expected);
      assert.equal(checkOperations(kvModel, history.ops).verdict, expected);
    }),
    { numRuns: 500 },
  );
});
