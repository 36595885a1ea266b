#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { BUG_DESCRIPTIONS, BUG_NAMES, isBugName, type BugName } from '../raft/sabotage.js';
import { ALL_FAULTS, type FaultKind } from './options.js';
import { runSeeds, formatSummary } from './runner.js';
import { runSeed, type SeedResult } from './simulation.js';
import { BUG_CAUGHT_BY } from './violation.js';

function intArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got '${value}'`);
  return n;
}

const program = new Command('sim')
  .description('Deterministic simulation of a tessera Raft cluster under faults, checked for safety, liveness and linearizability.')
  .option('--seeds <n>', 'number of seeds to run', intArg, 100)
  .option('--start <n>', 'first seed', intArg, 1)
  .option('--seed <n>', 'run one seed', intArg)
  .option('--trace', 'print the trace of the run (with --seed)')
  .option('--bug <name>', 'switch on a deliberate bug; stops at the first seed that catches it')
  .option('--all-seeds', 'with --bug, keep going after the first catch')
  .option('--list-bugs', 'list the deliberate-bug switches')
  .option('--nodes <n>', 'force the cluster size (3, 5 or 7)', intArg)
  .option('--faults <list>', `comma-separated faults to enable (default all: ${ALL_FAULTS.join(',')})`)
  .option('--progress', 'print a line per 50 seeds')
  .option('--quiesce-after-ticks <n>', 'idle ticks before a range quiesces (default 2-4 from the seed; 0: never)', (v: string) => Number(v))
  .option('--txn-clients <n>', 'clients of the transactional workload: list-append Txns across ranges, checked by the Elle-style checker (default 0: none)', intArg)
  .option('--replicas <n>', 'replicas per data range in every seed (default: 3 in some seeds with splits and 5 or 7 nodes, else every member; 0: every member)', (v: string) => Number(v))
  .parse();

const opts = program.opts<{
  seeds: number; start: number; seed?: number; trace?: boolean; bug?: string; allSeeds?: boolean;
  listBugs?: boolean; nodes?: number; faults?: string; progress?: boolean; quiesceAfterTicks?: number; replicas?: number; txnClients?: number;
}>();

if (opts.listBugs === true) {
  for (const name of BUG_NAMES) console.log(`${name.padEnd(24)} ${BUG_DESCRIPTIONS[name]}`);
  process.exit(0);
}
let bug: BugName | undefined;
if (opts.bug !== undefined) {
  if (!isBugName(opts.bug)) {
    console.error(`unknown bug '${opts.bug}'; --list-bugs names them`);
    process.exit(2);
  }
  bug = opts.bug;
}
let faults: Set<FaultKind> | undefined;
if (opts.faults !== undefined) {
  const list = opts.faults.split(',').filter(Boolean);
  const bad = list.filter((f) => !(ALL_FAULTS as readonly string[]).includes(f));
  if (bad.length > 0) {
    console.error(`unknown fault(s): ${bad.join(', ')}; known: ${ALL_FAULTS.join(', ')}`);
    process.exit(2);
  }
  faults = new Set(list as FaultKind[]);
}
const nodeCount = opts.nodes === undefined ? undefined : ([3, 5, 7] as const).find((n) => n === opts.nodes);
if (opts.nodes !== undefined && nodeCount === undefined) {
  console.error('--nodes must be 3, 5 or 7');
  process.exit(2);
}
if (opts.replicas !== undefined && !(Number.isSafeInteger(opts.replicas) && opts.replicas >= 0)) {
  console.error('--replicas must be an integer >= 0');
  process.exit(2);
}
if (opts.quiesceAfterTicks !== undefined && !(Number.isSafeInteger(opts.quiesceAfterTicks) && opts.quiesceAfterTicks >= 0)) {
  console.error('--quiesce-after-ticks must be an integer >= 0');
  process.exit(2);
}
const overrides = {
  bug,
  ...(faults === undefined ? {} : { faults }),
  ...(nodeCount === undefined ? {} : { nodeCount }),
  ...(opts.quiesceAfterTicks === undefined ? {} : { quiesceAfterTicks: opts.quiesceAfterTicks }),
  // Transactions across ranges need ranges: splits on with them.
  ...(opts.txnClients === undefined || opts.txnClients === 0 ? {} : { txnClients: opts.txnClients, splits: true }),
  // Placement needs splits to have ranges to place.
  ...(opts.replicas === undefined ? {} : { replicas: opts.replicas, ...(opts.replicas > 0 ? { splits: true } : {}) }),
};

if (opts.seed !== undefined) {
  const r = await runSeed(opts.seed, { ...overrides, trace: opts.trace === true });
  if (r.trace !== undefined) for (const line of r.trace) console.log(line);
  console.log(`seed ${r.seed}: ${r.violations.length === 0 ? 'ok' : 'FAILED'} nodes=${r.options.nodeCount} read=${r.options.readOnlyOption} repropose=${r.options.reproposeOnNewLeader} ops=${r.opsChecked} (${r.ops.unknown} unknown, ${r.ops.failed} failed) events=${r.events} virtual=${r.virtualMs.toFixed(0)}ms`);
  for (const v of r.violations) console.log(`  ${v}`);
  console.log(`faults: ${Object.entries(r.faults).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  console.log(`trace hash ${r.traceHash}`);
  process.exit(r.violations.length === 0 ? 0 : 1);
}

const summary = await runSeeds({
  start: opts.start,
  count: opts.seeds,
  overrides,
  stopOnFirstFailure: bug !== undefined && opts.allSeeds !== true,
  // A bug run stops at the first seed its own oracle caught (BUG_CAUGHT_BY), not at another check's.
  ...(bug === undefined ? {} : { stopAt: (r: SeedResult) => r.violationKinds[0] !== undefined && BUG_CAUGHT_BY[bug].includes(r.violationKinds[0]) }),
  nowMs: () => performance.now(),
  ...(opts.progress === true ? { onProgress: (line: string) => console.log(line) } : {}),
});
console.log(formatSummary(summary, bug));
const caughtByOwn = bug !== undefined && summary.failures.some((r) => r.violationKinds[0] !== undefined && BUG_CAUGHT_BY[bug].includes(r.violationKinds[0]));
process.exit(bug === undefined ? (summary.failures.length === 0 ? 0 : 1) : caughtByOwn ? 0 : 1);
