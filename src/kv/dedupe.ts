import { TesseraError, assert } from '../base/index.js';
import type { Entry } from '../raft/index.js';
import type { ReadView, WriteBatch } from '../storage/engine.js';
import { type RangeId, keys, readU64 } from './keys.js';
import type { LogCompaction, RecentLog } from './state_machine.js';

/** A command is dropped as a duplicate if its request id is in any of the this many log entries before it. */
export const DEDUPE_WINDOW_ENTRIES = 10_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface WindowLoadOptions {
  readonly view: ReadView;
  readonly rangeId: RangeId;
  readonly log: RecentLog;
  /** The applied index the view shows; the window is the one the next entry is checked against. */
  readonly appliedIndex: number;
  /** The request id a log entry carries, or undefined (no-ops, conf changes). */
  readonly requestIdOf: (entry: Entry) => string | undefined;
}

/**
 * The request ids in a range's last DEDUPE_WINDOW_ENTRIES log entries. The
 * entry at index i is a duplicate when its id is in an entry of
 * [i - DEDUPE_WINDOW_ENTRIES, i - 1]: a function of the log alone, so every
 * replica decides alike however its entries were batched, and a replica that
 * restarts rebuilds the same window.
 *
 * Nothing is written per command: the log already holds the ids. The engine
 * holds (index → id) records only for window entries the log no longer has:
 * those the replica compacts out of its log while they are still in the
 * window (`persistBelow`, only when the log keeps fewer entries than the
 * window), and those a snapshot brought (its data carries the window, and the
 * log starts after it). Loading reads those records, then the log's entries
 * up to the applied index.
 */
export class DedupeWindow {
  /** Each id's newest index. An id is live for entry i while that index is at least i - DEDUPE_WINDOW_ENTRIES. */
  private readonly newest = new Map<string, number>();
  /** Every (index, id) noted, ascending, from `head` on: what snapshots and persistBelow copy. */
  private readonly indexes: number[] = [];
  private readonly ids: string[] = [];
  private head = 0;
  /** Pairs below this index were forgotten by `settle`. */
  private forgottenBelow = 0;

  private constructor(private readonly rangeId: RangeId) {}

  static load(o: WindowLoadOptions): DedupeWindow {
    const w = new DedupeWindow(o.rangeId);
    const from = Math.max(1, o.appliedIndex + 1 - DEDUPE_WINDOW_ENTRIES);
    const first = o.log.firstIndex();
    const indexAt = keys.requestByIndexStart(o.rangeId).byteLength - 8; // the index is the key's last 8 bytes (keys.ts)
    for (const kv of o.view.scan({ start: keys.requestByIndex(o.rangeId, from), end: keys.requestByIndex(o.rangeId, first) })) {
      w.note(decoder.decode(kv.value), readU64(kv.key, indexAt));
    }
    const lo = Math.max(from, first);
    if (lo > o.appliedIndex) return w;
    let expected = lo;
    // A hole below the applied index is damaged storage (an LMDB page that no longer lists its
    // entries: checksums only cover the entries that are found), so the store fails stop with
    // CORRUPT_DATA rather than asserting.
    for (const e of o.log.entries(lo, o.appliedIndex + 1, Number.POSITIVE_INFINITY)) {
      if (e.index !== expected) throw new TesseraError('CORRUPT_DATA', `range ${o.rangeId}: the log holds entry ${e.index} where ${expected} belongs`);
      expected++;
      const id = o.requestIdOf(e);
      if (id !== undefined) w.note(id, e.index);
    }
    if (expected !== o.appliedIndex + 1) throw new TesseraError('CORRUPT_DATA', `range ${o.rangeId}: the log ends at ${expected - 1}, before the applied index ${o.appliedIndex}`);
    return w;
  }

  /** Whether `requestId` is in an entry of the window of the entry at `index`. */
  has(requestId: string, index: number): boolean {
    const seen = this.newest.get(requestId);
    return seen !== undefined && seen >= index - DEDUPE_WINDOW_ENTRIES;
  }

  /** Records the id of the entry at `index`, duplicates included: the log holds them too. */
  note(requestId: string, index: number): void {
    const newest = this.indexes[this.indexes.length - 1];
    assert(newest === undefined || index > newest, () => `range ${this.rangeId}: request index ${index} after ${newest}`);
    this.indexes.push(index);
    this.ids.push(requestId);
    this.newest.set(requestId, index);
  }

  /** Ids held: those in the window, and until the next `settle`, some that left it. */
  get size(): number {
    return this.newest.size;
  }

  /**
   * Forgets what is out of the window of the entry after `appliedIndex`,
   * once the engine shows that index: a snapshot is never taken below it, so
   * the pairs it copies are still here.
   */
  settle(appliedIndex: number): void {
    const below = appliedIndex + 1 - DEDUPE_WINDOW_ENTRIES;
    if (below > this.forgottenBelow) this.forgottenBelow = below;
    while (this.head < this.indexes.length && (this.indexes[this.head] as number) < below) {
      const id = this.ids[this.head] as string;
      if (this.newest.get(id) === this.indexes[this.head]) this.newest.delete(id);
      this.head++;
    }
    if (this.head >= 1024 && this.head * 2 >= this.indexes.length) {
      this.indexes.splice(0, this.head);
      this.ids.splice(0, this.head);
      this.head = 0;
    }
  }

  /** The pairs with lo <= index <= hi, ascending. */
  *pairs(lo: number, hi: number): Generator<readonly [number, string]> {
    assert(lo >= this.forgottenBelow, () => `range ${this.rangeId}: window pairs from ${lo} asked for, but those below ${this.forgottenBelow} were forgotten`);
    for (let i = this.head; i < this.indexes.length; i++) {
      const index = this.indexes[i] as number;
      if (index > hi) break;
      if (index >= lo) yield [index, this.ids[i] as string];
    }
  }

  /** The window of the entry after `appliedIndex`, as snapshot records: the pairs the log may not have. */
  windowOf(appliedIndex: number): Generator<readonly [number, string]> {
    return this.pairs(Math.max(1, appliedIndex + 1 - DEDUPE_WINDOW_ENTRIES), appliedIndex);
  }

  /**
   * The replica is compacting its log from `oldFirst` to `newFirst`: window
   * entries that leave the log become records, and records out of the window
   * of the entry after `appliedIndex` go.
   */
  persistBelow(batch: WriteBatch, o: LogCompaction): void {
    const windowStart = Math.max(1, o.appliedIndex + 1 - DEDUPE_WINDOW_ENTRIES);
    batch.deleteRange(keys.requestByIndexStart(this.rangeId), keys.requestByIndex(this.rangeId, windowStart));
    for (const [index, id] of this.pairs(Math.max(o.oldFirst, windowStart), o.newFirst - 1)) batch.putOwned(...windowRecord(this.rangeId, index, id));
  }
}

/** A window record's key and value, as persistBelow writes it and a snapshot carries it. */
export function windowRecord(rangeId: RangeId, index: number, requestId: string): readonly [Uint8Array, Uint8Array] {
  return [keys.requestByIndex(rangeId, index), encoder.encode(requestId)];
}
