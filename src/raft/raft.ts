import { assert, isTesseraError } from '../base/index.js';
import { type RaftConfig, leaseTicks, validateRaftConfig } from './config.js';
import { Changer, confChangeKind, restoreConfig, type ChangeResult } from './confchange.js';
import { implausible } from './implausible.js';
import { RaftLog } from './raft_log.js';
import { stepLeaderImpl } from './raft_leader.js';
import { ReadOnly, type ReadState } from './read_only.js';
import { ProgressTracker, Progress, configToString, confStateOf, isJoint } from './tracker.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type Snapshot,
  type SnapshotMetadata,
  NONE,
  entryPayloadBytes,
  entrySizeBytes,
  message,
  voteResponseType,
} from './types.js';

export type StateType = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/** Why a proposal (or forwarded request) was not accepted. */
export type DropReason =
  | 'no-leader'
  | 'forwarding-disabled'
  | 'leader-transfer-in-progress'
  | 'not-a-member'
  | 'uncommitted-size-limit'
  | 'conf-change-pending'
  | 'conf-change-invalid'
  | 'not-from-here';

/** The context a vote request carries when a leader transfer forces the election. */
export const CAMPAIGN_TRANSFER = 'CampaignTransfer';

/**
 * The Raft protocol state machine (Ongaro & Ousterhout, "In Search of an
 * Understandable Consensus Algorithm", and Ongaro's thesis). It never does
 * I/O: it appends to `msgs` and to the unstable log, and RawNode hands both
 * out in Ready.
 */
