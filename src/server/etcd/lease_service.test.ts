/**
 * The Lease service over the wire, with a raw grpc-js client: etcd 3.4's
 * answers and messages (checked against a real etcd with
 * TESSERA_ETCD_REFERENCE), expiry deleting keys with a watcher seeing it,
 * and a follower forwarding keep-alives to the leader.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Client, type ClientDuplexStream, status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { freePorts } from '../net_util.js';
import { type NodeHandle, startNode } from '../node.js';
import { type TestEtcd, REFERENCE_ETCD, call, callError, rawClient, startTestEtcd } from './testing.testlib.js';
import { WatchStreamClient } from './watch.testlib.js';

const b = (s: string): Buffer => Buffer.from(s);
const TWO_POW_53 = 2 ** 53;

interface Header {
  revision: string;
  member_id: string;
}
interface GrantResponse {
  header: Header;
  ID: string;
  TTL: string;
}
interface TtlResponse {
  header: Header;
  ID: string;
  TTL: string;
  grantedTTL?: string;
  keys?: Buffer[];
}
interface KeepAliveResponse {
  header: Header;
  ID?: string;
  TTL?: string;
}

/** A keep-alive stream whose answers the test takes in order. */
function keepAliveStream(lease: Client): { send(id: string | number): Promise<KeepAliveResponse>; close(): void } {
  const stream = (lease as unknown as { LeaseKeepAlive(): ClientDuplexStream<object, KeepAliveResponse> }).LeaseKeepAlive();
  const waiting: { resolve: (r: KeepAliveResponse) => void; reject: (e: Error) => void }[] = [];
  stream.on('data', (r: KeepAliveResponse) => waiting.shift()?.resolve(r));
  stream.on('error', (e: Error) => waiting.splice(0).forEach((w) => w.reject(e)));
  return {
    send: (id) =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        stream.write({ ID: id });
      }),
    close: () => stream.cancel(),
  };
}

