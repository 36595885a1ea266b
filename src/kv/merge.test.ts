import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeId } from '../raft/index.js';
import { encodeCommand } from './commands.js';
import { type KvNode, META_RANGE } from './kv_node.js';
import type { CommandResult } from './mvcc_state_machine.js';
import { Cluster, bounds } from './kv_cluster.testlib.js';

const enc = new TextEncoder();

/** Splits range 1 at `m` then at `t`: 1 [,m), a [m,t), b [t,); returns a and b. */
function threeRanges(c: Cluster): { a: number; b: number } {
  c.tick(30);
  const s1 = c.split(c.leaderOf(META_RANGE), META_RANGE, 'm');
  assert.ok(!(s1 instanceof Error), String(s1));
  c.tick(30);
  const a = s1.right.rangeId;
  const s2 = c.split(c.leaderOf(a), a, 't');
  assert.ok(!(s2 instanceof Error), String(s2));
  c.tick(30);
  return { a, b: s2.right.rangeId };
}

/** Moves the leadership of `rangeId` to `to` and ticks until it lands. */
function lead(c: Cluster, rangeId: number, to: NodeId): void {
  for (let i = 0; i < 20 && c.leaderOf(rangeId).store.nodeId !== to; i++) {
    c.leaderOf(rangeId).store.transferLeader(rangeId, to);
    c.tick(5);
  }
  assert.equal(c.leaderOf(rangeId).store.nodeId, to, `range ${rangeId} led by ${to}`);
}

function digests(c: Cluster, rangeId: number): Set<string> {
  return new Set(c.ids.map((id) => (c.nodes.get(id) as KvNode).stateMachineOf(rangeId).digest()));
}

test('merge: split then merge; the left range serves the right one\'s keys on every replica, the right range is gone', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  for (const k of ['n', 'p']) c.put(c.leaderOf(a), a, k, `a-${k}`);
  for (const k of ['u', 'x']) c.put(c.leaderOf(b), b, k, `b-${k}`);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const out = c.merge(leader, a);
  assert.ok(!(out instanceof Error), String(out));
  assert.equal(out.rightRangeId, b);
  assert.equal(out.merged.end, undefined);
  assert.equal(out.merged.epoch.version, 4, 'max(3, 3) + 1');
  c.tick(30);
  for (const id of c.ids) {
    const node = c.nodes.get(id) as KvNode;
    assert.deepEqual(bounds(node), ['1:[,m)', `${a}:[m,)`], `node ${id}`);
    assert.equal(node.store.replica(b), undefined, `node ${id} retired range ${b}`);
    for (const k of ['n', 'p']) assert.equal(c.value(id, k), `a-${k}`);
    for (const k of ['u', 'x']) assert.equal(c.value(id, k), `b-${k}`);
    node.stateMachineOf(a).mvcc.checkInvariants();
  }
  assert.equal(digests(c, a).size, 1);
  // The merged range takes writes to the right range's old keys.
  const r = c.put(c.leaderOf(a), a, 'z', 'merged');
  assert.equal(r.kind, 'txn', JSON.stringify(r));
  c.tick(5);
  for (const id of c.ids) assert.equal(c.value(id, 'z'), 'merged');
  // A merge of the last range (no right neighbour) is refused.
  const none = c.merge(c.leaderOf(a), a);
  assert.ok(none instanceof Error && none.code === 'RANGE_UNAVAILABLE', String(none));
});

