import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { writeFileSync } from 'node:fs';
import { etcdctl, etcdctlMissing } from './etcd/testing.testlib.js';
import { KvClient, ProcCluster, clusterRanges, note, partitionProblem, placementProblem, rangesOf, retryUntil } from './process_cluster.testlib.js';
import type { RangeInfo } from './ranges.js';

/** Small enough that a few hundred keys make several ranges. */
const RANGE_MAX_BYTES = 8_192;
const KEYS = 400;
const VALUE_BYTES = 100;
const REPLICAS = 3;
/** Short, so the test sees a dead node's replicas made again (the default is five minutes). */
const DEAD_AFTER_MS = 3_000;

function valueOf(i: number): string {
  return `p${i}-`.padEnd(VALUE_BYTES, String.fromCharCode(97 + (i % 26)));
}





test('real processes: --replicas 3 on 4 nodes places each range on 3 of them; every node serves every key (forwarding to the holders); a SIGKILLed node\'s replicas are made again elsewhere after --dead-after-ms', async (t) => {
  const cluster = await ProcCluster.create(4, {
    prefix: 'tessera-place-',
    extraArgs: ['--range-max-bytes', String(RANGE_MAX_BYTES), '--replicas', String(REPLICAS), '--dead-after-ms', String(DEAD_AFTER_MS), '--no-range-merge'],
  });
  const names = cluster.specs.map((s) => s.name);
  const admins = cluster.specs.map((s) => s.admin);
  try {
    await cluster.startAll();
    const clients = cluster.clientAddresses.map((a) => new KvClient(a));
    const acked = new Map<string, string>();
    for (let i = 0; i < KEYS; i++) {
      const key = `key/${String((i * 7919) % 10_007).padStart(5, '0')}`;
      const value = valueOf(i);
      await retryUntil(`put ${key}`, 20_000, () => clients[i % clients.length]!.put(key, value, 5_000));
      acked.set(key, value);
    }
    const countsOf = (ranges: readonly RangeInfo[]): number[] => names.map((n) => ranges.filter((r) => r.id !== 1 && r.replicas.some((x) => x.node === n)).length);
    const started = Date.now();
    // Placed, then balanced: each node within one data range of the others (the balancer moves one replica at a time).
    const placed = await retryUntil('every data range on 3 voters, balanced', 90_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const counts = countsOf(ranges);
      const problem =
        partitionProblem(ranges) ??
        // At least 5 data ranges: 15 replicas on 4 nodes, so no node can hold them all once balanced.
        (ranges.length < 6 ? `${ranges.length} ranges` : placementProblem(ranges, REPLICAS, names)) ??
        (Math.max(...counts) - Math.min(...counts) > 1 ? `data ranges per node ${counts.join('/')}` : undefined);
      if (problem !== undefined) throw new Error(problem);
      return ranges;
    }, 250);
    const perNode = countsOf(placed);
    note(`placed and balanced in ${((Date.now() - started) / 1000).toFixed(1)} s: ${placed.map((r) => `${r.id}@${r.replicas.map((x) => x.node).join('+')}`).join(' ')}; data ranges per node ${perNode.join('/')}`);
    assert.ok(perNode.every((c) => c < placed.length - 1), 'no node holds every data range');
    // A replica moved off a node is dropped there (replica GC): each node's own list holds only the ranges it is a member of.
    await retryUntil('each node lists only its own replicas', 30_000, async () => {
      const problems = await Promise.all(
        admins.map(async (admin, i) => {
          const mine = (await rangesOf(admin)).filter((r) => r.id !== 1);
          const stale = mine.filter((r) => !placed.find((p) => p.id === r.id)?.replicas.some((x) => x.node === names[i]));
          return stale.length === 0 ? undefined : `${names[i]} still holds ${stale.map((r) => r.id).join(',')}`;
        }),
      );
      const problem = problems.find((p) => p !== undefined);
      if (problem !== undefined) throw new Error(problem);
    }, 250);

    await t.test('each node answers every key: single gets through the etcd3 client, one read over every range through etcdctl, a write on a range it lacks', async () => {
      for (const [i, address] of cluster.clientAddresses.entries()) {
        const client = new Etcd3({ hosts: [`http://${address}`] });
        try {
          const all = await client.getAll().prefix('key/').strings();
          assert.equal(Object.keys(all).length, acked.size, `${names[i]}: every key in one read`);
          for (const [k, v] of acked) assert.equal(all[k], v, k);
          let n = 0;
          for (const [k, v] of acked) if (n++ % 10 === i) assert.equal(await client.get(k).string(), v, `${names[i]} get ${k}`);
          const key = `other/from-${names[i]}`;
          await client.put(key).value('w');
          assert.equal(await client.get(key).string(), 'w');
          const swapped = await client.if(key, 'Value', '==', 'w').then(client.put(key).value('w2')).commit();
          assert.equal(swapped.succeeded, true, 'a compare-and-swap on a range served by another node');
        } finally {
          client.close();
        }
        if (etcdctlMissing() === undefined) {
          const out = await etcdctl(address, ['get', '--prefix', 'key/0', '--keys-only', '--consistency=s']);
          assert.equal(out.code, 0, out.stderr);
          assert.deepEqual(out.stdout.split('\n').filter((l) => l.length > 0), [...acked.keys()].filter((k) => k.startsWith('key/0')).sort());
        }
      }
    });

    await t.test('a watch on every node sees every change, of ranges it holds and ranges it lacks (remote feeds): history from revision 1 in order, then live writes made through another node', async () => {
      for (const [i, address] of cluster.clientAddresses.entries()) {
        const client = new Etcd3({ hosts: [`http://${address}`] });
        const writer = new Etcd3({ hosts: [`http://${cluster.clientAddresses[(i + 1) % names.length]!}`] });
        try {
          const seen = new Map<string, string>();
          let last = 0;
          let disorder: string | undefined;
          const history = await client.watch().prefix('key/').startRevision('1').create();
          history.on('put', (kv) => {
            const rev = Number(kv.mod_revision);
            if (rev <= last) disorder ??= `revision ${rev} after ${last}`;
            last = rev;
            seen.set(kv.key.toString(), kv.value.toString());
          });
          await retryUntil(`${names[i]}: the history of every key`, 30_000, async () => {
            if (seen.size < acked.size) throw new Error(`${seen.size} of ${acked.size} keys`);
          }, 100);
          assert.equal(disorder, undefined, `${names[i]}: events in revision order, each once`);
          for (const [k, v] of acked) assert.equal(seen.get(k), v, `${names[i]} watched ${k}`);
          const live = new Map<string, string>();
          const liveWatch = await client.watch().prefix(`live/${names[i]}/`).create();
          liveWatch.on('put', (kv) => live.set(kv.key.toString(), kv.value.toString()));
          const startedMs = Date.now();
          const putMs: number[] = [];
          for (let j = 0; j < 20; j++) {
            const t0 = Date.now();
            await writer.put(`live/${names[i]}/${String(j).padStart(2, '0')}`).value(`l${j}`);
            putMs.push(Date.now() - t0);
          }
          const putsDoneMs = Date.now();
          await retryUntil(`${names[i]}: live events`, 20_000, async () => {
            if (live.size < 20) throw new Error(`${live.size} of 20 live events`);
          }, 20);
          for (let j = 0; j < 20; j++) assert.equal(live.get(`live/${names[i]}/${String(j).padStart(2, '0')}`), `l${j}`);
          note(`${names[i]}: watched ${seen.size} keys' history in order; 20 live puts through another node took ${putsDoneMs - startedMs} ms (slowest ${Math.max(...putMs)} ms), all seen ${Date.now() - putsDoneMs} ms after the last`);
          await history.cancel();
          await liveWatch.cancel();
        } finally {
          client.close();
          writer.close();
        }
      }
    });

    await t.test('a node SIGKILLed: after --dead-after-ms its replicas are made again on the other three, and every key reads back', async () => {
      // The node with the most data replicas, so the repair has work to do.
      const victim = perNode.indexOf(Math.max(...perNode));
      await cluster.kill(victim);
      const liveNames = names.filter((_, i) => i !== victim);
      const liveAdmins = admins.filter((_, i) => i !== victim);
      const repaired = await retryUntil(`no data range on ${names[victim]}`, 90_000, async () => {
        const ranges = await clusterRanges(liveAdmins, liveNames);
        const problem = partitionProblem(ranges) ?? placementProblem(ranges, REPLICAS, liveNames);
        if (problem !== undefined) throw new Error(problem);
        return ranges;
      }, 250);
      note(`after ${names[victim]} died: ${repaired.map((r) => `${r.id}@${r.replicas.map((x) => x.node).join('+')}`).join(' ')}`);
      const survivor = cluster.clientAddresses[(victim + 1) % names.length]!;
      const client = new Etcd3({ hosts: [`http://${survivor}`] });
      try {
        const all = await retryUntil('every key after the repair', 30_000, () => client.getAll().prefix('key/').strings());
        for (const [k, v] of acked) assert.equal(all[k], v, k);
      } finally {
        client.close();
      }
    });
    assert.deepEqual(cluster.unexpectedExits, []);
  } catch (error) {
    note(cluster.unexpectedExits.join('\n'));
    // For a failure's post-mortem: every node's log, when asked for.
    if (process.env['TESSERA_TEST_LOGS'] !== undefined) writeFileSync(process.env['TESSERA_TEST_LOGS'], cluster.logs());
    throw error;
  } finally {
    await cluster.destroy();
  }
});
