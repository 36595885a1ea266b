/**
 * Tables for the terminal and for docs/benchmarks.md (the same Markdown
 * text for both, so what is recorded is exactly what was printed), and the
 * description of the machine the figures were measured on.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { CheckPerfResult } from './check_perf.js';
import type { SystemName } from './clusters.js';
import { type CellResult, type WorkloadName, WORKERS_PER_CHANNEL } from './workloads.js';

/** Workloads whose c=64 throughput the issue sets a target for (tessera >= etcd). */
export const TARGET_WORKLOADS: readonly WorkloadName[] = ['put', 'get', 'txn', 'mixed'];
export const TARGET_CONCURRENCY = 64;

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');

/** One system's cells: throughput, latency, CPU. */
export function systemTable(results: readonly CellResult[], system: SystemName): string {
  const rows = results
    .filter((r) => r.system === system)
    .map((r) => [
      r.workload,
      String(r.concurrency),
      fixed(r.opsPerSec, 0),
      fixed(r.p50Ms, 2),
      fixed(r.p99Ms, 2),
      fixed(r.serverCpuMsPerOp, 3),
      fixed(r.serverCores, 2),
      fixed(r.clientCores, 2),
      r.errors === 0 ? '0' : `${r.errors} (${r.firstError ?? ''})`,
      r.ops === 0 ? '-' : `${fixed((100 * r.casFailures) / r.ops, 1)} %`,
    ]);
  // Failed compares among the Txns answered: the abort rate of the contention workloads (another writer moved a key).
  return table(['workload', 'c', 'ops/s', 'p50 ms', 'p99 ms', 'server CPU ms/op', 'server cores', 'client cores', 'errors', 'failed compares'], rows);
}

function find(results: readonly CellResult[], system: SystemName, workload: WorkloadName, concurrency: number): CellResult | undefined {
  return results.find((r) => r.system === system && r.workload === workload && r.concurrency === concurrency);
}

/** tessera against etcd, cell by cell: above 1 means tessera does more ops/s, or spends more CPU per op. */
export function ratioTable(results: readonly CellResult[]): string {
  const rows: string[][] = [];
  for (const t of results.filter((r) => r.system === 'tessera')) {
    const e = find(results, 'etcd', t.workload, t.concurrency);
    if (e === undefined) continue;
    rows.push([
      t.workload,
      String(t.concurrency),
      fixed(t.opsPerSec / e.opsPerSec, 2),
      fixed(t.p50Ms / e.p50Ms, 2),
      fixed(t.p99Ms / e.p99Ms, 2),
      fixed(t.serverCpuMsPerOp / e.serverCpuMsPerOp, 2),
    ]);
  }
  return table(['workload', 'c', 'ops/s tessera/etcd', 'p50 tessera/etcd', 'p99 tessera/etcd', 'CPU/op tessera/etcd'], rows);
}

/** The c=64 throughput targets, each MET or MISSED, for the cells that ran. */
export function targetLines(results: readonly CellResult[]): string[] {
  const out: string[] = [];
  for (const workload of TARGET_WORKLOADS) {
    const t = find(results, 'tessera', workload, TARGET_CONCURRENCY);
    const e = find(results, 'etcd', workload, TARGET_CONCURRENCY);
    if (t === undefined || e === undefined) continue;
    const ratio = t.opsPerSec / e.opsPerSec;
    out.push(`- ${workload} c=${TARGET_CONCURRENCY}: tessera ${fixed(t.opsPerSec, 0)} ops/s, etcd ${fixed(e.opsPerSec, 0)} ops/s, ratio ${fixed(ratio, 2)}: ${ratio >= 1 ? 'MET' : 'MISSED'}`);
  }
  // Issue 14: tessera's Txn over two ranges against etcd's single-range Txn (etcd has no second range).
  const t2 = find(results, 'tessera', 'txn2', TARGET_CONCURRENCY);
  const e1 = find(results, 'etcd', 'txn', TARGET_CONCURRENCY);
  if (t2 !== undefined && e1 !== undefined) {
    const ratio = t2.opsPerSec / e1.opsPerSec;
    out.push(`- txn2 (tessera, keys in two ranges) against txn (etcd) c=${TARGET_CONCURRENCY}: tessera ${fixed(t2.opsPerSec, 0)} ops/s, etcd ${fixed(e1.opsPerSec, 0)} ops/s, ratio ${fixed(ratio, 2)}: ${ratio >= 1 ? 'MET' : 'MISSED'}`);
  }
  return out;
}

