#!/usr/bin/env node
/**
 * `npm run bench:idle`: issue 13's idle-cost figure. Starts 3 tessera nodes
 * as real processes, cuts the key space into `--ranges` ranges
 * (`--dev-presplit-ranges`), waits until every node holds them all and,
 * with quiescence on, until they have gone quiet, then measures each
 * node's CPU from /proc/<pid>/stat over `--measure-s` seconds with no
 * client traffic, and its resident memory after. Run it with
 * `--quiesce-after-ticks 0` for the figure
 * without quiescence. A benchmark, not a test: nothing fails on a figure.
 */
import { Command, InvalidArgumentError } from 'commander';
import { loadavg } from 'node:os';
import { adminUrl } from '../admin_http.js';
import { type Cluster, cleanUpOnSignal, deadMembers, destroyCluster, startCluster } from './clusters.js';
import { processCpuMs, processMemoryBytes } from './measure.js';

interface IdleFlags {
  readonly ranges: number;
  readonly quiesceAfterTicks: number;
  readonly measureS: number;
  readonly settleS: number;
  readonly setupTimeoutS: number;
}

interface StoreView {
  readonly ranges: number;
  readonly quiescedRanges: number;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got '${value}'`);
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function storeView(endpoint: string): Promise<StoreView | undefined> {
  try {
    const res = await fetch(adminUrl(endpoint, '/status'), { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { stats?: { store?: { ranges?: number; quiescedRanges?: number } } };
    const s = body.stats?.store;
    return s?.ranges === undefined ? undefined : { ranges: s.ranges, quiescedRanges: s.quiescedRanges ?? 0 };
  } catch {
    return undefined;
  }
}

async function views(cluster: Cluster): Promise<(StoreView | undefined)[]> {
  return Promise.all(cluster.members.map((m) => (m.adminEndpoint === undefined ? undefined : storeView(m.adminEndpoint))));
}

function line(cluster: Cluster, vs: readonly (StoreView | undefined)[]): string {
  return cluster.members.map((m, i) => `${m.name} ${vs[i]?.ranges ?? '?'} ranges, ${vs[i]?.quiescedRanges ?? '?'} quiesced`).join('; ');
}

async function run(f: IdleFlags): Promise<void> {
  const started = Date.now();
  const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(0)} s`;
  console.log(`idle cost: 3 nodes, ${f.ranges} ranges, quiesce-after-ticks ${f.quiesceAfterTicks}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const cluster = await startCluster('tessera', 3, {
    admin: true,
    extraArgs: ['--quiesce-after-ticks', String(f.quiesceAfterTicks), '--dev-presplit-ranges', String(f.ranges)],
  });
  try {
    // Setup: every node holds every range.
    const deadline = Date.now() + f.setupTimeoutS * 1000;
    let last = '';
    for (;;) {
      const dead = deadMembers(cluster);
      if (dead.length > 0) throw new Error(dead.join('\n'));
      const vs = await views(cluster);
      const now = line(cluster, vs);
      if (now !== last) console.log(`[${elapsed()}] ${now}`);
      last = now;
      if (vs.every((v) => v !== undefined && v.ranges >= f.ranges)) break;
      if (Date.now() > deadline) throw new Error(`setup did not finish within ${f.setupTimeoutS} s: ${now}`);
      await sleep(2000);
    }
    console.log(`[${elapsed()}] split into ${f.ranges} ranges`);
    // Quiet: with quiescence, until every range is quiesced on every node (or the settle time ends).
    const settleEnd = Date.now() + f.settleS * 1000;
    for (;;) {
      const vs = await views(cluster);
      const allQuiet = f.quiesceAfterTicks > 0 && vs.every((v) => v !== undefined && v.quiescedRanges >= v.ranges);
      if (allQuiet || Date.now() > settleEnd) {
        console.log(`[${elapsed()}] before measuring: ${line(cluster, vs)}`);
        break;
      }
      await sleep(2000);
    }
    await sleep(3000);
    const pids = cluster.members.map((m) => m.proc.pid as number);
    const before = pids.map(processCpuMs);
    const t0 = performance.now();
    await sleep(f.measureS * 1000);
    const wallMs = performance.now() - t0;
    const after = pids.map(processCpuMs);
    const vs = await views(cluster);
    const dead = deadMembers(cluster);
    if (dead.length > 0) throw new Error(dead.join('\n'));
    console.log(`[${elapsed()}] after measuring: ${line(cluster, vs)}`);
    console.log(`CPU over ${(wallMs / 1000).toFixed(1)} s with no client traffic (% of one core):`);
    cluster.members.forEach((m, i) => {
      const pct = (((after[i] as number) - (before[i] as number)) / wallMs) * 100;
      const mem = processMemoryBytes(m.proc.pid as number);
      console.log(`  ${m.name} (pid ${m.proc.pid}): ${pct.toFixed(2)} %; memory ${(mem.rss / 2 ** 20).toFixed(0)} MiB resident, ${(mem.anon / 2 ** 20).toFixed(0)} MiB of it anonymous`);
    });
  } finally {
    await destroyCluster(cluster);
  }
}

const program = new Command()
  .name('bench:idle')
  .description('idle CPU of 3 tessera nodes holding many quiet ranges (issue 13)')
  .option('--ranges <n>', 'ranges to cut the key space into', nonNegativeInt, 10_000)
  .option('--quiesce-after-ticks <n>', "the nodes' --quiesce-after-ticks (0: quiescence off)", nonNegativeInt, 6)
  .option('--measure-s <s>', 'seconds of CPU measured', nonNegativeInt, 30)
  .option('--settle-s <s>', 'seconds at most to wait for quiet after the splits', nonNegativeInt, 60)
  .option('--setup-timeout-s <s>', 'seconds at most for the splits', nonNegativeInt, 1800)
  .action(async (flags: IdleFlags) => {
    cleanUpOnSignal();
    await run(flags);
  });

await program.parseAsync();
