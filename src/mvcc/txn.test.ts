import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from './bytes.js';
import type { MemoryEngine } from '../storage/memory.js';
import type { MvccStore } from './store.js';
import { AssertionError } from '../base/index.js';
import { codeOf, compactAll, get, newStore, put, rev, show, text } from './testing.testlib.js';
import { type Compare, type CompareResult, type CompareTarget, type RequestOp, type TxnRequest, isTxnReadOnly, isTxnSerializable } from './txn.js';
import { validateTxnRequest } from './txn-validate.js';

const putOp = (key: string, value: string, extra: object = {}): RequestOp => ({ type: 'put', put: { key: utf8(key), value: utf8(value), ...extra } });
const delOp = (key: string, rangeEnd?: string | Uint8Array, prevKv?: boolean): RequestOp => ({
  type: 'deleteRange',
  deleteRange: { key: utf8(key), rangeEnd: typeof rangeEnd === 'string' ? utf8(rangeEnd) : rangeEnd, prevKv },
});
const getOp = (key: string, extra: object = {}): RequestOp => ({ type: 'range', range: { key: utf8(key), ...extra } });
const txnOp = (txn: TxnRequest): RequestOp => ({ type: 'txn', txn });
const cmp = (key: string, target: CompareTarget, result: CompareResult, operand: number | string, rangeEnd?: string | Uint8Array): Compare => ({
  key: utf8(key),
  rangeEnd: typeof rangeEnd === 'string' ? utf8(rangeEnd) : rangeEnd,
  target,
  result,
  ...(typeof operand === 'string' ? { value: utf8(operand) } : { operand }),
});

function run(engine: MemoryEngine, store: MvccStore, request: TxnRequest, options = {}) {
  validateTxnRequest(request);
  const batch = engine.newBatch();
  const out = store.txn(batch, request, options);
  engine.commit(batch, () => {});
  return out;
}

/** a: create rev(1), mod rev(2), version 2, value "2", lease 5;  b: create rev(3), mod rev(3), version 1, value "b". */
function setup() {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1');
  put(engine, store, 'a', '2', { leaseId: 5 });
  put(engine, store, 'b', 'b');
  return { engine, store };
}

test('txn: compare targets and results against a key', () => {
  const { engine, store } = setup();
  const cases: [Compare, boolean][] = [
    [cmp('a', 'VERSION', 'EQUAL', 2), true],
    [cmp('a', 'VERSION', 'GREATER', 1), true],
    [cmp('a', 'VERSION', 'LESS', 2), false],
    [cmp('a', 'VERSION', 'NOT_EQUAL', 2), false],
    [cmp('a', 'CREATE', 'EQUAL', rev(1)), true],
    [cmp('a', 'MOD', 'EQUAL', rev(2)), true],
    [cmp('a', 'MOD', 'LESS', rev(3)), true],
    [cmp('a', 'LEASE', 'EQUAL', 5), true],
    [cmp('a', 'VALUE', 'EQUAL', '2'), true],
    [cmp('a', 'VALUE', 'GREATER', '1'), true],
    [cmp('a', 'VALUE', 'LESS', '10'), false],
    [cmp('a', 'VALUE', 'NOT_EQUAL', '3'), true],
    // A missing key compares as zeros: create == 0 is "does not exist"...
    [cmp('zz', 'CREATE', 'EQUAL', 0), true],
    [cmp('zz', 'VERSION', 'EQUAL', 0), true],
    [cmp('zz', 'MOD', 'GREATER', 0), false],
    // ...but any VALUE compare on a missing key fails.
    [cmp('zz', 'VALUE', 'EQUAL', ''), false],
    [cmp('zz', 'VALUE', 'NOT_EQUAL', 'x'), false],
  ];
  for (const [c, expected] of cases) {
    const { response } = run(engine, store, { compare: [c], success: [], failure: [] });
    assert.equal(response.succeeded, expected, `${text(c.key)} ${c.target} ${c.result}`);
  }
  assert.equal(store.currentRevision, rev(3), 'read-only txns do not bump the revision');
});

test('txn: a range compare must hold for every key in the range ("\\0" = all keys ≥ key)', () => {
  const { engine, store } = setup();
  const ok = (c: Compare) => run(engine, store, { compare: [c], success: [], failure: [] }).response.succeeded;
  assert.equal(ok(cmp('a', 'VERSION', 'GREATER', 0, 'c')), true);
  assert.equal(ok(cmp('a', 'VERSION', 'EQUAL', 1, 'c')), false, 'a has version 2');
  assert.equal(ok(cmp('b', 'VERSION', 'EQUAL', 1, Uint8Array.of(0))), true);
  assert.equal(ok(cmp('a', 'MOD', 'LESS', rev(4), Uint8Array.of(0))), true);
  assert.equal(ok(cmp('x', 'CREATE', 'EQUAL', 0, 'z')), true, 'an empty range compares a zero KeyValue');
  assert.equal(ok(cmp('x', 'VALUE', 'EQUAL', '', 'z')), false);
});

