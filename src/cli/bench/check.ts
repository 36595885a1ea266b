#!/usr/bin/env node
/**
 * bench:check — times the linearizability checker on generated kv histories
 * (src/check/generate.ts) of 50 to 200 clients, with and without injected
 * violations, and prints a dated markdown section.
 *
 *   npm run bench:check -- [--seeds N] [--time-budget-ms N] [--record [FILE]] [--write DIR]
 *
 * `--record` appends the section to docs/benchmarks.md (or FILE); `--write`
 * also saves each history in Porcupine's kv text format for check-history.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { SeededRng } from '../../base/index.js';
import { MAX_MEMO_BYTES } from '../../check/budget.js';
import { type KvHistoryOptions, formatEdnKvLog, generateKvHistory } from '../../check/generate.js';
import { checkOperations, kvModel } from '../../check/index.js';

interface Case {
  readonly name: string;
  readonly history: KvHistoryOptions;
  readonly partition: boolean;
}

const CASES: readonly Case[] = [
  { name: 'c50', history: { clients: 50, operations: 2000, keys: 10 }, partition: true },
  { name: 'c50-bad1', history: { clients: 50, operations: 2000, keys: 10, violations: 1 }, partition: true },
  { name: 'c50-bad5', history: { clients: 50, operations: 2000, keys: 10, violations: 5 }, partition: true },
  { name: 'c50-anywhere', history: { clients: 50, operations: 2000, keys: 10, effectAnywhere: true }, partition: true },
  { name: 'c50-anywhere-bad5', history: { clients: 50, operations: 2000, keys: 10, violations: 5, effectAnywhere: true }, partition: true },
  { name: 'c100', history: { clients: 100, operations: 10_000, keys: 50 }, partition: true },
  { name: 'c100-bad5', history: { clients: 100, operations: 10_000, keys: 50, violations: 5 }, partition: true },
  { name: 'c200', history: { clients: 200, operations: 50_000, keys: 200 }, partition: true },
  { name: 'c200-bad10', history: { clients: 200, operations: 50_000, keys: 200, violations: 10 }, partition: true },
  { name: 'c50 unpartitioned', history: { clients: 50, operations: 2000, keys: 10 }, partition: false },
];

const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DEFAULT_TIME_BUDGET_MS = 60_000;

interface Flags {
  readonly seeds: number;
  readonly timeBudgetMs: number;
  readonly record: string | undefined;
  readonly write: string | undefined;
}

function parseFlags(argv: readonly string[]): Flags {
  let seeds = 3;
  let timeBudgetMs = DEFAULT_TIME_BUDGET_MS;
  let record: string | undefined;
  let write: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--seeds') seeds = Number(argv[++i]);
    else if (arg === '--time-budget-ms') timeBudgetMs = Number(argv[++i]);
    else if (arg === '--write') write = argv[++i];
    else if (arg === '--record') record = argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--') ? argv[++i] : `${PACKAGE_ROOT}docs/benchmarks.md`;
    else throw new Error(`unknown option ${arg}`);
  }
  if (!(seeds >= 1) || !(timeBudgetMs >= 0)) throw new Error('--seeds must be >= 1 and --time-budget-ms >= 0');
  return { seeds, timeBudgetMs, record, write };
}

function runCase(c: Case, seed: number, flags: Flags): string[] {
  const history = generateKvHistory(new SeededRng(seed), c.history);
  if (flags.write !== undefined) {
    mkdirSync(flags.write, { recursive: true });
    const bad = (c.history.violations ?? 0) > 0 ? 'bad' : 'ok';
    writeFileSync(`${flags.write}/${c.name.replace(/ /g, '-')}-s${seed}-${bad}.txt`, formatEdnKvLog(history.ops));
  }
  const heapBefore = process.memoryUsage().heapUsed;
  let heapPeak = heapBefore;
  // The checker reads this clock every 1024 steps: a cheap place to sample the heap.
  const nowMs = () => {
    heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
    return performance.now();
  };
  const result = checkOperations(kvModel, history.ops, { partition: c.partition, timeBudgetMs: flags.timeBudgetMs, nowMs });
  const expected = history.violated.length > 0 ? 'not-linearizable' : 'linearizable';
  if (result.verdict !== 'unknown' && result.verdict !== expected) throw new Error(`${c.name} seed ${seed}: ${result.verdict}, expected ${expected}`);
  return [
    c.name,
    String(seed),
    String(history.ops.length),
    String(result.partitions),
    result.verdict + (result.reason === undefined ? '' : ` (${result.reason})`),
    String(result.steps),
    mib(result.peakMemoBytes),
    mib(heapPeak - heapBefore),
    (result.elapsedMs ?? 0).toFixed(0),
  ];
}

function mib(bytes: number): string {
  return (bytes / 1024 ** 2).toFixed(1);
}

function machineLines(): string[] {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: PACKAGE_ROOT, encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  return [
    `- CPU: ${cpus()[0]?.model.trim() ?? 'unknown'}, ${cpus().length} cores`,
    `- RAM: ${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    `- kernel: Linux ${release()}`,
    `- Node: ${process.version}`,
    `- tessera: commit ${commit}`,
  ];
}

function main(): void {
  const flags = parseFlags(process.argv.slice(2));
  const rows: string[][] = [];
  for (const c of CASES) {
    for (let seed = 1; seed <= flags.seeds; seed++) {
      const row = runCase(c, seed, flags);
      process.stderr.write(`${row.join('  ')}\n`);
      rows.push(row);
    }
  }
  const header = ['history', 'seed', 'ops', 'partitions', 'verdict', 'steps', 'peak memo MiB', 'heap growth MiB', 'ms'];
  const section = [
    `## Checker, ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    '',
    '### Machine',
    ...machineLines(),
    '',
    '### Parameters',
    `- \`npm run bench:check -- --seeds ${flags.seeds}\`: generated kv histories (src/check/generate.ts), kv model, time budget ${flags.timeBudgetMs} ms, memo bound ${mib(MAX_MEMO_BYTES)} MiB (MAX_MEMO_BYTES)`,
    '- cN: N clients; -badK: K falsified gets in K keys; -anywhere: operations take effect anywhere in their interval (default: just before they return)',
    '- heap growth: the most heapUsed rose above its value before the check, sampled every 1024 steps (garbage included)',
    '',
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  process.stdout.write(`${section}\n`);
  if (flags.record !== undefined) {
    appendFileSync(flags.record, `\n${section}\n`);
    process.stdout.write(`\nrecorded in ${flags.record}\n`);
  }
}

main();