describe('etcd Lease service', () => {
  let etcd: TestEtcd;
  let kv: Client;
  let lease: Client;
  let watch: Client;
  before(async () => {
    etcd = await startTestEtcd();
    kv = rawClient(etcd.address, 'KV');
    lease = rawClient(etcd.address, 'Lease');
    watch = rawClient(etcd.address, 'Watch');
  });
  after(async () => {
    for (const c of [kv, lease, watch]) c?.close();
    await etcd?.close();
  });

  const grant = (request: object): Promise<GrantResponse> => call(lease, 'LeaseGrant', request);
  const ttl = (id: string, keys = false): Promise<TtlResponse> => call(lease, 'LeaseTimeToLive', { ID: id, keys });
  async function expectError(method: string, request: object, code: status, details: string): Promise<void> {
    const error = await callError(lease, method, request);
    assert.equal(error.code, code, `${method}: got ${status[error.code]} ${error.details}`);
    assert.equal(error.details, details);
  }

  test('grant: the node chooses an id, or takes the given one; a duplicate or a huge TTL is refused', async () => {
    const chosen = await grant({ TTL: 30 });
    assert.ok(BigInt(chosen.ID) > 0n);
    if (REFERENCE_ETCD === undefined) assert.ok(Number(chosen.ID) < TWO_POW_53, 'tessera chooses ids below 2^53');
    assert.equal(chosen.TTL, '30');
    const given = await grant({ TTL: 30, ID: 424242 });
    assert.equal(given.ID, '424242');
    await expectError('LeaseGrant', { TTL: 30, ID: 424242 }, status.FAILED_PRECONDITION, 'etcdserver: lease already exists');
    await expectError('LeaseGrant', { TTL: 9_000_000_001 }, status.OUT_OF_RANGE, 'etcdserver: too large lease TTL');
  });

  test('grant: a TTL under the minimum (or none) is raised to it, as etcd does', async () => {
    for (const TTL of [1, 0, -5]) assert.equal((await grant({ TTL })).TTL, '2', `TTL ${TTL}`);
  });

  test('ids outside (0, 2^53) name no lease', { skip: REFERENCE_ETCD !== undefined && 'etcd takes any int64 id' }, async () => {
    for (const ID of [String(TWO_POW_53), '-3', '9223372036854775807']) {
      await expectError('LeaseGrant', { TTL: 30, ID }, status.NOT_FOUND, 'etcdserver: requested lease not found');
      await expectError('LeaseRevoke', { ID }, status.NOT_FOUND, 'etcdserver: requested lease not found');
      assert.equal((await ttl(ID)).TTL, '-1');
    }
    const ka = keepAliveStream(lease);
    try {
      const r = await ka.send(String(TWO_POW_53));
      assert.deepEqual([r.ID, r.TTL], [String(TWO_POW_53), undefined]);
    } finally {
      ka.close();
    }
  });

  test('time-to-live: remaining and granted TTL, keys only when asked; -1 for a missing lease', async () => {
    const l = await grant({ TTL: 60 });
    await call(kv, 'Put', { key: b('lt/a'), value: b('1'), lease: l.ID });
    await call(kv, 'Put', { key: b('lt/b'), value: b('2'), lease: l.ID });
    const withKeys = await ttl(l.ID, true);
    assert.equal(withKeys.ID, l.ID);
    assert.equal(withKeys.grantedTTL, '60');
    assert.ok(Number(withKeys.TTL) > 55 && Number(withKeys.TTL) <= 60, withKeys.TTL);
    assert.deepEqual(withKeys.keys?.map((k) => k.toString()).sort(), ['lt/a', 'lt/b']);
    assert.equal((await ttl(l.ID)).keys, undefined);
    const missing = await ttl('987654321');
    assert.deepEqual([missing.ID, missing.TTL, missing.grantedTTL], ['987654321', '-1', undefined]);
    assert.ok(missing.header.revision !== undefined, 'a missing lease still gets a full header');
  });

  test('leases lists every lease', async () => {
    const a = await grant({ TTL: 30 });
    const c = await grant({ TTL: 30 });
    const list = await call<{ leases?: { ID: string }[] }>(lease, 'LeaseLeases', {});
    const ids = (list.leases ?? []).map((l) => l.ID);
    assert.ok(ids.includes(a.ID) && ids.includes(c.ID), JSON.stringify(ids));
  });

  test('revoke deletes the attached keys in one revision, which a watcher sees; a second revoke is not found', async () => {
    const l = await grant({ TTL: 60 });
    await call(kv, 'Put', { key: b('lr/a'), value: b('1'), lease: l.ID });
    await call(kv, 'Put', { key: b('lr/b'), value: b('2'), lease: l.ID });
    const s = new WatchStreamClient(watch);
    try {
      const id = await s.create({ key: b('lr/'), range_end: b('lr0') });
      const revoked = await call<{ header: Header }>(lease, 'LeaseRevoke', { ID: l.ID });
      const events = await s.events(id, 2);
      assert.deepEqual(
        events.map((e) => `${e.type === 1 ? 'DELETE' : 'PUT'} ${e.kv.key.toString()}@${e.kv.mod_revision}`),
        [`DELETE lr/a@${revoked.header.revision}`, `DELETE lr/b@${revoked.header.revision}`],
      );
    } finally {
      s.close();
    }
    const left = await call<{ kvs?: unknown[] }>(kv, 'Range', { key: b('lr/'), range_end: b('lr0') });
    assert.equal(left.kvs?.length ?? 0, 0);
    await expectError('LeaseRevoke', { ID: l.ID }, status.NOT_FOUND, 'etcdserver: requested lease not found');
    await expectError('LeaseRevoke', { ID: 0 }, status.NOT_FOUND, 'etcdserver: requested lease not found');
    assert.equal((await ttl(l.ID)).TTL, '-1');
  });

  test('keep-alive answers each request with the TTL, in order; a missing lease gets TTL 0', async () => {
    const l = await grant({ TTL: 20 });
    const ka = keepAliveStream(lease);
    try {
      const answers = await Promise.all([ka.send(l.ID), ka.send('5555'), ka.send(l.ID), ka.send(0)]);
      assert.deepEqual(
        answers.map((r) => [r.ID, r.TTL]),
        [
          [l.ID, '20'],
          ['5555', undefined],
          [l.ID, '20'],
          [undefined, undefined],
        ],
      );
      assert.ok(answers.every((r) => r.header.revision !== undefined));
    } finally {
      ka.close();
    }
  });

  test('an expired lease is revoked: its key is deleted and a watcher sees the DELETE', async () => {
    const l = await grant({ TTL: 2 });
    const put = await call<{ header: Header }>(kv, 'Put', { key: b('lx/k'), value: b('v'), lease: l.ID });
    const s = new WatchStreamClient(watch);
    try {
      const id = await s.create({ key: b('lx/k'), start_revision: put.header.revision });
      const [created, deleted] = await s.events(id, 2);
      assert.equal(created?.kv.lease, l.ID);
      assert.equal(deleted?.type, 1);
      assert.equal(deleted?.kv.key.toString(), 'lx/k');
    } finally {
      s.close();
    }
    assert.equal((await ttl(l.ID)).TTL, '-1');
    const left = await call<{ kvs?: unknown[] }>(kv, 'Range', { key: b('lx/k') });
    assert.equal(left.kvs?.length ?? 0, 0);
  });
});