test('merge: a write to the right range after its freeze is refused alike everywhere (RANGE_MISMATCH), and lands in the merged range when routed again', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  // The merge's first step alone: the right range is frozen (asked again by the merge, at no cost).
  let frozenResult: CommandResult | undefined;
  const version = leader.stateMachineOf(b).descriptor?.epoch.version ?? 0;
  const leftVersion = leader.stateMachineOf(a).descriptor?.epoch.version ?? 0;
  leader.requests.propose((requestId) => encodeCommand({ kind: 'freeze', requestId, version, leftRangeId: a, leftVersion }), (o) => (frozenResult = o.kind === 'applied' ? (o.result as CommandResult) : undefined), b);
  for (let i = 0; i < 50 && frozenResult === undefined; i++) c.tick(1);
  assert.equal(frozenResult?.kind, 'freeze', JSON.stringify(frozenResult));
  c.tick(5);
  for (const id of c.ids) assert.deepEqual(bounds(c.nodes.get(id) as KvNode), ['1:[,m)', `${a}:[m,t)`], `node ${id}: the frozen range is not routed`);
  const frozenRevision = leader.stateMachineOf(b).mvcc.currentRevision;
  const refused = c.put(leader, b, 'w', 'during');
  assert.ok(refused.kind === 'error' && refused.code === 'RANGE_MISMATCH', JSON.stringify(refused));
  const merged = c.merge(leader, a);
  assert.ok(!(merged instanceof Error), String(merged));
  // Routed again: the key is now the left range's.
  assert.equal(leader.router.rangeOf(enc.encode('w')), a);
  const ok = c.put(c.leaderOf(a), a, 'w', 'after');
  assert.equal(ok.kind, 'txn');
  assert.ok(ok.kind === 'txn' && ok.response.revision > frozenRevision);
  c.tick(10);
  for (const id of c.ids) assert.equal(c.value(id, 'w'), 'after');
  assert.equal(digests(c, a).size, 1);
});

test('merge: a replica whose right range lags holds the merge (and what follows) until the right range applied its freeze, then catches up', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const lagging = c.ids.find((id) => id !== leader.store.nodeId) as NodeId;
  const slow = c.nodes.get(lagging) as KvNode;
  // From here the lagging node's replica of b gets the leader's appends but never learns that they
  // committed: every commit index it is told is capped at what it had.
  const bReplica = slow.store.replica(b);
  const aReplica = slow.store.replica(a);
  assert.ok(bReplica !== undefined && aReplica !== undefined);
  const cap = bReplica.raw.raft.raftLog.committed;
  const realStep = bReplica.raw.step.bind(bReplica.raw);
  let blockB = true;
  bReplica.raw.step = (m) => {
    if (!blockB) return realStep(m);
    if (m.type === 'MsgApp') realStep({ ...m, commit: Math.min(m.commit, cap) });
  };
  let held = 0;
  const realHold = aReplica.raw.holdApplyFrom.bind(aReplica.raw);
  aReplica.raw.holdApplyFrom = (index) => {
    held++;
    realHold(index);
  };
  for (let i = 0; i < 5; i++) c.put(leader, b, `u${i}`, `b-${i}`);
  const out = c.merge(leader, a);
  assert.ok(!(out instanceof Error), String(out));
  c.tick(10);
  // The lagging node held its merge entry, and its merge gate told its replica of b that the freeze
  // committed (its log held it, of the same term): b caught up and the merge applied, with b still cut.
  assert.ok(held > 0, 'the merge entry was held');
  assert.equal(slow.store.replica(b), undefined, 'merged on the lagging node too');
  assert.equal(aReplica.raw.heldFrom, undefined);
  blockB = false;
  c.tick(20);
  for (const id of c.ids) {
    assert.deepEqual(bounds(c.nodes.get(id) as KvNode), ['1:[,m)', `${a}:[m,)`], `node ${id}`);
    for (let i = 0; i < 5; i++) assert.equal(c.value(id, `u${i}`), `b-${i}`, `node ${id} u${i}`);
  }
  assert.equal(digests(c, a).size, 1);
  // Writes after the merge reach the lagging node as well.
  c.put(c.leaderOf(a), a, 'v', 'later');
  c.tick(10);
  assert.equal(c.value(lagging, 'v'), 'later');
});

