import type { TesseraError, Timers } from '../base/index.js';
import { type KvNode, META_RANGE, type RangeDescriptor, type RangeId } from '../kv/index.js';
import type { NodeId } from '../raft/index.js';

/** How often a node looks for ranges it leads that should merge with their right neighbour. */
export const MERGE_CHECK_INTERVAL_MS = 5_000;
/**
 * A range merges only once neither side's descriptor changed (a split, a
 * merge, a snapshot that moved its bounds) for this long, so a split is not
 * undone while the load that caused it may come back (CockroachDB's
 * kv.range_split.by_load_merge_delay, 5 minutes).
 */
export const MERGE_AFTER_SPLIT_DELAY_MS = 5 * 60_000;

export interface MergeQueueOptions {
  readonly kv: KvNode;
  readonly timers: Timers;
  /** The split threshold by size: two neighbours merge only while together below half of it (0: size never stops a merge). */
  readonly rangeMaxBytes: number;
  /** The split threshold by load: two neighbours merge only while together below half of it (0: load is not measured). */
  readonly rangeSplitQps: number;
  /** Requests per second a range served through this node (SplitQueue.qps). */
  readonly qps: (rangeId: RangeId) => number;
  readonly checkIntervalMs?: number;
  readonly mergeDelayMs?: number;
  /** Whether the queue finds neighbours to merge by size and load itself (default true); false: only those `want` names. */
  readonly auto?: boolean;
  /** Told of each merge this node made, or of why one failed. */
  readonly observe?: (event: { readonly kind: 'merge'; readonly merged: RangeDescriptor; readonly rightRangeId: RangeId } | { readonly kind: 'merge-failed'; readonly rangeId: RangeId; readonly error: TesseraError }) => void;
}

/** A relocation of a right-hand range towards its left neighbour's replicas lasts this many check intervals past the last check that still wanted it. */
export const RELOCATION_HOLD_CHECKS = 3;

/**
 * What a merge wants of placement (ADR 0014), for the ReplicaReconciler:
 * a right-hand range moved onto its left neighbour's voters, and neither
 * side balanced meanwhile.
 */
export interface MergePlans {
  /** The voters range `rangeId` should have so that it can merge with its left neighbour, if a merge wants it moved. */
  relocationGoal(rangeId: RangeId): readonly NodeId[] | undefined;
  /** Whether no balancing move may change range `rangeId` now: a merge of it is wanted or under way. */
  holdsBalance(rangeId: RangeId): boolean;
  /** Ranges whose plans changed since the last call (a quiesced range is otherwise looked at rarely). */
  takeChanged(): RangeId[];
}

/**
 * Decides when two neighbouring ranges merge (issue 13, ADR 0009 §6): on the
 * node leading the left one, every MERGE_CHECK_INTERVAL_MS, a range and its
 * right neighbour merge when both are small (their approximate sizes sum
 * below half of --range-max-bytes, so the merged range does not split again
 * at once) and cold (their requests per second sum below half of
 * --range-split-qps), and neither changed for MERGE_AFTER_SPLIT_DELAY_MS.
 * The meta range (range 1) is never a side: it serves the timestamp oracle
 * and the lease records, and a merge's left side may hold its apply on a
 * node whose right replica lags. One merge at a time per node; the merge
 * itself is KvNode.mergeRanges, which needs both sides on the same voters.
 *
 * Under placement (ADR 0014) the two may be on different replicas; then,
 * as CockroachDB's merge queue does, the right range is first moved onto
 * the left one's voters, through the ReplicaReconciler (MergePlans): the
 * node leading the right range, if it holds the left one (it sees both
 * sizes), makes the left's voters its goal; if it does not, the first node
 * (by id) holding a voter of both asks for the right range's leadership
 * first. Neither side is balanced meanwhile. Neighbours on disjoint replica
 * sets are not merged: no node sees both sizes.
 */
