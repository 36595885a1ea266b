import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jointCommitted, jointIds, jointVoteResult, majorityCommitted, majorityVoteResult } from './quorum.js';

const set = (...ids: number[]): ReadonlySet<number> => new Set(ids);
const acked = (m: Record<number, number>) => (id: number): number | undefined => m[id];
const votes = (m: Record<number, boolean>): ReadonlyMap<number, boolean> => new Map(Object.entries(m).map(([k, v]) => [Number(k), v]));

test('majorityCommitted: the highest index acknowledged by a majority', () => {
  assert.equal(majorityCommitted(set(1), acked({ 1: 7 })), 7);
  assert.equal(majorityCommitted(set(1, 2, 3), acked({ 1: 5, 2: 3, 3: 1 })), 3);
  assert.equal(majorityCommitted(set(1, 2, 3), acked({ 1: 5, 2: 5, 3: 1 })), 5);
  // Four voters need three acknowledgements.
  assert.equal(majorityCommitted(set(1, 2, 3, 4), acked({ 1: 4, 2: 3, 3: 2, 4: 1 })), 2);
  // A voter without progress counts as having acknowledged nothing.
  assert.equal(majorityCommitted(set(1, 2, 3), acked({ 1: 9, 2: 9 })), 9);
  assert.equal(majorityCommitted(set(1, 2, 3), acked({ 1: 9 })), 0);
});

test('majorityCommitted: an empty configuration commits everything (so an empty half of a joint config does not block)', () => {
  assert.equal(majorityCommitted(set(), acked({})), Number.MAX_SAFE_INTEGER);
});

test('majorityVoteResult: won at a majority of grants, lost when a majority is out of reach, pending otherwise', () => {
  assert.equal(majorityVoteResult(set(), votes({})), 'won');
  assert.equal(majorityVoteResult(set(1), votes({ 1: true })), 'won');
  assert.equal(majorityVoteResult(set(1), votes({ 1: false })), 'lost');
  assert.equal(majorityVoteResult(set(1, 2, 3), votes({ 1: true })), 'pending');
  assert.equal(majorityVoteResult(set(1, 2, 3), votes({ 1: true, 2: true })), 'won');
  assert.equal(majorityVoteResult(set(1, 2, 3), votes({ 1: true, 2: false })), 'pending');
  assert.equal(majorityVoteResult(set(1, 2, 3), votes({ 1: true, 2: false, 3: false })), 'lost');
  assert.equal(majorityVoteResult(set(1, 2, 3, 4), votes({ 1: true, 2: true, 3: false })), 'pending', '2 of 4 is no majority; 4 may still grant');
  assert.equal(majorityVoteResult(set(1, 2, 3, 4), votes({ 1: true, 2: false, 3: false })), 'lost');
  // Votes of non-members are ignored.
  assert.equal(majorityVoteResult(set(1, 2, 3), votes({ 1: true, 7: true, 8: true })), 'pending');
});

test('jointCommitted: the smaller of the two majorities', () => {
  const a = acked({ 1: 9, 2: 8, 3: 7, 4: 2, 5: 1 });
  assert.equal(jointCommitted([set(1, 2, 3), set()], a), 8);
  assert.equal(jointCommitted([set(1, 4, 5), set(1, 2, 3)], a), 2);
  assert.equal(jointCommitted([set(1, 2, 3), set(1, 4, 5)], a), 2, 'symmetric');
});

test('jointVoteResult: a decision needs both halves', () => {
  const inc = set(1, 2, 3);
  const out = set(1, 4, 5);
  assert.equal(jointVoteResult([inc, set()], votes({ 1: true, 2: true })), 'won');
  assert.equal(jointVoteResult([inc, out], votes({ 1: true, 2: true })), 'pending', 'won in C_new, pending in C_old');
  assert.equal(jointVoteResult([inc, out], votes({ 1: true, 2: true, 4: true })), 'won');
  assert.equal(jointVoteResult([inc, out], votes({ 1: true, 2: true, 4: false, 5: false })), 'lost', 'lost in C_old');
  assert.equal(jointVoteResult([inc, out], votes({ 2: false, 3: false, 4: true, 5: true })), 'lost', 'lost in C_new');
});

test('jointIds: the sorted union of both halves', () => {
  assert.deepEqual(jointIds([set(3, 1, 2), set(5, 1)]), [1, 2, 3, 5]);
  assert.deepEqual(jointIds([set(), set()]), []);
});
