import { assert } from '../base/index.js';
import type { KeyValue as EngineKeyValue, ReadView, ScanOptions, VisitOptions, Visitor, WriteBatch } from '../storage/engine.js';
import { countByVisit, visitPairs } from '../storage/scan.js';
import { compareBytes, toKeyString } from './bytes.js';
import { SortedKeys } from './sorted-keys.js';

interface PendingEntry {
  readonly key: Uint8Array;
  /** undefined: a pending delete. */
  readonly value: Uint8Array | undefined;
  readonly seq: number;
}

/**
 * The store's own writes that sit in a caller's WriteBatch and may not be in
 * the engine yet. The Raft layer applies a whole loop turn of commands into
 * one batch and commits it once (DESIGN.md decision 2), so a command must
 * read the writes of the commands applied before it in the same turn;
 * WriteBatch has no reads, so the store keeps this overlay and reads through
 * it.
 *
 * Each entry remembers its batch. Once that batch is sealed (committed or
 * staged), the engine shows its writes, and `settle` drops the entry; no
 * engine read is needed to know it. An entry overwritten by a later write is
 * recognised by its sequence number. Contract for callers: commit the
 * batches you pass to the store, in the order you passed them.
 */
export class PendingWrites {
  private readonly entries = new Map<string, PendingEntry>();
  /** The entries' key strings in order: reads seek into the overlay once per user key, so finding the entries in a range must not cost a pass over all of them. */
  private readonly order = new SortedKeys();
  /** Entries in write order, for settling; an entry overwritten later is skipped by seq. */
  private readonly queue: { keyString: string; seq: number; batch: WriteBatch }[] = [];
  private head = 0;
  private nextSeq = 0;

  constructor(private readonly engine: ReadView) {}

  get size(): number {
    return this.entries.size;
  }

  /** Takes `key` and `value` as they are (WriteBatch.putOwned): the caller made them for this write. */
  put(batch: WriteBatch, key: Uint8Array, value: Uint8Array): void {
    batch.putOwned(key, value);
    this.remember(batch, key, value);
  }

  delete(batch: WriteBatch, key: Uint8Array): void {
    batch.delete(key);
    this.remember(batch, key, undefined);
  }

  /** Drops the entries of every sealed batch: the engine shows their writes. Batches seal in the order they were used. */
  settle(): void {
    while (this.head < this.queue.length && this.queue[this.head]!.batch.sealed) {
      const { keyString, seq } = this.queue[this.head++]!;
      if (this.entries.get(keyString)?.seq === seq) {
        this.entries.delete(keyString);
        this.order.delete(keyString);
      }
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
  }

  get(key: Uint8Array): Uint8Array | undefined {
    if (this.entries.size > 0) {
      const entry = this.entries.get(toKeyString(key));
      if (entry !== undefined) return entry.value;
    }
    return this.engine.get(key);
  }

  /**
   * An ascending scan of the engine with the pending writes laid over it, at
   * most `limit` pairs (no reverse). With nothing pending it is the engine's
   * own scan: reads outside a write turn pay nothing for the overlay.
   */
  scan(options: ScanOptions): Iterable<EngineKeyValue> {
    assert(options.reverse !== true, 'PendingWrites.scan supports ascending scans only');
    if (this.entries.size === 0) return this.engine.scan(options);
    return this.mergedScan(options);
  }

  /** The same as a visit (ReadView.visit): the engine's own, cheap one when nothing is pending. */
  visit(options: VisitOptions, visitor: Visitor): void {
    assert(options.reverse !== true, 'PendingWrites.visit supports ascending visits only');
    // Pending writes outside the range change nothing in it: a put's seek for a new key's newest change
    // then costs the engine's visit, not a merge's generators.
    if (this.entries.size === 0 || !this.touches(options.start, options.end)) return this.engine.visit(options, visitor);
    visitPairs(this.mergedScan(options), options, visitor);
  }

  /** Whether a pending write's key is in [start, end). */
  private touches(start: Uint8Array, end: Uint8Array | undefined): boolean {
    const endString = end === undefined ? undefined : toKeyString(end);
    // SortedKeys reads an empty end as "no bound"; an empty engine end bounds nothing in.
    if (endString === '') return false;
    let found = false;
    this.order.forEachInRange(toKeyString(start), endString, () => {
      found = true;
      return false;
    });
    return found;
  }

  /** The same as a count (ReadView.count): the engine's own when nothing is pending. */
  count(options: ScanOptions): number {
    if (this.entries.size === 0) return this.engine.count(options);
    return countByVisit(this, options);
  }

  private *mergedScan(options: ScanOptions): IterableIterator<EngineKeyValue> {
    const limit = (options.limit ?? 0) > 0 ? options.limit! : Infinity;
    if (limit === 0) return;
    const overlay = this.overlayIn(options.start, options.end);
    let oi = 0;
    let emitted = 0;
    // The engine's side is unlimited: pending deletes may hide some of its pairs.
    for (const kv of this.engine.scan({ start: options.start, end: options.end })) {
      while (oi < overlay.length && compareBytes(overlay[oi]!.key, kv.key) < 0) {
        const o = overlay[oi++]!;
        if (o.value === undefined) continue;
        yield { key: o.key, value: o.value };
        if (++emitted >= limit) return;
      }
      if (oi < overlay.length && compareBytes(overlay[oi]!.key, kv.key) === 0) {
        const o = overlay[oi++]!;
        if (o.value === undefined) continue;
        yield { key: o.key, value: o.value };
      } else {
        yield kv;
      }
      if (++emitted >= limit) return;
    }
    for (; oi < overlay.length; oi++) {
      const o = overlay[oi]!;
      if (o.value === undefined) continue;
      yield { key: o.key, value: o.value };
      if (++emitted >= limit) return;
    }
  }

  private overlayIn(start: Uint8Array, end: Uint8Array | undefined): PendingEntry[] {
    const out: PendingEntry[] = [];
    const endString = end === undefined ? undefined : toKeyString(end);
    // SortedKeys reads an empty end as "no bound"; an empty engine end bounds nothing in, so no entry.
    if (endString === '') return out;
    this.order.forEachInRange(toKeyString(start), endString, (k) => {
      out.push(this.entries.get(k)!);
    });
    return out;
  }

  private remember(batch: WriteBatch, key: Uint8Array, value: Uint8Array | undefined): void {
    const keyString = toKeyString(key);
    const seq = ++this.nextSeq;
    if (!this.entries.has(keyString)) this.order.insert(keyString);
    this.entries.set(keyString, { key, value, seq });
    this.queue.push({ keyString, seq, batch });
  }
}