test('txn: success and failure branches, responses and header revisions', () => {
  const { engine, store } = setup();
  const request: TxnRequest = {
    compare: [cmp('a', 'VALUE', 'EQUAL', '2')],
    success: [putOp('a', '3', { prevKv: true }), getOp('a'), delOp('b', undefined, true)],
    failure: [getOp('b')],
  };
  const { response, result } = run(engine, store, request);
  assert.equal(response.succeeded, true);
  assert.equal(response.revision, rev(4));
  const [p, g, d] = response.responses;
  assert.ok(p?.type === 'put' && g?.type === 'range' && d?.type === 'deleteRange');
  assert.equal(p.put.revision, rev(4));
  assert.equal(show(p.put.prevKv!).value, '2');
  assert.deepEqual(g.range.kvs.map(show), [{ key: 'a', value: '3', create: rev(1), mod: rev(4), version: 3, lease: 0 }], 'a range sees earlier ops');
  assert.equal(g.range.revision, rev(4));
  assert.deepEqual([d.deleteRange.deleted, d.deleteRange.prevKvs.map((kv) => show(kv).value)], [1, ['b']]);
  assert.deepEqual(result.events.map((e) => `${e.type}:${text(e.kv.key)}`), ['PUT:a', 'DELETE:b']);
  const again = run(engine, store, request);
  assert.equal(again.response.succeeded, false);
  assert.deepEqual(again.response.responses.map((r) => r.type), ['range']);
  assert.equal(again.response.revision, rev(4));
});

test('txn: nested txns decide every compare on the state before the txn', () => {
  const { engine, store } = setup();
  // The outer success puts a=new; the nested compare on a still sees "2".
  const request: TxnRequest = {
    compare: [],
    success: [
      putOp('a', 'new'),
      txnOp({ compare: [cmp('a', 'VALUE', 'EQUAL', '2')], success: [putOp('seen-old', 'yes')], failure: [putOp('seen-new', 'yes')] }),
      txnOp({ compare: [cmp('b', 'VERSION', 'EQUAL', 9)], success: [], failure: [txnOp({ compare: [], success: [putOp('deep', 'ok')], failure: [] })] }),
    ],
    failure: [],
  };
  const { response } = run(engine, store, request);
  assert.equal(get(store, 'seen-old')?.value, 'yes');
  assert.equal(get(store, 'seen-new'), undefined);
  assert.equal(get(store, 'deep')?.value, 'ok');
  const nested = response.responses[1];
  assert.ok(nested?.type === 'txn' && nested.txn.succeeded);
  const second = response.responses[2];
  assert.ok(second?.type === 'txn' && !second.txn.succeeded && second.txn.responses[0]?.type === 'txn');
  assert.equal(store.currentRevision, rev(4), 'one txn, one revision');
});

test('txn: a failed check aborts before any write (ignore_value on a missing key, future or compacted range, unknown lease)', () => {
  const { engine, store } = setup();
  const attempts: [TxnRequest, string, object?][] = [
    [{ compare: [], success: [putOp('a', 'x'), putOp('missing', '', { ignoreValue: true })], failure: [] }, 'KEY_NOT_FOUND'],
    [{ compare: [], success: [putOp('a', 'x'), getOp('a', { revision: rev(4) })], failure: [] }, 'FUTURE_REVISION'],
    [{ compare: [], success: [putOp('a', 'x', { lease: 42 })], failure: [] }, 'LEASE_NOT_FOUND', { leaseExists: (id: number) => id === 5 }],
    [{ compare: [], success: [txnOp({ compare: [], success: [putOp('a', 'x'), putOp('m', '', { ignoreLease: true })], failure: [] })], failure: [] }, 'KEY_NOT_FOUND'],
  ];
  for (const [request, code, options] of attempts) {
    assert.equal(codeOf(() => run(engine, store, request, options)), code);
    assert.equal(store.currentRevision, rev(3));
    assert.equal(get(store, 'a')?.value, '2');
  }
  const { response } = run(engine, store, { compare: [], success: [putOp('a', 'x', { lease: 5 })], failure: [] }, { leaseExists: (id: number) => id === 5 });
  assert.equal(response.revision, rev(4));
  store.checkInvariants();
});