export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  state: StateType = 'follower';
  lead: NodeId = NONE;
  isLearner = false;
  readonly raftLog: RaftLog;
  readonly trk: ProgressTracker;
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  /** Messages refused as implausible (see implausible.ts); a corrupt or hostile peer shows here. */
  refusedMessages = 0;
  /** Set while a leader transfer to this node is in progress. */
  leadTransferee: NodeId = NONE;
  /** Index of the last conf change the leader appended; only one may be pending (thesis §4.1). */
  pendingConfIndex = 0;
  /** Payload bytes of entries appended but not yet committed, on the leader. */
  uncommittedSizeBytes = 0;
  readOnly = new ReadOnly();
  /** ReadIndex requests that arrived before this leader committed an entry of its term (thesis §6.4 step 1). */
  private pendingReadIndexMessages: Message[] = [];
  electionElapsed = 0;
  private heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  /** Ticks since this node became leader; heartbeats carry it so acks can extend the lease. */
  leaderTick = 0;
  /**
   * Quiescence (ADR 0010): this node stopped ticking an idle group. A leader
   * quiesces after `quiesceAfterTicks` idle ticks and tells its followers
   * with a last heartbeat; a follower quiesces on that heartbeat if its log
   * ends where the leader's does. Any other message, proposal, read or
   * campaign wakes the node (`unquiesce`); so does the host when the
   * leader's node goes silent.
   */
  quiesced = false;
  /** On a leader: consecutive ticks at which the group could quiesce (see canQuiesce). */
  private idleTicks = 0;
  /** Lease reads: no votes are granted for one election timeout after start, as if a leader had just been heard. */
  private startupQuiet: boolean;
  /**
   * Set when this leader sends MsgTimeoutNow; cleared only by a new term (reset). A delayed
   * MsgTimeoutNow can make the transferee win a forced election at any later time, even after the
   * transfer was aborted and fresh heartbeat acks rebuilt the lease, so lease reads stay off for
   * the rest of the term (found by read_index_lease_after_transfer.txt: a stale lease read).
   */
  private leaseRevoked = false;
  private readonly config: RaftConfig;
  private readonly log: (line: string) => void;
  /** For invariant checks: the commit point seen last time, and its term. */
  private checkedCommit = { index: 0, term: 0 };

  constructor(config: RaftConfig) {
    validateRaftConfig(config);
    this.config = config;
    this.id = config.id;
    this.log = config.logger ?? ((): void => {});
    this.raftLog = new RaftLog(config.storage, config.maxCommittedSizePerReadyBytes);
    this.trk = new ProgressTracker(config.maxInflightMsgs, config.maxInflightBytes);
    this.startupQuiet = config.readOnlyOption === 'lease-based';
    const { hardState, confState } = config.storage.initialState();
    const restored = restoreConfig(confState, this.changerOptions());
    this.switchToConfig(restored);
    if (hardState.term !== 0 || hardState.commit !== 0) this.loadState(hardState);
    // Under the deliberate bug apply-uncommitted, the state machine may hold entries past the durable
    // commit index; the bug hides that from this check so the cross-node oracles must catch it.
    const appliedIndex = this.hasBug('apply-uncommitted') ? Math.min(config.appliedIndex ?? 0, this.raftLog.committed) : (config.appliedIndex ?? 0);
    if (appliedIndex > 0) this.raftLog.appliedTo(appliedIndex);
    this.becomeFollower(this.term, NONE);
    this.log(
      `${this.id} newRaft [${configToString(this.trk.config)}, term: ${this.term}, commit: ${this.raftLog.committed}, applied: ${this.raftLog.applied}, lastindex: ${this.raftLog.lastIndex()}, lastterm: ${this.raftLog.lastTerm()}]`,
    );
  }

  private get sabotage(): RaftConfig['sabotage'] {
    return this.config.sabotage;
  }

  /** Whether a deliberate bug is switched on (simulator self-tests only). */
  /** PreVote as configured; off only under the deliberate bug 'no-prevote-checkquorum' (sabotage.ts). */
  preVoteOn(): boolean {
    return this.config.preVote && !this.hasBug('no-prevote-checkquorum');
  }

  /** CheckQuorum (and leader stickiness) as configured; off only under the same deliberate bug. */
  checkQuorumOn(): boolean {
    return this.config.checkQuorum && !this.hasBug('no-prevote-checkquorum');
  }

  hasBug(name: Parameters<NonNullable<RaftConfig['sabotage']>['has']>[0]): boolean {
    return this.config.sabotage?.has(name) === true;
  }

  logLine(line: string): void {
    this.log(line);
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  private loadState(hs: HardState): void {
    const last = this.raftLog.lastIndex();
    assert(
      hs.commit >= this.raftLog.committed && hs.commit <= last,
      `hard state commit ${hs.commit} is out of range [${this.raftLog.committed}, ${last}]`,
    );
    this.raftLog.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  // ---- sending -------------------------------------------------------------

  send(m: Message): void {
    let out = m.from === NONE ? { ...m, from: this.id } : m;
    if (out.type === 'MsgVote' || out.type === 'MsgVoteResp' || out.type === 'MsgPreVote' || out.type === 'MsgPreVoteResp') {
      // Votes carry the term they are for: a pre-vote carries the term it would campaign in.
      assert(out.term !== 0, () => `term must be set when sending ${out.type}`);
    } else {
      assert(out.term === 0, () => `term must not be set when sending ${out.type}, got ${out.term}`);
      // Proposals and forwarded ReadIndex travel without a term: they are local in spirit.
      if (out.type !== 'MsgProp' && out.type !== 'MsgReadIndex') out = { ...out, term: this.term };
    }
    this.msgs.push(out);
  }

  /** Sends an append (or a snapshot) to `to` if there is something to send. Returns whether it sent. */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.raftLog.termOrUndefined(prevIndex);
    let entries: readonly Entry[] | undefined;
    try {
      entries = this.raftLog.entries(pr.next, this.config.maxSizePerMsgBytes);
    } catch (err) {
      if (!isTesseraError(err, 'LOG_COMPACTED')) throw err;
      entries = undefined;
    }
    if (prevTerm === undefined || entries === undefined) return this.maybeSendSnapshot(to, pr);
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(message({ type: 'MsgApp', to, index: prevIndex, logTerm: prevTerm, entries, commit: this.raftLog.committed }));
    const last = entries[entries.length - 1];
    let bytes = 0;
    for (const e of entries) bytes += entrySizeBytes(e);
    pr.sentEntries(entries.length, last === undefined ? prevIndex : last.index, bytes);
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    // A follower we have not heard from lately may be down: don't ship a large snapshot into the void.
    if (!pr.recentActive) {
      this.log(`${this.id} ignored sending snapshot to ${to}: not recently active`);
      return false;
    }
    let snapshot: Snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (err) {
      if (isTesseraError(err, 'SNAPSHOT_TEMPORARILY_UNAVAILABLE')) return false;
      throw err;
    }
    assert(snapshot.metadata.index > 0, 'need a non-empty snapshot to catch up a follower');
    this.log(`${this.id} sent snapshot [index: ${snapshot.metadata.index}, term: ${snapshot.metadata.term}] to ${to} [${pr.toString()}]`);
    pr.becomeSnapshot(snapshot.metadata.index);
    this.send(message({ type: 'MsgSnap', to, snapshot }));
    return true;
  }

  /**
   * Sends `to` a snapshot of what this leader applied, now, leaving its
   * progress as it is: its log may well hold every entry, but its
   * application cannot apply one of them (a merge whose other range it
   * lacks, ADR 0014) and asked for the state past it. raft-rs has the same
   * in `request_snapshot`. Returns the snapshot's index, or undefined when
   * none went (not the leader, `to` not tracked or waiting for a snapshot
   * already, none available now).
   */
  sendSnapshotOnRequest(to: NodeId): number | undefined {
    const pr = this.trk.progress.get(to);
    if (this.state !== 'leader' || to === this.id || pr === undefined || pr.state === 'snapshot') return undefined;
    let snapshot: Snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (err) {
      if (isTesseraError(err, 'SNAPSHOT_TEMPORARILY_UNAVAILABLE')) return undefined;
      throw err;
    }
    this.log(`${this.id} sent snapshot [index: ${snapshot.metadata.index}, term: ${snapshot.metadata.term}] to ${to} on its request [${pr.toString()}]`);
    this.send(message({ type: 'MsgSnap', to, snapshot }));
    return snapshot.metadata.index;
  }

  bcastAppend(): void {
    for (const id of this.trk.ids()) if (id !== this.id) this.maybeSendAppend(id, true);
  }

  // ---- commit, append ------------------------------------------------------

  /** Advances the commit index to what a quorum has (§5.3), only for current-term entries (§5.4.2). */
  maybeCommit(): boolean {
    const quorumIndex = this.trk.committed();
    if (this.sabotage?.has('commit-old-term') === true) {
      const target = Math.min(quorumIndex, this.raftLog.lastIndex());
      if (target > this.raftLog.committed) {
        if (this.raftLog.termOrUndefined(target) !== this.term) this.log(`${this.id} [sabotage] committed old-term entry ${target} by counting`);
        this.raftLog.commitTo(target);
        return true;
      }
      return false;
    }
    return this.raftLog.maybeCommit(quorumIndex, this.term);
  }

  /** Appends proposals as the leader. Returns false if the uncommitted-size limit drops them. */
  appendEntry(entries: readonly Omit<Entry, 'term' | 'index'>[]): boolean {
    let last = this.raftLog.lastIndex();
    const stamped: Entry[] = entries.map((e) => ({ ...e, term: this.term, index: ++last }));
    if (!this.increaseUncommittedSize(stamped)) {
      this.log(`${this.id} appending new entries to log would exceed uncommitted entry size limit; dropping proposal`);
      return false;
    }
    last = this.raftLog.append(stamped);
    // The leader counts its own log. The host persists it before sending the messages of the same
    // Ready, so nobody hears of a commit before the leader's copy is durable.
    const self = this.trk.progress.get(this.id);
    if (self !== undefined) self.maybeUpdate(last);
    this.maybeCommit();
    return true;
  }

  private increaseUncommittedSize(entries: readonly Entry[]): boolean {
    let size = 0;
    for (const e of entries) size += entryPayloadBytes(e);
    const max = this.config.maxUncommittedEntriesSizeBytes;
    // An empty tail always admits one proposal, however large, so progress is possible.
    if (max > 0 && this.uncommittedSizeBytes > 0 && size > 0 && this.uncommittedSizeBytes + size > max) return false;
    this.uncommittedSizeBytes += size;
    return true;
  }

  reduceUncommittedSize(entries: readonly Entry[]): void {
    if (this.state !== 'leader') return;
    let size = 0;
    for (const e of entries) size += entryPayloadBytes(e);
    this.uncommittedSizeBytes = Math.max(0, this.uncommittedSizeBytes - size);
  }

  // ---- state transitions ---------------------------------------------------

  private reset(term: number): void {
    assert(term >= this.term, () => `term must never decrease: ${this.term} -> ${term}`);
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.unquiesce(false);
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.idleTicks = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const last = this.raftLog.lastIndex();
    for (const [id, old] of this.trk.progress) {
      const pr = new Progress({ next: last + 1, maxInflight: this.trk.maxInflight, maxInflightBytes: this.trk.maxInflightBytes, isLearner: old.isLearner });
      if (id === this.id) pr.match = last;
      this.trk.progress.set(id, pr);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSizeBytes = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
    this.leaseRevoked = false;
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.state = 'follower';
    this.log(`${this.id} became follower at term ${this.term}`);
  }

  becomePreCandidate(): void {
    assert(this.state !== 'leader', 'invalid transition [leader -> pre-candidate]');
    // A pre-candidate keeps its term and vote (thesis §9.6): it only asks whether it could win.
    this.trk.resetVotes();
    this.lead = NONE;
    this.state = 'pre-candidate';
    this.log(`${this.id} became pre-candidate at term ${this.term}`);
  }

  becomeCandidate(): void {
    assert(this.state !== 'leader', 'invalid transition [leader -> candidate]');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.state = 'candidate';
    this.log(`${this.id} became candidate at term ${this.term}`);
  }

  becomeLeader(): void {
    assert(this.state !== 'follower', 'invalid transition [follower -> leader]');
    this.reset(this.term);
    this.lead = this.id;
    this.state = 'leader';
    this.leaderTick = 0;
    const self = this.trk.progress.get(this.id);
    assert(self !== undefined, 'a leader must be in its own configuration');
    self.becomeReplicate();
    self.recentActive = true;
    // Conservatively treat any unapplied conf change in the log as pending (thesis §4.1).
    this.pendingConfIndex = this.raftLog.lastIndex();
    // A no-op of the new term lets the leader commit earlier-term entries (§5.4.2, §8). The
    // commit-old-term bug goes without it and commits old entries by counting instead.
    if (!this.hasBug('commit-old-term')) {
      const ok = this.appendEntry([{ type: 'normal', data: new Uint8Array() }]);
      assert(ok, 'the empty no-op is never refused by the uncommitted-size limit');
    }
    this.log(`${this.id} became leader at term ${this.term}`);
  }

  // ---- elections -----------------------------------------------------------

  private hup(transfer: boolean): void {
    if (this.state === 'leader') {
      this.log(`${this.id} ignoring MsgHup because already leader`);
      return;
    }
    if (!this.promotable()) {
      this.log(`${this.id} is unpromotable and can not campaign`);
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.log(`${this.id} cannot campaign at term ${this.term} since there are still pending configuration changes to apply`);
      return;
    }
    this.log(`${this.id} is starting a new election at term ${this.term}`);
    if (transfer) this.campaign('election', true);
    else if (this.preVoteOn()) this.campaign('pre-election', false);
    else this.campaign('election', false);
  }

  private hasUnappliedConfChanges(): boolean {
    const { applied, committed } = this.raftLog;
    if (applied >= committed) return false;
    if (applied + 1 < this.raftLog.firstIndex()) return false;
    const entries = this.raftLog.slice(applied + 1, committed + 1, Number.MAX_SAFE_INTEGER);
    return entries.some((e) => e.type === 'conf-change');
  }

  private campaign(kind: 'pre-election' | 'election', transfer: boolean): void {
    let voteTerm: number;
    let voteType: 'MsgVote' | 'MsgPreVote';
    if (kind === 'pre-election') {
      this.becomePreCandidate();
      voteType = 'MsgPreVote';
      voteTerm = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = 'MsgVote';
      voteTerm = this.term;
    }
    if (this.poll(this.id, voteResponseType(voteType), true) === 'won') {
      // A single-voter cluster wins at once.
      if (kind === 'pre-election') this.campaign('election', false);
      else this.becomeLeader();
      return;
    }
    for (const id of this.trk.voterIds()) {
      if (id === this.id) continue;
      this.log(
        `${this.id} [logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}] sent ${voteType} request to ${id} at term ${this.term}`,
      );
      const fields: Partial<Message> = { to: id, term: voteTerm, index: this.raftLog.lastIndex(), logTerm: this.raftLog.lastTerm() };
      this.send(message({ type: voteType, ...fields, ...(transfer ? { context: CAMPAIGN_TRANSFER } : {}) }));
    }
  }

  private poll(id: NodeId, type: string, granted: boolean): 'won' | 'lost' | 'pending' {
    this.log(`${this.id} received ${type} ${granted ? '' : 'rejection '}from ${id} at term ${this.term}`);
    this.trk.recordVote(id, granted);
    const { granted: g, rejected, result } = this.trk.tallyVotes();
    if (id !== this.id) this.log(`${this.id} has received ${g} ${type} votes and ${rejected} vote rejections`);
    return result;
  }

  /** Whether this node may become leader: it is a voter and not waiting for a snapshot. */
  promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && this.raftLog.unstable.snapshot === undefined;
  }

  private resetRandomizedElectionTimeout(): void {
    const et = this.config.electionTimeoutTicks;
    this.randomizedElectionTimeout = et + this.config.rng.intBelow(et);
  }

  pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  // ---- ticks ---------------------------------------------------------------

  tick(): void {
    // A quiesced node is not ticked by its host; a tick that comes anyway changes nothing.
    if (!this.quiesced) {
      if (this.state !== 'leader') this.tickElection();
      else if (!this.maybeQuiesce()) this.tickHeartbeat();
    }
    this.config.afterStep?.(this);
  }

  /**
   * Ticks that piled up while this node's process was paused or its event
   * loop blocked (ADR 0002), delivered at once. The lease clock (leaderTick)
   * counts them all, so a leader's lease still ends on time in real time. The
   * election and heartbeat timers count one: a node that was not listening
   * heard nothing, which says nothing about its peers. So a follower waits a
   * whole timeout from now before it campaigns (waiting longer only makes it
   * more careful of a leader's lease), and a leader runs CheckQuorum on what
   * its peers answer after the pause, not on its own silence.
   */
  tickAfterPause(ticks: number): void {
    assert(Number.isSafeInteger(ticks) && ticks >= 1, () => `tickAfterPause(${ticks})`);
    if (this.state === 'leader' && !this.quiesced) this.leaderTick += ticks - 1;
    this.tick();
  }

  private tickElection(): void {
    this.electionElapsed++;
    // The quiet period stands in for a leader not yet heard; once one is, leader stickiness (lead, not
    // this flag) takes over, or a pre-candidate that lost its leader would still refuse votes.
    if (this.startupQuiet && (this.lead !== NONE || this.electionElapsed >= this.config.electionTimeoutTicks)) this.startupQuiet = false;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step(message({ type: 'MsgHup', from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    this.leaderTick++;
    if (this.electionElapsed >= this.config.electionTimeoutTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorumOn()) this.step(message({ type: 'MsgCheckQuorum', from: this.id }));
      // A transfer that has not finished within an election timeout is abandoned (thesis §3.10).
      if (this.state === 'leader' && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.state !== 'leader') return;
    if (this.heartbeatElapsed >= this.config.heartbeatIntervalTicks) {
      this.heartbeatElapsed = 0;
      this.step(message({ type: 'MsgBeat', from: this.id }));
    }
  }

  // ---- quiescence (ADR 0010) -------------------------------------------------

  /**
   * Whether this leader's group is idle enough to stop ticking: nothing is
   * left to replicate, apply, read or change, and every member has the whole
   * log, so no follower needs a message that only a tick would send.
   * CockroachDB's shouldReplicaQuiesce checks the same; it also asks for the
   * lease, which here is the CheckQuorum activity of every member.
   */
  canQuiesce(): boolean {
    if (this.state !== 'leader' || this.leadTransferee !== NONE || this.isJointConfig()) return false;
    const log = this.raftLog;
    const last = log.lastIndex();
    // Our own no-op is committed (so reads need no deferral), and everything is durable and applied.
    if (!this.committedEntryInCurrentTerm() || log.committed !== last || log.applied !== last) return false;
    if (log.unstableEntries().length > 0 || log.unstable.snapshot !== undefined) return false;
    if (this.pendingConfIndex > log.applied || this.readOnly.size() > 0 || this.pendingReadIndexMessages.length > 0) return false;
    // Every member (learners too) holds the whole log and answered in this CheckQuorum interval.
    for (const [id, pr] of this.trk.progress) {
      if (id === this.id) continue;
      if (pr.match !== last || pr.state !== 'replicate' || !pr.recentActive) return false;
    }
    return true;
  }

  /**
   * At a leader's tick: after quiesceAfterTicks idle ticks in a row, sends
   * each member a heartbeat marked quiesce, carrying the last index and its
   * term, and stops ticking. The lease ends here: it is counted in this
   * leader's ticks, which stop now, so a lease kept across the quiet would
   * outlast the followers' promise not to vote (ADR 0002). Returns whether it
   * quiesced.
   */
  private maybeQuiesce(): boolean {
    const after = this.config.quiesceAfterTicks ?? 0;
    if (after === 0) return false;
    this.idleTicks = this.canQuiesce() ? this.idleTicks + 1 : 0;
    if (this.idleTicks < after) return false;
    const last = this.raftLog.lastIndex();
    const lastTerm = this.raftLog.lastTerm();
    for (const id of this.trk.ids()) {
      if (id === this.id) continue;
      this.send(message({ type: 'MsgHeartbeat', to: id, commit: this.raftLog.committed, index: last, logTerm: lastTerm, quiesce: true }));
    }
    // The deliberate bug 'quiesce-keeps-lease' keeps the lease, whose clock stops with the ticks.
    if (!this.hasBug('quiesce-keeps-lease')) for (const pr of this.trk.progress.values()) pr.leaseAckTick = -1;
    this.quiesce();
    return true;
  }

  /** An ack that brings a quiesced leader nothing new: a heartbeat's echo, or an append ack at or below the match. */
  private isStaleAck(m: Message): boolean {
    if (m.type === 'MsgHeartbeatResp') return m.leaseTick !== undefined && m.context === undefined;
    if (m.type !== 'MsgAppResp' || m.reject) return false;
    const pr = this.trk.progress.get(m.from);
    return pr !== undefined && m.index <= pr.match;
  }

  private quiesce(): void {
    if (this.quiesced) return;
    this.quiesced = true;
    this.idleTicks = 0;
    this.log(`${this.id} quiesced at term ${this.term} [lead: ${this.lead}, commit: ${this.raftLog.committed}, last: ${this.raftLog.lastIndex()}]`);
    this.config.onQuiescenceChange?.(true);
  }

  /**
   * Wakes a quiesced node. A leader starts a fresh CheckQuorum interval: its
   * followers' silence while it was quiet says nothing of their health, and
   * it must hear them again within an election timeout to keep leading. A
   * follower woken by anything but its leader (a proposal, a peer's vote
   * request, the host's liveness check) tells the leader so with a heartbeat
   * answer, which wakes it (CockroachDB wakes it with an empty proposal):
   * otherwise a candidate's vote requests would wake the followers but not a
   * leader that is alive, and the followers, hearing no heartbeats, would
   * soon grant the votes and depose it.
   */
  unquiesce(wakeLeader: boolean): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.idleTicks = 0;
    if (this.state === 'leader') {
      this.electionElapsed = 0;
      this.heartbeatElapsed = 0;
      for (const [id, pr] of this.trk.progress) pr.recentActive = id === this.id;
      this.log(`${this.id} woke as leader at term ${this.term}: its lease must be confirmed afresh`);
    } else if (wakeLeader && this.lead !== NONE && this.lead !== this.id) {
      this.send(message({ type: 'MsgHeartbeatResp', to: this.lead }));
    }
    this.log(`${this.id} woke at term ${this.term} [lead: ${this.lead}]`);
    this.config.onQuiescenceChange?.(false);
  }

  /**
   * A follower's answer to a quiesce heartbeat from its leader (the step's
   * term guard made it this term's). It quiesces, without an answer, only if
   * its log ends exactly at the leader's last entry (Log Matching, §5.3) and
   * that entry is committed: it then owes the leader nothing and is owed
   * nothing. Otherwise the heartbeat is an ordinary one, whose answer wakes
   * the leader. Returns whether it quiesced.
   */
  private quiesceOnHeartbeat(m: Message): boolean {
    // Guard: a node with quiescence off treats it as any heartbeat.
    if ((this.config.quiesceAfterTicks ?? 0) === 0) return false;
    // Preconditions: caught up to the leader's last index, in its term, and that index committed.
    const log = this.raftLog;
    const caughtUp = log.lastIndex() === m.index && log.matchTerm(m.index, m.logTerm) && m.commit === m.index;
    if (!caughtUp) return false;
    // Transition.
    log.commitTo(m.commit);
    this.quiesce();
    return true;
  }

  // ---- step ----------------------------------------------------------------

  /**
   * Handles one message. Returns a DropReason when a proposal or request is
   * refused here; callers turn that into a typed result.
   */
  step(m: Message): DropReason | undefined {
    if (this.quiesced) {
      // A late echo of a heartbeat sent before quiescing (or a duplicate ack) tells a quiet leader
      // nothing, and its lease tick must not count: the leader's lease clock is stopped. Dropped,
      // as the network might have; a follower that wants the leader awake sends no lease tick.
      if (this.state === 'leader' && m.term === this.term && this.isStaleAck(m)) return undefined;
      // Anything else wakes the node, except a quiesce heartbeat, which the follower's handler judges.
      // A follower tells its leader it woke unless the leader woke it or will hear of it anyway.
      const fromLeader = m.from === this.lead && m.term === this.term;
      const leaderHears = fromLeader || m.type === 'MsgProp' || m.type === 'MsgReadIndex';
      if (!(m.type === 'MsgHeartbeat' && m.quiesce === true)) this.unquiesce(!leaderHears);
    }
    const reason = this.stepOnce(m);
    this.config.afterStep?.(this, m);
    return reason;
  }

  private stepOnce(m: Message): DropReason | undefined {
    // Guard: what no correct peer sends is refused before any handler sees it (issue 12).
    const refusal = implausible(m, { id: this.id, term: this.term, isLeader: this.state === 'leader', lastIndex: this.raftLog.lastIndex() });
    if (refusal !== undefined) {
      this.refusedMessages++;
      this.log(`${this.id} [term: ${this.term}] refused a message from ${m.from} that no correct peer sends: ${refusal}`);
      return undefined;
    }
    // Guard: messages from other terms (Figure 2, "Rules for all servers").
    if (m.term === 0) {
      // local message, or a forwarded proposal / ReadIndex
    } else if (m.term > this.term) {
      if (!this.handleHigherTerm(m)) return undefined;
    } else if (m.term < this.term) {
      this.handleLowerTerm(m);
      return undefined;
    }
    switch (m.type) {
      case 'MsgHup':
        this.hup(false);
        return undefined;
      case 'MsgVote':
      case 'MsgPreVote':
        this.handleVoteRequest(m);
        return undefined;
      default:
        break;
    }
    switch (this.state) {
      case 'leader':
        return this.stepLeader(m);
      case 'candidate':
      case 'pre-candidate':
        return this.stepCandidate(m);
      case 'follower':
        return this.stepFollower(m);
    }
  }

  /** Returns whether the message should be processed further. */
  private handleHigherTerm(m: Message): boolean {
    if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
      const force = m.context === CAMPAIGN_TRANSFER;
      // Leader stickiness (thesis §4.2.3 and §9.6): a node that heard from a live leader within the
      // minimum election timeout ignores vote requests, so a disconnected node cannot depose it.
      const heardRecently = this.lead !== NONE || this.startupQuiet;
      const inLease = this.checkQuorumOn() && heardRecently && this.electionElapsed < this.config.electionTimeoutTicks;
      if (!force && inLease) {
        this.log(
          `${this.id} [logterm: ${this.raftLog.lastTerm()}, index: ${this.raftLog.lastIndex()}, vote: ${this.vote}] ignored ${m.type} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}: lease is not expired (remaining ticks: ${this.config.electionTimeoutTicks - this.electionElapsed})`,
        );
        return false;
      }
    }
    if (m.type === 'MsgPreVote') return true; // a pre-vote never changes our term
    if (m.type === 'MsgPreVoteResp' && !m.reject) return true; // the term is the one we would campaign in
    this.log(`${this.id} [term: ${this.term}] received a ${m.type} message with higher term from ${m.from} [term: ${m.term}]`);
    const fromLeader = m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap';
    this.becomeFollower(m.term, fromLeader ? m.from : NONE);
    return true;
  }

  private handleLowerTerm(m: Message): void {
    this.unquiesce(true);
    if ((this.checkQuorumOn() || this.preVoteOn()) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
      // A stale leader cut off from us while we advanced our term: tell it the new term so it steps
      // down; otherwise, with CheckQuorum or PreVote, it might never learn of it.
      this.send(message({ type: 'MsgAppResp', to: m.from }));
    } else if (m.type === 'MsgPreVote') {
      this.log(`${this.id} rejected ${m.type} from ${m.from} at term ${this.term}: stale term ${m.term}`);
      this.send(message({ type: 'MsgPreVoteResp', to: m.from, term: this.term, reject: true }));
    } else {
      this.log(`${this.id} [term: ${this.term}] ignored a ${m.type} message with lower term from ${m.from} [term: ${m.term}]`);
    }
  }

  private handleVoteRequest(m: Message): void {
    // Figure 2, RequestVote RPC: grant if we have not voted for someone else this term and the
    // candidate's log is at least as up to date as ours (§5.4.1).
    // The deliberate bug acts on followers only: a candidate's own vote would trip the local
    // "a candidate votes for itself" invariant first, and the cross-node oracle (two leaders
    // in one term) is what this bug exists to prove able to fire.
    const doubleVote = this.sabotage?.has('double-vote') === true && this.state === 'follower';
    const canVote =
      this.vote === m.from ||
      ((this.vote === NONE || doubleVote) && this.lead === NONE) ||
      (m.type === 'MsgPreVote' && m.term > this.term);
    const respType = voteResponseType(m.type);
    if (canVote && this.raftLog.isUpToDate(m.index, m.logTerm)) {
      this.log(`${this.id} cast ${m.type} for ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`);
      // The response carries the request's term: for a pre-vote it is the future term.
      this.send(message({ type: respType, to: m.from, term: m.term }));
      if (m.type === 'MsgVote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.log(`${this.id} rejected ${m.type} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`);
      this.send(message({ type: respType, to: m.from, term: this.term, reject: true }));
    }
  }

  // The leader's handlers live in raft_leader.ts to keep this file readable.
  stepLeader(m: Message): DropReason | undefined {
    return stepLeaderImpl(this, m);
  }

  stepCandidate(m: Message): DropReason | undefined {
    switch (m.type) {
      case 'MsgProp':
        this.log(`${this.id} no leader at term ${this.term}; dropping proposal`);
        return 'no-leader';
      case 'MsgApp':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return undefined;
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return undefined;
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return undefined;
      case 'MsgPreVoteResp':
      case 'MsgVoteResp': {
        const mine = this.state === 'pre-candidate' ? 'MsgPreVoteResp' : 'MsgVoteResp';
        if (m.type !== mine) return undefined;
        const result = this.poll(m.from, m.type, !m.reject);
        if (result === 'won') {
          if (this.state === 'pre-candidate') {
            this.campaign('election', false);
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === 'lost') {
          // A pre-candidate that loses goes back to its current term; a candidate stays in the new one.
          this.becomeFollower(this.term, NONE);
        }
        return undefined;
      }
      case 'MsgTimeoutNow':
        this.log(`${this.id} [term ${this.term} state ${this.state}] ignored MsgTimeoutNow from ${m.from}`);
        return undefined;
      case 'MsgReadIndex':
        return 'no-leader';
      default:
        return undefined;
    }
  }

  stepFollower(m: Message): DropReason | undefined {
    switch (m.type) {
      case 'MsgProp':
      case 'MsgReadIndex':
      case 'MsgTransferLeader':
        return this.forwardToLeader(m);
      case 'MsgApp':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return undefined;
      case 'MsgHeartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        if (m.quiesce === true && this.quiesceOnHeartbeat(m)) return undefined;
        this.unquiesce(false);
        this.handleHeartbeat(m);
        return undefined;
      case 'MsgSnap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return undefined;
      case 'MsgTimeoutNow':
        // The leader asks us to campaign at once, skipping PreVote and leader stickiness (thesis §3.10).
        this.log(`${this.id} [term ${this.term}] received MsgTimeoutNow from ${m.from} and starts an election to get leadership`);
        this.hup(true);
        return undefined;
      case 'MsgReadIndexResp':
        if (m.entries.length > 0 || m.context === undefined) return undefined;
        this.readStates.push({ index: m.index, context: m.context });
        return undefined;
      default:
        return undefined;
    }
  }

  private forwardToLeader(m: Message): DropReason | undefined {
    if (this.lead === NONE) {
      this.log(`${this.id} no leader at term ${this.term}; dropping ${m.type}`);
      return 'no-leader';
    }
    // Only what this node asked for goes on: a message that came from a peer (a proposal forwarded
    // to a node that lost leadership meanwhile), or a transfer naming another node, would reach the
    // leader with a sender that is not the connection's node, and the peer transport refuses such a
    // frame whole (wire.ts), failing every message and snapshot chunk queued with it.
    if (m.from !== this.id) {
      this.log(`${this.id} not forwarding ${m.type} from ${m.from} to leader ${this.lead} at term ${this.term}`);
      return 'not-from-here';
    }
    if (m.type === 'MsgProp' && this.config.disableProposalForwarding) {
      this.log(`${this.id} not forwarding to leader ${this.lead} at term ${this.term}; dropping proposal`);
      return 'forwarding-disabled';
    }
    this.send({ ...m, to: this.lead, term: 0 });
    return undefined;
  }

  // ---- follower handlers -----------------------------------------------------

  handleAppendEntries(m: Message): void {
    if (m.index < this.raftLog.committed) {
      // Everything up to our commit index already matches the leader's (Log Matching): say so.
      this.send(message({ type: 'MsgAppResp', to: m.from, index: this.raftLog.committed }));
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries) ?? this.appendSkippingMatch(m);
    if (lastNew !== undefined) {
      this.send(message({ type: 'MsgAppResp', to: m.from, index: lastNew }));
      return;
    }
    // Reject, with a hint that lets the leader skip a whole term of mismatches at once (§5.3).
    const hintIndex = Math.min(m.index, this.raftLog.lastIndex());
    const hint = this.raftLog.findConflictByTerm(hintIndex, m.logTerm);
    this.log(
      `${this.id} [logterm: ${this.raftLog.termOrUndefined(m.index) ?? 0}, index: ${m.index}] rejected MsgApp [logterm: ${m.logTerm}, index: ${m.index}] from ${m.from}`,
    );
    this.send(message({ type: 'MsgAppResp', to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term }));
  }

  /**
   * The deliberate bug 'append-skips-match': where our entry at `m.index` has
   * another term, append the leader's entries after it anyway, so our log
   * holds the leader's entry at m.index + 1 over a different one at m.index.
   * Undefined (a refusal, as without the bug) in every other case.
   */
  private appendSkippingMatch(m: Message): number | undefined {
    if (this.sabotage?.has('append-skips-match') !== true || m.entries.length === 0) return undefined;
    const ours = this.raftLog.termOrUndefined(m.index);
    if (ours === undefined || ours === m.logTerm || m.index <= this.raftLog.committed) return undefined;
    this.log(`${this.id} [sabotage] appended after entry ${m.index} of term ${ours}, not the leader's ${m.logTerm}`);
    const lastNew = this.raftLog.append(m.entries);
    this.raftLog.commitTo(Math.min(m.commit, lastNew));
    return lastNew;
  }

  handleHeartbeat(m: Message): void {
    this.raftLog.commitTo(m.commit);
    const fields: Partial<Message> = { to: m.from, ...(m.context === undefined ? {} : { context: m.context }) };
    this.send(message({ type: 'MsgHeartbeatResp', ...fields, ...(m.leaseTick === undefined ? {} : { leaseTick: m.leaseTick }) }));
  }

  handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    assert(snapshot !== undefined, 'MsgSnap without a snapshot');
    const { index, term } = snapshot.metadata;
    if (this.restore(snapshot)) {
      this.log(`${this.id} [commit: ${this.raftLog.committed}] restored snapshot [index: ${index}, term: ${term}]`);
      this.send(message({ type: 'MsgAppResp', to: m.from, index: this.raftLog.lastIndex() }));
    } else {
      this.log(`${this.id} [commit: ${this.raftLog.committed}] ignored snapshot [index: ${index}, term: ${term}]`);
      this.send(message({ type: 'MsgAppResp', to: m.from, index: this.raftLog.committed }));
    }
  }

  /** Installs a snapshot from the leader. Returns false if it was stale or already covered by our log. */
  restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    if (index <= this.raftLog.committed) return false;
    if (this.state !== 'follower') {
      // Defensive: only a leader sends snapshots, so we should already follow it.
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    const member = confState.voters.includes(this.id) || confState.learners.includes(this.id) || confState.votersOutgoing.includes(this.id);
    if (!member) {
      this.log(`${this.id} attempted to restore snapshot but it is not in the ConfState ${JSON.stringify(confState)}; should never happen`);
      return false;
    }
    if (this.raftLog.matchTerm(index, term)) {
      // We already have the snapshot's last entry: fast-forward the commit index instead.
      this.raftLog.commitTo(index);
      return false;
    }
    this.raftLog.restore(snapshot);
    this.trk.config = { voters: [new Set(), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false };
    this.switchToConfig(restoreConfig(confState, this.changerOptions()));
    const self = this.trk.progress.get(this.id);
    assert(self !== undefined, 'restored config must include this node');
    self.maybeUpdate(index);
    return true;
  }

  /**
   * The application installed a leader's snapshot whose last entry this
   * node's log already holds (same index and term) in place of applying the
   * committed entries up to it (a replica held at a merge it cannot apply,
   * ADR 0014). The log stays as it is, every entry after the snapshot
   * included (some may be acknowledged); the entry is committed, since the
   * leader applied it and Log Matching makes ours the same; the apply cursor
   * and the configuration move to the snapshot's.
   */
  restoreInLog(metadata: SnapshotMetadata): void {
    const { index, term, confState } = metadata;
    assert(this.raftLog.matchTerm(index, term), () => `snapshot [index: ${index}, term: ${term}] is not in the log`);
    assert(index > this.raftLog.applied, () => `snapshot ${index} not past applied ${this.raftLog.applied}`);
    assert(this.state !== 'leader', 'a leader takes no snapshot');
    this.raftLog.commitTo(index);
    this.raftLog.appliedTo(index);
    this.trk.config = { voters: [new Set(), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false };
    this.switchToConfig(restoreConfig(confState, this.changerOptions()));
    this.log(`${this.id} [commit: ${this.raftLog.committed}] applied snapshot [index: ${index}, term: ${term}] in its log`);
  }

  // ---- leader transfer & reads -----------------------------------------------

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  sendTimeoutNow(to: NodeId): void {
    // The lease ends here: the transferee may win an election at once, before our lease would expire.
    for (const pr of this.trk.progress.values()) pr.leaseAckTick = -1;
    this.leaseRevoked = true;
    this.send(message({ type: 'MsgTimeoutNow', to }));
  }

  committedEntryInCurrentTerm(): boolean {
    return this.raftLog.termOrUndefined(this.raftLog.committed) === this.term;
  }

  /** Whether the leader may serve a read from its lease without a heartbeat round. */
  leaseValid(): boolean {
    // Lease reads need CheckQuorum (validateRaftConfig); the deliberate bug that turns it off turns them off too.
    if (this.state !== 'leader' || this.config.readOnlyOption !== 'lease-based' || !this.checkQuorumOn() || this.leaseRevoked) return false;
    if (this.leadTransferee !== NONE || !this.committedEntryInCurrentTerm()) return false;
    const buggy = this.sabotage?.has('lease-read-drift') === true;
    // The bug: a lease as long as two election timeouts, blind to clock drift. (One election timeout
    // was enough to be caught before revisions came from the TSO; a new meta leader now persists a
    // window before its first write commits, which closes that shorter window.)
    const duration = buggy ? 2 * this.config.electionTimeoutTicks : leaseTicks(this.config);
    const since = this.trk.quorumLeaseTick(this.id, this.leaderTick);
    return since >= 0 && this.leaderTick < since + duration;
  }

  releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0) return;
    if (!this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of pending) stepLeaderImpl(this, m);
  }

  deferReadIndex(m: Message): void {
    this.pendingReadIndexMessages.push(m);
  }

  /** Answers a confirmed read: locally as a ReadState, or to the follower that asked. */
  responseToReadIndex(request: Message, readIndex: number): void {
    const context = request.context ?? '';
    if (request.from === NONE || request.from === this.id) {
      this.readStates.push({ index: readIndex, context });
    } else {
      this.send(message({ type: 'MsgReadIndexResp', to: request.from, index: readIndex, context }));
    }
  }

  // ---- configuration -----------------------------------------------------------

  changerOptions(): { lastIndex: number; maxInflight: number; maxInflightBytes: number } {
    return { lastIndex: this.raftLog.lastIndex(), maxInflight: this.config.maxInflightMsgs, maxInflightBytes: this.config.maxInflightBytes };
  }

  /** Applies a committed conf change (the application calls this when it applies the entry). */
  applyConfChange(cc: ConfChange): ConfState {
    return this.switchToConfig(this.computeConfChange(cc));
  }

  /** Whether `cc` could be applied to the current configuration. */
  isValidConfChange(cc: ConfChange): boolean {
    try {
      this.computeConfChange(cc);
      return true;
    } catch (err) {
      if (isTesseraError(err, 'INVALID_ARGUMENT')) return false;
      throw err;
    }
  }

  private computeConfChange(cc: ConfChange): ChangeResult {
    const changer = new Changer(this.trk.config, this.trk.progress, this.changerOptions());
    switch (confChangeKind(cc)) {
      case 'leave-joint':
        return changer.leaveJoint();
      case 'enter-joint':
        return changer.enterJoint(cc.transition !== 'explicit', cc.changes);
      case 'simple':
        return changer.simple(cc.changes);
    }
  }

  private switchToConfig(result: ChangeResult): ConfState {
    this.trk.config = result.config;
    this.trk.progress = result.progress;
    this.log(`${this.id} switched to configuration ${configToString(this.trk.config)}`);
    const cs = confStateOf(this.trk.config);
    const self = this.trk.progress.get(this.id);
    this.isLearner = self?.isLearner === true;
    if ((self === undefined || this.isLearner) && this.state === 'leader') {
      // Removed or demoted: step down so the remaining voters elect a leader (thesis §4.2.2).
      this.becomeFollower(this.term, NONE);
      return cs;
    }
    if (this.state !== 'leader' || cs.voters.length === 0) return cs;
    // The quorum changed, so the commit index may move; new peers need appends.
    if (this.maybeCommit()) this.bcastAppend();
    else for (const id of this.trk.ids()) if (id !== this.id) this.maybeSendAppend(id, false);
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  isJointConfig(): boolean {
    return isJoint(this.trk.config);
  }

  // ---- invariants ----------------------------------------------------------------

  /** Checks the node's local invariants; the simulator calls it after every step. */
  checkInvariants(): void {
    const { applied, committed } = this.raftLog;
    const last = this.raftLog.lastIndex();
    assert(applied <= committed, () => `applied ${applied} > committed ${committed}`);
    assert(committed <= last, () => `committed ${committed} > last index ${last}`);
    assert(this.raftLog.firstIndex() - 1 <= last, 'first index beyond last index + 1');
    assert(committed >= this.checkedCommit.index, () => `commit index went back from ${this.checkedCommit.index} to ${committed}`);
    const t = this.raftLog.termOrUndefined(this.checkedCommit.index);
    assert(
      t === undefined || this.checkedCommit.index === 0 || t === this.checkedCommit.term,
      `committed entry ${this.checkedCommit.index} changed term from ${this.checkedCommit.term} to ${t}`,
    );
    const ct = this.raftLog.termOrUndefined(committed);
    if (ct !== undefined) this.checkedCommit = { index: committed, term: ct };
    assert(this.state !== 'leader' || this.lead === this.id, 'a leader must name itself as lead');
    assert(this.state !== 'candidate' || this.vote === this.id, 'a candidate votes for itself');
    assert(this.raftLog.lastTerm() <= this.term, () => `last log term ${this.raftLog.lastTerm()} above current term ${this.term}`);
    if (this.state === 'leader') {
      const self = this.trk.progress.get(this.id);
      assert(self !== undefined && self.match === last, () => `leader's own match ${self?.match} != last index ${last}`);
    }
  }
}
