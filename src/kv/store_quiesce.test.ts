import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeId } from '../raft/index.js';
import type { Store } from './store.js';
import { Harness, RANGE } from './testing.testlib.js';

/** The Store's part of quiescence (ADR 0010): it ticks awake replicas only, and wakes followers whose leader's node fell silent. */

const ELECTION_TICKS = 10;

function cluster(liveness = true): Harness {
  return new Harness([1, 2, 3], { liveness, raft: { quiesceAfterTicks: 3, electionTimeoutTicks: ELECTION_TICKS } });
}

function electAndWrite(h: Harness): Store {
  for (let i = 0; i < 50 && ![...h.stores.values()].some((s) => s.replica(RANGE)?.raw.raft.state === 'leader'); i++) h.tickAll(1);
  const leader = h.leader();
  let done = false;
  h.put(leader, 'q1', 'k', 'v1', () => void (done = true));
  h.settle();
  assert.ok(done);
  return leader;
}

/** Counts the Raft messages sent while `run` runs. */
function messagesDuring(h: Harness, run: () => void): number {
  let n = 0;
  const before = h.filter;
  h.filter = (from, to, msgs) => {
    n += msgs.length;
    return before(from, to, msgs);
  };
  run();
  h.filter = before;
  return n;
}

test('store quiesce: an idle range quiesces on every node; then a tick sends no Raft message, only the leader node\'s liveness', () => {
  const h = cluster();
  electAndWrite(h);
  h.tickAll(6);
  for (const s of h.stores.values()) assert.equal(s.quiescedCount(), 1, `node ${s.nodeId}`);
  const sentBefore = new Map(h.livenessSent);
  assert.equal(messagesDuring(h, () => h.tickAll(50)), 0);
  const leader = h.leader().nodeId;
  assert.equal((h.livenessSent.get(leader) ?? 0) - (sentBefore.get(leader) ?? 0), 50 * 2, 'one liveness per tick to each peer');
  for (const id of [1, 2, 3].filter((n) => n !== leader)) assert.equal(h.livenessSent.get(id) ?? 0, 0, 'followers send none');
});

test('store quiesce: a transport without liveness never quiesces', () => {
  const h = cluster(false);
  electAndWrite(h);
  h.tickAll(20);
  for (const s of h.stores.values()) assert.equal(s.quiescedCount(), 0);
});

test('store quiesce: a write through a follower wakes the range, commits, and the range quiesces again', () => {
  const h = cluster();
  const leader = electAndWrite(h);
  h.tickAll(6);
  const follower = [...h.stores.values()].find((s) => s !== leader) as Store;
  let done = false;
  h.put(follower, 'q2', 'k', 'v2', () => void (done = true));
  h.settle();
  assert.ok(done);
  for (const id of [1, 2, 3]) assert.equal(h.value(id, 'k'), 'v2');
  h.tickAll(6);
  for (const s of h.stores.values()) assert.equal(s.quiescedCount(), 1);
});

test('store quiesce: a linearizable read wakes the range and is served', () => {
  const h = cluster();
  electAndWrite(h);
  h.tickAll(6);
  for (const s of h.stores.values()) {
    let served = false;
    s.linearizableRead(RANGE, (error) => {
      assert.equal(error, undefined);
      served = true;
    });
    h.settle();
    h.tickAll(2);
    assert.ok(served, `read on node ${s.nodeId}`);
  }
});

test('store quiesce: when a quiesced range\'s leader node dies, its followers wake after an election timeout of silence and elect a leader within four', () => {
  const h = cluster();
  const dead = electAndWrite(h).nodeId;
  h.tickAll(6);
  for (const s of h.stores.values()) assert.equal(s.quiescedCount(), 1);
  // The leader's node stops: nothing from it or to it is delivered, and it is no longer ticked.
  h.silenced.add(dead);
  h.filter = (from, to, msgs) => (from === dead || to === dead ? [] : msgs);
  const alive = [...h.stores.values()].filter((s) => s.nodeId !== dead);
  let ticks = 0;
  const newLeader = (): NodeId | undefined => alive.find((s) => s.replica(RANGE)?.raw.raft.state === 'leader')?.nodeId;
  while (newLeader() === undefined && ticks < 4 * ELECTION_TICKS) {
    for (const s of alive) s.tick();
    h.settle();
    ticks++;
  }
  assert.ok(newLeader() !== undefined, `no leader within ${4 * ELECTION_TICKS} ticks`);
  assert.ok(ticks >= ELECTION_TICKS, `woke after ${ticks} ticks: before the leader's node had been silent for an election timeout`);
  // And it serves writes.
  let done = false;
  h.put(h.stores.get(newLeader() as NodeId) as Store, 'q3', 'k', 'v3', () => void (done = true));
  h.settle();
  assert.ok(done);
});

test('store quiesce: a follower that hears its leader node\'s liveness stays quiet however long', () => {
  const h = cluster();
  electAndWrite(h);
  h.tickAll(6 + 5 * ELECTION_TICKS);
  for (const s of h.stores.values()) assert.equal(s.quiescedCount(), 1);
});