test('merge: the merge gate holds a merge whose right range is not on the node (never applied without its state)', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const lagging = c.ids.find((id) => id !== leader.store.nodeId) as NodeId;
  const slow = c.nodes.get(lagging) as KvNode;
  c.put(leader, b, 'u', 'last');
  const out = c.merge(leader, a);
  assert.ok(!(out instanceof Error), String(out));
  c.tick(5);
  // Rewind: pretend the lagging node's right replica has not applied the freeze, by asking its
  // gate directly with an index past what it applied; the left replica would hold.
  const right = slow.store.replica(b);
  assert.equal(right, undefined, 'the lagging node merged too, once caught up');
  assert.equal(slow.store.mergeGate(a, b, 10_000, 1), false, 'a right range that is not here holds the merge');
});

test('merge: a replica held at a merge whose right replica is gone asks the leader for a snapshot past it and installs it over its log (simulator seed 322)', () => {
  const c = new Cluster([1, 2, 3], { forward: true });
  const { a, b } = threeRanges(c);
  for (let i = 0; i < 3; i++) c.put(c.leaderOf(b), b, `u${i}`, `b-${i}`);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const stuck = c.ids.find((id) => id !== leader.store.nodeId) as NodeId;
  const node = c.nodes.get(stuck) as KvNode;
  const aReplica = node.store.replica(a);
  assert.ok(aReplica !== undefined);
  // The node's replica of a hears nothing while the merge commits without it.
  const realStep = aReplica.raw.step.bind(aReplica.raw);
  let deaf = true;
  aReplica.raw.step = (m) => {
    if (!deaf) realStep(m);
  };
  const out = c.merge(leader, a);
  assert.ok(!(out instanceof Error), String(out));
  // Its replica of b goes before its replica of a reaches the merge entry (replica GC found it merged away).
  node.store.removeReplica(b);
  c.tick(5);
  assert.equal(node.store.replica(b), undefined);
  let installed = 0;
  const realInstall = aReplica.installInLog.bind(aReplica);
  aReplica.installInLog = (batch, snapshot) => {
    installed++;
    realInstall(batch, snapshot);
  };
  deaf = false;
  c.tick(20);
  // Its log holds the merge and the entries after it; it applies none past the merge (nothing of b is here).
  const held = aReplica.raw.heldFrom;
  assert.ok(held !== undefined, 'held at the merge');
  assert.ok(aReplica.raw.raft.raftLog.committed >= held, 'the merge entry committed in its log');
  assert.equal(installed, 0);
  // Two request timeouts on, it asks the leader, whose snapshot its log covers: installed in place, log kept.
  c.tick(2 * 500 + 100);
  assert.equal(installed, 1, 'the snapshot was installed over the log');
  assert.equal(aReplica.raw.heldFrom, undefined);
  assert.ok(aReplica.log.firstIndex() <= held, 'the log was kept');
  assert.deepEqual(bounds(node), ['1:[,m)', `${a}:[m,)`]);
  for (let i = 0; i < 3; i++) assert.equal(c.value(stuck, `u${i}`), `b-${i}`);
  c.put(c.leaderOf(a), a, 'v', 'later');
  c.tick(10);
  assert.equal(c.value(stuck, 'v'), 'later');
  assert.equal(digests(c, a).size, 1);
});

test('merge: a node restarted after the merge reopens the merged range only; a snapshot of the merged range carries the right range\'s keys', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  for (let i = 0; i < 5; i++) c.put(c.leaderOf(b), b, `u${i}`, `b-${i}`);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const out = c.merge(leader, a);
  assert.ok(!(out instanceof Error), String(out));
  c.tick(20);
  const other = c.ids.find((id) => id !== leader.store.nodeId) as NodeId;
  c.nodes.get(other)?.close();
  c.start(other, false);
  c.tick(40);
  const restarted = c.nodes.get(other) as KvNode;
  assert.deepEqual(bounds(restarted), ['1:[,m)', `${a}:[m,)`]);
  assert.equal(restarted.store.replica(b), undefined);
  assert.equal(c.value(other, 'u3'), 'b-3');
  // A node cut off through the merge and many writes after it catches up by the merged range's snapshot.
  const cut = c.ids.find((id) => id !== c.leaderOf(a).store.nodeId && id !== other) as NodeId;
  c.cut.add(cut);
  for (let i = 0; i < 30; i++) c.put(c.leaderOf(a), a, `z${i}`, `m-${i}`);
  c.cut.clear();
  c.tick(80);
  for (let i = 0; i < 30; i++) assert.equal(c.value(cut, `z${i}`), `m-${i}`);
  assert.equal(c.value(cut, 'u1'), 'b-1');
  assert.equal(digests(c, a).size, 1);
});

