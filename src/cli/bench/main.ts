#!/usr/bin/env node
/**
 * `npm run bench`: tessera against etcd 3.4 on this machine, 3 members each,
 * the same workloads through the same gRPC client, then `etcdctl check perf`
 * against tessera; prints the tables and appends them, dated, with the
 * machine they ran on, to docs/benchmarks.md. A benchmark, not a test:
 * nothing fails on a slow figure. See docs/benchmarks.md for the method.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CHECK_PERF_LOADS, type CheckPerfLoad, type CheckPerfResult, runCheckPerf } from './check_perf.js';
import { placement } from './placement.js';
import { PRESPLIT_KEY_PREFIX } from '../../placement/index.js';
import { type Cluster, SYSTEM_NAMES, type SystemName, deadMembers, destroyCluster, killAllNow, liveClusterRoots, startCluster } from './clusters.js';
import { checkPerfText, machineLines, ratioTable, record, systemTable, targetLines } from './report.js';
import { DEFAULT_READ_MODE, READ_MODES, type ReadMode } from '../../server/node.js';
import { ALL_WORKLOAD_NAMES, type CellResult, KeySpace, WORKLOAD_DESCRIPTIONS, WORKLOAD_NAMES, type WorkloadName, channelCount, preload, runCell } from './workloads.js';

const CLUSTER_SIZE = 3;
const DEFAULT_RECORD_PATH = fileURLToPath(new URL('../../../docs/benchmarks.md', import.meta.url));

interface BenchFlags {
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly concurrency: readonly number[];
  readonly workloads: readonly WorkloadName[];
  readonly keys: number;
  readonly valueBytes: number;
  readonly systems: readonly SystemName[];
  /** false with --no-check-perf. */
  readonly checkPerf: readonly CheckPerfLoad[] | false;
  readonly checkPerfEtcd: boolean;
  /** false with --no-record. */
  readonly record: boolean;
  readonly recordFile: string;
  /** tessera's --read-mode: how its linearizable gets are confirmed. */
  readonly readMode: ReadMode;
  readonly rangeMaxBytes: number;
  readonly rangeSplitQps: number;
  /** tessera's --dev-presplit-ranges (0: none); the keys are spread over them. */
  readonly ranges: number;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got '${value}'`);
  return n;
}

/** A comma-separated list, each item one of `choices`, no repeats. */
function listOf<T extends string>(choices: readonly T[]): (value: string) => T[] {
  return (value) => {
    const items = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    for (const item of items) if (!(choices as readonly string[]).includes(item)) throw new InvalidArgumentError(`'${item}' is not one of ${choices.join(', ')}`);
    if (items.length === 0) throw new InvalidArgumentError('expected at least one item');
    return [...new Set(items)] as T[];
  };
}

function intList(value: string): number[] {
  return [...new Set(value.split(',').map((s) => positiveInt(s.trim())))];
}

function parseFlags(): BenchFlags {
  const program = new Command('bench')
    .description('tessera against etcd 3.4: 3 members each, the same workloads and gRPC client; then etcdctl check perf against tessera')
    .option('--duration-ms <ms>', 'measured time per cell', positiveInt, 5_000)
    .option('--warmup-ms <ms>', 'unmeasured time before each cell', nonNegativeInt, 1_000)
    .option('--concurrency <list>', 'closed-loop workers per cell', intList, [1, 16, 64])
    .option('--workloads <list>', `workloads (${ALL_WORKLOAD_NAMES.join(',')}; default ${WORKLOAD_NAMES.join(',')})`, listOf(ALL_WORKLOAD_NAMES), [...WORKLOAD_NAMES])
    .option('--keys <n>', 'keys preloaded and drawn from', positiveInt, 100_000)
    .option('--range-max-bytes <n>', "tessera's --range-max-bytes: split ranges past this size (0, the default here: never)", nonNegativeInt, 0)
    .option('--range-split-qps <n>', "tessera's --range-split-qps: split ranges past this load (0, the default here: never; with both 0, one range as in earlier records)", nonNegativeInt, 0)
    .option('--ranges <n>', "cut tessera's key space into this many ranges first (--dev-presplit-ranges), with leaders spread over the members, and spread the keys over them (0, the default: none)", nonNegativeInt, 0)
    .option('--value-bytes <n>', 'value size', positiveInt, 256)
    .option('--systems <list>', `systems (${SYSTEM_NAMES.join(',')})`, listOf(SYSTEM_NAMES), [...SYSTEM_NAMES])
    .option('--check-perf <loads>', `etcdctl check perf loads to run against tessera (${CHECK_PERF_LOADS.join(',')})`, listOf(CHECK_PERF_LOADS), ['s', 'm'])
    .option('--no-check-perf', 'skip etcdctl check perf')
    .option('--check-perf-etcd', 'also run the check perf loads against etcd, for comparison', false)
    .option('--no-record', `do not append the results to docs/benchmarks.md`)
    .option('--record-file <path>', 'where to append the results (nothing is written with --no-record)', DEFAULT_RECORD_PATH)
    .addOption(new Option('--read-mode <mode>', "tessera's read mode: lease reads, or 'safe' (a heartbeat round per read batch)").choices(READ_MODES).default(DEFAULT_READ_MODE))
    .showHelpAfterError();
  program.parse();
  return program.opts<BenchFlags>();
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');

/** Kills every server and removes the data on any way out: a signal, an error, a normal exit. */
function installCleanup(): void {
  const hardStop = (status: number): void => {
    killAllNow();
    for (const root of liveClusterRoots()) rmSync(root, { recursive: true, force: true });
    process.exit(status);
  };
  process.once('SIGINT', () => hardStop(130));
  process.once('SIGTERM', () => hardStop(143));
  process.once('exit', () => killAllNow());
}

/** How long at most the pre-split ranges may take to be placed, with leaders spread. */
const SETTLE_TIMEOUT_MS = 180_000;

/** Waits until the cluster has `ranges` ranges, each on 3 voters with a leader, and no member leads more than the mean plus one. */
async function settle(cluster: Cluster, ranges: number): Promise<void> {
  const startMs = Date.now();
  for (;;) {
    const p = await placement(cluster, ranges, CLUSTER_SIZE);
    if (p.problem === undefined) return say(`tessera: ${p.ranges} ranges placed in ${((Date.now() - startMs) / 1000).toFixed(0)} s, leaders per member ${p.leadersPerNode.join('/')}`);
    if (Date.now() - startMs > SETTLE_TIMEOUT_MS) throw new Error(`the pre-split ranges did not settle within ${SETTLE_TIMEOUT_MS} ms: ${p.problem}`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

async function startSystems(flags: BenchFlags, space: KeySpace): Promise<Map<SystemName, Cluster>> {
  const clusters = new Map<SystemName, Cluster>();
  for (const system of flags.systems) {
    const startMs = Date.now();
    const presplit = system === 'tessera' && flags.ranges > 1;
    const cluster = await startCluster(system, CLUSTER_SIZE, {
      readMode: flags.readMode,
      rangeMaxBytes: flags.rangeMaxBytes,
      rangeSplitQps: flags.rangeSplitQps,
      ...(presplit ? { admin: true, extraArgs: ['--dev-presplit-ranges', String(flags.ranges)] } : {}),
    });
    clusters.set(system, cluster);
    if (presplit) await settle(cluster, flags.ranges);
    say(`${system} ${cluster.version}: ${CLUSTER_SIZE} members serving at ${cluster.endpoints.join(',')} (leader first); preloading ${flags.keys} keys`);
    await preload(cluster, space);
    say(`${system}: preloaded in ${((Date.now() - startMs) / 1000).toFixed(1)} s (start included)`);
  }
  return clusters;
}

/**
 * Every cell, alternating systems within each workload and concurrency, so
 * that a slow spell of this shared machine lands on both systems alike.
 */
async function runCells(flags: BenchFlags, clusters: Map<SystemName, Cluster>, space: KeySpace): Promise<CellResult[]> {
  const results: CellResult[] = [];
  for (const workload of flags.workloads) {
    for (const concurrency of flags.concurrency) {
      for (const [system, cluster] of clusters) {
        const r = await runCell({ cluster, space, workload, concurrency, warmupMs: flags.warmupMs, durationMs: flags.durationMs });
        results.push(r);
        const errors = r.errors === 0 ? '' : `  errors ${r.errors} (${r.firstError ?? ''})`;
        say(
          `${system.padEnd(7)} ${workload.padEnd(5)} c=${String(concurrency).padEnd(3)} ${fixed(r.opsPerSec, 0).padStart(6)} ops/s  ` +
            `p50 ${fixed(r.p50Ms, 2)} ms  p99 ${fixed(r.p99Ms, 2)} ms  server ${fixed(r.serverCpuMsPerOp, 3)} CPU ms/op (${fixed(r.serverCores, 2)} cores: ${r.memberCores.map((c) => fixed(c, 2)).join('/')})  ` +
            `client ${fixed(r.clientCores, 2)} cores${errors}`,
        );
        const dead = deadMembers(cluster);
        if (dead.length > 0) throw new Error(`a server died during the run:\n${dead.join('\n')}`);
      }
    }
  }
  return results;
}

async function runCheckPerfs(flags: BenchFlags, clusters: Map<SystemName, Cluster>): Promise<{ system: SystemName; endpoints: string[]; result: CheckPerfResult }[]> {
  if (flags.checkPerf === false) return [];
  const out: { system: SystemName; endpoints: string[]; result: CheckPerfResult }[] = [];
  const systems: SystemName[] = flags.checkPerfEtcd ? ['tessera', 'etcd'] : ['tessera'];
  for (const system of systems) {
    const cluster = clusters.get(system);
    if (cluster === undefined) continue;
    for (const load of flags.checkPerf) {
      say(`running etcdctl check perf --load=${load} against ${system} (about 60 s)`);
      const result = await runCheckPerf(cluster.endpoints, load);
      out.push({ system, endpoints: cluster.endpoints, result });
      say(checkPerfText(system, cluster.endpoints, result));
    }
  }
  return out;
}

function parameterLines(flags: BenchFlags, clusters: Map<SystemName, Cluster>): string[] {
  const channels = flags.concurrency.map((c) => `c=${c}: ${channelCount(c, CLUSTER_SIZE)}`).join(', ');
  return [
    `- command: bench ${process.argv.slice(2).join(' ')}`,
    `- ${CLUSTER_SIZE} members per system on 127.0.0.1, data in ${[...clusters.values()].map((c) => c.root).join(', ')} (deleted after)`,
    `- ${flags.keys} keys preloaded, ${flags.valueBytes}-byte values; warm-up ${flags.warmupMs} ms and ${flags.durationMs} ms measured per cell`,
    `- concurrency ${flags.concurrency.join(', ')} (connections: ${channels})`,
    `- tessera read mode: ${flags.readMode}`,
    `- tessera --range-max-bytes: ${flags.rangeMaxBytes === 0 ? 'off' : flags.rangeMaxBytes}, --range-split-qps: ${flags.rangeSplitQps === 0 ? 'off' : flags.rangeSplitQps}`,
    ...(flags.ranges > 1 ? [`- tessera key space cut into ${flags.ranges} ranges first (--dev-presplit-ranges), each on the 3 members, leaders spread over them; keys \`${PRESPLIT_KEY_PREFIX}<range>/<n>\`, an equal share in each range but the first (the same keys on etcd)`] : []),
    ...flags.workloads.map((w) => `- ${w}: ${WORKLOAD_DESCRIPTIONS[w]}`),
  ];
}

