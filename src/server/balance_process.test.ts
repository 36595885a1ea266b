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
    for (const r of presplit) {
      const prefix = Buffer.from(r.start, 'base64').toString();
      for (let i = 0; i < VALUES_PER_RANGE; i++) await retryUntil(`put in range ${r.id}`, 20_000, () => client.put(`${prefix}/big/${String(i).padStart(3, '0')}`, value, 5_000));
    }
    const before = await retryUntil('the loaded node holding every big range', 20_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const b = bytesPerNode(ranges);
      if (Math.max(...b) < 1.2 * (b.reduce((x, y) => x + y, 0) / NODES)) throw new Error(`bytes per node ${b.map(MiB).join('/')} MiB`);
      return ranges;
    }, 250);
    note(`loaded in ${((Date.now() - started) / 1000).toFixed(1)} s: ${names[loaded]} holds ranges ${presplit.map((r) => r.id).join(',')}; bytes per node ${bytesPerNode(before).map(MiB).join('/')} MiB, replicas ${countsPerNode(before).join('/')}`);
    const loadedAt = Date.now();
    const balanced = await retryUntil('bytes per node within 1.2x', 40_000, async () => {
      const ranges = await clusterRanges(admins, names);
      const b = bytesPerNode(ranges);
      const problem = placementProblem(ranges, REPLICAS);
      if (problem !== undefined || Math.max(...b) > 1.2 * Math.min(...b)) throw new Error(`${problem ?? 'placed'}; bytes per node ${b.map(MiB).join('/')} MiB, replicas ${countsPerNode(ranges).join('/')}`);
      return ranges;
    }, 250);
    const after = bytesPerNode(balanced);
    const c = countsPerNode(balanced);
    note(`balanced ${((Date.now() - loadedAt) / 1000).toFixed(1)} s after the load: bytes per node ${after.map(MiB).join('/')} MiB (max/min ${(Math.max(...after) / Math.min(...after)).toFixed(2)}), replicas ${c.join('/')}`);
    // The loaded node gave a big range away, and counts stayed close.
    const bigOnLoaded = dataRanges(balanced).filter((r) => presplit.some((p) => p.id === r.id) && r.replicas.some((x) => x.node === names[loaded])).length;
    assert.ok(bigOnLoaded < BIG_RANGES, `${names[loaded]} still holds all ${BIG_RANGES} big ranges`);
    assert.ok(Math.max(...c) - Math.min(...c) <= 2, `replicas per node ${c.join('/')}`);
    const byteMoves = cluster.processes.reduce((n, p) => n + (p?.out.match(/"reason":"bytes"/g)?.length ?? 0), 0);
    note(`byte moves logged: ${byteMoves}`);
    assert.ok(byteMoves > 0, 'a balancing move chosen for bytes');
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