test('merge: a lagging node that missed the merge entirely gets the merged range by snapshot and retires its stale right replica', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const cut = c.ids.find((id) => id !== leader.store.nodeId) as NodeId;
  c.cut.add(cut);
  for (let i = 0; i < 5; i++) c.put(leader, b, `u${i}`, `b-${i}`);
  // Without the cut node, the freeze never reaches every replica: the merge waits, then times out.
  const waited = c.merge(leader, a);
  assert.ok(waited instanceof Error, 'the merge waits for every replica of the right range');
  c.cut.clear();
  c.tick(20);
  c.cut.add(cut);
  // Retried once every replica holds the freeze: the cut node misses the merge and what follows.
  const out = c.merge(c.leaderOf(a), a);
  if (out instanceof Error) assert.fail(String(out));
  for (let i = 0; i < 30; i++) c.put(c.leaderOf(a), a, `z${i}`, `m-${i}`);
  c.cut.clear();
  c.tick(100);
  const node = c.nodes.get(cut) as KvNode;
  assert.deepEqual(bounds(node), ['1:[,m)', `${a}:[m,)`]);
  assert.equal(node.store.replica(b), undefined);
  for (let i = 0; i < 5; i++) assert.equal(c.value(cut, `u${i}`), `b-${i}`);
  assert.equal(c.value(cut, 'z29'), 'm-29');
  assert.equal(digests(c, a).size, 1);
});

test('merge: a range left frozen by a merge that never proposed its second step is merged by its left neighbour\'s leader after two request timeouts', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  c.put(c.leaderOf(b), b, 'u', 'kept');
  const leader = c.leaderOf(b);
  let frozen: CommandResult | undefined;
  const version = leader.stateMachineOf(b).descriptor?.epoch.version ?? 0;
  const leftVersion = leader.stateMachineOf(a).descriptor?.epoch.version ?? 0;
  leader.requests.propose((requestId) => encodeCommand({ kind: 'freeze', requestId, version, leftRangeId: a, leftVersion }), (o) => (frozen = o.kind === 'applied' ? (o.result as CommandResult) : undefined), b);
  c.tick(20);
  assert.equal(frozen?.kind, 'freeze');
  assert.ok(c.nodes.get(1)?.store.replica(b) !== undefined, 'still frozen, not merged yet');
  // The request timeout is 5 s here: the merge is finished within two of them and a check interval.
  c.tick(1_100);
  for (const id of c.ids) {
    assert.deepEqual(bounds(c.nodes.get(id) as KvNode), ['1:[,m)', `${a}:[m,)`], `node ${id}`);
    assert.equal(c.value(id, 'u'), 'kept');
  }
});

