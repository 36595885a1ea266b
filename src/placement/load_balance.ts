import type { Timers } from '../base/index.js';
import { type KvNode, META_RANGE, NODE_LOAD_REFRESH_MS, type RangeId } from '../kv/index.js';
import type { NodeId } from '../raft/index.js';

/**
 * Load-based balance (ADR 0015): the figures placement weighs besides
 * replica and leader counts, and the thresholds that keep it from
 * thrashing. A node is overfull in a dimension when it holds more than
 * OVERFULL_RATIO times the mean and at least the dimension's minimum
 * imbalance above it (the minimum keeps a nearly idle cluster, where 1.2×
 * of almost nothing is still almost nothing, from moving at all). A move
 * never takes its receiver above RECEIVER_MAX_RATIO times the mean, halfway
 * to overfull: a receiver is not overfull from the move, nor from the next
 * small change after it (the gap is the hysteresis), so load does not
 * bounce between two nodes.
 */
export const OVERFULL_RATIO = 1.2;
/** A move's receiver ends at most this many times the mean (see OVERFULL_RATIO). */
export const RECEIVER_MAX_RATIO = 1.1;
/**
 * A byte move takes a range at least the average size of the overfull
 * node's replicas, or an eighth of its excess if that is less: the big
 * ranges go first and a move relieves a fair share, yet a node whose
 * ranges are all small against its excess still sheds them.
 */
export const MIN_MOVE_SHARE_OF_EXCESS = 1 / 8;
/** Below this many bytes above the mean, no node is byte-overfull (CockroachDB moves nothing for small differences either). */
export const DEFAULT_MIN_BYTES_IMBALANCE = 4 * 1024 * 1024;
/** Below this many requests per second above the mean, no node is QPS-overfull. */
export const DEFAULT_MIN_QPS_IMBALANCE = 50;

/** Per-node figures of one dimension (bytes, or QPS), and the imbalance under which nothing moves. */
export interface LoadFigures {
  readonly perNode: ReadonlyMap<NodeId, number>;
  readonly minImbalance: number;
}

/**
 * The mean of a dimension over `nodes`, or undefined when some node has
 * not reported it (a node just started, or silent): decisions on partial
 * figures would pile load onto the node nobody knows about.
 */
export function meanOver(figures: LoadFigures, nodes: readonly NodeId[]): number | undefined {
  if (nodes.length === 0) return undefined;
  let sum = 0;
  for (const id of nodes) {
    const v = figures.perNode.get(id);
    if (v === undefined) return undefined;
    sum += v;
  }
  return sum / nodes.length;
}

/** Whether a node holding `value` is overfull against `mean` (see OVERFULL_RATIO). */
export function overfull(value: number, mean: number, minImbalance: number): boolean {
  return value > OVERFULL_RATIO * mean && value - mean >= minImbalance;
}

/** A node below this many times the mean, and by the minimum imbalance, is underfull: any node above the mean may shed load to it. */
export const UNDERFULL_RATIO = 2 - OVERFULL_RATIO;

/** Whether a node holding `value` is underfull against `mean` (see UNDERFULL_RATIO). */
export function underfull(value: number, mean: number, minImbalance: number): boolean {
  return value < UNDERFULL_RATIO * mean && mean - value >= minImbalance;
}

/** Whether a node may receive a move that takes it to `value` (see RECEIVER_MAX_RATIO). */
export function mayReceive(value: number, mean: number): boolean {
  return value <= RECEIVER_MAX_RATIO * mean;
}

export interface NodeLoadReporterOptions {
  readonly kv: KvNode;
  readonly timers: Timers;
  /** A range's requests per second as this node meters them (SplitQueue.qps: what /ranges shows). */
  readonly qps: (rangeId: RangeId) => number;
  readonly intervalMs?: number;
}

/**
 * Works out this node's load every NODE_LOAD_REFRESH_MS and hands it to
 * KvNode, which tells every member with its liveness (ADR 0015): the bytes
 * of the data-range replicas it holds (each replica's approximate size,
 * which followers know as well as the leader) and the QPS of the ranges it
 * leads. Range 1 is left out: every member holds it.
 */
export class NodeLoadReporter {
  private nextMs = 0;

  constructor(private readonly o: NodeLoadReporterOptions) {}

  tick(): void {
    const nowMs = this.o.timers.nowMs();
    if (nowMs < this.nextMs) return;
    this.nextMs = nowMs + (this.o.intervalMs ?? NODE_LOAD_REFRESH_MS);
    const kv = this.o.kv;
    let bytes = 0;
    let leaderQps = 0;
    let leaders = 0;
    for (const rangeId of kv.store.rangeIds()) {
      const replica = kv.store.replica(rangeId);
      if (replica === undefined) continue;
      if (replica.raw.raft.state === 'leader') leaders++;
      if (rangeId === META_RANGE) continue;
      const sm = kv.stateMachineOf(rangeId);
      // A replica not set up yet (no snapshot) holds nothing.
      if (sm.descriptor !== undefined) bytes += sm.approxBytes;
      if (replica.raw.raft.state === 'leader') leaderQps += this.o.qps(rangeId);
    }
    kv.publishLoad({ bytes, leaderQps, leaders });
  }
}
