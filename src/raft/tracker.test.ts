import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError } from '../base/index.js';
import { Inflights, Progress, ProgressTracker, configToString, confStateOf, isJoint } from './tracker.js';

function progress(fields: Partial<Pick<Progress, 'match' | 'next'>> & { maxInflight?: number; isLearner?: boolean } = {}): Progress {
  const pr = new Progress({ next: fields.next ?? 1, maxInflight: fields.maxInflight ?? 256, maxInflightBytes: 0, isLearner: fields.isLearner ?? false });
  pr.match = fields.match ?? 0;
  return pr;
}

test('Inflights: full at the message limit; freeLE frees every message up to an index', () => {
  const inf = new Inflights(3, 0);
  inf.add(2, 10);
  inf.add(4, 10);
  assert.equal(inf.full(), false);
  inf.add(7, 10);
  assert.equal(inf.full(), true);
  assert.equal(inf.count(), 3);
  inf.freeLE(1);
  assert.equal(inf.count(), 3, 'nothing at or below 1');
  inf.freeLE(5);
  assert.equal(inf.count(), 1, 'frees 2 and 4');
  assert.equal(inf.full(), false);
  inf.freeLE(100);
  assert.equal(inf.count(), 0);
});

test('Inflights: the byte limit makes the window full too', () => {
  const inf = new Inflights(100, 25);
  inf.add(1, 10);
  inf.add(2, 10);
  assert.equal(inf.full(), false);
  inf.add(3, 10);
  assert.equal(inf.full(), true, '30 ≥ 25 bytes');
  inf.freeLE(1);
  assert.equal(inf.full(), false, '20 bytes after freeing one');
});

test('Inflights: freeFirstOne frees only the oldest message; reset empties the window', () => {
  const inf = new Inflights(2, 0);
  inf.add(3, 1);
  inf.add(5, 1);
  inf.freeFirstOne();
  assert.equal(inf.count(), 1);
  assert.equal(inf.full(), false);
  inf.add(6, 1);
  inf.reset();
  assert.equal(inf.count(), 0);
  inf.freeFirstOne(); // no-op when empty
  assert.equal(inf.count(), 0);
});

test('Inflights: adding to a full window or out of order is a bug', () => {
  const inf = new Inflights(1, 0);
  inf.add(3, 1);
  assert.throws(() => inf.add(4, 1), AssertionError);
  const grow = new Inflights(5, 0);
  grow.add(3, 1);
  assert.throws(() => grow.add(3, 1), AssertionError);
});

test('Progress.maybeUpdate: raises match and next, reports whether it was news', () => {
  const pr = progress({ match: 2, next: 5 });
  assert.equal(pr.maybeUpdate(1), false, 'stale');
  assert.equal(pr.match, 2);
  assert.equal(pr.next, 5, 'next never moves back on an acknowledgement');
  assert.equal(pr.maybeUpdate(7), true);
  assert.equal(pr.match, 7);
  assert.equal(pr.next, 8);
});

test('Progress.maybeDecrTo in StateReplicate: back to match+1 unless the rejection is stale', () => {
  const pr = progress({ match: 5, next: 10 });
  pr.becomeReplicate();
  pr.next = 10;
  assert.equal(pr.maybeDecrTo(4, 4), false, 'rejected ≤ match: stale');
  assert.equal(pr.next, 10);
  assert.equal(pr.maybeDecrTo(9, 2), true);
  assert.equal(pr.next, 6, 'match + 1; the hint below match is ignored');
});

test('Progress.maybeDecrTo in StateProbe: only the outstanding probe counts; the hint moves next down, never below match+1', () => {
  const pr = progress({ match: 3, next: 10 });
  assert.equal(pr.maybeDecrTo(7, 4), false, 'not the probe we sent (next-1 = 9)');
  assert.equal(pr.next, 10);
  assert.equal(pr.maybeDecrTo(9, 6), true);
  assert.equal(pr.next, 7, 'hint 6 + 1');
  assert.equal(pr.maybeDecrTo(6, 0), true);
  assert.equal(pr.next, 4, 'never below match + 1');
  assert.equal(pr.probeSent, false, 'ready to probe again');
});

test('Progress states: probe sends one append at a time, replicate streams within the window, snapshot sends nothing', () => {
  const pr = progress({ match: 4, next: 5, maxInflight: 2 });
  assert.equal(pr.state, 'probe');
  assert.equal(pr.isPaused(), false);
  pr.sentEntries(1, 5, 10);
  assert.equal(pr.isPaused(), true, 'waiting for the probe answer');
  assert.equal(pr.next, 5, 'probing does not advance next');
  pr.maybeUpdate(5);
  assert.equal(pr.isPaused(), false, 'an acknowledgement ends the wait');
  pr.becomeReplicate();
  assert.equal(pr.next, 6);
  pr.sentEntries(2, 7, 20);
  assert.equal(pr.next, 8, 'replicate advances next optimistically');
  assert.equal(pr.isPaused(), false);
  pr.sentEntries(1, 8, 10);
  assert.equal(pr.isPaused(), true, 'two messages in flight');
  pr.sentEntries(0, 8, 0); // an empty append is not tracked
  assert.equal(pr.inflights.count(), 2);
  pr.becomeSnapshot(20);
  assert.equal(pr.isPaused(), true);
  assert.equal(pr.inflights.count(), 0, 'changing state resets the window');
});

