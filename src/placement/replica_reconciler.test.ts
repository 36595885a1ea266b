import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextStep } from './replica_reconciler.js';

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
});
