import { TesseraError, assert } from '../base/index.js';
import type { ReadView, StorageEngine, WriteBatch } from '../storage/engine.js';
import { bytesEqual, toKeyString } from './bytes.js';
import {
  CHANGE_KEY_BOUNDS,
  EMPTY_META,
  type KeySpan,
  type LiveStats,
  type MvccMeta,
  type StoredRecord,
  changeKey,
  changeKeyAtMain,
  dataKey,
  dataKeyBounds,
  dataKeyMain,
  dataKeyRevision,
  decodeChangeKey,
  decodeMeta,
  decodeRecord,
  encodeMeta,
  encodeRecord,
  isTombstoneRecord,
  isWholeKeySpan,
  liveKeyValueBytes,
  metaKey,
  parseDataKey,
  spanContains,
} from './codec.js';
import type { KeyInterval } from './bytes.js';
import { PendingWrites } from './pending.js';
import { MAX_REVISION, REVISION_BYTES, type Revision, compareRevisions, formatRevision, revisionsEqual } from './revision.js';
import { type VersionHead, type WalkOptions, forEachKeyAt, newestAt } from './versions.js';

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

/**
 * Memory a store's cache of its keys' newest `d` keys may take: a point read
 * of a remembered key at or above its newest change is then an exact engine
 * get, as cheap as with the in-memory index it replaces, instead of a range
 * seek. A cache, never the truth: a miss seeks. Sized in bytes, not entries,
 * so that long keys cannot make it large, and large enough to hold the keys
 * a node serves often (some 300,000 keys of 20 bytes; the benchmark's
 * 100,000-key working set missed a third of its gets with a cache of 65,536
 * entries). The in-memory index this replaces held every key, and more.
 */
export const KEY_HEAD_CACHE_BYTES = 64 * 1024 ** 2;
/**
 * What one cache entry costs beyond its key bytes, estimated: the Map entry,
 * the key string's header, the entry object (KeyHeadEntry) with its LiveHead
 * and revision, the `d` key's Uint8Array and its ArrayBuffer.
 */
export const KEY_HEAD_ENTRY_OVERHEAD_BYTES = 240;

/** The estimated bytes of one cache entry (KEY_HEAD_ENTRY_OVERHEAD_BYTES). */
function headEntryBytes(keyString: string, newestDataKey: Uint8Array): number {
  return KEY_HEAD_ENTRY_OVERHEAD_BYTES + keyString.length + newestDataKey.length;
}

/**
 * A key-head cache entry: the key's newest change, and what a put continues
 * from it. A put that hands out no previous value (no prevKv asked, no
 * watcher wants them) then reads nothing from the engine, as the in-memory
 * index it replaces answered: reading, checking and decoding the record on
 * every put was most of what a put cost the branch over the index.
 */
interface KeyHeadEntry {
  readonly dataKey: Uint8Array;
  /** The newest change as a put continues it: null for a tombstone, undefined until its record is read (a walk remembered the key). */
  readonly live: LiveHead | null | undefined;
}

/** A key's newest change when it is live: what a put continues (its revision, create revision and version). */
export interface LiveHead {
  readonly rev: Revision;
  readonly createRevision: number;
  readonly version: number;
  /** Its key and value bytes: what a put over it or a delete of it takes from the live bytes (MvccMeta.live). */
  readonly kvBytes: number;
}

