import { TesseraError, assert } from '../base/index.js';
import type { ReadView, StorageEngine, WriteBatch } from '../storage/engine.js';
import { bytesEqual, toKeyString } from './bytes.js';
import {
  CHANGE_KEY_BOUNDS,
  EMPTY_META,
  type KeySpan,
  type MvccMeta,
  type StoredRecord,
  changeKey,
  changeKeyAtMain,
  dataKey,
  dataKeyBounds,
  decodeChangeKey,
  decodeMeta,
  decodeRecord,
  encodeMeta,
  encodeRecord,
  isWholeKeySpan,
  metaKey,
  parseDataKey,
  spanContains,
} from './codec.js';
import { KeyHistory, KeyIndex } from './key-index.js';
import { PendingWrites } from './pending.js';
import { type Revision, formatRevision } from './revision.js';

/**
 * Where a store keeps its data: the range-local meta record under
 * `metaPrefix`, and the `d`/`e` records of the user keys in `span` (codec.ts).
 * Stores on one engine need prefixes that are not prefixes of one another,
 * disjoint spans, and revisions that never collide (the `e` index is shared:
 * with a cluster-wide revision, ADR 0009 §2, they do not).
 */
export interface MvccLocation {
  readonly metaPrefix: Uint8Array;
  readonly span: KeySpan;
}

/** One entry of the change index: change `rev` of user key `key`. */
export interface ChangeRef {
  readonly rev: Revision;
  readonly key: Uint8Array;
}
/**
 * The mutable state shared by MvccStore, its write transactions and the
 * compaction, event and hash code: the engine, the key index, the meta
 * fields and the overlay of not-yet-committed writes. Not exported from the
 * package; MvccStore is the public face.
 */