async function main(): Promise<void> {
  const flags = parseFlags();
  installCleanup();
  const date = new Date();
  // The machine is shared: how busy it was is part of what the figures mean.
  const loadAtStart = loadavg()[0] ?? Number.NaN;
  const space = new KeySpace(flags.keys, flags.valueBytes, flags.ranges);
  const clusters = await startSystems(flags, space);
  let results: CellResult[];
  let checks: Awaited<ReturnType<typeof runCheckPerfs>>;
  try {
    results = await runCells(flags, clusters, space);
    checks = await runCheckPerfs(flags, clusters);
  } finally {
    await Promise.all([...clusters.values()].map((c) => destroyCluster(c)));
  }
  const sections: string[] = [`## ${date.toISOString().replace(/\.\d+Z$/, 'Z')}`, '', '### Machine', ...machineLines(clusters.get('etcd')?.version ?? ''), '', '### Parameters', ...parameterLines(flags, clusters), `- load average (1 min) of the machine: ${fixed(loadAtStart, 2)} at the start, ${fixed(loadavg()[0] ?? Number.NaN, 2)} at the end`];
  for (const system of clusters.keys()) sections.push('', `### ${system}`, '', systemTable(results, system));
  if (clusters.size === 2) {
    sections.push('', '### tessera / etcd', '', ratioTable(results));
    const targets = targetLines(results);
    if (targets.length > 0) sections.push('', 'Targets (tessera at least matches etcd\'s throughput at c=64):', '', ...targets);
  }
  if (checks.length > 0) sections.push('', '### etcdctl check perf');
  for (const c of checks) sections.push('', checkPerfText(c.system, c.endpoints, c.result));
  const text = sections.join('\n');
  say('');
  say(text);
  if (flags.record) {
    record(flags.recordFile, text);
    say(`\nrecorded in ${flags.recordFile}`);
  }
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  killAllNow();
  for (const root of liveClusterRoots()) rmSync(root, { recursive: true, force: true });
  process.exitCode = 1;
}
