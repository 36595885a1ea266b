/**
 * `npm run bench:check`: the linearizability checker on generated kv
 * histories of 50 clients (issue 12), with and without an injected stale
 * read, over 10, 5 and 1 keys. Prints the verdict, time, search steps and
 * the process's resident memory after each check.
 */
import { SeededRng } from '../../base/index.js';
import { checkOperations, kvModel } from '../../check/index.js';
import { generateKvHistory } from '../../check/generate.js';

const TIME_BUDGET_MS = 60_000;

function main(): void {
  console.log(`# checker benchmark, ${new Date().toISOString()}, time budget ${TIME_BUDGET_MS} ms per history`);
  console.log('| clients | ops | keys | unknown writes | violation | verdict | ms | steps | rss MiB |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const keys of [10, 5, 1]) {
    for (const violation of [false, true]) {
      const ops = generateKvHistory({ rng: new SeededRng(7), clients: 50, opsPerClient: 100, keys, unknownRate: 0.05, violation });
      const t0 = performance.now();
      const r = checkOperations(kvModel, ops, { nowMs: () => performance.now(), timeBudgetMs: TIME_BUDGET_MS });
      const ms = performance.now() - t0;
      const verdict = r.verdict === 'unknown' ? `unknown (${r.reason})` : r.verdict;
      console.log(`| 50 | ${ops.length} | ${keys} | 5% | ${violation ? 'stale read' : 'none'} | ${verdict} | ${ms.toFixed(0)} | ${r.steps} | ${process.memoryUsage().rss >> 20} |`);
    }
  }
}

main();
