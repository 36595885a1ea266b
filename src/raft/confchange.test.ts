import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError, isTesseraError } from '../base/index.js';
import { Changer, checkConfigInvariants, confChangeKind, restoreConfig, type ChangeResult } from './confchange.js';
import { Progress, configToString, type TrackerConfig } from './tracker.js';
import type { ConfChangeSingle, ConfState, NodeId } from './types.js';

const OPTIONS = { lastIndex: 10, maxInflight: 256, maxInflightBytes: 0 };

function cs(voters: NodeId[], extra: Partial<ConfState> = {}): ConfState {
  return { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false, ...extra };
}

function start(state: ConfState): ChangeResult {
  return restoreConfig(state, OPTIONS);
}

function changer(r: ChangeResult): Changer {
  return new Changer(r.config, r.progress, OPTIONS);
}

const v = (nodeId: NodeId): ConfChangeSingle => ({ type: 'add-node', nodeId });
const l = (nodeId: NodeId): ConfChangeSingle => ({ type: 'add-learner', nodeId });
const r = (nodeId: NodeId): ConfChangeSingle => ({ type: 'remove-node', nodeId });

/** Asserts an INVALID_ARGUMENT TesseraError whose message names the rule. */
function assertInvalid(fn: () => unknown, rule: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isTesseraError(err, 'INVALID_ARGUMENT'), `expected INVALID_ARGUMENT, got ${String(err)}`);
    assert.equal(err.message, `invalid membership change: ${rule}`);
    return true;
  });
}

test('simple: add a voter, add a learner, remove a node, one voter at a time', () => {
  let cur = start(cs([1, 2, 3]));
  cur = changer(cur).simple([v(4)]);
  assert.equal(configToString(cur.config), 'voters=(1 2 3 4)');
  assert.equal(cur.progress.get(4)?.next, 10, 'a new peer is probed from the leader last index');
  assert.equal(cur.progress.get(4)?.recentActive, true, 'so that CheckQuorum does not depose the leader before it is heard');
  cur = changer(cur).simple([l(5)]);
  assert.equal(configToString(cur.config), 'voters=(1 2 3 4) learners=(5)');
  assert.equal(cur.progress.get(5)?.isLearner, true);
  cur = changer(cur).simple([r(2)]);
  assert.equal(configToString(cur.config), 'voters=(1 3 4) learners=(5)');
  assert.equal(cur.progress.has(2), false);
  // Several changes touching one voter, or none, are still simple.
  cur = changer(cur).simple([l(6), l(7), r(7)]);
  assert.equal(configToString(cur.config), 'voters=(1 3 4) learners=(5 6)');
});

test('simple: promoting a learner keeps its progress; demoting a voter keeps its progress as a learner', () => {
  let cur = start(cs([1, 2, 3], { learners: [4] }));
  (cur.progress.get(4) as Progress).match = 7;
  cur = changer(cur).simple([v(4)]);
  assert.equal(configToString(cur.config), 'voters=(1 2 3 4)');
  assert.equal(cur.progress.get(4)?.match, 7);
  assert.equal(cur.progress.get(4)?.isLearner, false);
  cur = changer(cur).simple([l(2)]);
  assert.equal(configToString(cur.config), 'voters=(1 3 4) learners=(2)');
  assert.equal(cur.progress.get(2)?.isLearner, true);
});

test('simple: removing an unknown node, or a node id 0, is a no-op', () => {
  const cur = changer(start(cs([1, 2, 3]))).simple([r(9), v(0)]);
  assert.equal(configToString(cur.config), 'voters=(1 2 3)');
});

test('invalid: more than one voter changed without entering a joint configuration', () => {
  const cur = start(cs([1, 2, 3]));
  assertInvalid(() => changer(cur).simple([v(4), v(5)]), 'more than one voter changed without entering a joint configuration');
  assertInvalid(() => changer(cur).simple([r(1), v(4)]), 'more than one voter changed without entering a joint configuration');
  assertInvalid(() => changer(cur).simple([l(1), l(2)]), 'more than one voter changed without entering a joint configuration');
});

test('invalid: removed all voters', () => {
  assertInvalid(() => changer(start(cs([1]))).simple([r(1)]), 'removed all voters');
  assertInvalid(() => changer(start(cs([1, 2]))).enterJoint(true, [r(1), r(2)]), 'removed all voters');
  assertInvalid(() => changer(start(cs([1]))).simple([l(1)]), 'removed all voters');
});

test('invalid: a simple change or entering a joint configuration while joint; leaving when not joint; a zero-voter config', () => {
  const joint = changer(start(cs([1, 2, 3]))).enterJoint(false, [v(4)]);
  assertInvalid(() => changer(joint).simple([v(5)]), "can't apply a simple config change in a joint config");
  assertInvalid(() => changer(joint).enterJoint(false, [v(5)]), 'config is already joint; leave it before entering another');
  assertInvalid(() => changer(start(cs([1, 2, 3]))).leaveJoint(), "can't leave a non-joint config");
  assertInvalid(() => changer(start(cs([]))).enterJoint(false, [v(1)]), 'cannot make a zero-voter config joint');
});

