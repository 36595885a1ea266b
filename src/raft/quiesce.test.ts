import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import { DEFAULT_RAFT_OPTIONS, type ReadOnlyOption } from './config.js';
import { RawNode } from './raw_node.js';
import { Sabotage, type BugName } from './sabotage.js';
import { MemoryLogStorage } from './storage.js';
import { type Message, type NodeId, message } from './types.js';

/**
 * Quiescence (ADR 0010) on three RawNodes joined by a lossless in-memory
 * network: what quiesces, what wakes, and what a quiesced node refuses.
 */
class Group {
  readonly nodes = new Map<NodeId, RawNode>();
  private readonly storages = new Map<NodeId, MemoryLogStorage>();
  /** Nodes whose messages are dropped both ways (crashed or cut off). */
  readonly down = new Set<NodeId>();
  readonly sent: Message[] = [];

  constructor(options: { quiesceAfterTicks?: number; readOnlyOption?: ReadOnlyOption; bug?: BugName } = {}) {
    for (const id of [1, 2, 3]) {
      const storage = new MemoryLogStorage();
      storage.setConfState({ voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
      this.storages.set(id, storage);
      this.nodes.set(
        id,
        new RawNode({
          ...DEFAULT_RAFT_OPTIONS,
          id,
          storage,
          rng: new SeededRng(id),
          readOnlyOption: options.readOnlyOption ?? 'safe',
          quiesceAfterTicks: options.quiesceAfterTicks ?? 3,
          ...(options.bug === undefined ? {} : { sabotage: Sabotage.of(options.bug) }),
        }),
      );
    }
  }

  node(id: NodeId): RawNode {
    return this.nodes.get(id) as RawNode;
  }

  /** Handles every Ready and delivers every message until nothing is left. */
  stabilize(): void {
    for (let round = 0; round < 1000; round++) {
      const out: Message[] = [];
      for (const [id, raw] of this.nodes) {
        if (this.down.has(id) || !raw.hasReady()) continue;
        const rd = raw.ready();
        const storage = this.storages.get(id) as MemoryLogStorage;
        storage.append(rd.entries);
        if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
        out.push(...rd.messages);
        raw.advance();
      }
      if (out.length === 0) return;
      for (const m of out) {
        this.sent.push(m);
        if (this.down.has(m.from) || this.down.has(m.to)) continue;
        this.node(m.to).step(m);
      }
    }
    assert.fail('the group did not settle');
  }

  /** One tick of every running node that is not quiesced (as the Store ticks), then settle. */
  tick(count = 1): void {
    for (let i = 0; i < count; i++) {
      for (const [id, raw] of this.nodes) if (!this.down.has(id) && !raw.quiesced) raw.tick();
      this.stabilize();
    }
  }

  elect(id: NodeId): void {
    this.node(id).campaign();
    this.stabilize();
    assert.equal(this.node(id).raft.state, 'leader');
  }

  /** Under lease reads nobody votes for an election timeout after start: ticks until someone wins. */
  electByTicks(): { leader: NodeId; followers: NodeId[] } {
    for (let i = 0; i < 100 && this.leaders().length === 0; i++) this.tick(1);
    const leader = this.leaders()[0];
    assert.ok(leader !== undefined, 'no leader');
    return { leader, followers: [1, 2, 3].filter((id) => id !== leader) };
  }

  quiesced(): NodeId[] {
    return [...this.nodes].filter(([id, raw]) => !this.down.has(id) && raw.quiesced).map(([id]) => id);
  }

  leaders(): NodeId[] {
    return [...this.nodes].filter(([id, raw]) => !this.down.has(id) && raw.raft.state === 'leader').map(([id]) => id);
  }
}

test('quiesce: an idle group quiesces after quiesceAfterTicks ticks; followers stop ticking with it and send no answer', () => {
  const g = new Group({ quiesceAfterTicks: 3 });
  g.elect(1);
  g.tick(2);
  assert.deepEqual(g.quiesced(), [], 'not before the idle ticks');
  g.tick(2);
  assert.deepEqual(g.quiesced(), [1, 2, 3]);
  const beats = g.sent.filter((m) => m.type === 'MsgHeartbeat' && m.quiesce === true);
  assert.equal(beats.length, 2);
  const last = g.node(1).raft.raftLog.lastIndex();
  for (const b of beats) assert.deepEqual([b.index, b.logTerm, b.commit], [last, g.node(1).raft.term, last]);
  // Quiet: ticks send nothing, and nobody campaigns however long it lasts.
  const before = g.sent.length;
  for (let i = 0; i < 100; i++) for (const raw of g.nodes.values()) raw.tick();
  g.stabilize();
  assert.equal(g.sent.length, before);
  assert.deepEqual(g.leaders(), [1]);
});

test('quiesce: off (0) never quiesces', () => {
  const g = new Group({ quiesceAfterTicks: 0 });
  g.elect(1);
  g.tick(30);
  assert.deepEqual(g.quiesced(), []);
});

test('quiesce: a proposal wakes the leader, it replicates, and the group quiesces again once idle', () => {
  const g = new Group();
  g.elect(1);
  g.tick(5);
  assert.deepEqual(g.quiesced(), [1, 2, 3]);
  const res = g.node(1).propose(new TextEncoder().encode('x'));
  assert.equal(res.kind, 'appended');
  assert.equal(g.node(1).quiesced, false);
  g.stabilize();
  assert.deepEqual(g.quiesced(), [], 'the appends woke the followers');
  const index = g.node(1).raft.raftLog.lastIndex();
  for (const raw of g.nodes.values()) assert.equal(raw.raft.raftLog.committed, index);
  g.tick(5);
  assert.deepEqual(g.quiesced(), [1, 2, 3]);
});

test('quiesce: a proposal on a follower wakes it and, forwarded, the leader', () => {
  const g = new Group();
  g.elect(1);
  g.tick(5);
  const res = g.node(3).propose(new TextEncoder().encode('y'));
  assert.equal(res.kind, 'forwarded');
  assert.equal(g.node(3).quiesced, false);
  g.stabilize();
  assert.deepEqual(g.quiesced(), []);
  assert.equal(g.node(3).raft.raftLog.committed, g.node(1).raft.raftLog.lastIndex());
});

test('quiesce: a read wakes the leader; a lease read needs a fresh heartbeat round, not the lease it held when it went quiet', () => {
  const g = new Group({ readOnlyOption: 'lease-based' });
  const { leader, followers } = g.electByTicks();
  const raw = g.node(leader);
  g.tick(2);
  assert.ok(raw.leaseValid(), 'a lease before quiescing');
  g.tick(3);
  assert.deepEqual(g.quiesced(), [1, 2, 3]);
  assert.equal(raw.leaseValid(), false, 'quiescing gave up the lease');
  for (const f of followers) g.down.add(f);
  assert.equal(raw.readIndex('r1'), undefined);
  assert.equal(raw.quiesced, false);
  const cut = raw.ready();
  assert.equal(cut.readStates.length, 0, 'cut off, the woken leader cannot confirm the read');
  assert.ok(cut.messages.some((m) => m.type === 'MsgHeartbeat' && m.context === 'r1'), 'it asks its followers instead');
  raw.advance();
  g.down.clear();
  g.tick(1);
  assert.ok(g.sent.some((m) => m.type === 'MsgHeartbeatResp' && m.to === leader), 'the followers answered');
  assert.ok(raw.leaseValid(), 'and the lease is back');
});

test('quiesce: the deliberate bug quiesce-keeps-lease serves a lease read from the stopped lease clock', () => {
  const g = new Group({ readOnlyOption: 'lease-based', bug: 'quiesce-keeps-lease' });
  const { leader, followers } = g.electByTicks();
  g.tick(5);
  assert.deepEqual(g.quiesced(), [1, 2, 3]);
  for (const f of followers) g.down.add(f);
  g.node(leader).readIndex('stale');
  assert.deepEqual(g.node(leader).ready().readStates.map((r) => r.context), ['stale']);
});

test('quiesce: a message from a peer other than the leader wakes a follower, which wakes the leader', () => {
  const g = new Group();
  g.elect(1);
  g.tick(5);
  // Node 3 missed the quiet (it restarted, say) and campaigns: its pre-vote wakes 2, and 2 wakes 1.
  g.node(3).raft.unquiesce(false);
  g.node(3).campaign();
  g.stabilize();
  assert.deepEqual(g.quiesced(), []);
  assert.deepEqual(g.leaders(), [1], 'PreVote and leader stickiness keep the leader');
  g.tick(12);
  assert.deepEqual(g.leaders(), [1]);
  assert.equal(g.node(1).raft.term, g.node(2).raft.term);
});

test('quiesce: a late echo of a heartbeat sent before quiescing leaves the leader quiet', () => {
  const g = new Group();
  g.elect(1);
  g.tick(5);
  const term = g.node(1).raft.term;
  g.node(1).step(message({ type: 'MsgHeartbeatResp', from: 2, to: 1, term, leaseTick: 3 }));
  assert.equal(g.node(1).quiesced, true);
  g.node(1).step(message({ type: 'MsgHeartbeatResp', from: 2, to: 1, term }));
  assert.equal(g.node(1).quiesced, false, 'an answer without a lease tick is a wake-up');
});

test('quiesce: a follower whose log does not end at the leader last index answers the quiesce heartbeat instead, which wakes the leader', () => {
  const g = new Group();
  g.elect(1);
  g.tick(1);
  const r1 = g.node(1).raft;
  const last = r1.raftLog.lastIndex();
  // A quiesce heartbeat naming an index past node 2's log (reordered after entries it has not seen).
  g.node(2).step(message({ type: 'MsgHeartbeat', from: 1, to: 2, term: r1.term, index: last + 1, logTerm: r1.term, commit: last, quiesce: true }));
  assert.equal(g.node(2).quiesced, false);
  const rd = g.node(2).ready();
  assert.deepEqual(rd.messages.map((m) => m.type), ['MsgHeartbeatResp']);
  g.node(2).advance();
  // With the wrong term at the last index, also refused.
  g.node(2).step(message({ type: 'MsgHeartbeat', from: 1, to: 2, term: r1.term, index: last, logTerm: r1.term - 1, commit: last, quiesce: true }));
  assert.equal(g.node(2).quiesced, false);
  g.node(2).step(message({ type: 'MsgHeartbeat', from: 1, to: 2, term: r1.term, index: last, logTerm: r1.term, commit: last, quiesce: true }));
  assert.equal(g.node(2).quiesced, true);
});

test('quiesce: a leader transfer or a pending conf change keeps the leader awake', () => {
  const g = new Group();
  g.elect(1);
  g.tick(1);
  g.node(1).transferLeader(2);
  g.down.add(2); // the transfer cannot finish
  g.stabilize();
  assert.equal(g.node(1).raft.canQuiesce(), false, 'a transfer is in progress');
  g.down.clear();
  g.stabilize();
  g.tick(12);
  const leader = g.leaders()[0] as NodeId;
  const raw = g.node(leader);
  raw.proposeConfChange({ transition: 'auto', changes: [{ type: 'add-learner', nodeId: 4 }] });
  assert.equal(raw.raft.canQuiesce(), false, 'a conf change is pending');
});

test('quiesce: followers of a quiesced range whose leader died wake when the host says its node fell silent, and elect a leader within three election timeouts', () => {
  const g = new Group();
  g.elect(1);
  g.tick(5);
  assert.deepEqual(g.quiesced(), [1, 2, 3]);
  g.down.add(1);
  // The host (Store.tickLiveness) notices after an election timeout of silence and wakes them.
  const et = DEFAULT_RAFT_OPTIONS.electionTimeoutTicks;
  g.tick(et);
  assert.deepEqual(g.quiesced(), [2, 3], 'nobody wakes on its own');
  for (const id of [2, 3]) g.node(id).unquiesce();
  let ticks = 0;
  while (g.leaders().length === 0 && ticks < 3 * et) {
    g.tick(1);
    ticks++;
  }
  const leader = g.leaders()[0];
  assert.ok(leader !== undefined, `no new leader within ${3 * et} ticks`);
  assert.ok(g.node(leader).raft.term > g.node(1).raft.term);
});
