/** KV semantics over the wire, with a raw grpc-js client: every Range option and Txn compare, nested txns, headers. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { type TestEtcd, REFERENCE_ETCD, TEST_NODE_ID, call, rawClient, startTestEtcd } from './testing.testlib.js';

const b = (s: string): Buffer => Buffer.from(s);

interface Kv {
  key: Buffer;
  value?: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
}
interface RangeResponse {
  header: { cluster_id: string; member_id: string; revision: string; raft_term: string };
  kvs?: Kv[];
  more?: boolean;
  count?: string;
}
interface TxnResponse {
  header?: { revision?: string };
  succeeded?: boolean;
  responses?: { response_range?: RangeResponse; response_put?: { prev_kv?: Kv }; response_txn?: TxnResponse; response_delete_range?: { deleted?: string } }[];
}

describe('etcd KV service', () => {
  let etcd: TestEtcd;
  let kv: Client;
  before(async () => {
    etcd = await startTestEtcd();
    kv = rawClient(etcd.address, 'KV');
  });
  after(async () => {
    kv?.close();
    await etcd?.close();
  });

  const put = (key: string, value: string, extra: object = {}): Promise<{ header: { revision: string }; prev_kv?: Kv }> =>
    call(kv, 'Put', { key: b(key), value: b(value), ...extra });
  const range = (request: object): Promise<RangeResponse> => call(kv, 'Range', request);
  const txn = (request: object): Promise<TxnResponse> => call(kv, 'Txn', request);
  const keys = (r: RangeResponse): string[] => (r.kvs ?? []).map((k) => k.key.toString());

  test('the response header names cluster, member, revision and term', async () => {
    const p = await put('h/k', 'v');
    const r = await range({ key: b('h/k') });
    if (REFERENCE_ETCD === undefined) {
      assert.equal(r.header.member_id, String(TEST_NODE_ID));
      assert.equal(r.header.cluster_id, String(0x7e55e7a));
    }
    assert.equal(r.header.revision, p.header.revision);
    assert.ok(Number(r.header.raft_term) >= 1);
    assert.equal(r.kvs?.[0]?.mod_revision, p.header.revision);
  });

  test('range: single key, [key, end), from key ("\\0"), and an inverted range', async () => {
    for (const k of ['r/a', 'r/b', 'r/c', 'r/d']) await put(k, k);
    assert.deepEqual(keys(await range({ key: b('r/b') })), ['r/b']);
    assert.deepEqual(keys(await range({ key: b('r/b'), range_end: b('r/d') })), ['r/b', 'r/c']);
    const fromKey = await range({ key: b('r/c'), range_end: Buffer.from([0]) });
    assert.deepEqual(keys(fromKey).filter((k) => k.startsWith('r/')), ['r/c', 'r/d']);
    // etcd answers a range whose end is before its start with nothing, not an error.
    const inverted = await range({ key: b('r/d'), range_end: b('r/a') });
    assert.deepEqual(keys(inverted), []);
    assert.equal(inverted.count ?? '0', '0');
    const deleted = await call<{ deleted?: string }>(kv, 'DeleteRange', { key: b('r/d'), range_end: b('r/a') });
    assert.equal(deleted.deleted ?? '0', '0');
  });

  test('range: limit and more, count_only, keys_only', async () => {
    for (const k of ['l/1', 'l/2', 'l/3']) await put(k, 'value');
    const limited = await range({ key: b('l/'), range_end: b('l0'), limit: 2 });
    assert.deepEqual(keys(limited), ['l/1', 'l/2']);
    assert.equal(limited.more, true);
    assert.equal(limited.count, '3');
    const counted = await range({ key: b('l/'), range_end: b('l0'), count_only: true });
    assert.equal(counted.count, '3');
    assert.equal(counted.kvs?.length ?? 0, 0);
    const keysOnly = await range({ key: b('l/'), range_end: b('l0'), keys_only: true });
    assert.deepEqual(keys(keysOnly), ['l/1', 'l/2', 'l/3']);
    assert.ok((keysOnly.kvs ?? []).every((k) => (k.value?.length ?? 0) === 0));
  });

  test('range: sort order and target', async () => {
    await put('s/a', '3');
    await put('s/b', '1');
    await put('s/c', '2');
    await put('s/a', '4');
    const sorted = async (sort_order: number, sort_target: number): Promise<string[]> => keys(await range({ key: b('s/'), range_end: b('s0'), sort_order, sort_target }));
    // SortOrder: NONE 0, ASCEND 1, DESCEND 2; SortTarget: KEY 0, VERSION 1, CREATE 2, MOD 3, VALUE 4.
    assert.deepEqual(await sorted(2, 0), ['s/c', 's/b', 's/a']);
    assert.deepEqual(await sorted(1, 4), ['s/b', 's/c', 's/a']);
    assert.deepEqual(await sorted(2, 3), ['s/a', 's/c', 's/b']);
    assert.deepEqual(await sorted(1, 2), ['s/a', 's/b', 's/c']);
    assert.deepEqual((await sorted(2, 1))[0], 's/a');
  });

  test('range: revision and the mod/create revision filters', async () => {
    const first = await put('f/a', '1');
    const second = await put('f/b', '1');
    const third = await put('f/a', '2');
    const at = await range({ key: b('f/a'), revision: first.header.revision });
    assert.equal(at.kvs?.[0]?.value?.toString(), '1');
    const all = { key: b('f/'), range_end: b('f0') };
    assert.deepEqual(keys(await range({ ...all, min_mod_revision: third.header.revision })), ['f/a']);
    assert.deepEqual(keys(await range({ ...all, max_mod_revision: second.header.revision })), ['f/b']);
    assert.deepEqual(keys(await range({ ...all, min_create_revision: second.header.revision })), ['f/b']);
    assert.deepEqual(keys(await range({ ...all, max_create_revision: first.header.revision })), ['f/a']);
  });

  test('range: serializable reads are served', async () => {
    await put('z/k', 'v');
    assert.deepEqual(keys(await range({ key: b('z/k'), serializable: true })), ['z/k']);
  });

  test('put: prev_kv, ignore_value, ignore_lease', async () => {
    await put('p/k', 'one');
    const p = await put('p/k', 'two', { prev_kv: true });
    assert.equal(p.prev_kv?.value?.toString(), 'one');
    await put('p/k', '', { ignore_value: true });
    assert.equal((await range({ key: b('p/k') })).kvs?.[0]?.value?.toString(), 'two');
    await put('p/k', 'three', { ignore_lease: true });
    const now = await range({ key: b('p/k') });
    assert.equal(now.kvs?.[0]?.value?.toString(), 'three');
    assert.equal(now.kvs?.[0]?.version, '4');
  });

  test('delete range: prev_kv', async () => {
    await put('d/a', '1');
    await put('d/b', '2');
    const d = await call<{ deleted: string; prev_kvs?: Kv[] }>(kv, 'DeleteRange', { key: b('d/'), range_end: b('d0'), prev_kv: true });
    assert.equal(d.deleted, '2');
    assert.deepEqual(d.prev_kvs?.map((k) => `${k.key}=${k.value}`), ['d/a=1', 'd/b=2']);
  });

  test('txn: every compare target and result', async () => {
    const p = await put('c/k', 'm');
    const rev = Number(p.header.revision);
    const check = async (compare: object): Promise<boolean> => (await txn({ compare: [{ key: b('c/k'), ...compare }] })).succeeded === true;
    // CompareResult: EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3; CompareTarget: VERSION 0, CREATE 1, MOD 2, VALUE 3, LEASE 4.
    assert.equal(await check({ target: 0, result: 0, version: 1 }), true);
    assert.equal(await check({ target: 0, result: 1, version: 0 }), true);
    assert.equal(await check({ target: 1, result: 0, create_revision: rev }), true);
    assert.equal(await check({ target: 1, result: 2, create_revision: rev }), false);
    assert.equal(await check({ target: 2, result: 2, mod_revision: rev + 1 }), true);
    assert.equal(await check({ target: 2, result: 3, mod_revision: rev }), false);
    assert.equal(await check({ target: 3, result: 0, value: b('m') }), true);
    assert.equal(await check({ target: 3, result: 1, value: b('a') }), true);
    assert.equal(await check({ target: 3, result: 2, value: b('a') }), false);
    assert.equal(await check({ target: 4, result: 0, lease: 0 }), true);
    assert.equal(await check({ target: 4, result: 3, lease: '9223372036854775807' }), true);
    // Absent keys compare as version 0; a compare over a range needs every key to pass.
    assert.equal((await txn({ compare: [{ key: b('c/none'), target: 0, result: 0, version: 0 }] })).succeeded, true);
    assert.equal((await txn({ compare: [{ key: b('c/'), range_end: b('c0'), target: 0, result: 1, version: 0 }] })).succeeded, true);
  });

  test('txn: branches, nested txns and their responses', async () => {
    await put('n/k', 'v');
    const nested = {
      compare: [{ key: b('n/k'), target: 3, result: 0, value: b('v') }],
      success: [
        { request_put: { key: b('n/k'), value: b('v2'), prev_kv: true } },
        { request_txn: { compare: [{ key: b('n/k'), target: 3, result: 0, value: b('v') }], success: [{ request_put: { key: b('n/x'), value: b('then') } }], failure: [{ request_range: { key: b('n/k') } }] } },
        { request_delete_range: { key: b('n/none') } },
      ],
      failure: [{ request_range: { key: b('n/k') } }],
    };
    const r = await txn(nested);
    assert.equal(r.succeeded, true);
    assert.equal(r.responses?.[0]?.response_put?.prev_kv?.value?.toString(), 'v');
    const inner = r.responses?.[1]?.response_txn;
    // Compares of a nested txn see the state before the whole txn.
    assert.equal(inner?.succeeded, true);
    assert.equal(inner?.header?.revision ?? '0', '0', 'etcd leaves a nested txn header empty');
    assert.equal(r.responses?.[2]?.response_delete_range?.deleted ?? '0', '0');
    assert.equal((await range({ key: b('n/x') })).kvs?.[0]?.value?.toString(), 'then');
    const again = await txn(nested);
    assert.equal(again.succeeded ?? false, false);
    assert.equal(again.responses?.[0]?.response_range?.kvs?.[0]?.value?.toString(), 'v2');
  });

  const compactRevision = async (): Promise<string | undefined> => {
    const maintenance = rawClient(etcd.address, 'Maintenance');
    try {
      return (await call<{ compact_revision?: string }>(maintenance, 'HashKV', {})).compact_revision;
    } finally {
      maintenance.close();
    }
  };

  test('compact: never compacted, HashKV says -1; the first Compact(0) succeeds as a no-op, the second is compacted', async () => {
    await put('k/c0', 'v');
    assert.equal(await compactRevision(), '-1');
    await call(kv, 'Compact', { revision: 0 });
    const zero = await compactRevision();
    assert.ok(zero === '0' || zero === undefined, `compact_revision 0 (a proto default, which etcd leaves off the wire), got ${zero}`);
    assert.equal((await range({ key: b('k/c0') })).kvs?.[0]?.value?.toString(), 'v');
    await assert.rejects(call(kv, 'Compact', { revision: 0 }), /etcdserver: mvcc: required revision has been compacted/);
  });

  test('compact: answers with a header, and reads below it fail', async () => {
    const old = await put('k/c', '1');
    const now = await put('k/c', '2');
    const c = await call<{ header: { revision: string } }>(kv, 'Compact', { revision: now.header.revision, physical: true });
    assert.equal(c.header.revision, now.header.revision);
    assert.equal(await compactRevision(), now.header.revision, "HashKV's compact_revision");
    await assert.rejects(range({ key: b('k/c'), revision: old.header.revision }), /etcdserver: mvcc: required revision has been compacted/);
  });
});