test('merge: refused alike everywhere when the left range\'s membership changed since the proposer checked it (its conf version), or the right range is not frozen where it says', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const propose = (rangeId: number, command: (requestId: string) => Uint8Array): CommandResult => {
    let out: CommandResult | undefined;
    leader.requests.propose(command, (o) => (out = o.kind === 'applied' ? (o.result as CommandResult) : undefined), rangeId);
    for (let i = 0; i < 50 && out === undefined; i++) c.tick(1);
    assert.ok(out !== undefined);
    return out;
  };
  const version = leader.stateMachineOf(b).descriptor?.epoch.version ?? 0;
  const leftVersion = leader.stateMachineOf(a).descriptor?.epoch.version ?? 0;
  const frozen = propose(b, (requestId) => encodeCommand({ kind: 'freeze', requestId, version, leftRangeId: a, leftVersion }));
  assert.ok(frozen.kind === 'freeze');
  c.tick(10);
  const conf = leader.stateMachineOf(a).descriptor?.epoch.confVersion ?? 0;
  const merge = (leftConfVersion: number, rightFrozenIndex: number) => (requestId: string) =>
    encodeCommand({ kind: 'merge', requestId, rightRangeId: b, rightVersion: version, rightFrozenIndex, rightFrozenTerm: frozen.term, leftConfVersion, leftVersion });
  const staleConf = propose(a, merge(conf + 1, frozen.index));
  assert.ok(staleConf.kind === 'error' && staleConf.code === 'RANGE_MISMATCH', JSON.stringify(staleConf));
  const wrongIndex = propose(a, merge(conf, frozen.index + 1));
  assert.ok(wrongIndex.kind === 'error' && wrongIndex.code === 'RANGE_MISMATCH', JSON.stringify(wrongIndex));
  c.tick(5);
  for (const id of c.ids) assert.ok((c.nodes.get(id) as KvNode).store.replica(b) !== undefined, `node ${id} still has range ${b}`);
  const ok = propose(a, merge(conf, frozen.index));
  assert.equal(ok.kind, 'merge', JSON.stringify(ok));
  c.tick(10);
  for (const id of c.ids) assert.deepEqual(bounds(c.nodes.get(id) as KvNode), ['1:[,m)', `${a}:[m,)`]);
});

/** Proposes a command through `node` to range `rangeId` and ticks until it is answered. */
function proposeTo(c: Cluster, node: KvNode, rangeId: number, command: (requestId: string) => Uint8Array): CommandResult {
  let out: CommandResult | undefined;
  node.requests.propose(command, (o) => (out = o.kind === 'applied' ? (o.result as CommandResult) : undefined), rangeId);
  for (let i = 0; i < 100 && out === undefined; i++) c.tick(1);
  assert.ok(out !== undefined, `no answer from range ${rangeId}`);
  return out;
}

/** Freezes range `b` for a merge into `a` at a's current version (the merge's first step alone). */
function freezeFor(c: Cluster, node: KvNode, a: number, b: number): Extract<CommandResult, { kind: 'freeze' }> {
  const version = node.stateMachineOf(b).descriptor?.epoch.version ?? 0;
  const leftVersion = node.stateMachineOf(a).descriptor?.epoch.version ?? 0;
  const frozen = proposeTo(c, node, b, (requestId) => encodeCommand({ kind: 'freeze', requestId, version, leftRangeId: a, leftVersion }));
  assert.ok(frozen.kind === 'freeze', JSON.stringify(frozen));
  assert.equal(frozen.leftRangeId, a);
  assert.equal(frozen.leftVersion, leftVersion);
  return frozen;
}

