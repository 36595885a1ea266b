import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WatchOutput } from '../kv/index.js';
import { startNode } from './node.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

test('node: a lease expires on the leader, its key is deleted, and a watcher sees the delete', async () => {
  const node = await startNode({ name: 'solo', engine: 'memory', listenPeer: '127.0.0.1:0', tickMs: 10, clientServer: false, logLevel: 'silent' });
  try {
    const seen: string[] = [];
    node.watches.create(
      { key: enc.encode('k'), startRevision: 0, prevKv: false, noPut: false, noDelete: false, progressNotify: false },
      { deliver: (o: WatchOutput) => (o.kind === 'events' && o.events.forEach((e) => seen.push(`${e.type} ${dec.decode(e.kv.key)}`)), true) },
    );
    // Wait for the single node to lead.
    for (let i = 0; i < 100 && node.store.replica(1)?.raw.raft.state !== 'leader'; i++) await new Promise((r) => setTimeout(r, 10));
    const lease = await node.kv.leaseGrant(0, 1);
    assert.ok(lease.id > 0 && Number.isSafeInteger(lease.id));
    await node.kv.txn({ compare: [], success: [{ type: 'put', put: { key: enc.encode('k'), value: enc.encode('v'), lease: lease.id } }], failure: [] });
    assert.deepEqual(node.kv.leaseTimeToLive(lease.id)?.keys, ['k']);
    assert.equal(node.kv.leaseKeepAlive(lease.id), 1);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && node.kv.leaseTimeToLive(lease.id) !== undefined) await new Promise((r) => setTimeout(r, 50));
    assert.equal(node.kv.leaseTimeToLive(lease.id), undefined, 'the lease expired');
    const got = await node.kv.range({ key: enc.encode('k') }, false);
    assert.equal(got.kvs.length, 0, 'its key was deleted');
    assert.deepEqual(seen, ['PUT k', 'DELETE k']);
  } finally {
    await node.close();
  }
});