export function checkPerfText(system: SystemName, endpoints: readonly string[], r: CheckPerfResult): string {
  return [
    `\`etcdctl --endpoints=${endpoints.join(',')} check perf --load=${r.load}\` against ${system} (exit status ${r.exitCode}):`,
    '',
    '```',
    ...r.lines,
    '```',
  ].join('\n');
}

/** The package root (dist/cli/bench is three levels below it): git describes the code that ran, not the caller's cwd. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function quietly(file: string, args: readonly string[]): string {
  try {
    return execFileSync(file, args, { cwd: PACKAGE_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** The commit, and whether tracked files differed from it (then the figures are not that commit's alone). */
function codeVersion(): string {
  const commit = quietly('git', ['rev-parse', '--short', 'HEAD']);
  const changed = quietly('git', ['status', '--porcelain', '--untracked-files=no']);
  if (commit === 'unknown' || changed === 'unknown') return 'unknown (not a git checkout)';
  return changed === '' ? `commit ${commit}` : `commit ${commit} plus uncommitted changes to ${changed.split('\n').length} files`;
}

/** The code as the run started (this module loads at the start): members started later run what is built then. */
const CODE_AT_START = codeVersion();

/** The code the run started with, and what it became if the checkout changed during the run. */
function codeDuringRun(): string {
  const now = codeVersion();
  return now === CODE_AT_START ? CODE_AT_START : `${CODE_AT_START} at the start; ${now} at the end (the checkout changed during the run)`;
}

/** CPU model, cores, RAM, kernel, Node and etcd versions: what the figures depend on besides the code. */
export function machineLines(etcdVersion: string): string[] {
  const cpuModel = cpus()[0]?.model.trim() ?? 'unknown';
  const ramGiB = totalmem() / 1024 ** 3;
  const etcd = etcdVersion !== '' ? etcdVersion : quietly('/usr/bin/etcd', ['--version']).split('\n')[0] ?? 'unknown';
  return [
    `- CPU: ${cpuModel}, ${cpus().length} cores`,
    `- RAM: ${ramGiB.toFixed(1)} GiB`,
    `- kernel: Linux ${release()}`,
    `- Node: ${process.version}`,
    `- etcd: ${etcd}`,
    `- tessera: ${codeDuringRun()}`,
  ];
}

const INTRO = `# Benchmarks

\`npm run bench\` (src/cli/bench/main.ts) starts a 3-node tessera cluster and a
3-member etcd cluster (Debian's etcd-server) on loopback, on the same
machine, and drives both with the same closed-loop gRPC client. The cells
alternate between the two systems (tessera, then etcd, for each workload and
concurrency), so a slow spell of this shared machine hits both alike; only
the ratios measured side by side mean much. Then it runs
\`etcdctl check perf\` against tessera (and against etcd with
\`--check-perf-etcd\`). Each run appends a dated section below; nothing
here is written by hand.

- Server CPU is utime + stime of the three server processes, read from
  /proc before and after each measured window, divided by the operations
  completed in it. The client runs on the same cores.
- Workers share connections (${WORKERS_PER_CHANNEL} workers per connection at most),
  spread round-robin over the members with the leader first, as etcd's own
  benchmark tool spreads its conns over its endpoints. In both systems a
  follower forwards proposals to the leader through Raft and serves a
  linearizable read after a ReadIndex round with it. For that round etcd's
  leader confirms its leadership with a heartbeat round; tessera's, under
  its default \`--read-mode lease\` (each section names the mode), answers
  from its lease (ADR 0002), and a read on the leader needs no message.
`;

/** Appends one run to docs/benchmarks.md, creating the file with its introduction if missing. */
export function record(path: string, section: string): void {
  if (!existsSync(path) || readFileSync(path, 'utf8').trim() === '') writeFileSync(path, INTRO);
  appendFileSync(path, `\n${section.trimEnd()}\n`);
}