/** One entry of the change index: change `rev` of user key `key`. */
export interface ChangeRef {
  readonly rev: Revision;
  readonly key: Uint8Array;
}
/**
 * The mutable state shared by MvccStore, its write transactions and the
 * compaction, event and hash code: the engine, the meta fields and the
 * overlay of not-yet-committed writes. There is no in-memory key index (ADR
 * 0009 §1): the `d` family, newest change first per key, is the index, so
 * opening reads one record and a split rebuilds nothing. Not exported from the
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
  /** Bytes of the records deleteRecord removed (stored key and record) since takeDeletedBytes last asked. */
  deletedBytes = 0;
  /** MvccMeta.everCompacted. */
  everCompacted: boolean;
  /** MvccMeta.live: kept by countLive, narrowTo and widenTo; undefined until counted for a format-5 meta. */
  live: LiveStats | undefined;
  /** The open write transaction, if any: one at a time, as in etcd's apply loop. */
  writing = false;
  /** Intents on keys of the span (intents.ts), once counted; a split or merge makes it count again. */
  intentCount: number | undefined = undefined;
  /** intents.lowestWriteFloor, once computed; undefined whenever an intent comes or goes. */
  lowestIntentFloor: number | undefined = undefined;
  /**
   * Key string → the `d` key of the key's newest change, pending ones
   * included (KEY_HEAD_CACHE_BYTES). Kept right by putRecord and
   * deleteRecord, the only ways this store's records change; a snapshot
   * install reopens the store. Oldest insertion evicted first.
   */
  private readonly heads = new Map<string, KeyHeadEntry>();

  private constructor(
    readonly engine: StorageEngine,
    readonly location: MvccLocation,
    meta: MvccMeta,
    /** Whether a write's events must carry each changed key's previous value (see MvccOpenOptions). */
    readonly eventsWantPrevKv: () => boolean,
    /** The bytes `heads` may hold, shared with the node's other stores (see KeyHeadBudget). */
    private readonly headBudget: KeyHeadBudget,
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
    this.live = meta.live;
  }

  /** Loads the meta record; nothing else is read (verifyStoredCounts is the full check of the history, for those who can pay for it). */
  static open(engine: StorageEngine, location: MvccLocation, eventsWantPrevKv: () => boolean, headBudget: KeyHeadBudget = new KeyHeadBudget()): MvccState {
    assert(location.metaPrefix.length > 0, 'an mvcc store needs a non-empty meta prefix');
    const { span } = location;
    assert(span.end === undefined || toKeyString(span.start) < toKeyString(span.end), 'an mvcc store needs a non-empty key span');
    const raw = engine.get(metaKey(location.metaPrefix));
    const meta = raw === undefined ? EMPTY_META : decodeMeta(raw);
    return new MvccState(engine, location, meta, eventsWantPrevKv, headBudget);
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
      live: this.live,
    };
  }

  /** Forgets overlay entries that the engine now holds. Every public operation starts here. */
  settle(): void {
    if (this.pending.size > 0) this.pending.settle();
  }

  /** The stored change `rev` of `key`, which another record names (a prev revision the compaction kept). */
  loadRecord(key: Uint8Array, rev: Revision): StoredRecord {
    const raw = this.pending.get(dataKey(key, rev));
    if (raw === undefined) throw new TesseraError('CORRUPT_DATA', `mvcc history: change ${formatRevision(rev)} is named by a record but not stored; the data file is damaged`);
    return checkedRecord(raw, key, rev);
  }

  /** The newest change of `key` at or below main revision `atMain`, tombstones included (versions.ts). */
  newestAt(key: Uint8Array, atMain: number): VersionHead | undefined {
    const keyString = toKeyString(key);
    const cached = this.heads.get(keyString)?.dataKey;
    let newest: VersionHead | undefined;
    if (cached !== undefined) {
      const raw = this.pending.get(cached);
      if (raw === undefined) throw new TesseraError('CORRUPT_DATA', `mvcc history: the newest change of a key is not stored; the data file is damaged`);
      newest = { dataKey: cached, raw, rawBytes: raw.length, prefixBytes: cached.length - REVISION_BYTES };
    } else {
      newest = newestAt(this.pending, this.span, key, MAX_REVISION);
      if (newest === undefined) return undefined;
      this.rememberHead(keyString, { dataKey: newest.dataKey, live: undefined });
    }
    if (dataKeyMain(newest.dataKey, newest.prefixBytes) <= atMain) return newest;
    return newestAt(this.pending, this.span, key, atMain);
  }

  /** Each key of `interval` in the span with its newest change at or below `atMain`, in key order (versions.ts). */
  forEachKeyAt(interval: KeyInterval, atMain: number, visit: (head: VersionHead) => boolean | void, options: WalkOptions = {}): void {
    if (interval.end === undefined) {
      // A whole record serves a heads-only walk too.
      const head = options.afterKey === undefined ? this.newestAt(interval.start, atMain) : undefined;
      if (head !== undefined) visit(head);
      return;
    }
    forEachKeyAt(this.pending, this.span, interval, atMain, visit, options);
  }

  /**
   * The newest change of `key` if it is live, as a put continues it (no
   * value): from the cache when it knows the change's record, else read,
   * checked and decoded once, and remembered.
   */
  liveHead(key: Uint8Array): LiveHead | undefined {
    const keyString = toKeyString(key);
    const entry = this.heads.get(keyString);
    if (entry !== undefined && entry.live !== undefined) return entry.live ?? undefined;
    const head = this.newestAt(key, MAX_REVISION);
    if (head === undefined) return undefined;
    const record = this.recordOf(head);
    const live = record.tombstone ? null : { rev: dataKeyRevision(head.dataKey, head.prefixBytes), createRevision: record.createRevision, version: record.version, kvBytes: record.key.byteLength + record.value.byteLength };
    this.rememberHead(keyString, { dataKey: head.dataKey, live });
    return live ?? undefined;
  }

  private rememberHead(keyString: string, entry: KeyHeadEntry): void {
    this.forgetHead(keyString);
    this.headBudget.remember(this.heads, keyString, entry);
  }

  private forgetHead(keyString: string): void {
    const old = this.heads.get(keyString);
    if (old === undefined) return;
    this.heads.delete(keyString);
    this.headBudget.forgot(keyString, old);
  }

  /** A change a walk found, decoded and checked against its `d` key (CRC, key, revision). */
  recordOf(head: VersionHead): StoredRecord {
    const parsed = parseDataKey(head.dataKey);
    if (parsed === undefined) throw new TesseraError('CORRUPT_DATA', 'mvcc history: a stored key in the data family is malformed; the data file is damaged');
    return checkedRecord(head.raw, parsed.userKey, parsed.rev);
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
    const stored = dataKey(record.key, rev);
    this.pending.put(batch, stored, encodeRecord(record));
    const keyString = toKeyString(record.key);
    // Re-inserted (rememberHead forgets it first), so a key written often stays; the cache holds the key's newest change from now on.
    this.rememberHead(keyString, { dataKey: stored, live: record.tombstone ? null : { rev, createRevision: record.createRevision, version: record.version, kvBytes: record.key.byteLength + record.value.byteLength } });
    // A copy: the caller's key is often a view of a larger buffer (a decoded command).
    this.pending.put(batch, changeKey(rev), record.key.slice());
    this.recordCount++;
  }

  /**
   * A write made `keys` more keys live (−1, 0 or 1) and their key and value
   * bytes `bytes` more; the caller knows both from the key's previous head.
   */
  countLive(keys: number, bytes: number): void {
    const live = this.live;
    if (live === undefined) return;
    const next = { keys: live.keys + keys, bytes: live.bytes + bytes };
    assert(next.keys >= 0 && next.bytes >= 0, () => `live stats went negative: ${next.keys} keys, ${next.bytes} bytes`);
    this.live = next;
  }

  /** Deletes a stored change, record and index entry; the caller found it in storage (compaction scans for them), so the count stays exact. */
  deleteRecord(batch: WriteBatch, change: ChangeRef): void {
    const stored = dataKey(change.key, change.rev);
    // Counted as a split counts what it moves (narrowTo), so a range's size falls as compaction frees it.
    this.deletedBytes += stored.byteLength + (this.pending.get(stored)?.byteLength ?? 0);
    this.pending.delete(batch, stored);
    const keyString = toKeyString(change.key);
    const head = this.heads.get(keyString);
    // Compaction deletes a key's newest change only with the whole key (a tombstone below the compacted revision).
    if (head !== undefined && bytesEqual(head.dataKey, stored)) this.forgetHead(keyString);
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
   * are (the layout is by user key); only the span, the key-head cache and the count
   * of records change. Returns how many stored records the other store gets,
   * and their stored bytes.
   */
  narrowTo(splitKey: Uint8Array): { readonly records: number; readonly bytes: number; readonly live: LiveStats | undefined } {
    const right: KeySpan = { start: splitKey, end: this.span.end };
    let moved = 0;
    let bytes = 0;
    // The same walk counts the right side's live keys: a key's records run newest first, so its first is its head.
    let liveKeys = 0;
    let liveBytes = 0;
    let lastPrefix: Uint8Array | undefined;
    for (const { key, value } of this.pending.scan(dataKeyBounds(right))) {
      moved++;
      bytes += key.byteLength + value.byteLength;
      const prefix = key.subarray(0, key.byteLength - REVISION_BYTES);
      if (lastPrefix !== undefined && bytesEqual(prefix, lastPrefix)) continue;
      lastPrefix = prefix;
      const kv = liveKeyValueBytes(value, value.byteLength);
      if (kv === undefined) continue;
      liveKeys++;
      liveBytes += kv;
    }
    const rightLive = this.live === undefined ? undefined : { keys: liveKeys, bytes: liveBytes };
    if (this.live !== undefined) {
      this.live = { keys: this.live.keys - liveKeys, bytes: this.live.bytes - liveBytes };
      assert(this.live.keys >= 0 && this.live.bytes >= 0, () => `a split leaves negative live stats (${liveKeys} keys, ${liveBytes} bytes moved)`);
    }
    // The key-head cache forgets the keys that leave: another store writes them from now on.
    const from = toKeyString(splitKey);
    for (const k of [...this.heads.keys()]) if (k >= from) this.forgetHead(k);
    this.span = { start: this.span.start, end: splitKey };
    this.wholeSpan = false;
    this.intentCount = undefined;
    this.lowestIntentFloor = undefined;
    this.recordCount -= moved;
    assert(this.recordCount >= 0, () => `a split leaves a negative record count (${moved} records moved)`);
    return { records: moved, bytes, live: rightLive };
  }

  /**
   * The inverse of narrowTo (a merge, ADR 0009 §6): this store's span grows
   * to `end`, taking over the keys of the store whose meta record is
   * `right` (its span starts where this one ends). No record moves; the
   * count of records adds up, the revision is the higher of the two, and the
   * compacted revision too: where the two were compacted at different
   * revisions, the physical pass restarts over the whole span, so the
   * records the higher compaction drops from the other side go as well.
   */
  widenTo(end: Uint8Array | undefined, right: MvccMeta): void {
    assert(this.span.end !== undefined, 'a store over the rest of the key space has no right neighbour to absorb');
    this.span = { start: this.span.start, end };
    this.wholeSpan = this.span.start.byteLength === 0 && end === undefined;
    this.intentCount = undefined;
    this.lowestIntentFloor = undefined;
    this.recordCount += right.recordCount;
    this.live = this.live === undefined || right.live === undefined ? undefined : { keys: this.live.keys + right.live.keys, bytes: this.live.bytes + right.live.bytes };
    this.currentRevision = Math.max(this.currentRevision, right.currentRevision);
    this.everCompacted ||= right.everCompacted;
    if (right.compactedRevision !== this.compactedRevision) {
      this.compactedRevision = Math.max(this.compactedRevision, right.compactedRevision);
      this.finishedCompaction = Math.min(this.finishedCompaction, right.finishedCompaction);
      this.compactionCursor = { main: 0, sub: 0 };
    }
  }

  /**
   * Whether compaction keeps change `rev` of `key` (stored or not: a record's
   * prev may name one that is gone). Every change above the compacted
   * revision C stays; of those at or below it only the key's newest does,
   * and not if it is a tombstone below C (etcd's rule: a live key keeps its
   * value at C, and a delete at exactly C stays for watches from C). One
   * seek; no index. The same answer on every replica, however far the
   * physical deletion has got.
   */
  holds(key: Uint8Array, rev: Revision): boolean {
    if (rev.main > this.compactedRevision) return true;
    const kept = this.keptRevision(key);
    return kept !== null && revisionsEqual(kept, rev);
  }

  /** The change of `key` at or below the compacted revision that compaction keeps, or null (see holds). */
  keptRevision(key: Uint8Array): Revision | null {
    const compacted = this.compactedRevision;
    const head = this.newestAt(key, compacted);
    if (head === undefined) return null;
    const newest = dataKeyRevision(head.dataKey, head.prefixBytes);
    return newest.main < compacted && isTombstoneRecord(head.raw) ? null : newest;
  }

  /**
   * holds() for a change the `e` family lists (so it is stored): without a
   * seek once the physical pass has gone past it, since what that pass
   * leaves behind is what compaction keeps.
   */
  holdsStored(change: ChangeRef): boolean {
    if (change.rev.main > this.compactedRevision) return true;
    const cursor = this.compactionCursor;
    if (cursor === undefined || compareRevisions(change.rev, cursor) < 0) return true;
    return this.holds(change.key, change.rev);
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
 * Counts the store's `d` records and `e` entries against the meta record:
 * LMDB pages carry no checksum, so a damaged one can hide keys from every
 * scan, and only a full pass finds the hole. Keys are counted, not decoded
 * (each record's CRC is checked where it is read). O(history): for start-up
 * checks, invariants and diagnostics, never on open.
 */
export function verifyStoredCounts(view: Pick<ReadView, 'visit' | 'count'>, span: KeySpan, meta: MvccMeta): void {
  // Counted by the engine: LMDB walks its cursor in C (a damaged page hides keys from it as from any scan).
  const records = view.count(dataKeyBounds(span));
  if (records !== meta.recordCount) {
    throw new TesseraError('CORRUPT_DATA', `mvcc history: ${records} change records are stored, but the meta record counts ${meta.recordCount}; the data file is damaged`);
  }
  const whole = isWholeKeySpan(span);
  let changes = 0;
  // An entry's value is its user key: needed only when the span is not the whole key space.
  if (whole) changes = view.count(CHANGE_KEY_BOUNDS);
  else {
    view.visit(CHANGE_KEY_BOUNDS, (_, value) => {
      if (spanContains(span, value)) changes++;
    });
  }
  if (changes !== meta.recordCount) {
    throw new TesseraError('CORRUPT_DATA', `mvcc history: ${changes} change index entries are stored, but the meta record counts ${meta.recordCount}; the data file is damaged`);
  }
}

/** One entry a KeyHeadBudget admitted, in admission order: stale once its map no longer holds `entry` under `key`. */
interface AdmittedHead {
  readonly heads: Map<string, KeyHeadEntry>;
  readonly key: string;
  readonly entry: KeyHeadEntry;
}

/**
 * The bytes the key-head caches of a node's stores hold together, with the
 * order they were admitted in: past `limitBytes`, the oldest entry of any
 * of them goes first. One per node (the kv layer shares it among its
 * ranges' stores): a cache per store would let a node with many ranges hold
 * KEY_HEAD_CACHE_BYTES per range (64 ranges of a 10M-key load held over a
 * GiB of heap each and slowed to a crawl in GC). A store that is dropped
 * (its range retired or moved, a snapshot reopened it) says nothing: its
 * entries stay counted until they are the oldest, and then go like any.
 */
export class KeyHeadBudget {
  private usedBytes = 0;
  private live = 0;
  private order: AdmittedHead[] = [];
  private head = 0;

  constructor(readonly limitBytes: number = KEY_HEAD_CACHE_BYTES) {}

  /** The estimated bytes the caches hold. */
  get bytes(): number {
    return this.usedBytes;
  }

  /** Adds `entry` to `heads` under `key` (which holds none), evicting the oldest entries of any cache to make room. */
  remember(heads: Map<string, KeyHeadEntry>, key: string, entry: KeyHeadEntry): void {
    const bytes = headEntryBytes(key, entry.dataKey);
    while (this.usedBytes + bytes > this.limitBytes && this.head < this.order.length) this.evictOldest();
    if (this.usedBytes + bytes > this.limitBytes) return;
    heads.set(key, entry);
    this.usedBytes += bytes;
    this.live++;
    this.order.push({ heads, key, entry });
    // Forgotten entries leave stale records behind: drop them once they outnumber the live ones.
    if (this.order.length - this.head > 2 * this.live + 1024) this.compact();
  }

  /** `entry` left its cache (its owner deleted it). */
  forgot(key: string, entry: KeyHeadEntry): void {
    this.usedBytes -= headEntryBytes(key, entry.dataKey);
    this.live--;
  }

  private evictOldest(): void {
    const a = this.order[this.head] as AdmittedHead;
    this.order[this.head] = undefined as unknown as AdmittedHead;
    this.head++;
    if (a.heads.get(a.key) === a.entry) {
      a.heads.delete(a.key);
      this.forgot(a.key, a.entry);
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) this.compact();
  }

  private compact(): void {
    this.order = this.order.slice(this.head).filter((a) => a.heads.get(a.key) === a.entry);
    this.head = 0;
  }
}
