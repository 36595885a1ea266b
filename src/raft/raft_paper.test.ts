/**
 * One test per rule of the Raft paper (Ongaro & Ousterhout, "In Search of an
 * Understandable Consensus Algorithm", extended version): the rules of
 * Figure 2, the properties of Figure 3, and §5.1-§5.4, §6, §7 and §8. Each
 * test is named after the rule it checks. Receiver rules drive a single node
 * with message steps; the rest run small clusters through the interaction
 * harness (silently), with partitions where the rule needs them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import type { Raft } from './raft.js';
import { Cluster, drain, ents, logTerms, message, newRaft } from './testing/cluster.js';
import { type Message, type NodeId, NONE } from './types.js';

function only(msgs: readonly Message[], type: Message['type']): Message[] {
  return msgs.filter((m) => m.type === type);
}

function becomeLeader(r: Raft): void {
  r.becomeCandidate();
  r.becomeLeader();
}

// ---------------------------------------------------------------------------
// Figure 2: rules for all servers

test('Figure 2, all servers: if commitIndex > lastApplied, apply log[lastApplied+1] (in log order, only committed entries)', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('propose 1 a');
  c.run('propose 1 b');
  c.run('stabilize');
  for (const id of c.ids()) {
    assert.deepEqual(c.applied(id), ['a', 'b'], `node ${id} applied`);
    assert.equal(c.raft(id).raftLog.applied, c.raft(id).raftLog.committed);
  }
  // Appended on the leader but not yet replicated: not committed, so not applied.
  c.run('propose 1 c');
  c.run('process-ready 1');
  assert.equal(c.raft(1).raftLog.lastIndex(), 6);
  assert.equal(c.raft(1).raftLog.committed, 5);
  assert.deepEqual(c.applied(1), ['a', 'b']);
});

test('Figure 2, all servers: a request or response with term T > currentTerm sets currentTerm = T and converts to follower', () => {
  for (const state of ['follower', 'candidate', 'leader'] as const) {
    for (const type of ['MsgApp', 'MsgAppResp', 'MsgHeartbeat', 'MsgVoteResp'] as const) {
      const r = newRaft(1, { terms: [1], term: 1 });
      if (state === 'candidate') r.becomeCandidate();
      if (state === 'leader') becomeLeader(r);
      drain(r);
      r.step(message({ type, from: 2, to: 1, term: 9, index: 1, logTerm: 1 }));
      assert.equal(r.term, 9, `${state} receiving ${type}`);
      assert.equal(r.state, 'follower', `${state} receiving ${type}`);
      assert.equal(r.vote, NONE, 'a new term starts without a vote');
    }
  }
});

// ---------------------------------------------------------------------------
// Figure 2: followers

test('Figure 2, followers: respond to RPCs from candidates and leaders', () => {
  const r = newRaft(2, { terms: [1], term: 1 });
  r.step(message({ type: 'MsgVote', from: 3, to: 2, term: 2, index: 1, logTerm: 1 }));
  const vote = only(drain(r), 'MsgVoteResp');
  assert.equal(vote.length, 1);
  assert.equal(vote[0]?.to, 3);
  assert.equal(vote[0]?.reject, false);
  r.step(message({ type: 'MsgApp', from: 3, to: 2, term: 2, index: 1, logTerm: 1, entries: ents([2], 2), commit: 1 }));
  const app = only(drain(r), 'MsgAppResp');
  assert.equal(app.length, 1);
  assert.equal(app[0]?.to, 3);
  assert.equal(app[0]?.index, 2);
  assert.equal(app[0]?.reject, false);
  r.step(message({ type: 'MsgHeartbeat', from: 3, to: 2, term: 2, commit: 2 }));
  assert.equal(only(drain(r), 'MsgHeartbeatResp').length, 1);
  assert.equal(r.raftLog.committed, 2, 'the heartbeat carried the commit index');
});

test('Figure 2, followers: if the election timeout elapses without AppendEntries from the leader or granting a vote, become candidate', () => {
  const r = newRaft(1, { terms: [1], term: 1 });
  const timeout = r.randomizedElectionTimeout;
  for (let i = 1; i < timeout; i++) r.tick();
  assert.equal(r.state, 'follower', 'one tick before the timeout');
  r.tick();
  assert.equal(r.state, 'candidate');
  assert.equal(r.term, 2);

  // Hearing from the leader restarts the timer.
  const f = newRaft(1, { terms: [1], term: 1 });
  for (let i = 1; i < f.randomizedElectionTimeout; i++) f.tick();
  f.step(message({ type: 'MsgHeartbeat', from: 2, to: 1, term: 1 }));
  for (let i = 1; i < f.randomizedElectionTimeout; i++) f.tick();
  assert.equal(f.state, 'follower', 'a heartbeat reset the election timer');

  // So does granting a vote.
  const g = newRaft(1, { terms: [1], term: 1 });
  for (let i = 1; i < g.randomizedElectionTimeout; i++) g.tick();
  g.step(message({ type: 'MsgVote', from: 3, to: 1, term: 2, index: 1, logTerm: 1 }));
  assert.equal(g.vote, 3);
  for (let i = 1; i < g.randomizedElectionTimeout; i++) g.tick();
  assert.equal(g.state, 'follower', 'granting a vote reset the election timer');
});

// ---------------------------------------------------------------------------
// Figure 2: candidates

test('Figure 2, candidates: on conversion, increment currentTerm, vote for self, reset the timer, send RequestVote to all others', () => {
  const r = newRaft(1, { voters: [1, 2, 3, 4, 5], terms: [1, 1], term: 1 });
  for (let i = 0; i < 3; i++) r.tick();
  r.step(message({ type: 'MsgHup', from: 1 }));
  assert.equal(r.state, 'candidate');
  assert.equal(r.term, 2);
  assert.equal(r.vote, 1);
  assert.equal(r.electionElapsed, 0);
  assert.deepEqual(r.hardState(), { term: 2, vote: 1, commit: 0 }, 'term and vote are part of the state to persist');
  const votes = only(drain(r), 'MsgVote');
  assert.deepEqual(votes.map((m) => m.to).sort(), [2, 3, 4, 5]);
  for (const m of votes) {
    assert.equal(m.term, 2);
    assert.equal(m.index, 2, 'lastLogIndex');
    assert.equal(m.logTerm, 1, 'lastLogTerm');
  }
});

test('Figure 2, candidates: if votes are received from a majority of servers, become leader', () => {
  const r = newRaft(1, { voters: [1, 2, 3, 4, 5], terms: [1], term: 1 });
  r.step(message({ type: 'MsgHup', from: 1 })); // candidate in term 2, with its own vote
  r.step(message({ type: 'MsgVoteResp', from: 2, to: 1, term: 2 }));
  assert.equal(r.state, 'candidate', '2 of 5 votes');
  r.step(message({ type: 'MsgVoteResp', from: 3, to: 1, term: 2, reject: true }));
  assert.equal(r.state, 'candidate', 'a refusal does not count');
  r.step(message({ type: 'MsgVoteResp', from: 2, to: 1, term: 2 }));
  assert.equal(r.state, 'candidate', 'a duplicate vote does not count twice');
  r.step(message({ type: 'MsgVoteResp', from: 4, to: 1, term: 2 }));
  assert.equal(r.state, 'leader', '3 of 5 votes');
  assert.equal(r.lead, 1);
});

test('Figure 2, candidates: if AppendEntries is received from the new leader, convert to follower', () => {
  const r = newRaft(1, { terms: [1], term: 1 });
  r.becomeCandidate();
  r.step(message({ type: 'MsgApp', from: 2, to: 1, term: 2, index: 1, logTerm: 1, entries: ents([2], 2) }));
  assert.equal(r.state, 'follower');
  assert.equal(r.term, 2);
  assert.equal(r.lead, 2);
  assert.equal(r.raftLog.lastIndex(), 2, 'and accepts the entries');
});

test('Figure 2, candidates: if the election timeout elapses, start a new election', () => {
  const r = newRaft(1, { terms: [1], term: 1 });
  r.becomeCandidate();
  drain(r);
  const timeout = r.randomizedElectionTimeout;
  for (let i = 0; i < timeout; i++) r.tick();
  assert.equal(r.state, 'candidate');
  assert.equal(r.term, 3, 'a new term for the new election');
  assert.equal(only(drain(r), 'MsgVote').length, 2);
});

// ---------------------------------------------------------------------------
// Figure 2: leaders

test('Figure 2, leaders: upon election send AppendEntries to each server, and heartbeats during idle periods', () => {
  const r = newRaft(1, { terms: [1], term: 1 });
  becomeLeader(r);
  r.bcastAppend();
  const apps = only(drain(r), 'MsgApp');
  assert.deepEqual(apps.map((m) => m.to).sort(), [2, 3]);
  // The first append carries the leader's no-op of its term (§8), which is otherwise empty.
  for (const m of apps) assert.deepEqual(m.entries.map((e) => [e.term, e.data.byteLength]), [[2, 0]]);
  r.tick(); // heartbeat interval is 1 tick
  const beats = only(drain(r), 'MsgHeartbeat');
  assert.deepEqual(beats.map((m) => m.to).sort(), [2, 3]);
  for (const m of beats) assert.equal(m.entries.length, 0);
});

test('Figure 2, leaders: a client command is appended to the local log, and reported applied only once committed', () => {
  const c = new Cluster(3);
  c.elect(1);
  const before = c.raft(1).raftLog.lastIndex();
  c.run('propose 1 cmd');
  const last = c.raft(1).raftLog.allEntries().at(-1);
  assert.equal(last?.index, before + 1);
  assert.equal(last?.term, c.raft(1).term);
  c.run('process-ready 1');
  assert.deepEqual(c.applied(1), [], 'not applied before a majority stores it');
  c.run('stabilize');
  assert.deepEqual(c.applied(1), ['cmd']);
});

test('Figure 2, leaders: if last log index ≥ nextIndex for a follower, send AppendEntries with the entries starting at nextIndex', () => {
  const r = newRaft(1, { terms: [1, 1, 1], term: 1 });
  becomeLeader(r); // appends its no-op at 4
  drain(r);
  const pr = r.trk.progress.get(2);
  assert.ok(pr !== undefined);
  pr.becomeReplicate();
  pr.next = 3;
  r.step(message({ type: 'MsgProp', from: 1, entries: ents([0], 0) }));
  const app = only(drain(r), 'MsgApp').find((m) => m.to === 2);
  assert.ok(app !== undefined);
  assert.equal(app.index, 2, 'prevLogIndex = nextIndex - 1');
  assert.equal(app.logTerm, 1, 'prevLogTerm');
  assert.deepEqual(app.entries.map((e) => e.index), [3, 4, 5]);
});

test('Figure 2, leaders: if successful, update nextIndex and matchIndex for the follower', () => {
  const r = newRaft(1, { terms: [1, 1], term: 1 });
  becomeLeader(r);
  drain(r);
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 2, index: 3 }));
  const pr = r.trk.progress.get(2);
  assert.equal(pr?.match, 3);
  assert.equal(pr?.next, 4);
});

test('Figure 2, leaders: if AppendEntries fails because of log inconsistency, decrement nextIndex and retry', () => {
  const r = newRaft(1, { terms: [1, 1, 1, 1], term: 1 });
  becomeLeader(r); // next for followers = 5; the no-op is 5
  drain(r);
  // Follower 2 rejects the probe at prev=4; it has nothing to suggest (hint 3, unknown term).
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 2, index: 4, reject: true, rejectHint: 3 }));
  assert.equal(r.trk.progress.get(2)?.next, 4);
  const retry = only(drain(r), 'MsgApp').find((m) => m.to === 2);
  assert.equal(retry?.index, 3, 'retried one entry earlier');
  assert.deepEqual(retry?.entries.map((e) => e.index), [4, 5]);
});

test('Figure 2, leaders: commitIndex = N if a majority has matchIndex ≥ N and log[N].term == currentTerm', () => {
  const r = newRaft(1, { voters: [1, 2, 3, 4, 5], terms: [1], term: 1 });
  becomeLeader(r); // no-op at 2, term 2
  r.step(message({ type: 'MsgProp', from: 1, entries: ents([0], 0) })); // 3
  drain(r);
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 2, index: 3 }));
  assert.equal(r.raftLog.committed, 0, 'the leader and one follower: 2 of 5');
  r.step(message({ type: 'MsgAppResp', from: 3, to: 1, term: 2, index: 2 }));
  assert.equal(r.raftLog.committed, 2, 'three nodes have index 2');
  r.step(message({ type: 'MsgAppResp', from: 4, to: 1, term: 2, index: 3 }));
  assert.equal(r.raftLog.committed, 3, 'three nodes have index 3');
});

// ---------------------------------------------------------------------------
// Figure 2: AppendEntries RPC, receiver implementation

test('Figure 2, AppendEntries receiver 1: reply false if term < currentTerm', () => {
  for (const checkQuorum of [false, true]) {
    const r = newRaft(2, { terms: [1, 3], term: 3, checkQuorum });
    r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 2, index: 1, logTerm: 1, entries: ents([2], 2) }));
    assert.deepEqual(logTerms(r), [1, 3], 'the stale entries are not appended');
    assert.equal(r.term, 3);
    const replies = drain(r);
    assert.ok(!replies.some((m) => m.type === 'MsgAppResp' && !m.reject && m.index === 3), 'no acknowledgement of the stale entry');
    if (checkQuorum) {
      // etcd's reply: a response carrying the newer term, which makes the stale leader step down.
      assert.equal(replies.length, 1);
      assert.equal(replies[0]?.term, 3);
    }
  }
});

test("Figure 2, AppendEntries receiver 2: reply false if the log has no entry at prevLogIndex whose term matches prevLogTerm", () => {
  const r = newRaft(2, { terms: [1, 1, 2], term: 3 });
  // Missing entry: prev=5 beyond the log.
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 3, index: 5, logTerm: 3, entries: ents([3], 6) }));
  let resp = only(drain(r), 'MsgAppResp');
  assert.equal(resp[0]?.reject, true);
  assert.equal(resp[0]?.rejectHint, 3, 'hint: our last index');
  // Term mismatch at prev=3 (ours is 2).
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 3, index: 3, logTerm: 3, entries: ents([3], 4) }));
  resp = only(drain(r), 'MsgAppResp');
  assert.equal(resp[0]?.reject, true);
  assert.equal(resp[0]?.logTerm, 2, 'hint: the term we have there');
  assert.deepEqual(logTerms(r), [1, 1, 2], 'a rejected append changes nothing');
});

test('Figure 2, AppendEntries receiver 3: if an existing entry conflicts with a new one, delete it and all that follow', () => {
  const r = newRaft(2, { terms: [1, 1, 2, 2, 2], term: 2 });
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 3, index: 2, logTerm: 1, entries: ents([3], 3) }));
  assert.deepEqual(logTerms(r), [1, 1, 3]);
  assert.equal(only(drain(r), 'MsgAppResp')[0]?.index, 3);
});

test('Figure 2, AppendEntries receiver 4: append any new entries not already in the log (duplicates and stale appends are harmless)', () => {
  const r = newRaft(2, { terms: [1], term: 2 });
  const app = message({ type: 'MsgApp', from: 1, to: 2, term: 2, index: 1, logTerm: 1, entries: ents([2, 2], 2) });
  r.step(app);
  assert.deepEqual(logTerms(r), [1, 2, 2]);
  r.step(app); // retransmitted
  assert.deepEqual(logTerms(r), [1, 2, 2]);
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 2, index: 3, logTerm: 2, entries: ents([2], 4) }));
  // A delayed, shorter append of the same term must not truncate what follows it.
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 2, index: 1, logTerm: 1, entries: ents([2], 2) }));
  assert.deepEqual(logTerms(r), [1, 2, 2, 2]);
});

test('Figure 2, AppendEntries receiver 5: if leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last new entry)', () => {
  const r = newRaft(2, { terms: [1], term: 1 });
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 1, index: 1, logTerm: 1, entries: ents([1, 1], 2), commit: 7 }));
  assert.equal(r.raftLog.committed, 3, 'capped at the last new entry');
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 1, index: 2, logTerm: 1, entries: [], commit: 7 }));
  assert.equal(r.raftLog.committed, 3, 'an append verifying only up to 2 never lowers the commit index');
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 1, index: 3, logTerm: 1, entries: ents([1], 4), commit: 2 }));
  assert.equal(r.raftLog.committed, 3, 'a smaller leaderCommit is ignored');
});

// ---------------------------------------------------------------------------
// Figure 2: RequestVote RPC, receiver implementation

test('Figure 2, RequestVote receiver 1: reply false if term < currentTerm', () => {
  const r = newRaft(2, { terms: [1, 2], term: 5 });
  r.step(message({ type: 'MsgVote', from: 3, to: 2, term: 4, index: 9, logTerm: 4 }));
  assert.equal(r.vote, NONE);
  assert.equal(r.term, 5);
  assert.ok(!drain(r).some((m) => m.type === 'MsgVoteResp' && !m.reject), 'no vote granted');
  // A stale pre-vote gets an explicit refusal carrying our term.
  r.step(message({ type: 'MsgPreVote', from: 3, to: 2, term: 4, index: 9, logTerm: 4 }));
  const resp = only(drain(r), 'MsgPreVoteResp');
  assert.equal(resp[0]?.reject, true);
  assert.equal(resp[0]?.term, 5);
});

test('Figure 2, RequestVote receiver 2: grant if votedFor is null or candidateId and the candidate log is at least as up-to-date', () => {
  const r = newRaft(2, { voters: [1, 2, 3, 4], terms: [1, 2], term: 2 });
  r.step(message({ type: 'MsgVote', from: 3, to: 2, term: 3, index: 2, logTerm: 2 }));
  assert.equal(only(drain(r), 'MsgVoteResp')[0]?.reject, false, 'votedFor null, equal logs');
  assert.equal(r.vote, 3);
  r.step(message({ type: 'MsgVote', from: 4, to: 2, term: 3, index: 5, logTerm: 2 }));
  assert.equal(only(drain(r), 'MsgVoteResp')[0]?.reject, true, 'already voted for 3 in term 3');
  r.step(message({ type: 'MsgVote', from: 3, to: 2, term: 3, index: 2, logTerm: 2 }));
  assert.equal(only(drain(r), 'MsgVoteResp')[0]?.reject, false, 'a retried request from the same candidate is granted again');
  r.step(message({ type: 'MsgVote', from: 1, to: 2, term: 4, index: 1, logTerm: 1 }));
  assert.equal(only(drain(r), 'MsgVoteResp')[0]?.reject, true, 'votedFor null in term 4, but the candidate log is behind');
  assert.equal(r.term, 4);
  assert.equal(r.vote, NONE);
});

// ---------------------------------------------------------------------------
// §5.1 Raft basics

test('§5.1: terms only grow; a stale leader that learns of a newer term reverts to follower', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('isolate 1');
  c.elect(2);
  assert.equal(c.raft(2).term, 3);
  assert.deepEqual(c.leaders().sort(), [1, 2], 'the isolated leader still thinks it leads term 2');
  c.run('heal');
  c.run('tick-heartbeat 2');
  c.run('stabilize');
  assert.deepEqual(c.leaders(), [2]);
  assert.equal(c.raft(1).term, 3);
  assert.equal(c.raft(1).lead, 2);
  // A message from the stale term is now rejected: terms never go back.
  const r = c.raft(1);
  r.step(message({ type: 'MsgHeartbeat', from: 3, to: 1, term: 2 }));
  assert.equal(r.term, 3);
  assert.equal(r.lead, 2);
});

test('§5.1: a server that receives a request with a stale term rejects the request', () => {
  const r = newRaft(1, { terms: [1, 3], term: 3, checkQuorum: true });
  r.step(message({ type: 'MsgHeartbeat', from: 2, to: 1, term: 2, commit: 2 }));
  assert.equal(r.raftLog.committed, 0, 'the stale heartbeat does not advance the commit index');
  assert.equal(r.lead, NONE, 'nor make its sender our leader');
  assert.ok(drain(r).every((m) => m.term === 3), 'any reply carries the current term');
});

// ---------------------------------------------------------------------------
// §5.2 Leader election

test('§5.2: a follower that hears nothing for an election timeout starts an election, and wins with a majority', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('isolate 1');
  c.run('tick-election 2');
  assert.equal(c.raft(2).state, 'candidate');
  c.run('stabilize 2 3');
  assert.equal(c.raft(2).state, 'leader');
  assert.equal(c.raft(3).lead, 2);
});

test('§5.2: a candidate that hears from another leader of at least its term steps down (it lost)', () => {
  const c = new Cluster(3);
  c.run('campaign 1');
  c.run('campaign 3');
  c.run('process-ready 1 3');
  c.run('deliver-msgs 2 type=MsgVote'); // 2 votes for 1 (first come)
  c.run('process-ready 2');
  c.run('deliver-msgs 1');
  assert.equal(c.raft(1).state, 'leader');
  assert.equal(c.raft(3).state, 'candidate');
  c.run('process-ready 1');
  c.run('deliver-msgs 3 type=MsgApp');
  assert.equal(c.raft(3).state, 'follower');
  assert.equal(c.raft(3).lead, 1);
});

test('§5.2: split vote: nobody wins; after a timeout a new election in a new term decides', () => {
  const c = new Cluster(4);
  c.script(`
    campaign 1
    campaign 2
    process-ready 1 2
    cut 1 4
    cut 2 3
    stabilize`);
  assert.deepEqual(c.leaders(), []);
  assert.equal(c.raft(1).state, 'candidate');
  assert.equal(c.raft(2).state, 'candidate');
  const term = c.raft(1).term;
  c.run('heal');
  c.run('tick-election 2');
  c.run('stabilize');
  assert.deepEqual(c.leaders(), [2]);
  assert.equal(c.raft(2).term, term + 1);
});

test('§5.2: election timeouts are randomized in [T, 2T) and differ between servers and between elections', () => {
  const c = new Cluster(5);
  const seen = new Set<number>();
  for (const id of c.ids()) {
    const t = c.raft(id).randomizedElectionTimeout;
    assert.ok(t >= 10 && t < 20, `node ${id}: ${t}`);
    seen.add(t);
  }
  assert.ok(seen.size > 1, `all five servers drew the same timeout ${[...seen].join(',')}`);
  // One node, across elections: each new term redraws the timeout.
  const r = newRaft(1, { terms: [1], term: 1 });
  const draws = new Set<number>();
  for (let i = 0; i < 20; i++) {
    r.becomeCandidate();
    const t = r.randomizedElectionTimeout;
    assert.ok(t >= 10 && t < 20);
    draws.add(t);
  }
  assert.ok(draws.size > 3, `only ${draws.size} distinct timeouts in 20 draws`);
});

// ---------------------------------------------------------------------------
// §5.3 Log replication

test('§5.3: the leader appends the command, replicates it, commits it once a majority stores it, and followers apply it after learning the commit', () => {
  const c = new Cluster(5);
  c.elect(1);
  c.run('cut 1 4');
  c.run('cut 1 5');
  c.run('propose 1 x');
  c.run('process-ready 1');
  c.run('deliver-msgs 2');
  c.run('process-ready 2');
  c.run('deliver-msgs 1');
  assert.equal(c.raft(1).raftLog.committed, 3, '2 of 5 copies: not committed');
  c.run('deliver-msgs 3');
  c.run('process-ready 3');
  c.run('deliver-msgs 1');
  assert.equal(c.raft(1).raftLog.committed, 4, '3 of 5 copies: committed');
  assert.equal(c.raft(2).raftLog.committed, 3, 'followers learn the commit index from the next append');
  c.run('stabilize');
  assert.deepEqual(c.applied(2), ['x']);
  assert.deepEqual(c.applied(4), [], 'cut off');
});

test('§5.3: the consistency check: a follower rejects entries that do not follow a matching entry', () => {
  const r = newRaft(2, { terms: [1, 1], term: 1 });
  r.step(message({ type: 'MsgApp', from: 1, to: 2, term: 2, index: 2, logTerm: 2, entries: ents([2], 3) }));
  assert.equal(only(drain(r), 'MsgAppResp')[0]?.reject, true);
  assert.deepEqual(logTerms(r), [1, 1]);
});

test('§5.3: the leader forces followers to duplicate its log: conflicting uncommitted entries are overwritten', () => {
  const c = new Cluster(5);
  c.elect(1);
  c.script(`
    cut 1 3
    cut 1 4
    cut 1 5
    cut 2 3
    cut 2 4
    cut 2 5
    propose 1 minority
    stabilize`);
  c.elect(3);
  c.run('propose 3 majority');
  c.run('stabilize');
  c.run('heal');
  c.run('tick-heartbeat 3');
  c.run('stabilize');
  for (const id of c.ids()) {
    assert.deepEqual(logTerms(c.raft(id)), logTerms(c.raft(3)), `node ${id} matches the leader`);
    assert.deepEqual(c.applied(id), ['majority']);
  }
});

test('§5.3: Leader Append-Only: a leader never overwrites or deletes entries in its log', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('propose-n 1 3 a');
  c.run('stabilize');
  const r = c.raft(1);
  const before = r.raftLog.allEntries().map((e) => `${e.term}/${e.index}`);
  // Rejections, stale acknowledgements and conflicting appends from a stale term must not touch the leader's log.
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: r.term, index: 3, reject: true, rejectHint: 0 }));
  r.step(message({ type: 'MsgApp', from: 3, to: 1, term: r.term - 1, index: 2, logTerm: 1, entries: ents([1, 1, 1, 1], 3) }));
  r.step(message({ type: 'MsgApp', from: 3, to: 1, term: r.term, index: 2, logTerm: 1, entries: ents([2], 3) }));
  const after = r.raftLog.allEntries().map((e) => `${e.term}/${e.index}`);
  assert.deepEqual(after, before);
  assert.equal(r.state, 'leader');
});

// ---------------------------------------------------------------------------
// §5.4 Safety

test('§5.4.1: the election restriction: a vote goes only to a candidate whose log is at least as up-to-date (last term, then length)', () => {
  const cases: { voter: number[]; candidate: { index: number; logTerm: number }; grant: boolean }[] = [
    { voter: [1, 1, 2], candidate: { index: 3, logTerm: 2 }, grant: true }, // equal
    { voter: [1, 1, 2], candidate: { index: 4, logTerm: 2 }, grant: true }, // same last term, longer
    { voter: [1, 1, 2], candidate: { index: 2, logTerm: 2 }, grant: false }, // same last term, shorter
    { voter: [1, 1, 2], candidate: { index: 2, logTerm: 3 }, grant: true }, // higher last term wins even if shorter
    { voter: [1, 1, 2], candidate: { index: 9, logTerm: 1 }, grant: false }, // lower last term loses even if longer
  ];
  for (const { voter, candidate, grant } of cases) {
    const r = newRaft(2, { terms: voter, term: 3 });
    r.step(message({ type: 'MsgVote', from: 1, to: 2, term: 4, ...candidate }));
    const resp = only(drain(r), 'MsgVoteResp')[0];
    assert.equal(resp?.reject, !grant, `voter ${voter.join(',')} vs candidate ${candidate.logTerm}/${candidate.index}`);
  }
});

test('§5.4.1: Leader Completeness: a node lacking a committed entry cannot be elected; the elected leader has it', () => {
  const c = new Cluster(5);
  c.elect(1);
  c.run('isolate 5');
  c.run('propose 1 committed');
  c.run('stabilize');
  const committed = c.raft(1).raftLog.committed;
  c.run('heal');
  c.run('isolate 1');
  c.elect(5);
  assert.notEqual(c.raft(5).state, 'leader', 'the node that lacks the committed entry loses');
  c.elect(4);
  assert.equal(c.raft(4).state, 'leader');
  assert.ok(c.raft(4).raftLog.lastIndex() >= committed);
  assert.deepEqual(c.applied(4), ['committed']);
});

test('§5.4.2 (Figure 8): a leader does not commit an entry from a previous term by counting replicas', () => {
  // Follower 2 stores entry 3 of term 1 from the old leader; the new leader 1 (term 3) has it too.
  const r = newRaft(1, { terms: [1, 1, 1], term: 2 });
  becomeLeader(r); // term 3, no-op at 4
  drain(r);
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 3, index: 3 }));
  assert.equal(r.trk.progress.get(2)?.match, 3);
  assert.equal(r.raftLog.committed, 0, 'entry 3 is on 2 of 3 nodes but of term 1: not committed');
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 3, index: 4 }));
  assert.equal(r.raftLog.committed, 4, 'committing the term-3 no-op commits entry 3 indirectly');
});

test('§5.4.2 (Figure 8, full scenario): an old-term entry on a majority can still be overwritten, because it was never committed', () => {
  const c = new Cluster(5, 'max-size=1');
  c.script(`
    campaign 1
    stabilize
    cut 1 3
    cut 1 4
    cut 1 5
    propose 1 term2-entry
    stabilize
    heal
    isolate 1
    campaign 5
    process-ready 5
    deliver-msgs 2 3 4
    process-ready 2 3 4
    deliver-msgs 5
    isolate 5
    propose 5 term3-entry
    stabilize`);
  // S1 returns, wins a later term, and copies its old-term entry to S3 and S4: S1 knows that
  // S1, S3 and S4 (a majority) store it, and S2 stores it too.
  c.script(`
    heal
    isolate 5
    restart 1
    campaign 1
    stabilize
    campaign 1
    process-ready 1
    deliver-msgs 2 3 4
    process-ready 2 3 4
    deliver-msgs 1
    cut 1 2
    process-ready 1
    deliver-msgs 3 4
    process-ready 3 4
    deliver-msgs 1
    process-ready 1
    deliver-msgs 3 4
    process-ready 3 4
    deliver-msgs 1`);
  const s1 = c.raft(1);
  assert.equal(s1.state, 'leader');
  const oldIndex = s1.raftLog.allEntries().findIndex((e) => new TextDecoder().decode(e.data) === 'term2-entry') + s1.raftLog.firstIndex();
  for (const id of [3, 4]) {
    assert.ok(c.raft(id).raftLog.matchTerm(oldIndex, s1.raftLog.termOrUndefined(oldIndex) ?? -1), `S${id} stores the old entry`);
    assert.equal(s1.trk.progress.get(id)?.match, oldIndex, `S1 knows S${id} stores it`);
  }
  assert.ok(s1.raftLog.committed < oldIndex, 'but S1 did not commit it');
  // S1 crashes before its own-term entry spreads; S5 wins and overwrites the old entry everywhere.
  c.script(`
    process-ready 1
    deliver-msgs drop=(2 3 4 5)
    heal
    isolate 1
    restart 5
    campaign 5
    stabilize 2 3 4 5
    campaign 5
    stabilize 2 3 4 5`);
  assert.equal(c.raft(5).state, 'leader');
  for (const id of [2, 3, 4, 5]) assert.deepEqual(c.applied(id), ['term3-entry'], `node ${id}`);
  assert.deepEqual(c.applied(1), [], 'S1 never applied the overwritten entry');
});

// Figure 3's guarantees, checked after every step of seeded random runs with partitions, lost
// messages, restarts and elections. Each step delivers to or processes one node (or only ticks),
// so a node that becomes leader in a step is checked against the commits made before it.
test('Figure 3 properties under random partitions: Election Safety, Log Matching, Leader Completeness, State Machine Safety', () => {
  for (let seed = 1; seed <= 8; seed++) {
    const rng = new SeededRng(seed);
    const c = new Cluster(5);
    const leaderOfTerm = new Map<number, NodeId>();
    const wasLeader = new Map<NodeId, number>(); // id -> term in which we last saw it lead
    let proposals = 0;
    for (let step = 0; step < 800; step++) {
      const id = rng.intBetween(1, 5);
      const roll = rng.intBelow(100);
      if (roll < 55) {
        c.run(`deliver-msgs ${id}`);
        c.run(`process-ready ${id}`);
      } else if (roll < 70) {
        for (const i of c.ids()) c.run(`tick ${i}`); // time passes everywhere
      } else if (roll < 84) c.run(`propose ${id} p${++proposals}`);
      else if (roll < 87) c.run(`deliver-msgs drop=(${id})`);
      else if (roll < 90) c.run(`isolate ${id}`);
      else if (roll < 99) c.run('heal');
      else c.run(`restart ${id}`);
      checkFigure3(c, leaderOfTerm, wasLeader, `seed ${seed} step ${step}`);
    }
    assert.ok(leaderOfTerm.size > 0, `seed ${seed}: no leader was ever elected`);
    // Liveness once the network heals: one leader of the newest term, and everybody applies a new entry.
    c.run('heal');
    const current = (): NodeId | undefined => {
      const maxTerm = Math.max(...c.ids().map((i) => c.raft(i).term));
      const leaders = c.leaders().filter((i) => c.raft(i).term === maxTerm);
      return leaders.length === 1 ? leaders[0] : undefined;
    };
    for (let i = 0; i < 100 && current() === undefined; i++) {
      for (const n of c.ids()) c.run(`tick ${n}`);
      c.run('stabilize');
    }
    const leader = current();
    assert.ok(leader !== undefined, `seed ${seed}: no leader after healing`);
    c.run(`propose ${leader} final`);
    for (let i = 0; i < 3; i++) {
      c.run(`tick-heartbeat ${leader}`);
      c.run('stabilize');
    }
    checkFigure3(c, leaderOfTerm, wasLeader, `seed ${seed} end`);
    // (Forwarded proposals still in flight may land after "final".)
    const reference = c.applied(leader);
    assert.ok(reference.includes('final'), `seed ${seed}: the leader applied the new entry`);
    for (const id of c.ids()) assert.deepEqual(c.applied(id), reference, `seed ${seed}: node ${id} caught up`);
  }
});

function checkFigure3(c: Cluster, leaderOfTerm: Map<number, NodeId>, wasLeader: Map<NodeId, number>, where: string): void {
  const nodes = c.ids().map((id) => ({ id, r: c.raft(id) }));
  // Election Safety: at most one leader per term.
  for (const { id, r } of nodes) {
    if (r.state !== 'leader') continue;
    const prev = leaderOfTerm.get(r.term);
    assert.ok(prev === undefined || prev === id, `${where}: two leaders in term ${r.term}: ${prev} and ${id}`);
    leaderOfTerm.set(r.term, id);
  }
  // Log Matching: same index and term ⇒ identical up to there.
  const logs = nodes.map(({ id, r }) => ({ id, log: r.raftLog.allEntries(), first: r.raftLog.firstIndex() }));
  for (let a = 0; a < logs.length; a++) {
    for (let b = a + 1; b < logs.length; b++) {
      const la = logs[a];
      const lb = logs[b];
      if (la === undefined || lb === undefined) continue;
      const n = Math.min(la.log.length, lb.log.length);
      let lastMatch = -1;
      for (let i = n - 1; i >= 0; i--) {
        if (la.log[i]?.term === lb.log[i]?.term) {
          lastMatch = i;
          break;
        }
      }
      for (let i = 0; i < lastMatch; i++) {
        assert.equal(la.log[i]?.term, lb.log[i]?.term, `${where}: Log Matching violated between ${la.id} and ${lb.id} at index ${i + la.first}`);
      }
    }
  }
  // Leader Completeness, checked when a node becomes leader: it holds every entry committed anywhere.
  for (const { id, r } of nodes) {
    if (r.state !== 'leader' || wasLeader.get(id) === r.term) continue;
    wasLeader.set(id, r.term);
    for (const other of nodes) {
      const { committed } = other.r.raftLog;
      for (let i = other.r.raftLog.firstIndex(); i <= committed; i++) {
        const t = other.r.raftLog.termOrUndefined(i);
        assert.equal(r.raftLog.termOrUndefined(i), t, `${where}: new leader ${id} (term ${r.term}) lacks entry ${i} committed at ${other.id}`);
      }
    }
  }
  // State Machine Safety: the applied sequences are prefixes of one another.
  const applied = nodes.map(({ id }) => c.applied(id));
  for (const a of applied) {
    for (const b of applied) {
      const n = Math.min(a.length, b.length);
      assert.deepEqual(a.slice(0, n), b.slice(0, n), `${where}: state machines diverge`);
    }
  }
}

// ---------------------------------------------------------------------------
// §6 Cluster membership changes

test('§6: in joint consensus, entries commit only with a majority of both C_old and C_new', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('add-nodes 2');
  c.run('propose-conf-change 1 v4 v5 r2 r3 transition=explicit');
  c.run('stabilize');
  assert.ok(c.raft(1).isJointConfig(), 'joint (1 4 5)&&(1 2 3)');
  const base = c.raft(1).raftLog.committed;
  c.run('cut 1 4');
  c.run('cut 1 5');
  c.run('propose 1 x');
  c.run('stabilize');
  assert.equal(c.raft(1).raftLog.committed, base, 'C_old majority alone is not enough');
  c.run('heal');
  c.run('cut 1 2');
  c.run('cut 1 3');
  c.run('propose 1 y');
  c.run('tick-heartbeat 1');
  c.run('stabilize');
  // x is now on 2, 3 (C_old) and 4, 5 (C_new): committed. y only reached C_new.
  assert.equal(c.raft(1).raftLog.committed, base + 1, 'x commits with both majorities; y has only C_new');
  c.run('heal');
  c.run('tick-heartbeat 1');
  c.run('stabilize');
  assert.equal(c.raft(1).raftLog.committed, base + 2);
});

test('§6: in joint consensus, elections need a majority of both C_old and C_new', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('add-nodes 2');
  c.run('propose-conf-change 1 v4 v5 r2 r3 transition=explicit');
  c.run('stabilize');
  c.script(`
    isolate 1
    cut 2 4
    cut 2 5
    cut 3 4
    cut 3 5`);
  c.elect(4);
  assert.equal(c.raft(4).state, 'candidate', '4 and 5 are a majority of C_new only');
  c.run('heal');
  c.run('isolate 1');
  c.elect(4);
  assert.equal(c.raft(4).state, 'leader');
});

test('§6: new servers join as non-voting learners: they receive the log but count towards no majority', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('add-nodes 1');
  c.run('propose-conf-change 1 l4');
  c.run('stabilize');
  assert.equal(c.raft(4).isLearner, true);
  assert.equal(c.raft(4).raftLog.lastIndex(), c.raft(1).raftLog.lastIndex(), 'the learner caught up');
  c.run('cut 1 3');
  c.run('propose 1 a');
  c.run('stabilize');
  assert.deepEqual(c.applied(1), ['a'], '1 and 2 are a majority of the 3 voters');
  c.run('cut 1 2');
  c.run('propose 1 b');
  c.run('stabilize');
  assert.deepEqual(c.applied(1), ['a'], 'leader + learner is no majority');
  assert.ok(!c.raft(1).trk.voterIds().includes(4));
  // A learner never campaigns.
  c.run('campaign 4');
  assert.equal(c.raft(4).state, 'follower');
});

test('§6: a leader that is not part of C_new steps down once C_new takes effect, and C_new elects a leader', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('add-nodes 1');
  c.run('propose-conf-change 1 r1 v4');
  c.run('stabilize');
  assert.notEqual(c.raft(1).state, 'leader');
  assert.equal(c.raft(1).trk.progress.has(1), false, '1 is no longer a member');
  c.run('campaign 1');
  assert.notEqual(c.raft(1).state, 'candidate', 'a removed node does not campaign');
  c.run('tick-election 2');
  c.run('stabilize');
  assert.deepEqual(c.leaders(), [2]);
  assert.deepEqual(c.raft(2).trk.voterIds(), [2, 3, 4]);
});

test('§6: only one membership change may be pending at a time', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('add-nodes 2');
  c.run('propose-conf-change 1 l4');
  assert.equal(c.run('propose-conf-change 1 l5'), 'dropped: conf-change-pending');
  c.run('stabilize');
  assert.equal(c.run('propose-conf-change 1 l5'), '', 'accepted once the first is applied');
});

// ---------------------------------------------------------------------------
// §7 Log compaction, §8 client interaction

test('§7: InstallSnapshot: a follower behind the compacted log receives a snapshot, discards its log and resumes from it', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('isolate 3');
  c.run('propose-n 1 4 x');
  c.run('stabilize');
  c.run('compact 1 6');
  c.run('heal');
  c.run('tick-heartbeat 1');
  c.run('stabilize');
  const r3 = c.raft(3);
  assert.ok(r3.raftLog.firstIndex() > 4, 'the log below the snapshot was discarded');
  assert.deepEqual(c.applied(3), ['x1', 'x2', 'x3', 'x4']);
  c.run('propose 1 y');
  c.run('stabilize');
  assert.deepEqual(c.applied(3), ['x1', 'x2', 'x3', 'x4', 'y']);
});

test('§8: a new leader commits a no-op of its term before it answers read-only requests', () => {
  const c = new Cluster(3);
  c.elect(1);
  c.run('propose 1 x');
  c.run('stabilize');
  c.run('campaign 2');
  c.run('process-ready 2');
  c.run('deliver-msgs 1 3');
  c.run('process-ready 1 3');
  c.run('deliver-msgs 2');
  const r2 = c.raft(2);
  assert.equal(r2.state, 'leader');
  assert.equal(r2.raftLog.allEntries().at(-1)?.term, r2.term, 'the no-op of the new term');
  assert.equal(r2.committedEntryInCurrentTerm(), false);
  c.run('read-index 2 r');
  const early = c.run('process-ready 2');
  assert.ok(!early.includes('ReadStates'), `answered before the no-op committed:\n${early}`);
  const out = c.run('stabilize');
  assert.equal(r2.committedEntryInCurrentTerm(), true);
  assert.match(out, /ReadStates:\n\s+index:5 context:r/, 'answered with the commit index that includes the no-op (5)');
});

// ---------------------------------------------------------------------------
// Pauses (ADR 0002): ticks that piled up while the process stood still

test('a pause of the whole cluster (a huge apply) deposes nobody: only the lease clock counts its ticks', () => {
  const c = new Cluster(3, 'prevote=true checkquorum=true');
  c.elect(1);
  const leaderTickBefore = c.raft(1).leaderTick;
  // Every node stalled for 5 election timeouts; nothing was sent meanwhile.
  for (const id of c.ids()) c.raft(id).tickAfterPause(50);
  c.run('stabilize');
  assert.deepEqual(c.leaders(), [1]);
  assert.equal(c.raft(1).term, c.raft(2).term, 'no election happened');
  assert.ok(c.raft(1).leaderTick >= leaderTickBefore + 50, 'the lease clock counted the whole pause');
  // A paused follower waits a whole timeout from now: a few ticks later it has not campaigned.
  c.raft(2).tickAfterPause(100);
  for (let i = 0; i < 5; i++) c.raft(2).tick();
  assert.equal(c.raft(2).state, 'follower');
});

test('the same pause delivered as ordinary ticks does depose the leader (what tickAfterPause avoids)', () => {
  const c = new Cluster(3, 'prevote=true checkquorum=true');
  c.elect(1);
  const term = c.raft(1).term;
  for (let i = 0; i < 50; i++) for (const id of c.ids()) c.raft(id).tick();
  c.run('stabilize');
  assert.ok(c.raft(1).state !== 'leader' || c.raft(1).term > term, 'CheckQuorum or an election ended the old leadership');
});
