/**
 * Large generated kv histories (issue 12): 50 clients and thousands of
 * operations, with and without an injected violation. The checker must decide
 * them, or answer `unknown` within its memory budget, never exhaust the heap.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SeededRng } from '../base/index.js';
import { checkOperations, kvModel } from './index.js';
import { generateKvHistory } from './generate.js';

const clock = () => performance.now();

for (const violation of [false, true]) {
  test(`large kv histories: 50 clients x 100 operations over 10 keys, ${violation ? 'with a stale read, are found not linearizable' : 'made linearizable, are found so'}`, (t) => {
    for (const seed of [1, 2, 3]) {
      const ops = generateKvHistory({ rng: new SeededRng(seed), clients: 50, opsPerClient: 100, keys: 10, unknownRate: 0.05, violation });
      assert.equal(ops.length, 5000);
      const r = checkOperations(kvModel, ops, { nowMs: clock, timeBudgetMs: 30_000 });
      assert.equal(r.verdict, violation ? 'not-linearizable' : 'linearizable', `seed ${seed}: ${r.reason ?? r.failure?.message ?? ''}`);
      t.diagnostic(`seed ${seed}: ${r.verdict} in ${r.elapsedMs?.toFixed(0)} ms, ${r.steps} steps`);
    }
  });
}

test('large kv histories: a search past its memory budget answers unknown (memory-budget), it does not exhaust the heap', () => {
  // One key and 50 clients: beyond what the search decides (see docs/benchmarks.md); a small budget ends it fast.
  const ops = generateKvHistory({ rng: new SeededRng(7), clients: 50, opsPerClient: 40, keys: 1, unknownRate: 0.05, violation: true });
  const r = checkOperations(kvModel, ops, { maxMemoEntries: 50_000 });
  assert.equal(r.verdict, 'unknown');
  assert.equal(r.reason, 'memory-budget');
});

test('kv pruning of unobserved unknown writes never changes a verdict (property, small histories)', () => {
  const { prune: _prune, ...unpruned } = kvModel;
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.boolean(), (seed, violation) => {
      let ops;
      try {
        ops = generateKvHistory({ rng: new SeededRng(seed), clients: 4, opsPerClient: 6, keys: 2, unknownRate: 0.4, violation });
      } catch {
        return; // no read could be made stale in so small a history
      }
      const a = checkOperations(kvModel, ops);
      const b = checkOperations(unpruned, ops);
      assert.equal(a.verdict, b.verdict);
      if (violation) assert.equal(a.verdict, 'not-linearizable');
      else assert.equal(a.verdict, 'linearizable');
    }),
    { numRuns: 300, seed: 5 },
  );
});
