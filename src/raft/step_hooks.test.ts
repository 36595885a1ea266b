import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import { DEFAULT_RAFT_OPTIONS } from './config.js';
import { RawNode } from './raw_node.js';
import { Sabotage } from './sabotage.js';
import { MemoryLogStorage } from './storage.js';
import { message } from './types.js';

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

test('afterStep sees every leadership, even one won and lost before the next Ready (the simulator records leaders here)', () => {
  const seen: string[] = [];
  let checks = 0;
  const storage = new MemoryLogStorage();
  storage.setConfState({ voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
  const raw = new RawNode({
    ...DEFAULT_RAFT_OPTIONS, id: 1, storage, rng: new SeededRng(1), preVote: false, checkQuorum: false, electionTimeoutTicks: 10,
    afterStep: (n) => {
      n.checkInvariants();
      checks++;
      if (n.state === 'leader') seen.push(`${n.id}@${n.term}`);
    },
  });
  raw.campaign();
  raw.step(message({ type: 'MsgVoteResp', from: 2, to: 1, term: 1 }));
  raw.step(message({ type: 'MsgHeartbeat', from: 3, to: 1, term: 2, commit: 0 }));
  assert.equal(raw.raft.state, 'follower');
  const rd = raw.ready();
  assert.equal(rd.softState?.state, 'follower', 'the Ready alone never shows the leadership of term 1');
  assert.ok(seen.includes('1@1'), `leaderships seen: ${seen.join(',')}`);
  assert.ok(checks >= 3, 'invariants checked after each step');
});
