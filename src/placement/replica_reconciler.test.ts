import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localityProblem } from '../kv/index.js';
import { PROMOTE_MAX_LAG_ENTRIES, chooseReplicas, diversity, learnerCaughtUp, nextStep } from './replica_reconciler.js';

type Role = 'voter' | 'learner';
const roles = (o: Record<number, Role>): Map<number, Role> => new Map(Object.entries(o).map(([k, v]) => [Number(k), v]));

function describe(step: ReturnType<typeof nextStep>): string {
  if (step === undefined) return 'none';
  if (step.kind === 'transfer') return `transfer ${step.to}`;
  return step.change.changes.map((c) => `${c.type} ${c.nodeId}`).join(',');
}

test('nextStep: a range follows range 1: add as learner, promote once caught up, remove the departed, never the leader itself before handing over', () => {
  const all = (): boolean => true;
  const none = (): boolean => false;
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), 1, all)), 'none');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), 1, all)), 'add-learner 4');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'voter' }), 1, none)), 'none', 'a learner behind waits');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'voter' }), 1, all)), 'add-node 4');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'voter' }), roles({ 1: 'voter', 2: 'voter', 4: 'voter' }), 1, all)), 'remove-node 3');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 2: 'voter', 3: 'voter' }), 1, all)), 'transfer 2', 'the leader hands over before it is removed');
  // Additions come before removals, so a replacement never leaves the range with fewer replicas than it had.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, all)), 'add-learner 5');
  // A voter leaves only once its replacement votes; a learner may leave any time.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, none)), 'none');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'learner', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, none)), 'remove-node 3');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'voter' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, none)), 'remove-node 3');
});

test('nextStep: a move swaps voters in one joint-consensus change once the learner is caught up; the leader that is to go hands over first', () => {
  const all = (): boolean => true;
  const swap = nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, all);
  assert.equal(describe(swap), 'add-node 5,remove-node 3');
  // Two changes under 'auto' enter a joint configuration and leave it automatically (Raft thesis §4.3).
  assert.equal(swap?.kind === 'change' ? swap.change.transition : undefined, 'auto');
  // The leader's own voter is to go: leadership moves to a voter that stays, and that leader swaps.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 2: 'voter', 3: 'voter', 5: 'voter' }), 1, all)), 'transfer 2');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 2: 'voter', 3: 'voter', 5: 'voter' }), 2, all)), 'add-node 5,remove-node 1');
  // Growing (no voter to go): the learner is promoted alone.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, all)), 'add-node 5');
});

const ids = (m: ReadonlyMap<number, Role>): string => [...m.keys()].sort((a, b) => a - b).join(',');
const load = (o: Record<number, number>): Map<number, number> => new Map(Object.entries(o).map(([k, v]) => [Number(k), v]));

test('chooseReplicas: places a range on the least loaded live members, keeps its current ones, replaces the dead, and balances one move at a time', () => {
  const candidates = [1, 2, 3, 4, 5];
  // A new range (its parent's three) keeps them.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), candidates, replicas: 3, load: load({ 1: 5, 2: 5, 3: 5, 4: 4, 5: 4 }), allowBalance: true })), '1,2,3');
  // Too few: the least loaded others join.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter' }), candidates, replicas: 3, load: load({ 1: 1, 2: 3, 3: 0, 4: 2, 5: 0 }), allowBalance: false })), '1,3,5');
  // A dead member (not a candidate) is replaced by the least loaded other.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), candidates: [1, 2, 4, 5], replicas: 3, load: load({ 4: 9, 5: 1 }), allowBalance: false })), '1,2,5');
  // Too many (mid-move): the most loaded goes; a voter is kept over a learner on equal load.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), candidates, replicas: 3, load: load({ 1: 2, 2: 2, 3: 7, 4: 3 }), allowBalance: true })), '1,2,4');
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'learner' }), candidates: [1, 2, 3], replicas: 2, load: load({ 1: 2, 2: 2, 3: 2 }), allowBalance: true })), '1,2');
  // Balance: the most loaded gives way only to one at least two replicas lighter, and only when allowed.
  const settled = roles({ 1: 'voter', 2: 'voter', 3: 'voter' });
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 6, 2: 5, 3: 5, 4: 4, 5: 5 }), allowBalance: true })), '2,3,4');
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 6, 2: 5, 3: 5, 4: 4, 5: 5 }), allowBalance: false })), '1,2,3');
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 5, 2: 5, 3: 5, 4: 4, 5: 4 }), allowBalance: true })), '1,2,3', 'one apart: no move');
  // Fewer candidates than replicas: all of them.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter' }), candidates: [1, 2], replicas: 3, load: load({}), allowBalance: true })), '1,2');
});

