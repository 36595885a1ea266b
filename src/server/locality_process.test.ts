import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProcCluster, KvClient, note, rangesOf, retryUntil } from './process_cluster.testlib.js';
import type { RangeInfo } from './ranges.js';

/** n1 and n2 share zone a; n3 and n4 are alone in zones b and c. */
const ZONES = ['zone=a', 'zone=a', 'zone=b', 'zone=c'];

test('real processes: --locality spreads each range\'s 3 replicas over the 3 zones of 4 nodes (the two nodes of one zone share its replica)', async () => {
  const cluster = await ProcCluster.create(4, {
    prefix: 'tessera-locality-',
    extraArgs: ['--range-max-bytes', '4096', '--replicas', '3', '--no-range-merge'],
    nodeArgs: (i) => ['--locality', ZONES[i] as string],
  });
  const names = cluster.specs.map((s) => s.name);
  try {
    await cluster.startAll();
    const client = new KvClient(cluster.clientAddresses[0] as string);
    for (let i = 0; i < 300; i++) {
      const key = `loc/${String((i * 7919) % 10_007).padStart(5, '0')}`;
      await retryUntil(`put ${key}`, 20_000, () => client.put(key, `v${i}`.padEnd(100, 'x'), 5_000));
    }
    const spread = await retryUntil('every data range on one node of each zone', 90_000, async () => {
      const byId = new Map<number, RangeInfo>();
      for (const admin of cluster.specs.map((s) => s.admin)) {
        for (const r of await rangesOf(admin)) if (r.leader !== null && r.replicas.some((x) => x.node === r.leader)) byId.set(r.id, r);
      }
      const data = [...byId.values()].filter((r) => r.id !== 1);
      if (data.length < 3) throw new Error(`${data.length} data ranges`);
      for (const r of data) {
        const zones = r.replicas.map((x) => ZONES[names.indexOf(x.node)]);
        if (r.replicas.length !== 3 || new Set(zones).size !== 3) throw new Error(`range ${r.id} on ${r.replicas.map((x) => x.node).join('+')}`);
      }
      return data;
    }, 250);
    note(`spread over zones: ${spread.map((r) => `${r.id}@${r.replicas.map((x) => x.node).join('+')}`).join(' ')}`);
    // Within zone a, the two nodes share the ranges' third replica: both hold some.
    for (const n of ['n1', 'n2']) assert.ok(spread.some((r) => r.replicas.some((x) => x.node === n)), `${n} holds some replica`);
    assert.deepEqual(cluster.unexpectedExits, []);
  } finally {
    await cluster.destroy();
  }
});
