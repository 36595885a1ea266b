import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import { DEFAULT_RAFT_OPTIONS } from './config.js';
import { RawNode } from './raw_node.js';
import { Sabotage } from './sabotage.js';
import { MemoryLogStorage } from './storage.js';

function node(sabotage: Sabotage | undefined): RawNode {
  const storage = new MemoryLogStorage();
  storage.setConfState({ voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
  return new RawNode({ ...DEFAULT_RAFT_OPTIONS, id: 1, storage, rng: new SeededRng(1), preVote: true, checkQuorum: true, electionTimeoutTicks: 10, ...(sabotage === undefined ? {} : { sabotage }) });
}

test("sabotage: 'no-prevote-checkquorum' switches PreVote and CheckQuorum off in the Raft code itself, not by configuration", () => {
  const healthy = node(undefined);
  healthy.campaign();
  assert.equal(healthy.raft.state, 'pre-candidate');
  const broken = node(Sabotage.of('no-prevote-checkquorum'));
  broken.campaign();
  assert.equal(broken.raft.state, 'candidate', 'the bug skips the pre-vote');
  assert.equal(broken.raft.checkQuorumOn(), false);
});
