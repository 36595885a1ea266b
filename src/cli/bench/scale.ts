#!/usr/bin/env node
/**
 * `npm run bench:scale`: issue 13's scale-out figure. For each cluster size
 * (3, then 6 by default) it starts that many tessera nodes as real
 * processes, each in its own cgroup v1 `cpu` group capped at the same CPU
 * share (`--cpu-quota`, in cores), with `--replicas 3` and the key space cut
 * into `--ranges` ranges; waits until placement has put every range on 3
 * nodes and evened out replicas and leaders; then drives the same uniform
 * put load and linearizable get load through every node with the bench's
 * closed-loop gRPC client, and reports throughput per size and the ratio of
 * the largest to the smallest. Needs root (cgroup writes). A benchmark, not
 * a test: nothing fails on a figure.
 *
 * The default cap, DEFAULT_CPU_QUOTA_CORES, leaves the machine room: six
 * nodes at 0.25 core and the client (0.4-0.7 core) asked for all of this
 * 2-core machine, so the 6-node run measured the machine, not the nodes.
 */
import { Command, InvalidArgumentError } from 'commander';
import { mkdirSync, rmdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Cluster, cleanUpOnSignal, deadMembers, destroyCluster, memberPids, startCluster } from './clusters.js';
import { totalCpuMs } from './measure.js';
import { type Placement, placement } from './placement.js';
import { KvChannel } from './client.js';
import { machineLines, record } from './report.js';
import { type CellResult, KeySpace, runCell } from './workloads.js';

const CGROUP_CPU_ROOT = '/sys/fs/cgroup/cpu';
const CFS_PERIOD_US = 100_000;
const DEFAULT_RECORD_PATH = fileURLToPath(new URL('../../../docs/benchmarks.md', import.meta.url));

interface ScaleFlags {
  readonly nodes: readonly number[];
  readonly cpuQuota: number;
  readonly workloads: readonly ('put' | 'get')[];
  readonly ranges: number;
  readonly replicas: number;
  readonly keys: number;
  readonly valueBytes: number;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly settleTimeoutS: number;
  readonly record: boolean;
  readonly recordFile: string;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function cores(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 64) throw new InvalidArgumentError(`expected a share of cores in (0, 64], got '${value}'`);
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The keys the load draws from: spread evenly over the pre-split ranges
 * after the first (`presplit/<range>/<n>`); the first is range 1, which
 * every node holds.
 */

/** Attempts per preload Put: under the CPU cap a Put may time out while placement moves replicas. */
const PRELOAD_ATTEMPTS = 5;

/** Puts every key once, one Put per request (the keys lie in many ranges; a Txn over several would be refused). */
async function preload(cluster: Cluster, space: KeySpace): Promise<number> {
  const channels = cluster.endpoints.map((e) => new KvChannel(e));
  await Promise.all(channels.map((c) => c.connect(10_000)));
  let next = 0;
  let retries = 0;
  const put = async (channel: KvChannel, key: Buffer): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await channel.put(key, space.value);
      } catch (error) {
        if (attempt >= PRELOAD_ATTEMPTS) throw error;
        retries++;
        await sleep(200);
      }
    }
  };
  try {
    await Promise.all(
      Array.from({ length: 32 }, async (_, w) => {
        const channel = channels[w % channels.length] as KvChannel;
        while (next < space.keys.length) await put(channel, space.keys[next++] as Buffer);
      }),
    );
    return retries;
  } finally {
    for (const c of channels) c.close();
  }
}

