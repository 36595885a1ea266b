import { assert } from '../base/index.js';
import { jointVoteResult } from './quorum.js';
import type { DropReason, Raft } from './raft.js';
import type { Progress } from './tracker.js';
import { type Message, NONE, message } from './types.js';

/** The leader's message handlers (Figure 2, "Leaders"). */
export function stepLeaderImpl(r: Raft, m: Message): DropReason | undefined {
  switch (m.type) {
    case 'MsgBeat':
      bcastHeartbeatWithReads(r);
      return undefined;
    case 'MsgCheckQuorum':
      checkQuorum(r);
      return undefined;
    case 'MsgProp':
      return handleProposal(r, m);
    case 'MsgReadIndex':
      return handleReadIndex(r, m);
    default:
      break;
  }
  const pr = r.trk.progress.get(m.from);
  if (pr === undefined) return undefined; // from a node no longer in the configuration
  switch (m.type) {
    case 'MsgAppResp':
      handleAppendResponse(r, m, pr);
      break;
    case 'MsgHeartbeatResp':
      handleHeartbeatResponse(r, m, pr);
      break;
    case 'MsgSnapStatus':
      handleSnapStatus(m, pr);
      break;
    case 'MsgUnreachable':
      // The transport lost a message: stop streaming optimistically and probe again.
      if (pr.state === 'replicate') pr.becomeProbe();
      break;
    case 'MsgTransferLeader':
      handleTransferLeader(r, m, pr);
      break;
    default:
      break;
  }
  return undefined;
}

function bcastHeartbeatWithReads(r: Raft): void {
  const ctx = r.readOnly.lastPendingContext();
  for (const id of r.trk.ids()) {
    if (id === r.id) continue;
    const pr = r.trk.progress.get(id) as Progress;
    const commit = Math.min(pr.match, r.raftLog.committed);
    const base = { type: 'MsgHeartbeat' as const, to: id, commit, leaseTick: r.leaderTick };
    // Through send(), like every other message: it stamps the sender and the term.
    r.send(message(ctx === undefined ? base : { ...base, context: ctx }));
  }
}

function checkQuorum(r: Raft): void {
  if (!r.trk.quorumActive(r.id)) {
    // We cannot reach a quorum: stop leading, so clients find a leader that can (thesis §6.2).
    r.becomeFollower(r.term, NONE);
    return;
  }
  // Start a new interval: everyone must show activity again before the next check.
  for (const [id, pr] of r.trk.progress) pr.recentActive = id === r.id;
}

function handleProposal(r: Raft, m: Message): DropReason | undefined {
  assert(m.entries.length > 0, 'stepped an empty MsgProp');
  if (!r.trk.progress.has(r.id)) return 'not-a-member'; // removed, but not yet stopped
  if (r.leadTransferee !== NONE) return 'leader-transfer-in-progress';
  for (const e of m.entries) {
    if (e.type !== 'conf-change') continue;
    const cc = e.confChange;
    assert(cc !== undefined, 'conf-change entry without a change');
    // One membership change at a time (thesis §4.1); a joint config must be left before another.
    const alreadyPending = r.pendingConfIndex > r.raftLog.applied;
    const alreadyJoint = r.isJointConfig();
    const wantsLeave = cc.changes.length === 0;
    if (alreadyPending) return 'conf-change-pending';
    if (alreadyJoint && !wantsLeave) return 'conf-change-invalid';
    if (!alreadyJoint && wantsLeave) return 'conf-change-invalid';
    // A committed change that cannot be applied would stop every node: refuse it now instead.
    if (!r.isValidConfChange(cc)) return 'conf-change-invalid';
  }
  const firstNew = r.raftLog.lastIndex() + 1;
  if (!r.appendEntry(m.entries.map((e) => (e.confChange === undefined ? { type: e.type, data: e.data } : { type: e.type, data: e.data, confChange: e.confChange })))) {
    return 'uncommitted-size-limit';
  }
  m.entries.forEach((e, i) => {
    if (e.type === 'conf-change') r.pendingConfIndex = firstNew + i;
  });
  r.bcastAppend();
  return undefined;
}

