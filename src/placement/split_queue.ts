import { type Rng, type TesseraError, type Timers } from '../base/index.js';
import { type KvNode, LoadMeter, type RangeDescriptor, type RangeId } from '../kv/index.js';
import type { KeyInterval } from '../mvcc/index.js';
import { LoadSplitDecider } from './split_finder.js';

/** etcd-sized ranges: a range whose approximate size passes this splits (CockroachDB's default is 512 MiB; TiKV's region 96 MiB). */
export const DEFAULT_RANGE_MAX_BYTES = 64 * 1024 * 1024;
/** How often a node looks for ranges it leads that should split. */
export const SPLIT_CHECK_INTERVAL_MS = 1_000;

export interface SplitQueueOptions {
  readonly kv: KvNode;
  readonly timers: Timers;
  readonly rng: Rng;
  /** Split a range once its approximate size passes this; 0: never by size. */
  readonly rangeMaxBytes: number;
  /** Split a range whose requests pass this many per second, at a key chosen from sampled requests; 0: never by load. */
  readonly rangeSplitQps: number;
  readonly checkIntervalMs?: number;
  /** Told of each split this node made, or of why one failed. */
  readonly observe?: (event: { readonly kind: 'split'; readonly left: RangeDescriptor; readonly right: RangeDescriptor; readonly reason: 'size' | 'load' } | { readonly kind: 'split-failed'; readonly rangeId: RangeId; readonly error: TesseraError }) => void;
}

/**
 * Decides when the ranges this node leads split, and where (issue 13): by
 * size, at the key that halves the range's live keys, and by load, at the
 * key CockroachDB's load-based splitter would choose from sampled requests
 * (split_finder.ts). Only a range's leader splits it, one split at a time
 * per node; the split itself is one command in the range's log
 * (KvNode.splitRange). Driven by the node's ticks and by every request it
 * serves (`record`), in the server and in the simulator alike.
 */
export class SplitQueue {
  private readonly deciders = new Map<RangeId, { readonly decider: LoadSplitDecider; readonly version: number }>();
  /** Each range's request rate through this node, load splits on or off. */
  private readonly meters = new Map<RangeId, LoadMeter>();
  private splitting = false;
  private nextCheckMs: number;
  private readonly checkIntervalMs: number;

  constructor(private readonly o: SplitQueueOptions) {
    this.checkIntervalMs = o.checkIntervalMs ?? SPLIT_CHECK_INTERVAL_MS;
    this.nextCheckMs = o.timers.nowMs() + this.checkIntervalMs;
  }

  /** A request the range served: counted for its QPS and sampled for a load split key. */
  record(rangeId: RangeId, interval: KeyInterval): void {
    let meter = this.meters.get(rangeId);
    if (meter === undefined) this.meters.set(rangeId, (meter = new LoadMeter(this.o.timers)));
    meter.record();
    if (this.o.rangeSplitQps <= 0) return;
    this.deciderOf(rangeId)?.record(interval);
  }

  /** Drops the meters and deciders of ranges no longer on this node (merged away, or removed). */
  private forgetRetired(): void {
    const store = this.o.kv.store;
    for (const id of [...this.meters.keys()]) if (store.replica(id) === undefined) this.meters.delete(id);
    for (const id of [...this.deciders.keys()]) if (store.replica(id) === undefined) this.deciders.delete(id);
  }

  /** Requests per second the range served through this node, over the last LOAD_WINDOW_SECONDS (what /ranges shows). */
  qps(rangeId: RangeId): number {
    return this.meters.get(rangeId)?.qps() ?? 0;
  }

  tick(): void {
    const now = this.o.timers.nowMs();
    if (now < this.nextCheckMs || this.splitting) return;
    this.nextCheckMs = now + this.checkIntervalMs;
    this.forgetRetired();
    // Both off: nothing to look at, and a node may hold 10,000 ranges.
    if (this.o.rangeMaxBytes <= 0 && this.o.rangeSplitQps <= 0) return;
    for (const rangeId of this.o.kv.store.rangeIds()) {
      if (this.o.kv.store.replica(rangeId)?.raw.raft.state !== 'leader') continue;
      const choice = this.choose(rangeId);
      // Not a side of a merge in flight (ADR 0014): a split of the left one would make the merge impossible.
      if (choice === undefined || this.o.kv.mergePinned(rangeId)) continue;
      this.split(rangeId, choice.key, choice.reason);
      return;
    }
  }

  private choose(rangeId: RangeId): { key: Uint8Array; reason: 'size' | 'load' } | undefined {
    const sm = this.o.kv.stateMachineOf(rangeId);
    if (sm.descriptor === undefined) return undefined;
    if (this.o.rangeMaxBytes > 0 && sm.approxBytes > this.o.rangeMaxBytes) {
      const key = medianKey(this.o.kv, rangeId);
      if (key !== undefined) return { key, reason: 'size' };
    }
    // Only a range that served requests has a decider (see record): an idle node with 10,000 ranges
    // makes and asks none (ADR 0010).
    const decision = this.o.rangeSplitQps > 0 && this.deciders.has(rangeId) ? this.deciderOf(rangeId)?.decide() : undefined;
    return decision?.kind === 'split' ? { key: decision.key, reason: 'load' } : undefined;
  }

  private split(rangeId: RangeId, key: Uint8Array, reason: 'size' | 'load'): void {
    this.splitting = true;
    this.o.kv.splitRange(rangeId, key, (outcome) => {
      this.splitting = false;
      this.deciders.delete(rangeId);
      if (outcome instanceof Error) this.o.observe?.({ kind: 'split-failed', rangeId, error: outcome });
      else this.o.observe?.({ kind: 'split', left: outcome.left, right: outcome.right, reason });
    });
  }

  /** The range's load decider, made anew whenever its bounds changed (a split or a snapshot). */
  private deciderOf(rangeId: RangeId): LoadSplitDecider | undefined {
    const d = this.o.kv.stateMachineOf(rangeId).descriptor;
    if (d === undefined) return undefined;
    const held = this.deciders.get(rangeId);
    if (held !== undefined && held.version === d.epoch.version) return held.decider;
    const decider = new LoadSplitDecider({ start: d.start, end: d.end }, { clock: this.o.timers, rng: this.o.rng, qpsThreshold: this.o.rangeSplitQps });
    this.deciders.set(rangeId, { decider, version: d.epoch.version });
    return decider;
  }
}

/**
 * The key that halves a range's live keys, or undefined if it has fewer
 * than two: found from the index with keys only (no record is read).
 */
function medianKey(kv: KvNode, rangeId: RangeId): Uint8Array | undefined {
  const sm = kv.stateMachineOf(rangeId);
  const { start, end } = sm.span;
  const from = start.byteLength === 0 ? new Uint8Array([0]) : start;
  const rangeEnd = end ?? new Uint8Array([0]);
  const { count } = sm.mvcc.range({ key: from, rangeEnd, countOnly: true });
  if (count < 2) return undefined;
  const half = sm.mvcc.range({ key: from, rangeEnd, keysOnly: true, limit: Math.floor(count / 2) + 1 });
  const key = half.kvs[half.kvs.length - 1]?.key;
  // Strictly inside the bounds: never the range's own first key.
  return key === undefined || (key.byteLength === start.byteLength && key.every((b, i) => b === start[i])) ? undefined : key.slice();
}