/** One cgroup per node, capped at `quota` cores; returns a function that removes them. */
function capCpu(cluster: Cluster, quota: number): () => void {
  const made: string[] = [];
  for (const m of cluster.members) {
    const dir = join(CGROUP_CPU_ROOT, `tessera-scale-${process.pid}-${m.name}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
    writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(Math.round(quota * CFS_PERIOD_US)));
    writeFileSync(join(dir, 'cgroup.procs'), String(m.proc.pid));
    made.push(dir);
  }
  return () => {
    for (const dir of made) {
      // A group can be removed once its processes are gone (or moved back to the root).
      try {
        for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l.length > 0)) writeFileSync(join(CGROUP_CPU_ROOT, 'cgroup.procs'), pid);
        rmdirSync(dir);
      } catch {
        // already gone
      }
    }
  };
}


interface SizeResult {
  readonly nodes: number;
  readonly placement: Placement;
  readonly settleS: number;
  /** Server cores with no load, after the preload. */
  readonly idleCores: number;
  readonly cells: readonly CellResult[];
}

/** Each node's CPU share: 6 nodes (0.72 core) and the client fit the 2 cores with room to spare. */
const DEFAULT_CPU_QUOTA_CORES = 0.12;

/** How long the servers' CPU is read with no load, after the preload (their cost at rest). */
const IDLE_WINDOW_MS = 5_000;

/** The servers' CPU, in cores, over `windowMs` with no client load. */
async function quietCores(cluster: Cluster, windowMs: number): Promise<number> {
  const pids = memberPids(cluster);
  const before = totalCpuMs(pids);
  const start = performance.now();
  await sleep(windowMs);
  return (totalCpuMs(pids) - before) / (performance.now() - start);
}

async function runSize(nodes: number, f: ScaleFlags, log: (line: string) => void): Promise<SizeResult> {
  const cluster = await startCluster('tessera', nodes, {
    admin: true,
    extraArgs: ['--replicas', String(f.replicas), '--dev-presplit-ranges', String(f.ranges), '--dead-after-ms', '0'],
  });
  const uncap = capCpu(cluster, f.cpuQuota);
  try {
    const t0 = Date.now();
    let p = await placement(cluster, f.ranges, f.replicas);
    let last = '';
    while (p.problem !== undefined) {
      const dead = deadMembers(cluster);
      if (dead.length > 0) throw new Error(dead.join('\n'));
      if (p.problem !== last) log(`  [${((Date.now() - t0) / 1000).toFixed(0)} s] ${nodes} nodes: ${p.problem}`);
      last = p.problem;
      if (Date.now() - t0 > f.settleTimeoutS * 1000) throw new Error(`placement did not settle within ${f.settleTimeoutS} s: ${p.problem}`);
      await sleep(2000);
      p = await placement(cluster, f.ranges, f.replicas);
    }
    const settleS = (Date.now() - t0) / 1000;
    log(`  ${nodes} nodes placed in ${settleS.toFixed(0)} s: ${p.ranges} ranges, replicas per node ${p.replicasPerNode.join('/')}, leaders ${p.leadersPerNode.join('/')}`);
    const space = new KeySpace(f.keys, f.valueBytes, f.ranges);
    const retried = await preload(cluster, space);
    log(`  ${nodes} nodes preloaded ${f.keys} keys (${retried} puts retried)`);
    const idleCores = await quietCores(cluster, IDLE_WINDOW_MS);
    log(`  ${nodes} nodes quiet for ${IDLE_WINDOW_MS / 1000} s: servers ${idleCores.toFixed(3)} cores`);
    const cells: CellResult[] = [];
    for (const workload of f.workloads) {
      const cell = await runCell({ cluster, space, workload, concurrency: f.concurrency, warmupMs: f.warmupMs, durationMs: f.durationMs });
      log(`  ${nodes} nodes ${workload} c=${f.concurrency}: ${cell.opsPerSec.toFixed(0)} ops/s, p50 ${cell.p50Ms.toFixed(2)} ms, p99 ${cell.p99Ms.toFixed(2)} ms, servers ${cell.serverCores.toFixed(2)} cores, client ${cell.clientCores.toFixed(2)} cores, ${cell.errors} errors`);
      cells.push(cell);
    }
    return { nodes, placement: await placement(cluster, f.ranges, f.replicas), settleS, idleCores, cells };
  } finally {
    await destroyCluster(cluster);
    uncap();
  }
}

function report(results: readonly SizeResult[], f: ScaleFlags, startLoad: number, endLoad: number): string {
  const lines = [`## ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} (scale-out)`, '', '### Machine', ...machineLines(''), '', '### Parameters'];
  lines.push(`- command: bench:scale ${process.argv.slice(2).join(' ')}`.trimEnd());
  lines.push(`- tessera nodes on 127.0.0.1, each in its own cgroup v1 cpu group capped at ${f.cpuQuota} core (cfs_quota_us ${Math.round(f.cpuQuota * CFS_PERIOD_US)} of ${CFS_PERIOD_US})`);
  lines.push(`- --replicas ${f.replicas}, ${f.ranges} ranges (--dev-presplit-ranges), ${f.keys} keys spread evenly over them, ${f.valueBytes}-byte values`);
  lines.push(`- put: Put of a random key; get: linearizable Range of one random key; c=${f.concurrency} closed-loop workers over every node; warm-up ${f.warmupMs} ms, ${f.durationMs} ms measured`);
  lines.push(`- load average (1 min) of the machine: ${startLoad.toFixed(2)} at the start, ${endLoad.toFixed(2)} at the end`);
  lines.push('', '### Results', '', '| nodes | workload | ops/s | p50 ms | p99 ms | server cores | client cores | errors | replicas per node | leaders per node | server cores quiet |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    for (const c of r.cells) {
      lines.push(`| ${r.nodes} | ${c.workload} | ${c.opsPerSec.toFixed(0)} | ${c.p50Ms.toFixed(2)} | ${c.p99Ms.toFixed(2)} | ${c.serverCores.toFixed(2)} | ${c.clientCores.toFixed(2)} | ${c.errors} | ${r.placement.replicasPerNode.join('/')} | ${r.placement.leadersPerNode.join('/')} | ${r.idleCores.toFixed(3)} |`);
    }
  }
  const first = results[0];
  const lastR = results[results.length - 1];
  if (first !== undefined && lastR !== undefined && first !== lastR) {
    lines.push('', `Target (issue 13): ${lastR.nodes}-node throughput ≥ 1.7× ${first.nodes}-node throughput.`, '');
    for (const w of ['put', 'get']) {
      const a = first.cells.find((c) => c.workload === w);
      const b = lastR.cells.find((c) => c.workload === w);
      if (a === undefined || b === undefined) continue;
      const ratio = b.opsPerSec / a.opsPerSec;
      lines.push(`- ${w}: ${b.opsPerSec.toFixed(0)} / ${a.opsPerSec.toFixed(0)} ops/s = ${ratio.toFixed(2)}×: ${ratio >= 1.7 ? 'MET' : 'MISSED'}`);
    }
  }
  return lines.join('\n');
}

async function run(f: ScaleFlags): Promise<void> {
  if (!existsSync(join(CGROUP_CPU_ROOT, 'cpu.cfs_quota_us'))) throw new Error(`${CGROUP_CPU_ROOT} is not a cgroup v1 cpu hierarchy; bench:scale needs one (and root)`);
  const startLoad = loadavg()[0] ?? 0;
  console.log(`scale-out: ${f.nodes.join(' then ')} nodes, ${f.cpuQuota} core each, --replicas ${f.replicas}, ${f.ranges} ranges, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const results: SizeResult[] = [];
  for (const n of f.nodes) results.push(await runSize(n, f, (line) => console.log(line)));
  const section = report(results, f, startLoad, loadavg()[0] ?? 0);
  console.log(`\n${section}`);
  if (f.record) record(f.recordFile, section);
}

function workloadList(v: string): ('put' | 'get')[] {
  const list = v.split(',').map((s) => s.trim());
  for (const w of list) if (w !== 'put' && w !== 'get') throw new InvalidArgumentError(`unknown workload ${w} (put, get)`);
  return list as ('put' | 'get')[];
}

const program = new Command()
  .name('bench:scale')
  .description('throughput of 3 and 6 tessera nodes under the same per-node CPU cap (issue 13 scale-out)')
  .option('--nodes <list>', 'cluster sizes to run, in order', (v: string) => v.split(',').map((s) => positiveInt(s.trim())), [3, 6])
  .option('--cpu-quota <cores>', 'CPU share of each node, in cores', cores, DEFAULT_CPU_QUOTA_CORES)
  .option('--workloads <list>', 'workloads to run, in order (put, get)', workloadList, ['put', 'get'])
  .option('--ranges <n>', 'ranges to cut the key space into', positiveInt, 24)
  .option('--replicas <n>', "the nodes' --replicas", positiveInt, 3)
  .option('--keys <n>', 'keys preloaded and drawn from', positiveInt, 20_000)
  .option('--value-bytes <n>', 'value size', positiveInt, 256)
  .option('--concurrency <n>', 'closed-loop workers', positiveInt, 128)
  .option('--warmup-ms <ms>', 'unmeasured time before each cell', positiveInt, 5_000)
  .option('--duration-ms <ms>', 'measured time per cell', positiveInt, 15_000)
  .option('--settle-timeout-s <s>', 'seconds at most for placement to settle', positiveInt, 300)
  .option('--no-record', 'do not append the results to docs/benchmarks.md')
  .option('--record-file <path>', 'where to append the results (nothing is written with --no-record)', DEFAULT_RECORD_PATH)
  .action(async (flags: ScaleFlags) => {
    cleanUpOnSignal();
    await run(flags);
  });

await program.parseAsync();
