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
