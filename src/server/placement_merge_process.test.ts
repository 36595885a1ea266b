import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { KvClient, ProcCluster, clusterRanges, note, partitionProblem, placementProblem, retryUntil } from './process_cluster.testlib.js';
import type { RangeInfo } from './ranges.js';

/** Small enough that a few hundred keys make several ranges. */
const RANGE_MAX_BYTES = 8_192;
const KEYS = 400;
/** Every this many keys one is kept; the rest are deleted and compacted away. */
const KEEP_EVERY = 20;
const VALUE_BYTES = 100;
const REPLICAS = 3;
/** Short, so ranges split minutes ago need not wait the default five minutes to merge. */
const MERGE_DELAY_MS = 1_000;

function keyOf(i: number): string {
  return `key/${String((i * 7919) % 10_007).padStart(5, '0')}`;
}




/** Why the ranges do not tile the key space, each data range on `want` voters, or undefined. */
function layoutProblemOf(sorted: readonly RangeInfo[], want: number): string | undefined {
  return partitionProblem(sorted) ?? placementProblem(sorted, want);
}

test('real processes: under --replicas 3 on 4 nodes, once most keys are deleted and compacted, neighbouring ranges merge (right ranges moved onto their left neighbours\' replicas first); every kept key reads back on every node, no deleted one does', async () => {
  const cluster = await ProcCluster.create(4, {
    prefix: 'tessera-place-merge-',
    extraArgs: ['--range-max-bytes', String(RANGE_MAX_BYTES), '--replicas', String(REPLICAS), '--range-merge-delay-ms', String(MERGE_DELAY_MS)],
  });
  const names = cluster.specs.map((s) => s.name);
  const admins = cluster.specs.map((s) => s.admin);
  try {
    await cluster.startAll();
    const clients = cluster.clientAddresses.map((a) => new KvClient(a));
    for (let i = 0; i < KEYS; i++) {
      const value = `p${i}-`.padEnd(VALUE_BYTES, String.fromCharCode(97 + (i % 26)));
      await retryUntil(`put ${keyOf(i)}`, 20_000, () => clients[i % clients.length]!.put(keyOf(i), value, 5_000));
    }
    const split = await retryUntil('several data ranges, each on 3 voters', 90_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const problem = ranges.length < 5 ? `${ranges.length} ranges` : layoutProblemOf(ranges, REPLICAS);
      if (problem !== undefined) throw new Error(problem);
      return ranges;
    }, 250);
    note(`split: ${split.map((r) => `${r.id}@${r.replicas.map((x) => x.node).join('+')}`).join(' ')}`);
    const kept = new Map<string, string>();
    let revision = 0;
    for (let i = 0; i < KEYS; i++) {
      if (i % KEEP_EVERY === 0) {
        kept.set(keyOf(i), `p${i}-`.padEnd(VALUE_BYTES, String.fromCharCode(97 + (i % 26))));
        continue;
      }
      revision = Math.max(revision, await retryUntil(`delete ${keyOf(i)}`, 20_000, () => clients[i % clients.length]!.delete(keyOf(i), 5_000)));
    }
    // The history of the deleted keys goes, and with it most of each range's approximate size.
    await retryUntil('compaction', 20_000, () => clients[0]!.compact(revision, 5_000));
    const started = Date.now();
    const merged = await retryUntil('ranges merged', 180_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const problem = layoutProblemOf(ranges, REPLICAS) ?? (ranges.length > 3 ? `${ranges.length} ranges` : undefined);
      if (problem !== undefined) throw new Error(problem);
      return ranges;
    }, 500);
    note(`merged in ${((Date.now() - started) / 1000).toFixed(1)} s: ${split.length} ranges -> ${merged.length}: ${merged.map((r) => `${r.id}@${r.replicas.map((x) => x.node).join('+')}`).join(' ')}`);
    for (const [i, client] of clients.entries()) {
      const all = await retryUntil(`${names[i]}: every key`, 30_000, () => client.scanPrefix('key/', 5_000));
      assert.deepEqual(new Map(all.map((kv) => [kv.key.toString(), kv.value?.toString() ?? ""])), kept, `${names[i]}: the kept keys and only those`);
      for (const k of [...kept.keys()].slice(0, 5)) assert.equal((await client.get(k, 5_000))?.value?.toString(), kept.get(k), `${names[i]} get ${k}`);
    }
    for (const client of clients) client.close();
    assert.deepEqual(cluster.unexpectedExits, []);
  } catch (error) {
    note(cluster.unexpectedExits.join('\n'));
    if (process.env['TESSERA_TEST_LOGS'] !== undefined) writeFileSync(process.env['TESSERA_TEST_LOGS'], cluster.logs());
    throw error;
  } finally {
    await cluster.destroy();
  }
});
