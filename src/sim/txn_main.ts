#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { TXN_BUG_DESCRIPTIONS, TXN_BUG_NAMES, isTxnBugName } from '../txn/sabotage.js';
import { runTxnModel } from './txn_model.js';

function intArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got '${value}'`);
  return n;
}
function chanceArg(value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError(`expected a chance in [0, 1], got '${value}'`);
  return n;
}

const program = new Command('sim:txn')
  .description('The transaction protocol (src/txn, src/mvcc/participant.ts) over atomic ranges with lost and held messages and crashed coordinators; list-append histories checked by the Elle-style checker, bank totals checked on every read.')
  .option('--seeds <n>', 'number of seeds', intArg, 100)
  .option('--start <n>', 'first seed', intArg, 1)
  .option('--workload <name>', 'list-append or bank', 'list-append')
  .option('--keys <n>', 'keys (accounts)', intArg)
  .option('--ranges <n>', 'ranges the keys are split over', intArg)
  .option('--clients <n>', 'clients', intArg)
  .option('--txns <n>', 'transactions per client', intArg)
  .option('--crash <p>', 'chance a transaction\'s coordinator crashes', chanceArg)
  .option('--loss <p>', 'chance a message is lost', chanceArg)
  .option('--pause <p>', 'chance a message is held up to twice the expiry', chanceArg)
  .option('--bug <name>', 'switch on a deliberate bug; stops at the first seed that catches it')
  .option('--list-bugs', 'list the deliberate bugs')
  .parse();

const o = program.opts<{ seeds: number; start: number; workload: string; keys?: number; ranges?: number; clients?: number; txns?: number; crash?: number; loss?: number; pause?: number; bug?: string; listBugs?: boolean }>();
if (o.listBugs === true) {
  for (const name of TXN_BUG_NAMES) console.log(`${name.padEnd(32)} ${TXN_BUG_DESCRIPTIONS[name]}`);
  process.exit(0);
}
if (o.workload !== 'list-append' && o.workload !== 'bank') {
  console.error(`unknown workload '${o.workload}': list-append or bank`);
  process.exit(2);
}
if (o.bug !== undefined && !isTxnBugName(o.bug)) {
  console.error(`unknown bug '${o.bug}'; --list-bugs names them`);
  process.exit(2);
}
const bug = o.bug !== undefined && isTxnBugName(o.bug) ? o.bug : undefined;
const startMs = performance.now();
let failing = 0;
const totals = { committed: 0, aborted: 0, unknown: 0 };
for (let seed = o.start; seed < o.start + o.seeds; seed++) {
  const r = await runTxnModel({
    seed,
    workload: o.workload,
    ...(o.keys === undefined ? {} : { keys: o.keys }),
    ...(o.ranges === undefined ? {} : { ranges: o.ranges }),
    ...(o.clients === undefined ? {} : { clients: o.clients }),
    ...(o.txns === undefined ? {} : { txnsPerClient: o.txns }),
    ...(o.crash === undefined ? {} : { crashChance: o.crash }),
    ...(o.loss === undefined ? {} : { lossChance: o.loss }),
    ...(o.pause === undefined ? {} : { pauseChance: o.pause }),
    ...(bug === undefined ? {} : { bugs: [bug] }),
  });
  totals.committed += r.committed;
  totals.aborted += r.aborted;
  totals.unknown += r.unknown;
  if (r.check.valid === true && r.problems.length === 0) continue;
  failing++;
  const what = [...r.check.names, ...r.problems.slice(0, 3)].join('; ');
  if (bug !== undefined) {
    console.log(`'${bug}' caught by seed ${seed}: ${what}`);
    for (const a of r.check.anomalies.slice(0, 2)) console.log(`  ${a.anomaly}: ${a.explanation.split('\n').join('\n    ')}`);
    process.exit(0);
  }
  console.log(`seed ${seed} FAILED: ${what}`);
  for (const a of r.check.anomalies.slice(0, 2)) console.log(`  ${a.anomaly}: ${a.explanation.split('\n').join('\n    ')}`);
}
const seconds = (performance.now() - startMs) / 1000;
console.log(`${o.seeds} seeds (${o.workload}): ${o.seeds - failing} valid, ${failing} failing; ${totals.committed} committed, ${totals.aborted} aborted, ${totals.unknown} unknown; ${seconds.toFixed(1)} s`);
if (bug !== undefined) {
  console.log(`'${bug}' not caught in ${o.seeds} seeds`);
  process.exit(1);
}
process.exit(failing > 0 ? 1 : 0);
