#!/usr/bin/env node
/**
 * check-txn: checks a Jepsen/Elle transactional history (EDN) for
 * isolation anomalies (src/check/txn).
 *
 *   node dist/cli/check-txn.js --model list-append|rw-register
 *        [--no-realtime] [--time-budget-ms N] FILE
 *
 * Prints each anomaly found on a line of its own (`name: explanation`);
 * the last line is `valid`, `invalid: <names>` or `unknown` (a budget ran
 * out before the search finished; the line before it names which), and the
 * exit code 0, 1 or 2 (2 also for usage and parse errors).
 */
import { readFileSync } from 'node:fs';
import { isTesseraError } from '../base/index.js';
import { invokedDirectly, isFileError } from './script.js';
import { type TxnModel, checkTxnHistory, parseTxnHistory } from '../check/index.js';

const USAGE = 'usage: check-txn --model list-append|rw-register [--no-realtime] [--time-budget-ms N] FILE';
/** The default time budget of the cycle search. */
export const CHECK_TXN_DEFAULT_BUDGET_MS = 60_000;

interface Args {
  readonly model: TxnModel;
  readonly file: string;
  readonly realtime: boolean;
  readonly timeBudgetMs: number;
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
    const txns = parseTxnHistory(io.readFile(args.file), args.file);
    const result = checkTxnHistory(txns, { model: args.model, realtime: args.realtime, timeBudgetMs: args.timeBudgetMs, nowMs: io.nowMs });
    for (const a of result.anomalies) io.out(`${a.anomaly}: ${a.explanation}`);
    io.out(`# ${result.txns} transactions, ${result.edges} graph edges, checked in ${(io.nowMs() - start).toFixed(0)} ms`);
    if (result.reason !== undefined) io.out(`# budget exhausted: ${result.reason}`);
    if (result.valid === 'unknown') {
      io.out('unknown');
      return 2;
    }
    io.out(result.valid ? 'valid' : `invalid: ${result.names.join(', ')}`);
    return result.valid ? 0 : 1;
  } catch (e) {
    if (isTesseraError(e) || isFileError(e)) {
      io.err(`check-txn: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

function parseArgs(argv: readonly string[]): Args | string {
  let model: string | undefined;
  let file: string | undefined;
  let realtime = true;
  let timeBudgetMs = CHECK_TXN_DEFAULT_BUDGET_MS;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const name = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
    const value = (): string | undefined => (arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i]);
    if (name === '--model') model = value();
    else if (arg === '--no-realtime') realtime = false;
    else if (name === '--time-budget-ms') {
      const text = value();
      const n = Number(text);
      if (text === undefined || text === '' || !(n >= 0)) return `bad --time-budget-ms: ${text ?? ''}`;
      timeBudgetMs = n;
    } else if (arg.startsWith('-')) return `unknown option ${arg}`;
    else if (file === undefined) file = arg;
    else return `unexpected argument ${arg}`;
  }
  if (model !== 'list-append' && model !== 'rw-register') return `--model must be list-append or rw-register, got ${model ?? 'nothing'}`;
  if (file === undefined) return 'missing FILE';
  return { model, file, realtime, timeBudgetMs };
}

if (invokedDirectly(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    readFile: (path) => readFileSync(path, 'utf8'),
    nowMs: () => performance.now(),
  });
}