export class MergeQueue implements MergePlans {
  private merging = false;
  private nextCheckMs: number;
  private readonly checkIntervalMs: number;
  private readonly mergeDelayMs: number;
  /** Per range, the epoch version last seen and since when (a change restarts the delay). */
  private readonly stableSince = new Map<RangeId, { readonly version: number; readonly sinceMs: number }>();
  /** Right-hand ranges led here that should move onto their left neighbour's voters, and until when. */
  private readonly relocations = new Map<RangeId, { readonly goal: readonly NodeId[]; readonly untilMs: number }>();
  /** Ranges that take no balancing move until then (the sides of a wanted merge). */
  private readonly held = new Map<RangeId, number>();
  /** Left ranges a caller asked to merge regardless of size and load (the simulator's nemesis), until when. */
  private readonly wanted = new Map<RangeId, number>();
  private readonly changed = new Set<RangeId>();

  constructor(private readonly o: MergeQueueOptions) {
    this.checkIntervalMs = o.checkIntervalMs ?? MERGE_CHECK_INTERVAL_MS;
    this.mergeDelayMs = o.mergeDelayMs ?? MERGE_AFTER_SPLIT_DELAY_MS;
    this.nextCheckMs = o.timers.nowMs() + this.checkIntervalMs;
  }

  /** Merge range `leftId` with its right neighbour whatever their size and load, moving replicas first if needed, until `untilMs`. */
  want(leftId: RangeId, untilMs: number): void {
    this.wanted.set(leftId, untilMs);
    this.nextCheckMs = Math.min(this.nextCheckMs, this.o.timers.nowMs());
  }

  relocationGoal(rangeId: RangeId): readonly NodeId[] | undefined {
    const r = this.relocations.get(rangeId);
    return r !== undefined && r.untilMs > this.o.timers.nowMs() ? r.goal : undefined;
  }

  holdsBalance(rangeId: RangeId): boolean {
    return (this.held.get(rangeId) ?? 0) > this.o.timers.nowMs() || this.o.kv.mergePinned(rangeId);
  }

  takeChanged(): RangeId[] {
    const out = [...this.changed];
    this.changed.clear();
    return out;
  }

  tick(): void {
    const now = this.o.timers.nowMs();
    if (now < this.nextCheckMs) return;
    this.nextCheckMs = now + this.checkIntervalMs;
    const kv = this.o.kv;
    const ids = kv.store.rangeIds();
    for (const id of ids) this.noteVersion(id, now);
    for (const id of [...this.stableSince.keys()]) if (!ids.includes(id)) this.stableSince.delete(id);
    for (const [id, until] of this.wanted) if (until <= now) this.wanted.delete(id);
    for (const [id, r] of this.relocations) if (r.untilMs <= now) (this.relocations.delete(id), this.changed.add(id));
    for (const [id, until] of this.held) if (until <= now) this.held.delete(id);
    const holdUntil = now + RELOCATION_HOLD_CHECKS * this.checkIntervalMs;
    const leads = (id: RangeId): boolean => kv.store.replica(id)?.raw.raft.state === 'leader';
    let relocating = false;
    for (const id of ids) {
      if (id === META_RANGE) continue;
      // As the right-hand side: its leader moves it onto the left neighbour's voters, if it holds that range.
      const leftId = kv.leftNeighbourOf(id);
      if (!relocating && leads(id) && leftId !== undefined && leftId !== META_RANGE && this.shouldMerge(leftId, id, now)) {
        const goal = votersOf(kv.stateMachineOf(leftId).descriptor);
        const right = kv.stateMachineOf(id).descriptor;
        if (goal !== undefined && right !== undefined && !sameVoters(goal, right)) {
          const before = this.relocations.get(id)?.goal;
          this.relocations.set(id, { goal, untilMs: holdUntil });
          if (before === undefined || before.join(',') !== goal.join(',')) this.changed.add(id);
          this.held.set(leftId, holdUntil);
          relocating = true;
        }
      }
      // As the left-hand side.
      const rightId = kv.rightNeighbourOf(id);
      if (rightId === undefined || this.merging || !this.shouldMerge(id, rightId, now)) continue;
      const left = kv.stateMachineOf(id).descriptor;
      const right = kv.stateMachineOf(rightId).descriptor;
      const voters = votersOf(left);
      if (left === undefined || right === undefined || voters === undefined) continue;
      if (leads(id)) {
        this.held.set(id, holdUntil);
        this.held.set(rightId, holdUntil);
        if (sameVoters(voters, right)) {
          this.merge(id);
          return;
        }
      }
      if (sameVoters(voters, right)) continue;
      // The right range's leader does not hold this range, so it cannot see both sizes: the first
      // node (by id) holding a voter of each asks for the right range's leadership, and moves it.
      const rightRaft = kv.store.replica(rightId)?.raw.raft;
      const self = rightRaft?.id;
      const shared = right.replicas.filter((r) => r.role === 'voter' && voters.includes(r.nodeId)).map((r) => r.nodeId);
      if (rightRaft === undefined || self === undefined || rightRaft.state === 'leader' || rightRaft.lead === 0 || voters.includes(rightRaft.lead)) continue;
      if (shared.length > 0 && Math.min(...shared) === self) kv.store.transferLeader(rightId, self);
    }
  }