test('Progress.becomeProbe after a snapshot resumes after the snapshot index (or match)', () => {
  const pr = progress({ match: 3, next: 4 });
  pr.becomeSnapshot(10);
  pr.becomeProbe();
  assert.equal(pr.state, 'probe');
  assert.equal(pr.next, 11);
  assert.equal(pr.pendingSnapshot, 0);
  const failed = progress({ match: 3, next: 4 });
  failed.becomeSnapshot(10);
  failed.pendingSnapshot = 0; // the transport reported failure
  failed.becomeProbe();
  assert.equal(failed.next, 4);
});

test('Progress.toString shows the state the golden files print', () => {
  const pr = progress({ match: 2, next: 3, isLearner: true });
  assert.equal(pr.toString(), 'probe match=2 next=3 learner inactive');
  pr.recentActive = true;
  pr.becomeReplicate();
  pr.sentEntries(1, 3, 1);
  assert.equal(pr.toString(), 'replicate match=2 next=4 learner inflight=1');
});

function tracker(voters: number[], outgoing: number[] = [], learners: number[] = []): ProgressTracker {
  const t = new ProgressTracker(256, 0);
  t.config = { voters: [new Set(voters), new Set(outgoing)], learners: new Set(learners), learnersNext: new Set(), autoLeave: false };
  for (const id of new Set([...voters, ...outgoing, ...learners])) t.progress.set(id, progress({ isLearner: learners.includes(id) }));
  return t;
}

test('ProgressTracker.committed: quorum of voters only (learners do not count), both halves when joint', () => {
  const t = tracker([1, 2, 3], [], [4]);
  const m = { 1: 9, 2: 4, 3: 2, 4: 9 };
  for (const [id, match] of Object.entries(m)) (t.progress.get(Number(id)) as Progress).match = match;
  assert.equal(t.committed(), 4);
  const j = tracker([1, 2, 3], [1, 4, 5]);
  const mj = { 1: 9, 2: 8, 3: 7, 4: 3, 5: 1 };
  for (const [id, match] of Object.entries(mj)) (j.progress.get(Number(id)) as Progress).match = match;
  assert.equal(j.committed(), 3);
});

test('ProgressTracker votes: the first vote of each voter counts; learners are ignored in the tally', () => {
  const t = tracker([1, 2, 3], [], [4]);
  t.recordVote(1, true);
  t.recordVote(4, true);
  assert.equal(t.tallyVotes().result, 'pending');
  t.recordVote(2, false);
  t.recordVote(2, true); // a second answer from 2 is ignored
  assert.deepEqual(t.tallyVotes(), { granted: 1, rejected: 1, result: 'pending' });
  t.recordVote(3, true);
  assert.deepEqual(t.tallyVotes(), { granted: 2, rejected: 1, result: 'won' });
  t.resetVotes();
  assert.equal(t.tallyVotes().result, 'pending');
});

test('ProgressTracker.quorumActive: the leader itself counts; learners do not', () => {
  const t = tracker([1, 2, 3], [], [4, 5]);
  for (const id of [4, 5]) (t.progress.get(id) as Progress).recentActive = true;
  assert.equal(t.quorumActive(1), false, 'only the leader and learners are active');
  (t.progress.get(2) as Progress).recentActive = true;
  assert.equal(t.quorumActive(1), true);
});

test('ProgressTracker.quorumLeaseTick: the tick that a quorum (counting the leader now) has echoed', () => {
  const t = tracker([1, 2, 3]);
  (t.progress.get(2) as Progress).leaseAckTick = 5;
  (t.progress.get(3) as Progress).leaseAckTick = 3;
  assert.equal(t.quorumLeaseTick(1, 9), 5);
  (t.progress.get(2) as Progress).leaseAckTick = -1;
  assert.equal(t.quorumLeaseTick(1, 9), 3);
  (t.progress.get(3) as Progress).leaseAckTick = -1;
  assert.equal(t.quorumLeaseTick(1, 9), -1, 'no lease without acknowledgements');
});

test('configToString, confStateOf, isJoint describe a configuration', () => {
  const cfg = { voters: [new Set([3, 1, 2]), new Set([1, 2, 4])] as const, learners: new Set([7]), learnersNext: new Set([4]), autoLeave: true };
  assert.equal(isJoint(cfg), true);
  assert.equal(configToString(cfg), 'voters=(1 2 3)&&(1 2 4) learners=(7) learners_next=(4) autoleave');
  assert.deepEqual(confStateOf(cfg), { voters: [1, 2, 3], votersOutgoing: [1, 2, 4], learners: [7], learnersNext: [4], autoLeave: true });
  assert.equal(isJoint({ voters: [new Set([1]), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false }), false);
});
