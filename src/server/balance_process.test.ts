import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { PRESPLIT_KEY_PREFIX } from '../placement/index.js';
import { KvClient, ProcCluster, clusterRanges, note, placementProblem, retryUntil } from './process_cluster.testlib.js';
import type { RangeInfo } from './ranges.js';

const NODES = 4;
const REPLICAS = 3;
/** Twelve ranges at start: 36 replicas, nine a node once counts are balanced. */
const PRESPLIT_RANGES = 12;
/** Ranges filled with data, all with a replica on one node: it holds a third more bytes than the mean. */
const BIG_RANGES = 4;
/** 5 MiB a big range: the loaded node ends 5 MiB above the mean, past DEFAULT_MIN_BYTES_IMBALANCE (4 MiB). */
const VALUE_BYTES = 64 * 1024;
const VALUES_PER_RANGE = 80;

const dataRanges = (ranges: readonly RangeInfo[]): RangeInfo[] => ranges.filter((r) => r.id !== 1);

test('real processes: bytes are balanced (ADR 0015): four ranges of 5 MiB, all with a replica on one node, end spread so bytes per node are within 1.2x of each other', async () => {
  const cluster = await ProcCluster.create(NODES, {
    prefix: 'tessera-balance-',
    extraArgs: ['--replicas', String(REPLICAS), '--dev-presplit-ranges', String(PRESPLIT_RANGES), '--range-max-bytes', '0', '--range-split-qps', '0', '--no-range-merge'],
  });
  const names = cluster.specs.map((s) => s.name);
  const admins = cluster.specs.map((s) => s.admin);
  const bytesPerNode = (ranges: readonly RangeInfo[]): number[] => names.map((n) => dataRanges(ranges).reduce((sum, r) => sum + (r.replicas.some((x) => x.node === n) ? r.bytes : 0), 0));
  const countsPerNode = (ranges: readonly RangeInfo[]): number[] => names.map((n) => dataRanges(ranges).filter((r) => r.replicas.some((x) => x.node === n)).length);
  const MiB = (b: number): string => (b / 1024 / 1024).toFixed(1);
  const perName = (figures: readonly number[], f: (x: number) => string = String): string => names.map((n, i) => `${n} ${f(figures[i] as number)}`).join(', ');
  try {
    await cluster.startAll();
    const started = Date.now();
    // Pre-split and placed, with counts balanced (each node within one of the others).
    const placed = await retryUntil('the pre-split ranges placed and balanced by count', 60_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const data = dataRanges(ranges);
      const counts = countsPerNode(ranges);
      const problem = data.length < PRESPLIT_RANGES - 1 ? `${data.length} data ranges` : placementProblem(ranges, REPLICAS);
      if (problem !== undefined || Math.max(...counts) - Math.min(...counts) > 1) throw new Error(`${problem ?? 'placed'}; data ranges per node ${counts.join('/')}`);
      return ranges;
    }, 250);
    // The node with most data ranges, and BIG_RANGES pre-split ranges it holds (inside the pre-split keys, so a key prefix reaches each).
    const counts = countsPerNode(placed);
    const loaded = counts.indexOf(Math.max(...counts));
    const presplit = dataRanges(placed)
      .filter((r) => Buffer.from(r.start, 'base64').toString().startsWith(PRESPLIT_KEY_PREFIX) && r.replicas.some((x) => x.node === names[loaded]))
      .slice(0, BIG_RANGES);
    assert.equal(presplit.length, BIG_RANGES, `${names[loaded]} holds ${BIG_RANGES} pre-split ranges`);
    const client = new KvClient(cluster.clientAddresses[0]!);
    const value = new Uint8Array(VALUE_BYTES).map((_, i) => (i * 131) % 251);
    // Eight puts at a time: the load is what takes longest here.
    const puts = presplit.flatMap((r) => Array.from({ length: VALUES_PER_RANGE }, (_, i) => `${Buffer.from(r.start, 'base64').toString()}/big/${String(i).padStart(3, '0')}`));
    for (let i = 0; i < puts.length; i += 8) await Promise.all(puts.slice(i, i + 8).map((key) => retryUntil(`put ${key}`, 20_000, () => client.put(key, value, 5_000))));
    // The data landed (each big range's 5 MiB on its three replicas). By construction every big range had a
    // replica on the loaded node when the load began: it held a third more bytes than the mean, unless
    // balancing moved some away already while the load went on.
    const before = await retryUntil('the big ranges loaded', 20_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const total = bytesPerNode(ranges).reduce((x, y) => x + y, 0);
      if (total < 0.95 * BIG_RANGES * REPLICAS * VALUES_PER_RANGE * VALUE_BYTES) throw new Error(`${MiB(total)} MiB over all replicas`);
      return ranges;
    }, 250);
    note(`loaded in ${((Date.now() - started) / 1000).toFixed(1)} s: ${names[loaded]} held big ranges ${presplit.map((r) => r.id).join(',')}; now bytes (MiB) ${perName(bytesPerNode(before), MiB)}; replicas ${perName(countsPerNode(before))}`);
    const loadedAt = Date.now();
    // Bytes even (a byte move), then counts within two again (the count rule hands a small range back).
    const balanced = await retryUntil('bytes per node within 1.2x, replicas within two', 40_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const b = bytesPerNode(ranges);
      const c = countsPerNode(ranges);
      const problem = placementProblem(ranges, REPLICAS);
      if (problem !== undefined || Math.max(...b) > 1.2 * Math.min(...b) || Math.max(...c) - Math.min(...c) > 2) throw new Error(`${problem ?? 'placed'}; bytes per node ${b.map(MiB).join('/')} MiB, replicas ${c.join('/')}`);
      return ranges;
    }, 250);
    const after = bytesPerNode(balanced);
    const c = countsPerNode(balanced);
    note(`balanced ${((Date.now() - loadedAt) / 1000).toFixed(1)} s after the load: bytes (MiB) ${perName(after, MiB)} (max/min ${(Math.max(...after) / Math.min(...after)).toFixed(2)}); replicas ${perName(c)}`);
    // The loaded node gave a big range away. Counts were within one before the load (the wait above), where
    // the count rule moves nothing (it needs two more), and there are no localities: a byte move did it.
    const bigOnLoaded = dataRanges(balanced).filter((r) => presplit.some((p) => p.id === r.id) && r.replicas.some((x) => x.node === names[loaded])).length;
    assert.ok(bigOnLoaded < BIG_RANGES, `${names[loaded]} still holds all ${BIG_RANGES} big ranges`);
    client.close();
    assert.deepEqual(cluster.unexpectedExits, []);
  } catch (error) {
    note(cluster.unexpectedExits.join('\n'));
    if (process.env['TESSERA_TEST_LOGS'] !== undefined) writeFileSync(process.env['TESSERA_TEST_LOGS'], cluster.logs());
    throw error;
  } finally {
    await cluster.destroy();
  }
});