test('merge abort: abort-merge moves the left range past the version the freeze names, a merge naming it is refused alike everywhere, and the unfreeze lets the right range serve again at the next version', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  c.put(c.leaderOf(b), b, 'u', 'before');
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const av = leader.stateMachineOf(a).descriptor?.epoch.version ?? 0;
  const bv = leader.stateMachineOf(b).descriptor?.epoch.version ?? 0;
  const frozen = freezeFor(c, leader, a, b);
  // An unfreeze before the merge is made impossible would be the deliberate bug: the state machine
  // cannot tell, so the proposer must (KvNode.mergeCannotApply), and it does not see it yet.
  c.tick(5);
  const conf = leader.stateMachineOf(a).descriptor?.epoch.confVersion ?? 0;
  const aborted = proposeTo(c, leader, a, (requestId) => encodeCommand({ kind: 'abort-merge', requestId, rightRangeId: b, leftVersion: av }));
  assert.ok(aborted.kind === 'merge-aborted' && aborted.aborted, JSON.stringify(aborted));
  assert.equal(aborted.descriptor.epoch.version, av + 1);
  // Asked again: nothing more moves.
  const again = proposeTo(c, leader, a, (requestId) => encodeCommand({ kind: 'abort-merge', requestId, rightRangeId: b, leftVersion: av }));
  assert.ok(again.kind === 'merge-aborted' && !again.aborted, JSON.stringify(again));
  const merge = proposeTo(c, leader, a, (requestId) =>
    encodeCommand({ kind: 'merge', requestId, rightRangeId: b, rightVersion: bv, rightFrozenIndex: frozen.index, rightFrozenTerm: frozen.term, leftConfVersion: conf, leftVersion: av }),
  );
  assert.ok(merge.kind === 'error' && merge.code === 'RANGE_MISMATCH', JSON.stringify(merge));
  c.tick(5);
  for (const id of c.ids) {
    const node = c.nodes.get(id) as KvNode;
    assert.equal(node.stateMachineOf(a).descriptor?.epoch.version, av + 1, `node ${id}`);
    assert.ok(node.stateMachineOf(a).leftVersionWithoutMerge(av), `node ${id} knows range ${a} left version ${av} without a merge`);
    assert.deepEqual(bounds(node), ['1:[,m)', `${a}:[m,t)`], `node ${id}: still frozen, not routed`);
  }
  // An unfreeze naming another freeze is refused; the right one ends it.
  const wrong = proposeTo(c, leader, b, (requestId) => encodeCommand({ kind: 'unfreeze', requestId, version: bv, frozenIndex: frozen.index + 1, frozenTerm: frozen.term }));
  assert.ok(wrong.kind === 'error' && wrong.code === 'RANGE_MISMATCH', JSON.stringify(wrong));
  const unfrozen = proposeTo(c, leader, b, (requestId) => encodeCommand({ kind: 'unfreeze', requestId, version: bv, frozenIndex: frozen.index, frozenTerm: frozen.term }));
  assert.ok(unfrozen.kind === 'unfreeze', JSON.stringify(unfrozen));
  assert.equal(unfrozen.descriptor.epoch.version, bv + 1);
  c.tick(5);
  for (const id of c.ids) {
    const node = c.nodes.get(id) as KvNode;
    assert.equal(node.stateMachineOf(b).frozen, undefined, `node ${id}`);
    assert.deepEqual(bounds(node), ['1:[,m)', `${a}:[m,t)`, `${b}:[t,)`], `node ${id}: routed again`);
  }
  const w = c.put(c.leaderOf(b), b, 'u', 'after');
  assert.equal(w.kind, 'txn', JSON.stringify(w));
  c.tick(10);
  for (const id of c.ids) assert.equal(c.value(id, 'u'), 'after');
  assert.equal(digests(c, b).size, 1);
  // A later merge freezes the range again, naming the new versions, and completes.
  const merged = c.merge(c.leaderOf(a), a);
  assert.ok(!(merged instanceof Error), String(merged));
  c.tick(20);
  for (const id of c.ids) {
    assert.deepEqual(bounds(c.nodes.get(id) as KvNode), ['1:[,m)', `${a}:[m,)`]);
    assert.equal(c.value(id, 'u'), 'after');
  }
});

test('merge abort: a frozen range refuses membership changes alike on every replica, and takes them again once unfrozen', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  const leader = c.leaderOf(a);
  lead(c, b, leader.store.nodeId);
  const frozen = freezeFor(c, leader, a, b);
  const other = c.ids.find((id) => id !== leader.store.nodeId) as NodeId;
  leader.store.proposeConfChange(b, { transition: 'auto', changes: [{ type: 'remove-node', nodeId: other }] });
  c.tick(20);
  for (const id of c.ids) assert.ok((c.nodes.get(id) as KvNode).store.replica(b)?.currentConfState().voters.includes(other), `node ${id}: ${other} still a voter of ${b}`);
  // Made impossible by a split of the left range (it leaves the version the freeze names).
  const split = c.split(c.leaderOf(a), a, 'p');
  assert.ok(!(split instanceof Error), String(split));
  c.tick(5);
  const bv = leader.stateMachineOf(b).descriptor?.epoch.version ?? 0;
  const unfrozen = proposeTo(c, leader, b, (requestId) => encodeCommand({ kind: 'unfreeze', requestId, version: bv, frozenIndex: frozen.index, frozenTerm: frozen.term }));
  assert.equal(unfrozen.kind, 'unfreeze');
  c.leaderOf(b).store.proposeConfChange(b, { transition: 'auto', changes: [{ type: 'remove-node', nodeId: other }] });
  c.tick(20);
  assert.ok(!c.leaderOf(b).store.replica(b)?.currentConfState().voters.includes(other), `${other} removed from ${b}`);
});

