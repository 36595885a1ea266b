import { TesseraError, assert } from '../base/index.js';
import type { ReadView, StorageEngine, WriteBatch } from '../storage/engine.js';
import { toKeyString } from './bytes.js';
import {
  EMPTY_META,
  type MvccMeta,
  type StoredRecord,
  decodeMeta,
  decodeRecord,
  decodeRevisionKey,
  encodeMeta,
  encodeRecord,
  metaKey,
  revisionKey,
  revisionKeySpan,
} from './codec.js';
import { KeyHistory, KeyIndex } from './key-index.js';
import { PendingWrites } from './pending.js';
import { type Revision, formatRevision } from './revision.js';

/**
 * The mutable state shared by MvccStore, its write transactions and the
 * compaction, event and hash code: the engine, the key index, the meta
 * fields and the overlay of not-yet-committed writes. Not exported from the
 * package; MvccStore is the public face.
 */
export class MvccState {
  readonly metaKey: Uint8Array;
  readonly pending: PendingWrites;
  currentRevision: number;
  compactedRevision: number;
  finishedCompaction: number;
  compactionCursor: Revision | undefined;
  writeSeq: number;
  /** Change records stored (MvccMeta.recordCount). */
  recordCount: number;
  /** MvccMeta.everCompacted. */
  everCompacted: boolean;
  /** The open write transaction, if any: one at a time, as in etcd's apply loop. */
  writing = false;

  private constructor(
    readonly engine: StorageEngine,
    readonly prefix: Uint8Array,
    readonly index: KeyIndex,
    meta: MvccMeta,
    /** Whether a write's events must carry each changed key's previous value (see MvccOpenOptions). */
    readonly eventsWantPrevKv: () => boolean,
  ) {
    this.metaKey = metaKey(prefix);
    this.pending = new PendingWrites(engine);
    this.currentRevision = meta.currentRevision;
    this.compactedRevision = meta.compactedRevision;
    this.finishedCompaction = meta.finishedCompaction;
    this.compactionCursor = meta.compactionCursor;
    this.writeSeq = meta.writeSeq;
    this.recordCount = meta.recordCount;
    this.everCompacted = meta.everCompacted;
  }

  /** Loads the meta record and rebuilds the key index from the stored history, which must hold the meta's count of records. */
  static open(engine: StorageEngine, prefix: Uint8Array, eventsWantPrevKv: () => boolean): MvccState {
    assert(prefix.length > 0, 'an mvcc store needs a non-empty key prefix');
    const raw = engine.get(metaKey(prefix));
    const meta = raw === undefined ? EMPTY_META : decodeMeta(raw);
    const index = rebuildIndex(engine, prefix, meta);
    return new MvccState(engine, prefix, index, meta, eventsWantPrevKv);
  }

  get meta(): MvccMeta {
    return {
      currentRevision: this.currentRevision,
      compactedRevision: this.compactedRevision,
      finishedCompaction: this.finishedCompaction,
      compactionCursor: this.compactionCursor,
      writeSeq: this.writeSeq,
      recordCount: this.recordCount,
      everCompacted: this.everCompacted,
    };
  }

  /** Forgets overlay entries that the engine now holds. Every public operation starts here. */
  settle(): void {
    if (this.pending.size > 0) this.pending.settle();
  }

  loadRecord(rev: Revision): StoredRecord {
    const raw = this.pending.get(revisionKey(this.prefix, rev));
    assert(raw !== undefined, () => `mvcc record ${formatRevision(rev)} is in the index but not in storage`);
    const record = decodeRecord(raw);
    assert(record.modRevision === rev.main, () => `record at ${formatRevision(rev)} says mod revision ${record.modRevision}`);
    return record;
  }

  putRecord(batch: WriteBatch, rev: Revision, record: StoredRecord): void {
    assert(record.modRevision === rev.main, 'record mod revision differs from its key');
    this.pending.put(batch, revisionKey(this.prefix, rev), encodeRecord(record));
    this.recordCount++;
  }

  /** Deletes a stored record; the caller found it in storage (compaction scans for them), so the count stays exact. */
  deleteRecord(batch: WriteBatch, rev: Revision): void {
    this.pending.delete(batch, revisionKey(this.prefix, rev));
    this.recordCount--;
    assert(this.recordCount >= 0, () => `deleting record ${formatRevision(rev)} leaves a negative record count`);
  }

  /**
   * Ends a mutation: bumps writeSeq and writes the meta record into the same
   * batch as the mutation's records.
   */
  persistMeta(batch: WriteBatch): void {
    this.writeSeq++;
    batch.put(this.metaKey, encodeMeta(this.meta));
  }

  /** Whether the index still refers to the stored change `rev` of `key`. */
  indexHolds(key: Uint8Array, rev: Revision): boolean {
    return this.index.get(toKeyString(key))?.contains(rev) ?? false;
  }
}

/** Reads every stored change in revision order into a fresh index, then applies the recorded compaction. */
export function rebuildIndex(view: ReadView, prefix: Uint8Array, meta: MvccMeta): KeyIndex {
  const histories = new Map<string, KeyHistory>();
  let records = 0;
  for (const { key, value } of view.scan(revisionKeySpan(prefix))) {
    records++;
    const rev = decodeRevisionKey(prefix, key);
    assert(rev.main <= meta.currentRevision, () => `stored change ${formatRevision(rev)} is after the current revision ${meta.currentRevision}`);
    const record = decodeRecord(value);
    assert(record.modRevision === rev.main, () => `record at ${formatRevision(rev)} says mod revision ${record.modRevision}`);
    const keyString = toKeyString(record.key);
    let history = histories.get(keyString);
    if (history === undefined) {
      history = new KeyHistory(record.key);
      histories.set(keyString, history);
    }
    history.restore(rev, record.tombstone, record.createRevision, record.version);
  }
  if (records !== meta.recordCount) {
    throw new TesseraError('CORRUPT_DATA', `mvcc history: ${records} change records are stored, but the meta record counts ${meta.recordCount}; the data file is damaged`);
  }
  const index = new KeyIndex(histories);
  if (meta.compactedRevision > 0) index.compact(meta.compactedRevision);
  return index;
}
