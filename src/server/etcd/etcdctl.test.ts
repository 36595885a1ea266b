/**
 * Interop: the real etcdctl 3.4 binary against a tessera node. Expected
 * outputs are what etcdctl prints for the data the test wrote (checked
 * against a real etcd 3.4 when these tests were written).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ETCD_API_VERSION } from './limits.js';
import { type TestEtcd, REFERENCE_ETCD, TEST_NODE_ID, etcdctl, etcdctlMissing, startTestEtcd } from './testing.testlib.js';

const skip = etcdctlMissing();
if (skip !== undefined) console.log(`# skipping etcdctl interop tests: ${skip}`);

describe('etcdctl 3.4 against tessera', { skip }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    await etcd?.close();
  });

  /** Runs etcdctl and requires success; returns stdout. */
  async function ok(...args: string[]): Promise<string> {
    const r = await etcdctl(etcd.address, args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** The revision a key was last modified at, from `get -w json`. */
  async function modRevision(key: string): Promise<number> {
    const out = JSON.parse(await ok('get', key, '-w', 'json')) as { kvs: { mod_revision: number }[] };
    const kv = out.kvs[0];
    assert.ok(kv !== undefined, `${key} exists`);
    return kv.mod_revision;
  }

  test('put, then get with --prefix, --limit, --keys-only and --print-value-only', async () => {
    assert.equal(await ok('put', 'p/a', 'va'), 'OK\n');
    await ok('put', 'p/b', 'vb');
    await ok('put', 'p/c', 'vc');
    await ok('put', 'q/a', 'other');
    assert.equal(await ok('get', 'p/', '--prefix'), 'p/a\nva\np/b\nvb\np/c\nvc\n');
    assert.equal(await ok('get', 'p/', '--prefix', '--limit=2'), 'p/a\nva\np/b\nvb\n');
    const keysOnly = await ok('get', 'p/', '--prefix', '--keys-only');
    assert.deepEqual(keysOnly.split('\n').filter((l) => l !== ''), ['p/a', 'p/b', 'p/c']);
    assert.equal(await ok('get', 'p/b', '--print-value-only'), 'vb\n');
    assert.equal(await ok('get', 'p/a', 'p/c'), 'p/a\nva\np/b\nvb\n', 'a [key, range_end) range');
    assert.equal(await ok('get', 'missing'), '');
  });

  test('get with --sort-by and --order', async () => {
    await ok('put', 's/x', '1');
    await ok('put', 's/y', '3');
    await ok('put', 's/z', '2');
    await ok('put', 's/x', '4');
    assert.equal(await ok('get', 's/', '--prefix', '--sort-by=KEY', '--order=DESCEND', '--keys-only'), 's/z\n\ns/y\n\ns/x\n\n');
    assert.equal(await ok('get', 's/', '--prefix', '--sort-by=VALUE', '--order=ASCEND', '--print-value-only'), '2\n3\n4\n');
    assert.equal(await ok('get', 's/', '--prefix', '--sort-by=MODIFY', '--order=DESCEND', '--keys-only', '--limit=1'), 's/x\n\n');
    assert.equal(await ok('get', 's/', '--prefix', '--sort-by=CREATE', '--order=ASCEND', '--print-value-only'), '4\n3\n2\n');
    assert.equal(await ok('get', 's/', '--prefix', '--sort-by=VERSION', '--order=DESCEND', '--keys-only', '--limit=1'), 's/x\n\n');
  });

  test('get --rev reads the past', async () => {
    await ok('put', 'r/k', 'v1');
    const first = await modRevision('r/k');
    await ok('put', 'r/k', 'v2');
    assert.equal(await ok('get', 'r/k', `--rev=${first}`, '--print-value-only'), 'v1\n');
    assert.equal(await ok('get', 'r/k', '--print-value-only'), 'v2\n');
    const future = await etcdctl(etcd.address, ['get', 'r/k', `--rev=${first + 1000}`]);
    assert.notEqual(future.code, 0);
    assert.match(future.stderr, /etcdserver: mvcc: required revision is a future revision/);
  });

  test('del with --prefix and --prev-kv', async () => {
    await ok('put', 'd/1', 'one');
    await ok('put', 'd/2', 'two');
    await ok('put', 'd/3', 'three');
    assert.equal(await ok('del', 'd/1', '--prev-kv'), '1\nd/1\none\n');
    assert.equal(await ok('del', 'd/', '--prefix'), '2\n');
    assert.equal(await ok('get', 'd/', '--prefix'), '');
    assert.equal(await ok('del', 'd/nothing'), '0\n');
  });

  test('txn, fed on stdin, takes the success and the failure branch', async () => {
    await ok('put', 't/k', 'v1');
    const script = (value: string): string => `value("t/k") = "v1"\n\nput t/k ${value}\n\nget t/k\n\n`;
    const taken = await etcdctl(etcd.address, ['txn'], script('v2'));
    assert.equal(taken.code, 0, taken.stderr);
    assert.equal(taken.stdout, 'SUCCESS\n\nOK\n');
    const failed = await etcdctl(etcd.address, ['txn'], script('v3'));
    assert.equal(failed.stdout, 'FAILURE\n\nt/k\nv2\n');
    const json = await etcdctl(etcd.address, ['txn', '-w', 'json'], 'mod("t/k") > "0"\nversion("t/k") = "2"\n\ndel t/k --prev-kv\n\n\n');
    const out = JSON.parse(json.stdout) as { succeeded: boolean; responses: { Response: { ResponseDeleteRange: { deleted: number } } }[] };
    assert.equal(out.succeeded, true);
    assert.equal(out.responses[0]?.Response.ResponseDeleteRange.deleted, 1);
  });

  test('txn --interactive answers its prompts from stdin', async () => {
    await ok('put', 'ti/k', 'a');
    const r = await etcdctl(etcd.address, ['txn', '--interactive'], 'create("ti/k") > "0"\n\nput ti/k b\n\n\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /compares:/);
    assert.match(r.stdout, /SUCCESS\n\nOK\n$/);
    assert.equal(await ok('get', 'ti/k', '--print-value-only'), 'b\n');
  });

  test('compaction, then a read below it is refused as compacted', async () => {
    await ok('put', 'c/k', 'old');
    const old = await modRevision('c/k');
    await ok('put', 'c/k', 'new');
    const now = await modRevision('c/k');
    assert.equal(await ok('compaction', String(now)), `compacted revision ${now}\n`);
    const r = await etcdctl(etcd.address, ['get', 'c/k', `--rev=${old}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /etcdserver: mvcc: required revision has been compacted/);
    assert.equal(await ok('get', 'c/k', `--rev=${now}`, '--print-value-only'), 'new\n');
    const again = await etcdctl(etcd.address, ['compaction', String(old)]);
    assert.match(again.stderr, /etcdserver: mvcc: required revision has been compacted/);
  });

  /** A uint64 id from etcdctl's JSON, in hex as its tables print it (JSON.parse would round ids past 2^53). */
  function jsonId(json: string, field: string): string {
    const m = new RegExp(`"${field}":(\\d+)`).exec(json);
    assert.ok(m !== null, `${field} in ${json}`);
    return BigInt(m[1] as string).toString(16);
  }

  interface EndpointStatus {
    Endpoint: string;
    Status: { header: { member_id: number }; version: string; leader: number; raftIndex: number; raftTerm: number; raftAppliedIndex: number };
  }
  interface MemberList {
    header: { member_id: number };
    members: { ID: number; name: string; clientURLs: string[]; isLearner?: boolean }[];
  }

  test('endpoint status shows the lone member as leader', async () => {
    const statusJson = await ok('endpoint', 'status', '-w', 'json');
    const s = (JSON.parse(statusJson) as EndpointStatus[])[0];
    assert.ok(s !== undefined);
    assert.equal(s.Endpoint, etcd.address);
    assert.match(s.Status.version, /^3\.4\./);
    assert.equal(s.Status.leader, s.Status.header.member_id);
    assert.ok(s.Status.raftTerm >= 1);
    assert.ok(s.Status.raftAppliedIndex >= 1 && s.Status.raftIndex >= s.Status.raftAppliedIndex);
    const table = await ok('endpoint', 'status');
    assert.ok(table.startsWith(`${etcd.address}, ${jsonId(statusJson, 'member_id')}, ${s.Status.version}, `), table);
  });

  test('endpoint status names tessera\'s member id and version', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, async () => {
    const s = (JSON.parse(await ok('endpoint', 'status', '-w', 'json')) as EndpointStatus[])[0];
    assert.equal(s?.Status.version, ETCD_API_VERSION);
    assert.equal(s?.Status.header.member_id, TEST_NODE_ID);
  });

  test('endpoint status with an http:// endpoint and with --cluster (etcdctl dials these directly)', async () => {
    const direct = await etcdctl(`http://${etcd.address}`, ['endpoint', 'status']);
    assert.equal(direct.code, 0, direct.stderr);
    assert.ok(direct.stdout.startsWith(`http://${etcd.address}, `), direct.stdout);
    const cluster = await etcdctl(etcd.address, ['endpoint', 'status', '--cluster', '-w', 'json']);
    assert.equal(cluster.code, 0, cluster.stderr);
    const rows = JSON.parse(cluster.stdout) as EndpointStatus[];
    assert.deepEqual(
      rows.map((r) => r.Endpoint),
      [`http://${etcd.address}`],
    );
    const health = await etcdctl(etcd.address, ['endpoint', 'health', '--cluster']);
    assert.equal(health.code, 0, health.stderr);
    assert.match(health.stdout + health.stderr, new RegExp(`http://${etcd.address} is healthy`));
  });

  test('endpoint hashkv changes with a write and matches at a fixed revision; defrag succeeds and the node keeps serving', async () => {
    const hashOf = async (rev?: number): Promise<number> => {
      const out = JSON.parse(await ok('endpoint', 'hashkv', '-w', 'json', ...(rev === undefined ? [] : [`--rev=${rev}`]))) as { HashKV: { hash: number } }[];
      const first = out[0];
      assert.ok(first !== undefined);
      return first.HashKV.hash;
    };
    await ok('put', 'h/k', 'one');
    const rev = await modRevision('h/k');
    const before = await hashOf(rev);
    await ok('put', 'h/k', 'two');
    assert.equal(await hashOf(rev), before, 'the hash at a past revision does not move');
    assert.notEqual(await hashOf(), before, 'a write changes the current hash');
    assert.match(await ok('defrag'), /Finished defragmenting etcd member/);
    assert.equal(await ok('get', 'h/k', '--print-value-only'), 'two\n');
  });

  test('move-leader to a node that is not a member is refused as a bad transferee', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, async () => {
    const r = await etcdctl(etcd.address, ['move-leader', 'abcdef']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /etcdserver: bad leader transferee/);
  });

  test('endpoint health', async () => {
    const r = await etcdctl(etcd.address, ['endpoint', 'health']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, new RegExp(`${etcd.address} is healthy: successfully committed proposal`));
  });

  test('member list', async () => {
    const json = await ok('member', 'list', '-w', 'json');
    const out = JSON.parse(json) as MemberList;
    assert.equal(out.members.length, 1);
    const m = out.members[0];
    assert.ok(m !== undefined);
    const id = jsonId(json, 'ID');
    assert.equal(id, jsonId(json, 'member_id'));
    assert.deepEqual(m.clientURLs, [`http://${etcd.address}`]);
    const table = await ok('member', 'list');
    assert.match(table, new RegExp(`^${id}, started, ${m.name}, [^,]*, http://${etcd.address}, false\n$`));
  });

  test('member list names the test node', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, async () => {
    const out = JSON.parse(await ok('member', 'list', '-w', 'json')) as MemberList;
    assert.equal(out.members[0]?.ID, TEST_NODE_ID);
    assert.equal(out.members[0]?.name, 'test-node');
  });

  test('an empty key is refused with etcd\'s message', async () => {
    const r = await etcdctl(etcd.address, ['put', '', 'v']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error: etcdserver: key is not provided/);
  });

  test('a put with an unknown lease is refused', async () => {
    const r = await etcdctl(etcd.address, ['put', 'l/k', 'v', '--lease=1234abcd']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error: etcdserver: requested lease not found/);
  });
});
