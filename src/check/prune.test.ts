/**
 * `Model.prune` drops operations that cannot change a partition's verdict
 * (reads nobody heard back from, unknown writes nobody observed). It must
 * never turn a refutation into a pass, or the other way round.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isTesseraError, SeededRng } from '../base/index.js';
import { checkOperations, kvModel } from './index.js';
import { generateKvHistory } from './generate.js';

test('kv pruning of unobserved unknown writes never changes a verdict (property, small histories)', () => {
  const { prune: _prune, ...unpruned } = kvModel;
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.boolean(), (seed, violation) => {
      let ops;
      try {
        ({ ops } = generateKvHistory(new SeededRng(seed), { clients: 4, operations: 24, keys: 2, violations: violation ? 1 : 0, unknownShare: 0.4 }));
      } catch (e) {
        if (isTesseraError(e, 'INVALID_ARGUMENT')) return; // no get to falsify in so small a history
        throw e;
      }
      const a = checkOperations(kvModel, ops);
      const b = checkOperations(unpruned, ops);
      assert.equal(a.verdict, b.verdict);
      assert.equal(a.verdict, violation ? 'not-linearizable' : 'linearizable');
    }),
    { numRuns: 300, seed: 5 },
  );
});
