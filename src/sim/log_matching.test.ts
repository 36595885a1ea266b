import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logMatchingViolation, type LogTerms } from './log_matching.js';

/** A log of the given terms from index `first`. */
function log(terms: readonly number[], first = 1): LogTerms {
  return { firstIndex: () => first, lastIndex: () => first + terms.length - 1, termOrUndefined: (i) => terms[i - first] };
}

test('log matching: logs that agree up to a common entry pass, whatever follows it', () => {
  assert.equal(logMatchingViolation({ id: 1, log: log([1, 1, 2, 3]) }, { id: 2, log: log([1, 1, 2, 2, 2]) }), undefined);
  assert.equal(logMatchingViolation({ id: 1, log: log([2, 3], 3) }, { id: 2, log: log([1, 1, 2, 3, 3]) }), undefined, 'compacted prefixes are not compared');
  assert.equal(logMatchingViolation({ id: 1, log: log([1, 1]) }, { id: 2, log: log([2, 2]) }), undefined, 'no common entry, nothing to match');
});

test('log matching: an entry both logs hold with the same term, over a different earlier entry, is a violation', () => {
  const v = logMatchingViolation({ id: 1, log: log([1, 1, 2, 3]) }, { id: 2, log: log([1, 2, 2, 3]) });
  assert.match(v ?? '', /nodes 1 and 2 agree on entry 4 \(term 3\) but differ at 2 \(terms 1 and 2\)/);
});

test('log matching in a window: only the indexes inside it are compared', () => {
  const a = { id: 1, log: log([1, 1, 2, 3, 3]) };
  const b = { id: 2, log: log([1, 2, 2, 3, 3]) };
  assert.match(logMatchingViolation(a, b, { lo: 2, hi: 4 }) ?? '', /agree on entry 4 \(term 3\) but differ at 2/);
  assert.equal(logMatchingViolation(a, b, { lo: 3, hi: 5 }), undefined, 'the difference at 2 is outside the window');
});
