import type { TesseraError, Timers } from '../base/index.js';
import { type KvNode, META_RANGE, type RangeDescriptor, type RangeId } from '../kv/index.js';

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
  /** Told of each merge this node made, or of why one failed. */
  readonly observe?: (event: { readonly kind: 'merge'; readonly merged: RangeDescriptor; readonly rightRangeId: RangeId } | { readonly kind: 'merge-failed'; readonly rangeId: RangeId; readonly error: TesseraError }) => void;
}

/**
 * Decides when two neighbouring ranges merge (issue 13, ADR 0009 §6): on the
 * node leading the left one, every MERGE_CHECK_INTERVAL_MS, a range whose
 * right neighbour has the same replicas merges with it when both are small
 * (their approximate sizes sum below half of --range-max-bytes, so the
 * merged range does not split again at once) and cold (their requests per
 * second sum below half of --range-split-qps), and neither changed for
 * MERGE_AFTER_SPLIT_DELAY_MS. The meta range (range 1) is never a side: it
 * serves the timestamp oracle and the lease records, and a merge's left
 * side may hold its apply on a node whose right replica lags. One merge at a
 * time per node; the merge itself is KvNode.mergeRanges.
 */
export class MergeQueue {
  private merging = false;
  private nextCheckMs: number;
  private readonly checkIntervalMs: number;
  private readonly mergeDelayMs: number;
  /** Per range, the epoch version last seen and since when (a change restarts the delay). */
  private readonly stableSince = new Map<RangeId, { readonly version: number; readonly sinceMs: number }>();

  constructor(private readonly o: MergeQueueOptions) {
    this.checkIntervalMs = o.checkIntervalMs ?? MERGE_CHECK_INTERVAL_MS;
    this.mergeDelayMs = o.mergeDelayMs ?? MERGE_AFTER_SPLIT_DELAY_MS;
    this.nextCheckMs = o.timers.nowMs() + this.checkIntervalMs;
  }

  tick(): void {
    const now = this.o.timers.nowMs();
    if (now < this.nextCheckMs || this.merging) return;
    this.nextCheckMs = now + this.checkIntervalMs;
    const kv = this.o.kv;
    const ids = kv.store.rangeIds();
    for (const id of ids) this.noteVersion(id, now);
    for (const id of [...this.stableSince.keys()]) if (!ids.includes(id)) this.stableSince.delete(id);
    for (const leftId of ids) {
      if (leftId === META_RANGE || kv.store.replica(leftId)?.raw.raft.state !== 'leader') continue;
      const rightId = kv.rightNeighbourOf(leftId);
      if (rightId === undefined || !this.shouldMerge(leftId, rightId, now)) continue;
      this.merge(leftId);
      return;
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
    if (left.frozen !== undefined) return false;
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
      else this.o.observe?.({ kind: 'merge', merged: outcome.merged, rightRangeId: outcome.rightRangeId });
    });
  }
}