function handleReadIndex(r: Raft, m: Message): DropReason | undefined {
  const sabotaged = r.hasBug('read-without-quorum');
  if (r.trk.isSingleton() || sabotaged) {
    // Alone, the leader is trivially current. (The sabotaged path skips confirmation entirely.)
    r.responseToReadIndex(m, r.raftLog.committed);
    return undefined;
  }
  // Thesis §6.4 step 1: the leader must have committed an entry of its term to know the commit index.
  if (!r.committedEntryInCurrentTerm()) {
    r.deferReadIndex(m);
    return undefined;
  }
  if (r.leaseValid()) {
    r.responseToReadIndex(m, r.raftLog.committed);
    return undefined;
  }
  // Step 2 and 3: record the commit index, then confirm leadership with a heartbeat round.
  r.readOnly.addRequest(r.raftLog.committed, m);
  r.readOnly.recvAck(r.id, m.context ?? '');
  bcastHeartbeatWithReads(r);
  return undefined;
}

function handleAppendResponse(r: Raft, m: Message, pr: Progress): void {
  pr.recentActive = true;
  if (m.reject) {
    let nextProbe = m.rejectHint;
    if (m.logTerm > 0) {
      // Skip every entry of the follower's conflicting term in one step (§5.3 optimization).
      nextProbe = r.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index;
    }
    if (pr.maybeDecrTo(m.index, nextProbe)) {
      if (pr.state === 'replicate') pr.becomeProbe();
      r.maybeSendAppend(m.from, true);
    }
    return;
  }
  const wasPaused = pr.isPaused();
  if (!pr.maybeUpdate(m.index) && !(pr.match === m.index && pr.state === 'probe')) return;
  if (pr.state === 'probe') {
    pr.becomeReplicate();
  } else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
    r.logLine(`${r.id} recovered from needing snapshot, resumed sending replication messages to ${m.from} [${pr.toString()}]`);
    pr.becomeProbe();
    pr.becomeReplicate();
  } else if (pr.state === 'replicate') {
    pr.inflights.freeLE(m.index);
  }
  if (r.maybeCommit()) {
    r.releasePendingReadIndexMessages();
    r.bcastAppend();
  } else if (wasPaused) {
    r.maybeSendAppend(m.from, true);
  }
  // Stream what remains, within the inflight window.
  while (r.maybeSendAppend(m.from, false)) {
    /* keep sending */
  }
  if (m.from === r.leadTransferee && pr.match === r.raftLog.lastIndex()) {
    r.logLine(`${r.id} sent MsgTimeoutNow to ${m.from} after received MsgAppResp`);
    r.sendTimeoutNow(m.from);
  }
}

function handleHeartbeatResponse(r: Raft, m: Message, pr: Progress): void {
  pr.recentActive = true;
  pr.probeSent = false;
  // The follower is alive, but a full window may mean our appends or its acks were lost: free a
  // slot so the next append goes out; a gap makes the follower reject it and we probe again.
  if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
  if (m.leaseTick !== undefined) {
    const buggy = r.hasBug('lease-read-drift');
    // Correct: the lease runs from when the heartbeat was sent. Buggy: from when its ack arrived.
    const tick = buggy ? r.leaderTick : m.leaseTick;
    if (tick > pr.leaseAckTick) pr.leaseAckTick = tick;
  }
  if (pr.match < r.raftLog.lastIndex()) r.maybeSendAppend(m.from, true);
  if (m.context === undefined) return;
  const acks = r.readOnly.recvAck(m.from, m.context);
  if (acks === undefined) return;
  const votes = new Map<number, boolean>();
  for (const id of acks) votes.set(id, true);
  if (jointVoteResult(r.trk.config.voters, votes) !== 'won') return;
  for (const { index, request } of r.readOnly.advance(m.context)) r.responseToReadIndex(request, index);
}

function handleSnapStatus(m: Message, pr: Progress): void {
  if (pr.state !== 'snapshot') return;
  if (m.reject) pr.pendingSnapshot = 0; // failed: probe from the match index instead
  pr.becomeProbe();
  // Wait for the follower's MsgAppResp (or the next heartbeat) before probing.
  pr.probeSent = true;
}

function handleTransferLeader(r: Raft, m: Message, pr: Progress): void {
  const transferee = m.from;
  if (pr.isLearner) {
    r.logLine(`${r.id} [term ${r.term}] ignored transferring leadership to learner ${transferee}`);
    return;
  }
  if (r.leadTransferee !== NONE) {
    if (r.leadTransferee === transferee) return; // already in progress
    r.abortLeaderTransfer();
  }
  if (transferee === r.id) return; // already leader
  // The transfer must finish within one election timeout, or it is abandoned.
  r.electionElapsed = 0;
  r.leadTransferee = transferee;
  r.logLine(`${r.id} [term ${r.term}] starts to transfer leadership to ${transferee}`);
  if (pr.match === r.raftLog.lastIndex()) r.sendTimeoutNow(transferee);
  else r.maybeSendAppend(transferee, true);
}