test('merge abort: a freeze whose left range split meanwhile is ended by the nodes holding both sides after two request timeouts, without an abort-merge', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  c.put(c.leaderOf(b), b, 'u', 'kept');
  const leader = c.leaderOf(a);
  freezeFor(c, leader, a, b);
  const split = c.split(c.leaderOf(a), a, 'p');
  assert.ok(!(split instanceof Error), String(split));
  const a2 = split.right.rangeId;
  // The request timeout is 5 s here: ended within two of them and a check interval.
  c.tick(1_100);
  for (const id of c.ids) {
    const node = c.nodes.get(id) as KvNode;
    assert.equal(node.stateMachineOf(b).frozen, undefined, `node ${id}`);
    assert.deepEqual(bounds(node), ['1:[,m)', `${a}:[m,p)`, `${a2}:[p,t)`, `${b}:[t,)`], `node ${id}`);
    assert.equal(c.value(id, 'u'), 'kept');
  }
  assert.equal(c.put(c.leaderOf(b), b, 'v', 'served').kind, 'txn');
});

test('merge abort: a merge that cannot complete (the two ranges\' replicas differ) is aborted after four request timeouts, and the right range serves again', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  c.put(c.leaderOf(b), b, 'u', 'kept');
  const leader = c.leaderOf(a);
  const av = leader.stateMachineOf(a).descriptor?.epoch.version ?? 0;
  const other = c.ids.find((id) => id !== leader.store.nodeId) as NodeId;
  // The left range loses a replica after the freeze: every retry of the merge is refused.
  freezeFor(c, leader, a, b);
  leader.store.proposeConfChange(a, { transition: 'auto', changes: [{ type: 'remove-node', nodeId: other }] });
  c.tick(1_100);
  for (const id of c.ids) assert.ok((c.nodes.get(id) as KvNode).stateMachineOf(b).frozen !== undefined, `node ${id}: still frozen after two timeouts`);
  c.tick(1_100);
  for (const id of c.ids) {
    const node = c.nodes.get(id) as KvNode;
    assert.equal(node.stateMachineOf(b).frozen, undefined, `node ${id}`);
    assert.equal(c.value(id, 'u'), 'kept');
  }
  assert.ok((c.leaderOf(a).stateMachineOf(a).descriptor?.epoch.version ?? 0) > av, 'the left range moved past the version the freeze named');
  assert.equal(c.put(c.leaderOf(b), b, 'v', 'served').kind, 'txn');
});

test('approximate size: deleting keys adds to it, compacting their history takes it back down, alike on every replica (so emptied ranges can merge)', () => {
  const c = new Cluster([1, 2, 3]);
  const { b } = threeRanges(c);
  const size = (id: NodeId): number => (c.nodes.get(id) as KvNode).stateMachineOf(b).approxBytes;
  const before = size(1);
  for (let i = 0; i < 20; i++) c.put(c.leaderOf(b), b, `u${i}`, 'x'.repeat(200));
  c.tick(5);
  const full = size(1);
  assert.ok(full >= before + 20 * 200, `${before} -> ${full}`);
  for (let i = 0; i < 20; i++) {
    const leader = c.leaderOf(b);
    const txn = { compare: [], success: [{ type: 'deleteRange' as const, deleteRange: { key: enc.encode(`u${i}`) } }], failure: [] };
    proposeTo(c, leader, b, (requestId) => encodeCommand({ kind: 'txn', requestId, txn }));
  }
  c.tick(5);
  const deleted = size(1);
  assert.ok(deleted >= full, 'deletes are history too');
  const revision = c.leaderOf(b).stateMachineOf(b).mvcc.currentRevision;
  const compacted = proposeTo(c, c.leaderOf(b), b, (requestId) => encodeCommand({ kind: 'compact', requestId, revision }));
  assert.equal(compacted.kind, 'compact', JSON.stringify(compacted));
  c.tick(5);
  assert.ok(size(1) < before + 20 * 200 / 2, `after compaction ${size(1)} (before the puts ${before}, full ${full})`);
  assert.deepEqual(new Set(c.ids.map(size)).size, 1, 'alike on every replica');
});

