#!/usr/bin/env node
/**
 * check-history: checks a recorded history file for linearizability.
 *
 *   node dist/cli/check-history.js --model etcd-register|kv [--no-partition]
 *        [--time-budget-ms N] [--max-memo-mib N] FILE
 *
 * Formats: ../shared/testdata/README.md (Porcupine's etcd and kv logs).
 * `--max-memo-mib` bounds the search's memo (default MAX_MEMO_BYTES, 256
 * MiB); like a spent time budget, reaching it answers `unknown`.
 *
 * The last line is the verdict (`linearizable`, `not linearizable` or
 * `unknown`) so scripts can `tail -1`; the exit code is 0, 1 or 2 (2 also
 * for usage and parse errors).
 */
import { readFileSync } from 'node:fs';
import { isTesseraError } from '../base/index.js';
import { invokedDirectly, isFileError } from './script.js';
import {
  type CheckFailure,
  type CheckResult,
  type Model,
  type Operation,
  checkOperations,
  describeOperation,
  etcdRegisterModel,
  kvModel,
  parseEdnKvLog,
  parseJepsenEtcdLog,
} from '../check/index.js';

const USAGE =
  'usage: check-history --model etcd-register|kv [--no-partition] [--time-budget-ms N] [--max-memo-mib N] FILE';
const EXIT: Readonly<Record<CheckResult<unknown, unknown>['verdict'], number>> = {
  linearizable: 0,
  'not-linearizable': 1,
  unknown: 2,
};
// Enough operations to read the failure; the rest are summarized.
const MAX_LISTED = 40;
const PREFIX_CONTEXT = 5;

interface Args {
  readonly model: 'etcd-register' | 'kv';
  readonly file: string;
  readonly partition: boolean;
  readonly timeBudgetMs?: number;
  readonly maxMemoBytes?: number;
}

export interface CliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly readFile: (path: string) => string;
  readonly nowMs: () => number;
}

/** Runs the CLI and returns the exit code. */
export function main(argv: readonly string[], io: CliIo): number {
  const args = parseArgs(argv);
  if (typeof args === 'string') {
    io.err(args);
    io.err(USAGE);
    return 2;
  }
  const start = io.nowMs();
  try {
    const text = io.readFile(args.file);
    const result =
      args.model === 'kv'
        ? run(kvModel, parseEdnKvLog(text, args.file), args, io)
        : run(etcdRegisterModel, parseJepsenEtcdLog(text, args.file), args, io);
    io.out(`time: ${(io.nowMs() - start).toFixed(1)} ms (parse and check)`);
    io.out(result === 'not-linearizable' ? 'not linearizable' : result);
    return EXIT[result];
  } catch (e) {
    if (isTesseraError(e) || isFileError(e)) {
      io.err(`check-history: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

function run<S, I, O>(model: Model<S, I, O>, ops: Operation<I, O>[], args: Args, io: CliIo): CheckResult<I, O>['verdict'] {
  const result = checkOperations(model, ops, {
    partition: args.partition,
    nowMs: io.nowMs,
    ...(args.timeBudgetMs === undefined ? {} : { timeBudgetMs: args.timeBudgetMs }),
    ...(args.maxMemoBytes === undefined ? {} : { maxMemoBytes: args.maxMemoBytes }),
  });
  io.out(`file: ${args.file}`);
  io.out(
    `model: ${model.name}, operations: ${result.operations}, partitions: ${result.partitions} ` +
      `(checked ${result.partitionsChecked}), search steps: ${result.steps}, ` +
      `peak memo: ${(result.peakMemoBytes / 1024 ** 2).toFixed(1)} MiB`,
  );
  if (result.reason !== undefined) io.out(`budget exhausted: ${result.reason}`);
  if (result.failure !== undefined) printFailure(model, result.failure, io);
  return result.verdict;
}

function printFailure<S, I, O>(model: Model<S, I, O>, failure: CheckFailure<I, O>, io: CliIo): void {
  io.out(`failure: ${failure.message}`);
  const tail = failure.prefix.slice(-PREFIX_CONTEXT);
  io.out(`last ${tail.length} of the ${failure.prefixLength} operations in the longest linearizable prefix:`);
  for (const op of tail) io.out(`  ${describeOperation(model, op)}`);
  io.out(`window (${failure.window.length} operations that cannot be ordered; * = the blocked one):`);
  for (const op of failure.window.slice(0, MAX_LISTED)) {
    io.out(`${op === failure.blocked ? '* ' : '  '}${describeOperation(model, op)}`);
  }
  if (failure.window.length > MAX_LISTED) io.out(`  ... ${failure.window.length - MAX_LISTED} more`);
}

/** Returns the parsed arguments or an error message. */
function parseArgs(argv: readonly string[]): Args | string {
  let model: string | undefined;
  let file: string | undefined;
  let partition = true;
  const limits: { timeBudgetMs?: number; maxMemoBytes?: number } = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
    if (name === '--model') model = arg.includes('=') ? arg.slice('--model='.length) : argv[++i];
    else if (arg === '--no-partition') partition = false;
    else if (name === '--time-budget-ms' || name === '--max-memo-mib') {
      const text = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      const value = Number(text);
      if (text === undefined || text === '' || !(value >= 0)) return `bad ${name}: ${text ?? ''}`;
      if (name === '--time-budget-ms') limits.timeBudgetMs = value;
      else limits.maxMemoBytes = value * 1024 * 1024;
    } else if (arg.startsWith('-')) return `unknown option ${arg}`;
    else if (file === undefined) file = arg;
    else return `unexpected argument ${arg}`;
  }
  if (model !== 'etcd-register' && model !== 'kv') return `--model must be etcd-register or kv, got ${model ?? 'nothing'}`;
  if (file === undefined) return 'missing FILE';
  return { model, file, partition, ...limits };
}

if (invokedDirectly(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    readFile: (path) => readFileSync(path, 'utf8'),
    nowMs: () => performance.now(),
  });
}