test('learnerCaughtUp: only a learner that replicates and acknowledged the range\'s log is promoted, however short the log (seed 937)', () => {
  const log = (first: number, last: number) => ({ firstIndex: () => first, lastIndex: () => last });
  // A range just split: its log starts at 6 and ends at 9. A learner on a node that is down never answered.
  assert.equal(learnerCaughtUp({ state: 'probe', match: 0 }, log(6, 9)), false);
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 0 }, log(6, 9)), false);
  assert.equal(learnerCaughtUp({ state: 'snapshot', match: 0 }, log(6, 9)), false);
  assert.equal(learnerCaughtUp(undefined, log(6, 9)), false);
  // Acknowledged the log (or a snapshot at its start): caught up.
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 5 }, log(6, 9)), true);
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 9 }, log(6, 9)), true);
  // Behind the compacted start of the log (it needs a snapshot): not caught up.
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 3 }, log(100, 105)), false);
  // Lag counts in entries.
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 1000 }, log(1, 1000 + PROMOTE_MAX_LAG_ENTRIES)), true);
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 1000 }, log(1, 1001 + PROMOTE_MAX_LAG_ENTRIES)), false);
});

test('chooseReplicas: with --locality, a range\'s replicas spread across localities before load counts; moves make a range more diverse, and balance never makes it less', () => {
  const zones: Record<number, string> = { 1: 'zone=a', 2: 'zone=a', 3: 'zone=b', 4: 'zone=b', 5: 'zone=c' };
  const localityOf = (id: number): string | undefined => zones[id];
  const load = (entries: [number, number][]): Map<number, number> => new Map(entries);
  const ids = (m: Map<number, unknown>): number[] => [...m.keys()].sort((a, b) => a - b);
  // A new range: one replica per zone, the least loaded in each.
  const fresh = chooseReplicas({ current: new Map(), candidates: [1, 2, 3, 4, 5], replicas: 3, load: load([[1, 5], [2, 1], [3, 0], [4, 2], [5, 9]]), allowBalance: false, localityOf });
  assert.deepEqual(ids(fresh), [2, 3, 5]);
  // Without localities, the three least loaded.
  assert.deepEqual(ids(chooseReplicas({ current: new Map(), candidates: [1, 2, 3, 4, 5], replicas: 3, load: load([[1, 5], [2, 1], [3, 0], [4, 2], [5, 9]]), allowBalance: false })), [2, 3, 4]);
  // Two replicas in zone a: the more loaded gives way to zone c, once balancing is allowed.
  const crowded = new Map<number, 'voter'>([[1, 'voter'], [2, 'voter'], [3, 'voter']]);
  const loads = load([[1, 3], [2, 2], [3, 2], [4, 2], [5, 4]]);
  assert.deepEqual(ids(chooseReplicas({ current: crowded, candidates: [1, 2, 3, 4, 5], replicas: 3, load: loads, allowBalance: false, localityOf })), [1, 2, 3]);
  assert.deepEqual(ids(chooseReplicas({ current: crowded, candidates: [1, 2, 3, 4, 5], replicas: 3, load: loads, allowBalance: true, localityOf })), [2, 3, 5]);
  // Spread already: the loaded member in zone a gives way only within zone a (node 2), never to zone b's idle node 4.
  const spread = new Map<number, 'voter'>([[1, 'voter'], [3, 'voter'], [5, 'voter']]);
  assert.deepEqual(ids(chooseReplicas({ current: spread, candidates: [1, 2, 3, 4, 5], replicas: 3, load: load([[1, 9], [2, 5], [3, 1], [4, 0], [5, 1]]), allowBalance: true, localityOf })), [2, 3, 5]);
  assert.deepEqual(ids(chooseReplicas({ current: spread, candidates: [1, 3, 4, 5], replicas: 3, load: load([[1, 9], [3, 1], [4, 0], [5, 1]]), allowBalance: true, localityOf })), [1, 3, 5]);
  // Tiers: another region before another zone of the same region.
  const tiered: Record<number, string> = { 1: 'region=x,zone=1', 2: 'region=x,zone=2', 3: 'region=y,zone=1' };
  assert.deepEqual(ids(chooseReplicas({ current: new Map([[1, 'voter']]), candidates: [1, 2, 3], replicas: 2, load: load([[3, 5]]), allowBalance: false, localityOf: (id) => tiered[id] })), [1, 3]);
  assert.equal(diversity([['region=x', 'zone=1'], ['region=x', 'zone=2']]), 1);
  assert.equal(diversity([['region=x', 'zone=1'], ['region=y', 'zone=1']]), 2);
  assert.equal(diversity([[], []]), 0);
});

test('localityProblem: --locality is comma-separated key=value tiers, each key once, within its limits', () => {
  assert.equal(localityProblem(''), undefined);
  assert.equal(localityProblem('zone=a'), undefined);
  assert.equal(localityProblem('region=us-east1,zone=us-east1-b,rack=r:12'), undefined);
  for (const bad of ['zone', 'zone=', '=a', 'zone=a,zone=b', 'zone=a b', 'zone=a,', `zone=${'x'.repeat(300)}`, Array.from({ length: 9 }, (_, i) => `t${i}=v`).join(',')]) {
    assert.equal(typeof localityProblem(bad), 'string', bad);
  }
});
