import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import { DEFAULT_RAFT_OPTIONS } from './config.js';
import { RawNode } from './raw_node.js';
import { MemoryLogStorage } from './storage.js';
import { message } from './types.js';

// Regression for simulator seeds 608 and 991: a follower acknowledged an installed snapshot
// before it was synced, lost it in a crash, and then could not hold the commit index the leader
// sent it ("commit beyond last index").
test('RawNode: a Ready that carries a snapshot must be synced', () => {
  const storage = new MemoryLogStorage();
  storage.setConfState({ voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
  const node = new RawNode({ ...DEFAULT_RAFT_OPTIONS, id: 2, storage, rng: new SeededRng(2) });
  const snapshot = {
    metadata: { index: 10, term: 1, confState: { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } },
    data: new Uint8Array([1]),
  };
  node.step(message({ type: 'MsgSnap', from: 1, to: 2, term: 1, snapshot }));
  const rd = node.ready();
  assert.equal(rd.snapshot?.metadata.index, 10);
  assert.equal(rd.mustSync, true);
  assert.ok(rd.messages.some((m) => m.type === 'MsgAppResp' && m.index === 10), 'the snapshot is acknowledged in the same Ready');
});

test('RawNode: proposeBatch appends every command at once and sends each follower one append for them all', () => {
  const storage = new MemoryLogStorage();
  storage.setConfState({ voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
  const node = new RawNode({ ...DEFAULT_RAFT_OPTIONS, id: 1, storage, rng: new SeededRng(1) });
  node.campaign();
  // Grant every (pre-)vote the node asks for, persisting each Ready as a host would.
  for (let round = 0; round < 4 && node.raft.state !== 'leader'; round++) {
    const rd = node.ready();
    storage.append(rd.entries);
    if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
    node.advance();
    for (const m of rd.messages) {
      if (m.type === 'MsgPreVote') node.step(message({ type: 'MsgPreVoteResp', from: m.to, to: 1, term: m.term }));
      if (m.type === 'MsgVote') node.step(message({ type: 'MsgVoteResp', from: m.to, to: 1, term: m.term }));
    }
  }
  assert.equal(node.raft.state, 'leader');
  // Settle: persist what the election produced, and let both followers accept the leader's no-op.
  const first = node.ready();
  storage.append(first.entries);
  node.advance();
  const last = node.raft.raftLog.lastIndex();
  const term = node.raft.term;
  for (const from of [2, 3]) node.step(message({ type: 'MsgAppResp', from, to: 1, term, index: last }));
  if (node.hasReady()) {
    storage.append(node.ready().entries);
    node.advance();
  }
  const datas = [1, 2, 3, 4, 5].map((i) => new Uint8Array([i]));
  const res = node.proposeBatch(datas);
  assert.deepEqual(res, { kind: 'appended', index: last + 5, term });
  const rd = node.ready();
  assert.deepEqual(rd.entries.map((e) => e.data[0]), [1, 2, 3, 4, 5]);
  const apps = rd.messages.filter((m) => m.type === 'MsgApp');
  assert.deepEqual(apps.map((m) => m.to).sort(), [2, 3], 'one append per follower');
  for (const m of apps) assert.equal(m.entries.length, 5);
});

test('RawNode: committed entries held from an index are not handed out; advance to an index hands the rest out again once released', () => {
  const storage = new MemoryLogStorage();
  storage.setConfState({ voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
  const node = new RawNode({ ...DEFAULT_RAFT_OPTIONS, id: 1, storage, rng: new SeededRng(1) });
  node.campaign();
  const drain = (): void => {
    while (node.hasReady()) {
      const rd = node.ready();
      storage.append(rd.entries);
      if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
      node.advance();
    }
  };
  drain();
  assert.equal(node.raft.state, 'leader');
  const first = node.raft.raftLog.lastIndex() + 1;
  node.proposeBatch([new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([3])]);
  // A single voter commits them as soon as they are persisted: the Ready that hands them out.
  let rd = node.ready();
  for (let i = 0; i < 3 && rd.committedEntries.length === 0; i++) {
    storage.append(rd.entries);
    if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
    node.advance();
    rd = node.ready();
  }
  storage.append(rd.entries);
  if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
  assert.deepEqual(rd.committedEntries.map((e) => e.index), [first, first + 1, first + 2]);
  // The application applies the first, then must hold the second.
  node.holdApplyFrom(first + 1);
  node.advance(first);
  assert.equal(node.raft.raftLog.applied, first);
  assert.equal(node.hasReady(), false, 'nothing to hand out while held');
  node.releaseApply();
  assert.equal(node.hasReady(), true);
  rd = node.ready();
  assert.deepEqual(rd.committedEntries.map((e) => e.index), [first + 1, first + 2]);
  node.advance();
  assert.equal(node.raft.raftLog.applied, first + 2);
});