test('txn: a range in a txn at a compacted revision fails before writes', () => {
  const { engine, store } = setup();
  const batch = engine.newBatch();
  store.compact(rev(2), batch);
  engine.commit(batch, () => {});
  assert.equal(codeOf(() => run(engine, store, { compare: [], success: [putOp('b', 'x'), getOp('a', { revision: rev(1) })], failure: [] })), 'COMPACTED');
  assert.equal(get(store, 'b')?.value, 'b');
  // A compare on a range that cannot be read is false, not an error.
  const { response } = run(engine, store, { compare: [cmp('a', 'VERSION', 'EQUAL', 2)], success: [], failure: [] });
  assert.equal(response.succeeded, true);
});

test('txn: duplicate keys are refused as etcd does', () => {
  const dup = (ops: RequestOp[], failure: RequestOp[] = []) => codeOf(() => validateTxnRequest({ compare: [], success: ops, failure }));
  assert.equal(dup([putOp('a', '1'), putOp('a', '2')]), 'DUPLICATE_KEY');
  assert.equal(dup([putOp('a', '1'), delOp('a')]), 'DUPLICATE_KEY');
  assert.equal(dup([delOp('a', 'c'), putOp('b', '1')]), 'DUPLICATE_KEY');
  assert.equal(dup([delOp('a', 'c'), putOp('c', '1')]), 'no error', 'range_end is exclusive');
  assert.equal(dup([delOp('a'), delOp('a')]), 'no error', 'deletes may overlap');
  assert.equal(dup([putOp('a', '1'), putOp('b', '1')]), 'no error');
  assert.equal(dup([putOp('a', '1')], [putOp('a', '2')]), 'no error', 'success and failure are separate');
  // Nested: then/else of one nested txn may repeat each other, but not a put outside it.
  const nested = (s: RequestOp[], f: RequestOp[]) => txnOp({ compare: [], success: s, failure: f });
  assert.equal(dup([nested([putOp('a', '1')], [putOp('a', '2')])]), 'no error');
  assert.equal(dup([putOp('a', '0'), nested([putOp('a', '1')], [])]), 'DUPLICATE_KEY');
  assert.equal(dup([nested([putOp('a', '1')], []), nested([putOp('a', '2')], [])]), 'DUPLICATE_KEY');
  assert.equal(dup([delOp('a', 'z'), nested([putOp('m', '1')], [])]), 'DUPLICATE_KEY');
  assert.equal(dup([nested([delOp('m')], []), putOp('m', '1')]), 'DUPLICATE_KEY');
  // etcd's interval tree treats range_end "\0" literally, so it overlaps nothing there; we accept the same requests.
  assert.equal(dup([delOp('a', Uint8Array.of(0)), putOp('b', '1')]), 'no error');
});

test('txn: request validation: empty keys, too many ops, value/lease provided with ignore flags, sort options', () => {
  const v = (request: TxnRequest, max?: number) => codeOf(() => validateTxnRequest(request, max));
  assert.equal(v({ compare: [cmp('', 'VERSION', 'EQUAL', 0)], success: [], failure: [] }), 'EMPTY_KEY');
  assert.equal(v({ compare: [], success: [putOp('', 'x')], failure: [] }), 'EMPTY_KEY');
  assert.equal(v({ compare: [], success: [], failure: [delOp('')] }), 'EMPTY_KEY');
  assert.equal(v({ compare: [], success: [getOp('')], failure: [] }), 'EMPTY_KEY');
  assert.equal(v({ compare: [], success: [putOp('a', 'x', { ignoreValue: true })], failure: [] }), 'VALUE_PROVIDED');
  assert.equal(v({ compare: [], success: [putOp('a', '', { ignoreLease: true, lease: 3 })], failure: [] }), 'LEASE_PROVIDED');
  assert.equal(v({ compare: [], success: [getOp('a', { sortOrder: 'UP' })], failure: [] }), 'INVALID_SORT_OPTION');
  const many = Array.from({ length: 4 }, (_, i) => putOp(`k${i}`, 'v'));
  assert.equal(v({ compare: [], success: many, failure: [] }, 3), 'TOO_MANY_OPS');
  assert.equal(v({ compare: [], success: many, failure: [] }, 4), 'no error');
  // A nested txn gets what its parent leaves: 4 - 2 = 2 ops.
  assert.equal(v({ compare: [], success: [putOp('x', 'v'), txnOp({ compare: [], success: many.slice(0, 3), failure: [] })], failure: [] }, 4), 'TOO_MANY_OPS');
});

