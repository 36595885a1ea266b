import { assert } from '../base/index.js';
import { type JointVoters, type VoteResult, jointCommitted, jointIds, jointVoteResult } from './quorum.js';
import type { ConfState, NodeId } from './types.js';

/**
 * A bounded window of in-flight MsgApp, identified by their last index, with
 * the bytes they carry. Flow control (max messages and bytes in flight).
 */
export class Inflights {
  private readonly indexes: number[] = [];
  private readonly sizes: number[] = [];
  private bytes = 0;

  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {}

  add(lastIndex: number, sizeBytes: number): void {
    assert(!this.full(), 'cannot add to a full inflights window');
    const prev = this.indexes[this.indexes.length - 1];
    assert(prev === undefined || lastIndex > prev, () => `inflights must grow: ${lastIndex} after ${prev}`);
    this.indexes.push(lastIndex);
    this.sizes.push(sizeBytes);
    this.bytes += sizeBytes;
  }

  /** Frees every message whose last index is ≤ `index`. */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.indexes.length && (this.indexes[n] as number) <= index) {
      this.bytes -= this.sizes[n] as number;
      n++;
    }
    if (n > 0) {
      this.indexes.splice(0, n);
      this.sizes.splice(0, n);
    }
  }

  /** Frees the oldest message; used when a heartbeat shows the follower alive but acks were lost. */
  freeFirstOne(): void {
    const first = this.indexes[0];
    if (first !== undefined) this.freeLE(first);
  }

  full(): boolean {
    return this.indexes.length >= this.maxCount || (this.maxBytes > 0 && this.bytes >= this.maxBytes);
  }

  count(): number {
    return this.indexes.length;
  }

  reset(): void {
    this.indexes.length = 0;
    this.sizes.length = 0;
    this.bytes = 0;
  }
}

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/**
 * The leader's view of one follower (§5.3 nextIndex/matchIndex). In 'probe'
 * it sends one append per heartbeat interval until it finds the match point;
 * in 'replicate' it streams optimistically within the inflights window; in
 * 'snapshot' it waits for a snapshot to land.
 * Invariant: match < next.
 */
export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In 'snapshot': the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Whether we heard from it in the current CheckQuorum interval. */
  recentActive = false;
  /** In 'probe': an append was sent and we wait for its answer (or a heartbeat) before sending another. */
  probeSent = false;
  /** The highest leader tick echoed back by this follower's heartbeat responses (lease reads). */
  leaseAckTick = -1;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(options: { next: number; maxInflight: number; maxInflightBytes: number; isLearner: boolean }) {
    this.next = options.next;
    this.inflights = new Inflights(options.maxInflight, options.maxInflightBytes);
    this.isLearner = options.isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records an acknowledgement up to `index`; returns whether it was news. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** Called after sending entries up to `lastIndex` (or an empty probe). */
  sentEntries(count: number, lastIndex: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /**
   * Handles a rejection of the append at `rejected`; `matchHint` is where the
   * follower suggests the logs may agree. Returns false if the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false; // stale
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false; // stale: not the probe we sent
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  toString(): string {
    let s = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) s += ' learner';
    if (this.isPaused()) s += ' paused';
    if (this.pendingSnapshot > 0) s += ` pendingSnap=${this.pendingSnapshot}`;
    if (!this.recentActive) s += ' inactive';
    if (this.inflights.count() > 0) s += ` inflight=${this.inflights.count()}`;
    return s;
  }
}

/** A membership configuration as the tracker holds it. */
export interface TrackerConfig {
  voters: JointVoters;
  learners: ReadonlySet<NodeId>;
  learnersNext: ReadonlySet<NodeId>;
  autoLeave: boolean;
}

export function emptyTrackerConfig(): TrackerConfig {
  return { voters: [new Set(), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false };
}

export function isJoint(config: TrackerConfig): boolean {
  return config.voters[1].size > 0;
}

export function confStateOf(config: TrackerConfig): ConfState {
  const sorted = (s: ReadonlySet<NodeId>): NodeId[] => [...s].sort((a, b) => a - b);
  return {
    voters: sorted(config.voters[0]),
    votersOutgoing: sorted(config.voters[1]),
    learners: sorted(config.learners),
    learnersNext: sorted(config.learnersNext),
    autoLeave: config.autoLeave,
  };
}

export function configToString(config: TrackerConfig): string {
  const cs = confStateOf(config);
  let s = `voters=(${cs.voters.join(' ')})`;
  if (cs.votersOutgoing.length > 0) s += `&&(${cs.votersOutgoing.join(' ')})`;
  if (cs.learners.length > 0) s += ` learners=(${cs.learners.join(' ')})`;
  if (cs.learnersNext.length > 0) s += ` learners_next=(${cs.learnersNext.join(' ')})`;
  if (cs.autoLeave) s += ' autoleave';
  return s;
}

/** Tracks the configuration, each peer's progress, and the votes of an election. */
export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();

  constructor(
    readonly maxInflight: number,
    readonly maxInflightBytes: number,
  ) {}

  /** The commit index a quorum of voters supports. */
  committed(): number {
    return jointCommitted(this.config.voters, (id) => this.progress.get(id)?.match);
  }

  /** Whether a quorum of voters has been active recently (CheckQuorum, §6.2 of the thesis). */
  quorumActive(selfId: NodeId): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      if (!pr.isLearner) votes.set(id, id === selfId || pr.recentActive);
    }
    return jointVoteResult(this.config.voters, votes) === 'won';
  }

  /** The leader tick that a quorum has echoed, for lease reads. */
  quorumLeaseTick(selfId: NodeId, selfTick: number): number {
    return jointCommitted(this.config.voters, (id) => (id === selfId ? selfTick : this.progress.get(id)?.leaseAckTick));
  }

  voterIds(): NodeId[] {
    return jointIds(this.config.voters);
  }

  /** Every tracked id, sorted, so iteration is deterministic. */
  ids(): NodeId[] {
    return [...this.progress.keys()].sort((a, b) => a - b);
  }

  isSingleton(): boolean {
    return this.config.voters[0].size === 1 && this.config.voters[1].size === 0;
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const [id, pr] of this.progress) {
      if (pr.isLearner) continue;
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: jointVoteResult(this.config.voters, this.votes) };
  }

  isVoter(id: NodeId): boolean {
    return this.config.voters[0].has(id) || this.config.voters[1].has(id);
  }
}