test('a failed change leaves the current configuration and progress untouched', () => {
  const cur = start(cs([1, 2, 3], { learners: [4] }));
  const before = configToString(cur.config);
  assertInvalid(() => changer(cur).simple([v(4), v(5)]), 'more than one voter changed without entering a joint configuration');
  assert.equal(configToString(cur.config), before);
  assert.equal(cur.progress.get(4)?.isLearner, true, 'the promotion attempt did not leak into the live progress');
  assert.equal(cur.progress.has(5), false);
});

test('enterJoint: C_old becomes the outgoing half; leaveJoint drops it and removes its progress', () => {
  const old = start(cs([1, 2, 3]));
  const joint = changer(old).enterJoint(true, [v(4), r(3)]);
  assert.equal(configToString(joint.config), 'voters=(1 2 4)&&(1 2 3) autoleave');
  assert.equal(joint.progress.has(3), true, 'still a voter of C_old');
  const left = changer(joint).leaveJoint();
  assert.equal(configToString(left.config), 'voters=(1 2 4)');
  assert.equal(left.progress.has(3), false);
  assert.equal(configToString(old.config), 'voters=(1 2 3)', 'the input configuration is not mutated');
});

test('enterJoint: demoting an outgoing voter parks it in learners_next until the joint configuration is left', () => {
  const joint = changer(start(cs([1, 2, 3]))).enterJoint(false, [l(3), v(4)]);
  assert.equal(configToString(joint.config), 'voters=(1 2 4)&&(1 2 3) learners_next=(3)');
  assert.equal(joint.progress.get(3)?.isLearner, false, 'still votes in C_old');
  const left = changer(joint).leaveJoint();
  assert.equal(configToString(left.config), 'voters=(1 2 4) learners=(3)');
  assert.equal(left.progress.get(3)?.isLearner, true);
});

test('enterJoint: re-adding a node removed in the same change, and promoting a learner', () => {
  const joint = changer(start(cs([1, 2, 3], { learners: [5] }))).enterJoint(false, [r(2), v(2), v(5)]);
  assert.equal(configToString(joint.config), 'voters=(1 2 3 5)&&(1 2 3)');
  assert.equal(joint.progress.get(5)?.isLearner, false);
});

test('restoreConfig rebuilds a configuration (joint ones too) from a ConfState', () => {
  const state = cs([1, 2, 4], { votersOutgoing: [1, 2, 3], learners: [5], learnersNext: [3], autoLeave: true });
  const restored = start(state);
  assert.equal(configToString(restored.config), 'voters=(1 2 4)&&(1 2 3) learners=(5) learners_next=(3) autoleave');
  assert.deepEqual([...restored.progress.keys()].sort(), [1, 2, 3, 4, 5]);
  assert.equal(restored.progress.get(5)?.isLearner, true);
  assert.equal(restored.progress.get(3)?.isLearner, false);
});

test('checkConfigInvariants: a learner that is also a voter, or a progress for a non-member, is a bug', () => {
  const prs = new Map([[1, new Progress({ next: 1, maxInflight: 1, maxInflightBytes: 0, isLearner: false })]]);
  const bad: TrackerConfig = { voters: [new Set([1]), new Set()], learners: new Set([1]), learnersNext: new Set(), autoLeave: false };
  assert.throws(() => checkConfigInvariants(bad, prs), AssertionError);
  const orphan: TrackerConfig = { voters: [new Set(), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false };
  assert.throws(() => checkConfigInvariants(orphan, prs), AssertionError);
  const autoLeaveOutsideJoint: TrackerConfig = { voters: [new Set([1]), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: true };
  assert.throws(() => checkConfigInvariants(autoLeaveOutsideJoint, prs), AssertionError);
});

test('confChangeKind: empty leaves; explicit/implicit or several changes enter a joint config; one auto change is simple', () => {
  assert.equal(confChangeKind({ transition: 'auto', changes: [] }), 'leave-joint');
  assert.equal(confChangeKind({ transition: 'explicit', changes: [] }), 'leave-joint');
  assert.equal(confChangeKind({ transition: 'auto', changes: [v(4)] }), 'simple');
  assert.equal(confChangeKind({ transition: 'auto', changes: [v(4), v(5)] }), 'enter-joint');
  assert.equal(confChangeKind({ transition: 'implicit', changes: [v(4)] }), 'enter-joint');
  assert.equal(confChangeKind({ transition: 'explicit', changes: [v(4)] }), 'enter-joint');
});