test('txn: isTxnReadOnly looks into nested txns; isTxnSerializable needs a Range and every Range serializable', () => {
  const empty: TxnRequest = { compare: [], success: [], failure: [] };
  assert.equal(isTxnReadOnly({ compare: [], success: [getOp('a')], failure: [getOp('b')] }), true);
  assert.equal(isTxnReadOnly({ compare: [], success: [getOp('a')], failure: [delOp('b')] }), false);
  assert.equal(isTxnReadOnly({ compare: [], success: [txnOp(empty)], failure: [] }), true, 'etcd would propose this; it cannot write');
  assert.equal(isTxnReadOnly({ compare: [], success: [txnOp({ ...empty, failure: [getOp('a')] })], failure: [getOp('b')] }), true);
  assert.equal(isTxnReadOnly({ compare: [], success: [getOp('a'), txnOp({ ...empty, failure: [putOp('a', 'x')] })], failure: [] }), false, 'a write on any branch, taken or not');
  assert.equal(isTxnReadOnly({ compare: [cmp('a', 'VERSION', 'EQUAL', 1)], success: [], failure: [] }), true);
  const s = { serializable: true };
  assert.equal(isTxnSerializable({ compare: [], success: [getOp('a', s)], failure: [getOp('b', s)] }), true);
  assert.equal(isTxnSerializable({ compare: [], success: [getOp('a', s)], failure: [getOp('b')] }), false, 'one linearizable Range makes it linearizable');
  assert.equal(isTxnSerializable({ compare: [], success: [txnOp({ ...empty, success: [getOp('a', s)] })], failure: [] }), true);
  assert.equal(isTxnSerializable({ compare: [], success: [getOp('a', s), txnOp({ ...empty, success: [getOp('b')] })], failure: [] }), false);
  assert.equal(isTxnSerializable({ compare: [], success: [getOp('a', s), putOp('b', 'x')], failure: [] }), false, 'not read-only');
  assert.equal(isTxnSerializable({ compare: [cmp('a', 'VERSION', 'EQUAL', 1)], success: [], failure: [] }), false, 'no Range: linearizable (etcd says serializable)');
});

test('txn: readTxn answers a read-only txn as txn() would, errors included, and writes nothing', () => {
  const { engine, store } = setup();
  put(engine, store, 'b', 'b2');
  compactAll(engine, store, rev(2));
  const all = { rangeEnd: Uint8Array.of(0) };
  const requests: TxnRequest[] = [
    { compare: [], success: [], failure: [] },
    { compare: [cmp('a', 'VALUE', 'EQUAL', '2')], success: [getOp('a'), getOp('a', { ...all, revision: rev(2) })], failure: [getOp('b')] },
    { compare: [cmp('a', 'VALUE', 'EQUAL', 'no')], success: [getOp('a')], failure: [getOp('b', { countOnly: true }), getOp('a', { ...all, limit: 1 })] },
    { compare: [cmp('b', 'MOD', 'GREATER', rev(3))], success: [txnOp({ compare: [cmp('zz', 'CREATE', 'EQUAL', 0)], success: [getOp('b', { revision: rev(3) })], failure: [] })], failure: [] },
    { compare: [], success: [getOp('a', { revision: rev(5) })], failure: [] },
    { compare: [], success: [getOp('a', { revision: rev(1) })], failure: [] },
    { compare: [], success: [txnOp({ compare: [], success: [getOp('a', { revision: rev(1) })], failure: [] })], failure: [] },
  ];
  /** What `fn` returns, or the code of what it throws: both paths must agree on either. */
  const outcome = <T>(fn: () => T): T | { error: string } => {
    try {
      return fn();
    } catch (error) {
      return { error: (error as { code?: string }).code ?? String(error) };
    }
  };
  for (const request of requests) {
    const before = store.hashKV();
    const read = outcome(() => store.readTxn(request));
    const batch = engine.newBatch();
    const proposed = outcome(() => store.txn(batch, request).response);
    assert.equal(batch.count, 0, 'a read-only txn writes nothing');
    assert.deepEqual(read, proposed, JSON.stringify(request, (_k, v: unknown) => (v instanceof Uint8Array ? text(v) : v)));
    assert.deepEqual(store.hashKV(), before);
  }
  assert.deepEqual(['FUTURE_REVISION', 'COMPACTED'], [requests[4], requests[5]].map((r) => codeOf(() => store.readTxn(r!))));
  const answered = store.readTxn(requests[1]!);
  assert.equal(answered.revision, rev(4), 'header: the current revision');
  assert.throws(() => store.readTxn({ compare: [], success: [getOp('a')], failure: [putOp('a', 'x')] }), AssertionError);
});