  private noteVersion(rangeId: RangeId, nowMs: number): void {
    const version = this.o.kv.stateMachineOf(rangeId).descriptor?.epoch.version;
    if (version === undefined) return;
    const seen = this.stableSince.get(rangeId);
    if (seen === undefined || seen.version !== version) this.stableSince.set(rangeId, { version, sinceMs: nowMs });
  }

  private shouldMerge(leftId: RangeId, rightId: RangeId, nowMs: number): boolean {
    const kv = this.o.kv;
    const left = kv.stateMachineOf(leftId);
    const right = kv.stateMachineOf(rightId);
    if (left.frozen !== undefined || left.descriptor === undefined || right.descriptor === undefined) return false;
    // The right range is itself the left side of a merge in flight (its own right neighbour frozen for
    // it): freezing it now would only make that merge impossible (ADR 0014).
    if (right.frozen === undefined && kv.mergePinned(rightId)) return false;
    if (this.wanted.has(leftId)) return true;
    if (this.o.auto === false) return false;
    for (const id of [leftId, rightId]) {
      const seen = this.stableSince.get(id);
      if (seen === undefined || nowMs - seen.sinceMs < this.mergeDelayMs) return false;
    }
    if (this.o.rangeMaxBytes > 0 && left.approxBytes + right.approxBytes >= this.o.rangeMaxBytes / 2) return false;
    if (this.o.rangeSplitQps > 0 && this.o.qps(leftId) + this.o.qps(rightId) >= this.o.rangeSplitQps / 2) return false;
    return true;
  }

  private merge(leftId: RangeId): void {
    this.merging = true;
    this.o.kv.mergeRanges(leftId, (outcome) => {
      this.merging = false;
      if (outcome instanceof Error) this.o.observe?.({ kind: 'merge-failed', rangeId: leftId, error: outcome });
      else {
        this.wanted.delete(leftId);
        this.o.observe?.({ kind: 'merge', merged: outcome.merged, rightRangeId: outcome.rightRangeId });
      }
    });
  }
}

/** A range's voters in id order, or undefined while it has learners (mid-move: its replicas are not settled). */
function votersOf(d: RangeDescriptor | undefined): NodeId[] | undefined {
  if (d === undefined || d.replicas.some((r) => r.role !== 'voter')) return undefined;
  return d.replicas.map((r) => r.nodeId).sort((a, b) => a - b);
}

/** Whether a range's replicas are exactly these voters. */
function sameVoters(voters: readonly NodeId[], d: RangeDescriptor): boolean {
  return d.replicas.length === voters.length && d.replicas.every((r) => r.role === 'voter' && voters.includes(r.nodeId));
}
