import { assert } from '../base/index.js';
import type { ReadView, WriteBatch } from '../storage/engine.js';
import { type RangeId, keys, readU64 } from './keys.js';

/** Applied request ids are remembered for this many log entries, to drop a proposal delivered twice. */
export const DEDUPE_WINDOW_ENTRIES = 10_000;
/** Records expired per applied command at most, so the work per entry stays bounded after a gap. */
export const DEDUPE_EXPIRE_PER_APPLY = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The request ids a range applied in its last DEDUPE_WINDOW_ENTRIES log
 * entries. The engine holds them as one record per id keyed by log index,
 * in the range's snapshotted state, so they are written and expired in key
 * order (an append and a delete at the front, no scattered pages); this
 * class mirrors them in memory, where lookups by id happen, so applying a
 * command costs no engine read. It is loaded from the engine once, and the
 * owner drops it whenever the engine's state is replaced (a snapshot).
 *
 * Expiry is a function of the applied index alone: each command drops up to
 * DEDUPE_EXPIRE_PER_APPLY of the oldest records that fell out of the window.
 * It never depends on how entries were grouped into batches, which differs
 * between replicas, so every replica keeps exactly the same ids.
 */
export class DedupeWindow {
  /** Indexes and ids in apply order (ascending index), from `head` on. */
  private readonly indexes: number[] = [];
  private readonly ids: string[] = [];
  private head = 0;
  private readonly live = new Set<string>();

  private constructor(private readonly rangeId: RangeId) {}

  static load(view: ReadView, rangeId: RangeId): DedupeWindow {
    const w = new DedupeWindow(rangeId);
    const prefix = keys.requestByIndexStart(rangeId);
    const indexAt = prefix.byteLength - 8; // the index is the key's last 8 bytes (keys.ts)
    let last = 0;
    for (const kv of view.scan({ start: prefix, end: keys.requestByIndex(rangeId, Number.MAX_SAFE_INTEGER) })) {
      const index = readU64(kv.key, indexAt);
      assert(index > last, () => `range ${rangeId}: request records out of order at index ${index}`);
      last = index;
      w.push(index, decoder.decode(kv.value));
    }
    return w;
  }

  has(requestId: string): boolean {
    return this.live.has(requestId);
  }

  get size(): number {
    return this.live.size;
  }

  /** Records `requestId` as applied at `index`, then expires what fell out of the window. */
  remember(batch: WriteBatch, requestId: string, index: number): void {
    assert(!this.live.has(requestId), () => `range ${this.rangeId}: request ${requestId} remembered twice`);
    const newest = this.indexes[this.indexes.length - 1];
    assert(newest === undefined || index > newest, () => `range ${this.rangeId}: request index ${index} after ${newest}`);
    batch.putOwned(keys.requestByIndex(this.rangeId, index), encoder.encode(requestId));
    this.push(index, requestId);
    const expireBelow = index - DEDUPE_WINDOW_ENTRIES;
    for (let n = 0; n < DEDUPE_EXPIRE_PER_APPLY && this.head < this.indexes.length; n++) {
      const oldest = this.indexes[this.head] as number;
      if (oldest >= expireBelow) break;
      const id = this.ids[this.head] as string;
      batch.delete(keys.requestByIndex(this.rangeId, oldest));
      this.live.delete(id);
      this.head++;
    }
    this.compactArrays();
  }

  private push(index: number, requestId: string): void {
    this.indexes.push(index);
    this.ids.push(requestId);
    this.live.add(requestId);
  }

  /** Drops the expired prefix of the arrays once it is as long as the rest. */
  private compactArrays(): void {
    if (this.head < 1024 || this.head * 2 < this.indexes.length) return;
    this.indexes.splice(0, this.head);
    this.ids.splice(0, this.head);
    this.head = 0;
  }
}
