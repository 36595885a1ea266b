import { assert } from '../base/index.js';
import type { KeyValue as EngineKeyValue, ReadView, ScanOptions, WriteBatch } from '../storage/engine.js';
import { compareBytes, toKeyString } from './bytes.js';

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
 * Every mutation is tagged with the store's `writeSeq`, which is also written
 * into the meta record of the same batch. Once the engine's meta shows a
 * writeSeq ≥ an entry's, that entry's batch is committed and the entry is
 * dropped (`settle`). Contract for callers: commit the batches you pass to
 * the store, in the order you passed them.
 */
export class PendingWrites {
  private readonly entries = new Map<string, PendingEntry>();
  /** Entries in write order, for settling; an entry overwritten later is skipped by seq. */
  private readonly queue: { keyString: string; seq: number }[] = [];
  private head = 0;

  constructor(private readonly engine: ReadView) {}

  get size(): number {
    return this.entries.size;
  }

  put(batch: WriteBatch, seq: number, key: Uint8Array, value: Uint8Array): void {
    batch.put(key, value);
    this.remember(key, value, seq);
  }

  delete(batch: WriteBatch, seq: number, key: Uint8Array): void {
    batch.delete(key);
    this.remember(key, undefined, seq);
  }

  /** Drops the entries of every batch whose writeSeq the engine already holds. */
  settle(committedSeq: number): void {
    while (this.head < this.queue.length && this.queue[this.head]!.seq <= committedSeq) {
      const { keyString, seq } = this.queue[this.head++]!;
      if (this.entries.get(keyString)?.seq === seq) this.entries.delete(keyString);
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

  /** An ascending scan of the engine with the pending writes laid over it (no reverse, no limit). */
  *scan(options: ScanOptions): IterableIterator<EngineKeyValue> {
    assert(options.reverse !== true && (options.limit ?? 0) === 0, 'PendingWrites.scan supports ascending unlimited scans only');
    const overlay = this.overlayIn(options.start, options.end);
    let oi = 0;
    for (const kv of this.engine.scan(options)) {
      while (oi < overlay.length && compareBytes(overlay[oi]!.key, kv.key) < 0) {
        const o = overlay[oi++]!;
        if (o.value !== undefined) yield { key: o.key, value: o.value };
      }
      if (oi < overlay.length && compareBytes(overlay[oi]!.key, kv.key) === 0) {
        const o = overlay[oi++]!;
        if (o.value !== undefined) yield { key: o.key, value: o.value };
        continue;
      }
      yield kv;
    }
    for (; oi < overlay.length; oi++) {
      const o = overlay[oi]!;
      if (o.value !== undefined) yield { key: o.key, value: o.value };
    }
  }

  private overlayIn(start: Uint8Array, end: Uint8Array | undefined): PendingEntry[] {
    const out: PendingEntry[] = [];
    for (const e of this.entries.values()) {
      if (compareBytes(e.key, start) >= 0 && (end === undefined || compareBytes(e.key, end) < 0)) out.push(e);
    }
    return out.sort((a, b) => compareBytes(a.key, b.key));
  }

  private remember(key: Uint8Array, value: Uint8Array | undefined, seq: number): void {
    const keyString = toKeyString(key);
    this.entries.set(keyString, { key, value, seq });
    this.queue.push({ keyString, seq });
  }
}
