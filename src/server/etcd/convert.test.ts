import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTesseraError } from '../../base/index.js';
import { UNKNOWN_LEASE_ID, hasUnknownLeaseId, safeInt, toCompare, toPutRequest, toRangeOptions, toTxnRequest, toWireKeyValue } from './convert.js';
import { EtcdApiError } from './errors.js';
import { membersOf, wireId } from './node_info.js';
import { etcdService } from './proto.js';

const b = (s: string): Buffer => Buffer.from(s);

test('int64 strings clamp into the safe integers, keeping their sign', () => {
  assert.equal(safeInt(undefined), 0);
  assert.equal(safeInt('42'), 42);
  assert.equal(safeInt('-7'), -7);
  assert.equal(safeInt('9223372036854775807'), Number.MAX_SAFE_INTEGER);
  assert.equal(safeInt('-9223372036854775808'), -Number.MAX_SAFE_INTEGER);
  assert.throws(() => safeInt('x1'), EtcdApiError);
});

test('lease ids no tessera lease can have map to the unknown id', () => {
  assert.equal(toPutRequest({ key: b('k') }).lease, undefined);
  assert.equal(toPutRequest({ key: b('k'), lease: '0' }).lease, undefined);
  assert.equal(toPutRequest({ key: b('k'), lease: '12' }).lease, 12);
  assert.equal(toPutRequest({ key: b('k'), lease: '9007199254740993' }).lease, UNKNOWN_LEASE_ID);
  assert.equal(toPutRequest({ key: b('k'), lease: '-3' }).lease, UNKNOWN_LEASE_ID);
  const nested = toTxnRequest({ failure: [{ request_txn: { success: [{ request_put: { key: b('k'), lease: '-1' } }] } }] }, 128);
  assert.equal(hasUnknownLeaseId(nested), true);
  assert.equal(hasUnknownLeaseId(toTxnRequest({ success: [{ request_put: { key: b('k'), lease: '5' } }] }, 128)), false);
});

test('requests carry only the fields that are set (they go into the Raft log)', () => {
  assert.deepEqual(Object.keys(toRangeOptions({ key: b('a') })), ['key']);
  assert.deepEqual(Object.keys(toRangeOptions({ key: b('a'), range_end: Buffer.alloc(0), keys_only: false })), ['key']);
  assert.deepEqual(Object.keys(toPutRequest({ key: b('a'), prev_kv: false })), ['key', 'value']);
  const r = toRangeOptions({ key: b('a'), range_end: b('b'), limit: '3', sort_order: 2, sort_target: 4, count_only: true });
  assert.deepEqual({ ...r, key: undefined, rangeEnd: undefined }, { key: undefined, rangeEnd: undefined, limit: 3, sortOrder: 'DESCEND', sortTarget: 'VALUE', countOnly: true });
});

test('unknown enum values are refused', () => {
  assert.throws(() => toRangeOptions({ key: b('a'), sort_order: 9 }), (e) => isTesseraError(e, 'INVALID_SORT_OPTION'));
  assert.throws(() => toRangeOptions({ key: b('a'), sort_target: 5 }), (e) => isTesseraError(e, 'INVALID_SORT_OPTION'));
  assert.throws(() => toCompare({ key: b('a'), target: 5 }), EtcdApiError);
  assert.throws(() => toCompare({ key: b('a'), result: 4 }), EtcdApiError);
});

test('a compare takes the operand its target names; absent is zero', () => {
  assert.deepEqual(toCompare({ key: b('a') }), { key: b('a'), target: 'VERSION', result: 'EQUAL', operand: 0 });
  assert.equal(toCompare({ key: b('a'), target: 2, mod_revision: '9', version: '3' }).operand, 9);
  assert.deepEqual(toCompare({ key: b('a'), target: 3 }).value, new Uint8Array(0));
});

test('txns too wide or nested deeper than the op budget are refused while converting', () => {
  const wide = { success: Array.from({ length: 129 }, () => ({ request_range: { key: b('k') } })) };
  assert.throws(() => toTxnRequest(wide, 128), (e) => isTesseraError(e, 'TOO_MANY_OPS'));
  let deep: object = { success: [{ request_range: { key: b('k') } }] };
  for (let i = 0; i < 129; i++) deep = { success: [{ request_txn: deep }] };
  assert.throws(() => toTxnRequest(deep, 128), (e) => isTesseraError(e, 'TOO_MANY_OPS'));
  assert.throws(() => toTxnRequest({ success: [{}] }, 128), (e) => isTesseraError(e, 'KEY_NOT_FOUND'));
});

test('key-values leave zero fields off the wire', () => {
  const kv = toWireKeyValue({ key: b('k'), value: new Uint8Array(0), createRevision: 2, modRevision: 3, version: 1, lease: 0 });
  assert.deepEqual(Object.keys(kv).sort(), ['create_revision', 'key', 'mod_revision', 'version']);
});

test('uint64 ids: numbers, bigints and hex strings; past 2^53 they travel as exact decimals', () => {
  assert.equal(wireId(7, 'id'), 7);
  assert.equal(wireId('ff', 'id'), 255);
  assert.equal(wireId('0xCE0B5E7A1D2F3C4B', 'id'), '14847064475125627979');
  assert.equal(wireId(0xffffffffffffffffn, 'id'), '18446744073709551615');
  assert.throws(() => wireId('not-hex', 'cluster id'), (e) => isTesseraError(e, 'INVALID_CONFIG'));
  assert.throws(() => wireId('1'.repeat(17), 'cluster id'), (e) => isTesseraError(e, 'INVALID_CONFIG'));
  const range = etcdService('KV')['Range'];
  assert.ok(range !== undefined);
  const header = { cluster_id: wireId('ce0b5e7a1d2f3c4b', 'id'), member_id: 1, revision: 5, raft_term: 2 };
  const decoded = range.responseDeserialize(range.responseSerialize({ header })) as { header: { cluster_id: string } };
  assert.equal(decoded.header.cluster_id, '14847064475125627979');
});

test('members come from the node list, the runtime status, or the node alone', () => {
  assert.deepEqual(membersOf({ nodeId: 3, name: 'n3' }, '127.0.0.1:2379'), [{ nodeId: 3, name: 'n3', peerUrls: [], clientUrls: ['http://127.0.0.1:2379'] }]);
  const status = () => ({ members: [{ id: 9, name: 'n9', peer: '10.0.0.9:2380', learner: true }] });
  assert.deepEqual(membersOf({ nodeId: 9, status }, 'x:1'), [{ nodeId: 9, name: 'n9', peerUrls: ['http://10.0.0.9:2380'], clientUrls: [], isLearner: true }]);
});