export class MvccState {
  readonly metaKey: Uint8Array;
  /** The user keys this store holds; a split narrows it (see MvccStore.splitOff). */
  span: KeySpan;
  /** The span is the whole key space: no `e` entry needs its key checked. */
  private wholeSpan: boolean;
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
    readonly location: MvccLocation,
    readonly index: KeyIndex,
    meta: MvccMeta,
    /** Whether a write's events must carry each changed key's previous value (see MvccOpenOptions). */
    readonly eventsWantPrevKv: () => boolean,
  ) {
    this.metaKey = metaKey(location.metaPrefix);
    this.span = location.span;
    this.wholeSpan = isWholeKeySpan(location.span);
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
  static open(engine: StorageEngine, location: MvccLocation, eventsWantPrevKv: () => boolean): MvccState {
    assert(location.metaPrefix.length > 0, 'an mvcc store needs a non-empty meta prefix');
    const { span } = location;
    assert(span.end === undefined || toKeyString(span.start) < toKeyString(span.end), 'an mvcc store needs a non-empty key span');
    const raw = engine.get(metaKey(location.metaPrefix));
    const meta = raw === undefined ? EMPTY_META : decodeMeta(raw);
    const index = rebuildIndex(engine, span, meta);
    return new MvccState(engine, location, index, meta, eventsWantPrevKv);
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

  /** The stored change `rev` of `key`, which the index refers to. */
  loadRecord(key: Uint8Array, rev: Revision): StoredRecord {
    const raw = this.pending.get(dataKey(key, rev));
    assert(raw !== undefined, () => `mvcc record ${formatRevision(rev)} is in the index but not in storage`);
    return checkedRecord(raw, key, rev);
  }

  /**
   * The raw record the change index names. Missing means the two families
   * disagree: a damaged page hid the record, or the entry is damaged.
   */
  loadChangeBytes(change: ChangeRef): Uint8Array {
    const raw = this.pending.get(dataKey(change.key, change.rev));
    if (raw === undefined) {
      throw new TesseraError('CORRUPT_DATA', `mvcc history: change ${formatRevision(change.rev)} is in the change index but its record is not stored; the data file is damaged`);
    }
    return raw;
  }

  /** The record the change index names, decoded and checked (CRC, key, revision). */
  loadChange(change: ChangeRef): StoredRecord {
    return checkedRecord(this.loadChangeBytes(change), change.key, change.rev);
  }

  /** Writes a change: its record under its key, and its entry in the change index. */
  putRecord(batch: WriteBatch, rev: Revision, record: StoredRecord): void {
    assert(record.modRevision === rev.main, 'record mod revision differs from its key');
    if (!spanContains(this.span, record.key)) assert(false, () => `a write of a key outside the store's span`);
    // The record first: a batch that refuses it (too large) has then written nothing of the change.
    this.pending.put(batch, dataKey(record.key, rev), encodeRecord(record));
    // A copy: the caller's key is often a view of a larger buffer (a decoded command).
    this.pending.put(batch, changeKey(rev), record.key.slice());
    this.recordCount++;
  }

  /** Deletes a stored change, record and index entry; the caller found it in storage (compaction scans for them), so the count stays exact. */
  deleteRecord(batch: WriteBatch, change: ChangeRef): void {
    this.pending.delete(batch, dataKey(change.key, change.rev));
    this.pending.delete(batch, changeKey(change.rev));
    this.recordCount--;
    assert(this.recordCount >= 0, () => `deleting record ${formatRevision(change.rev)} leaves a negative record count`);
  }

  /**
   * The store's changes with main revision in [fromMain, toMain) — from
   * `from` on if given — in revision order, overlay included. Entries of
   * other stores' keys are skipped (none with the whole key space).
   */
  *changes(fromMain: number, toMain: number, from?: Revision): IterableIterator<ChangeRef> {
    const start = from === undefined ? changeKeyAtMain(fromMain) : changeKey(from);
    for (const { key, value } of this.pending.scan({ start, end: changeKeyAtMain(toMain) })) {
      if (!this.wholeSpan && !spanContains(this.span, value)) continue;
      yield { rev: decodeChangeKey(key), key: value };
    }
  }

  /**
   * Ends a mutation: bumps writeSeq and writes the meta record into the same
   * batch as the mutation's records.
   */
  persistMeta(batch: WriteBatch): void {
    this.writeSeq++;
    batch.put(this.metaKey, encodeMeta(this.meta));
  }

  /**
   * Ends this store's span at `splitKey`: the keys from there on now belong
   * to another store (a split, ADR 0009 §5). Their records stay where they
   * are (the layout is by user key); only the span, the index and the count
   * of records change. Returns how many stored records the other store gets,
   * and their stored bytes.
   */
  narrowTo(splitKey: Uint8Array): { readonly records: number; readonly bytes: number } {
    const right: KeySpan = { start: splitKey, end: this.span.end };
    let moved = 0;
    let bytes = 0;
    for (const { key, value } of this.pending.scan(dataKeyBounds(right))) {
      moved++;
      bytes += key.byteLength + value.byteLength;
    }
    this.index.dropFrom(toKeyString(splitKey));
    this.span = { start: this.span.start, end: splitKey };
    this.wholeSpan = false;
    this.recordCount -= moved;
    assert(this.recordCount >= 0, () => `a split leaves a negative record count (${moved} records moved)`);
    return { records: moved, bytes };
  }

  /** Whether the index still refers to the stored change `rev` of `key`. */
  indexHolds(key: Uint8Array, rev: Revision): boolean {
    return this.index.get(toKeyString(key))?.contains(rev) ?? false;
  }
}

/** Decodes a stored record and checks that it is the change `rev` of `key`. */
function checkedRecord(raw: Uint8Array, key: Uint8Array, rev: Revision): StoredRecord {
  const record = decodeRecord(raw);
  // The CRC held, so the record is as written: a mismatch is a damaged key, not a damaged value.
  if (record.modRevision !== rev.main || !bytesEqual(record.key, key)) {
    throw new TesseraError('CORRUPT_DATA', `mvcc record stored as change ${formatRevision(rev)} says mod revision ${record.modRevision} of another key or revision; the data file is damaged`);
  }
  return record;
}

/**
 * Builds the key index from the `d` records in `span` (each key's changes
 * come newest first, so a key's are collected, then replayed oldest first),
 * then applies the recorded compaction. Both families must hold the meta's
 * count of changes: LMDB pages carry no checksum, and a damaged one can hide
 * keys from every scan.
 */
export function rebuildIndex(view: ReadView, span: KeySpan, meta: MvccMeta): KeyIndex {
  const histories = new Map<string, KeyHistory>();
  let records = 0;
  let keyString: string | undefined;
  let key: Uint8Array | undefined;
  let newestFirst: { rev: Revision; record: StoredRecord }[] = [];
  const flush = (): void => {
    if (keyString === undefined) return;
    const history = new KeyHistory(key!);
    for (let i = newestFirst.length - 1; i >= 0; i--) {
      const { rev, record } = newestFirst[i]!;
      history.restore(rev, record.tombstone, record.createRevision, record.version);
    }
    histories.set(keyString, history);
    newestFirst = [];
  };
  for (const { key: stored, value } of view.scan(dataKeyBounds(span))) {
    records++;
    const parsed = parseDataKey(stored);
    if (parsed === undefined) throw new TesseraError('CORRUPT_DATA', 'mvcc history: a stored key in the data family is malformed; the data file is damaged');
    const { userKey, rev } = parsed;
    assert(rev.main <= meta.currentRevision, () => `stored change ${formatRevision(rev)} is after the current revision ${meta.currentRevision}`);
    const record = checkedRecord(value, userKey, rev);
    const ks = toKeyString(userKey);
    if (ks !== keyString) {
      flush();
      keyString = ks;
      key = record.key;
    }
    newestFirst.push({ rev, record });
  }
  flush();
  if (records !== meta.recordCount) {
    throw new TesseraError('CORRUPT_DATA', `mvcc history: ${records} change records are stored, but the meta record counts ${meta.recordCount}; the data file is damaged`);
  }
  const whole = isWholeKeySpan(span);
  let changes = 0;
  for (const { key: stored, value } of view.scan(CHANGE_KEY_BOUNDS)) {
    if (!whole && !spanContains(span, value)) continue;
    changes++;
    const rev = decodeChangeKey(stored);
    assert(rev.main <= meta.currentRevision, () => `change index entry ${formatRevision(rev)} is after the current revision ${meta.currentRevision}`);
  }
  if (changes !== meta.recordCount) {
    throw new TesseraError('CORRUPT_DATA', `mvcc history: ${changes} change index entries are stored, but the meta record counts ${meta.recordCount}; the data file is damaged`);
  }
  const index = new KeyIndex(histories);
  if (meta.compactedRevision > 0) index.compact(meta.compactedRevision);
  return index;
}
