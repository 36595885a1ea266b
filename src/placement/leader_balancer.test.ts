import { test } from 'node:test';
import assert from 'node:assert/strict';
import { META_RANGE } from '../kv/index.js';
import { type LeaderView, chooseLeaderTransfer } from './leader_balancer.js';

/** `leaders[i]` leads range i + 2; on node `self` the ranges it leads know which voters are caught up. */
function views(self: number, leaders: readonly number[], ready: readonly number[] = [1, 2, 3]): LeaderView[] {
  return leaders.map((leader, i) => ({ rangeId: i + 2, leader, readyVoters: leader === self ? ready.filter((n) => n !== self) : [] }));
}

test('leader balance: a node over the mean hands a range to the caught-up voter that leads fewest; balanced counts move nothing', () => {
  // Node 1 leads 5 of 6 ranges, node 2 one, node 3 none: give one to node 3.
  assert.deepEqual(chooseLeaderTransfer(1, [1, 2, 3], views(1, [1, 1, 1, 1, 1, 2])), { rangeId: 2, to: 3, reason: 'count' });
  // Only node 2 is caught up: it gets it.
  assert.deepEqual(chooseLeaderTransfer(1, [1, 2, 3], views(1, [1, 1, 1, 1, 1, 2], [2])), { rangeId: 2, to: 2, reason: 'count' });
  // Within the slack of the mean (2 each, or 3/2/1): nothing.
  assert.equal(chooseLeaderTransfer(1, [1, 2, 3], views(1, [1, 1, 2, 2, 3, 3])), undefined);
  assert.equal(chooseLeaderTransfer(1, [1, 2, 3], views(1, [1, 1, 1, 2, 2, 3])), undefined);
  // Another node's surplus is not this node's to move.
  assert.equal(chooseLeaderTransfer(2, [1, 2, 3], views(2, [1, 1, 1, 1, 1, 2])), undefined);
  // A lone node, or no voter caught up: nothing.
  assert.equal(chooseLeaderTransfer(1, [1], views(1, [1, 1, 1])), undefined);
  assert.equal(chooseLeaderTransfer(1, [1, 2, 3], views(1, [1, 1, 1, 1, 1, 1], [])), undefined);
});

test('leader balance: the metadata range stays where it is', () => {
  const onlyMeta: LeaderView[] = [
    { rangeId: META_RANGE, leader: 1, readyVoters: [2, 3] },
    { rangeId: 5, leader: 1, readyVoters: [] },
    { rangeId: 6, leader: 1, readyVoters: [] },
  ];
  assert.equal(chooseLeaderTransfer(1, [1, 2, 3], onlyMeta), undefined);
});

test('leader balance: repeated rounds on every node converge to within the slack of the mean', () => {
  const leaders = new Map<number, number>(Array.from({ length: 30 }, (_, i) => [i + 2, 1]));
  for (let round = 0; round < 40; round++) {
    for (const self of [1, 2, 3]) {
      const v: LeaderView[] = [...leaders].map(([rangeId, leader]) => ({ rangeId, leader, readyVoters: leader === self ? [1, 2, 3].filter((n) => n !== self) : [] }));
      const t = chooseLeaderTransfer(self, [1, 2, 3], v);
      if (t !== undefined) leaders.set(t.rangeId, t.to);
    }
  }
  const counts = [1, 2, 3].map((n) => [...leaders.values()].filter((l) => l === n).length);
  assert.ok(Math.max(...counts) <= 10 + 1 && Math.min(...counts) >= 10 - 2, `leaders per node ${counts.join('/')}`);
});

test('leader balance under placement: a voter that leads at least two fewer takes one, though none of this node\'s voters leads fewer than the mean (bench:scale, 3/3/3/5/6/4)', () => {
  // Six nodes lead 3/3/3/5/6/4 (mean 4); node 5's ranges have voters only on nodes 4 (5 leaders) and 6 (4 leaders).
  const leaders = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6];
  assert.deepEqual(chooseLeaderTransfer(5, [1, 2, 3, 4, 5, 6], views(5, leaders, [4, 6])), { rangeId: 16, to: 6, reason: 'count' });
  // Only node 4, one fewer: a move would just swap the two; nothing.
  assert.equal(chooseLeaderTransfer(5, [1, 2, 3, 4, 5, 6], views(5, leaders, [4])), undefined);
});