describe('leases on a three-node cluster', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, () => {
  let nodes: NodeHandle[] = [];
  before(async () => {
    const ports = await freePorts(3);
    const initialCluster = ports.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(',');
    const logger = pino({ level: 'silent' });
    nodes = await Promise.all(
      ports.map((p, i) =>
        startNode({ name: `n${i + 1}`, engine: 'memory', initialCluster, listenPeer: `127.0.0.1:${p}`, listenClient: '127.0.0.1:0', tickMs: 20, electionTicks: 10, logger }),
      ),
    );
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
  });

  async function roles(): Promise<{ leader: NodeHandle; follower: NodeHandle }> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const leader = nodes.find((n) => n.status().state === 'leader');
      const follower = nodes.find((n) => n !== leader && leader !== undefined && n.status().leader === leader.nodeId);
      // The follower must also have heard the leader's client address.
      const known = follower?.status().members.find((m) => m.id === leader?.nodeId)?.client !== undefined;
      if (leader !== undefined && follower !== undefined && known) return { leader, follower };
      if (Date.now() > deadline) throw new Error('no leader with a follower that knows its address');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test('a follower forwards keep-alives and time-to-live to the leader, as etcd does', async () => {
    const { leader, follower } = await roles();
    const onFollower = rawClient(follower.endpoints.client as string, 'Lease');
    const ka = keepAliveStream(onFollower);
    try {
      const l = await call<GrantResponse>(onFollower, 'LeaseGrant', { TTL: 2 });
      // Past the TTL, kept alive through the follower only: the leader's clock never expires it.
      for (let i = 0; i < 6; i++) {
        const r = await ka.send(l.ID);
        assert.deepEqual([r.ID, r.TTL], [l.ID, '2']);
        assert.equal(r.header.member_id, String(follower.nodeId), "the follower's own header");
        await new Promise((res) => setTimeout(res, 500));
      }
      const t = await call<TtlResponse>(onFollower, 'LeaseTimeToLive', { ID: l.ID, keys: true });
      assert.equal(t.grantedTTL, '2');
      assert.ok(Number(t.TTL) >= 1, `renewed on the leader half a second ago: ${t.TTL}`);
      assert.ok(leader.kv.leaseTimeToLive(Number(l.ID)) !== undefined, 'the lease lives on the leader');
      const missing = await ka.send('777');
      assert.deepEqual([missing.ID, missing.TTL], ['777', undefined]);
    } finally {
      ka.close();
      onFollower.close();
    }
  });
});