test('merge abort: a freeze whose left range was itself merged away meanwhile ends (the range that took it over remembers it, at its final version)', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  // Range 1 [,m) stays apart (the meta range): x [g,m) takes a over instead.
  const sx = c.split(c.leaderOf(META_RANGE), META_RANGE, 'g');
  assert.ok(!(sx instanceof Error), String(sx));
  const x = sx.right.rangeId;
  c.tick(30);
  c.put(c.leaderOf(b), b, 'u', 'kept');
  const av = c.leaderOf(a).stateMachineOf(a).descriptor?.epoch.version ?? 0;
  freezeFor(c, c.leaderOf(a), a, b);
  // Before b's freeze is looked at, a (the left range it names) is merged into x: a is frozen at av, then retired.
  const merged = c.merge(c.leaderOf(x), x);
  assert.ok(!(merged instanceof Error), String(merged));
  assert.equal(merged.rightRangeId, a);
  c.tick(10);
  for (const id of c.ids) assert.ok((c.nodes.get(id) as KvNode).stateMachineOf(x).absorbedAt(a, av), `node ${id}: range ${x} took over range ${a} at version ${av}`);
  c.tick(1_100);
  for (const id of c.ids) {
    const node = c.nodes.get(id) as KvNode;
    assert.equal(node.stateMachineOf(b).frozen, undefined, `node ${id}`);
    assert.deepEqual(bounds(node), ['1:[,g)', `${x}:[g,t)`, `${b}:[t,)`], `node ${id}`);
    assert.equal(c.value(id, 'u'), 'kept');
  }
  assert.equal(c.put(c.leaderOf(b), b, 'v', 'served').kind, 'txn');
});

test('merge abort: a freeze whose left range split (ending the merge) and was then merged away ends (the versions it left go with it; seed 685)', () => {
  const c = new Cluster([1, 2, 3]);
  const { a, b } = threeRanges(c);
  const sx = c.split(c.leaderOf(META_RANGE), META_RANGE, 'g');
  assert.ok(!(sx instanceof Error), String(sx));
  const x = sx.right.rangeId;
  c.tick(30);
  c.put(c.leaderOf(b), b, 'u', 'kept');
  const av = c.leaderOf(a).stateMachineOf(a).descriptor?.epoch.version ?? 0;
  freezeFor(c, c.leaderOf(a), a, b);
  // a splits: it leaves av without a merge, and b is no longer its neighbour.
  const sa = c.split(c.leaderOf(a), a, 'p');
  assert.ok(!(sa instanceof Error), String(sa));
  c.tick(30);
  // Then, before b's freeze is looked at, a is merged into x and retired with its record of the versions it left.
  const merged = c.merge(c.leaderOf(x), x);
  assert.ok(!(merged instanceof Error), String(merged));
  assert.equal(merged.rightRangeId, a);
  c.tick(10);
  for (const id of c.ids) assert.ok((c.nodes.get(id) as KvNode).stateMachineOf(x).absorbedAt(a, av), `node ${id}: range ${x} carries range ${a}'s version ${av}, left by a split`);
  c.tick(1_100);
  for (const id of c.ids) {
    const node = c.nodes.get(id) as KvNode;
    assert.equal(node.stateMachineOf(b).frozen, undefined, `node ${id}`);
    assert.deepEqual(bounds(node), ['1:[,g)', `${x}:[g,p)`, `${sa.right.rangeId}:[p,t)`, `${b}:[t,)`], `node ${id}`);
    assert.equal(c.value(id, 'u'), 'kept');
  }
  assert.equal(c.put(c.leaderOf(b), b, 'v', 'served').kind, 'txn');
});
