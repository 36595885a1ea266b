import { allocBytes, assert, TesseraError } from '../base/index.js';
import { crc32c } from './checksum.js';
import { compareBytes, concatBytes } from './bytes.js';
import {
  REVISION_BYTES,
  type Revision,
  INITIAL_REVISION,
  MAX_SUB_REVISION,
  assertRevisionNumber,
  readRevision,
  readUint53,
  writeRevision,
  writeUint53,
} from './revision.js';

/**
 * Storage layout of one MVCC key space (ADR 0009 §1). User data is keyed by
 * user key, not by range, so that a split or merge of ranges changes
 * descriptors and copies no data (as in TiKV and CockroachDB); only the meta
 * record is range-local, under a caller-given prefix P:
 *
 *   P 'm'                                   → meta record (revisions, compaction state, record count)
 *   'd' esc(key) 0x00 0x00 ~main(8) ~sub(4)  → one change of `key`: an encoded record, tombstones included
 *   'e' main(8) sub(4)                       → the user key of that change
 *   'i' esc(key) 0x00 0x00                   → an intent on `key` (intents.ts)
 *   't' esc(primary) 0x00 0x00 txnId         → a transaction record (intents.ts)
 *
 * esc() writes 0x00 as 0x00 0xff and the key ends with 0x00 0x00, so every
 * version of key "a" sorts before every version of "a\0" and a key's
 * versions are contiguous. The revision is stored inverted (each byte
 * complemented), so a key's newest change comes first. The sub-revision is
 * part of the `d` key, not only of the record: one etcd Txn can change a key
 * twice in one main revision (a nested txn puts it, a later nested txn of the
 * same branch deletes it; etcd's checkIntervals lets that through, and so
 * does ours), so the main revision alone does not name a change.
 *
 * `e` is the history in revision order, so watches from a revision,
 * compaction and HashKV are one ordered scan, as over etcd's "key" bucket.
 * A store owns the `d` and `e` keys whose user key lies in its KeySpan.
 */
const META_TAG = 0x6d; // 'm'
const DATA_TAG = 0x64; // 'd'
const CHANGE_TAG = 0x65; // 'e'
/** The families of intents and transaction records (intents.ts owns their layout; snapshots carry them with `d` and `e`). */
export const INTENT_FAMILY = 0x69; // 'i'
export const TXN_RECORD_FAMILY = 0x74; // 't'
/** Longest transaction id, in UTF-8 bytes: the tail of a `t` key (intents.ts). Ids are made by coordinators (node id and a counter). */
export const MAX_TXN_ID_BYTES = 64;

/** First byte of every record and meta value; bump it when the layout changes. */
// Format 2 ends every record with a CRC-32C of what precedes it: LMDB keeps no page checksums,
// so a flipped bit in a stored value would otherwise be served as data (bug class 15).
const RECORD_FORMAT = 2;
// Meta format 3: revisions start at INITIAL_REVISION (1, as in etcd). A format-2 meta numbers them
// from 0, so a replica holding it would give the same log entries other revisions than a format-3
// one; it is refused, never reinterpreted. Meta format 4 adds the count of stored change records and
// whether a compaction was ever applied. Meta format 5: the records moved from the revision-keyed
// layout under the range prefix to the `d`/`e` families above; a format-4 data directory holds its
// history where this build does not look, so it is refused rather than read as an empty store.
// Meta format 6 adds the live keys and their key and value bytes (MvccMeta.live); a format-5 meta
// is read with them unknown, and they are counted once when first asked for.
const META_FORMAT = 6;
const META_FORMAT_WITHOUT_LIVE = 5;
const CHECKSUM_BYTES = 4;

const FLAG_TOMBSTONE = 1;
const FLAG_HAS_PREV = 2;

export function metaKey(prefix: Uint8Array): Uint8Array {
  return concatBytes(prefix, Uint8Array.of(META_TAG));
}

/**
 * A half-open interval of user keys [start, end) that one store owns; `end`
 * undefined is the end of the key space. With one range per node the store
 * owns WHOLE_KEY_SPAN; a range's descriptor will give it its bounds.
 */
export interface KeySpan {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
}

export const WHOLE_KEY_SPAN: KeySpan = { start: new Uint8Array(0), end: undefined };

export function isWholeKeySpan(span: KeySpan): boolean {
  return span.start.length === 0 && span.end === undefined;
}

export function spanContains(span: KeySpan, key: Uint8Array): boolean {
  return compareBytes(key, span.start) >= 0 && (span.end === undefined || compareBytes(key, span.end) < 0);
}

/** Engine key bounds [start, end), as a scan or deleteRange takes them. */
export interface EngineSpan {
  readonly start: Uint8Array;
  readonly end: Uint8Array;
}

/** 'd' esc(key) 0x00 0x00 (or another family's tag), with room for `tail` more bytes after it. */
function escapedKey(userKey: Uint8Array, tail: number, tag: number = DATA_TAG): { out: Uint8Array; at: number } {
  let zeros = 0;
  for (let i = 0; i < userKey.length; i++) if (userKey[i] === 0) zeros++;
  const out = new Uint8Array(1 + userKey.length + zeros + 2 + tail);
  out[0] = tag;
  let at = 1;
  if (zeros === 0) {
    out.set(userKey, 1);
    at += userKey.length;
  } else {
    for (let i = 0; i < userKey.length; i++) {
      const b = userKey[i]!;
      out[at++] = b;
      if (b === 0) out[at++] = 0xff;
    }
  }
  // The terminator 0x00 0x00 is already there: the array starts zeroed.
  return { out, at: at + 2 };
}

/** The `d` key of change `rev` of `userKey`. */
export function dataKey(userKey: Uint8Array, rev: Revision): Uint8Array {
  const { out, at } = escapedKey(userKey, REVISION_BYTES);
  writeRevision(out, at, rev);
  for (let i = at; i < at + REVISION_BYTES; i++) out[i] = ~out[i]! & 0xff;
  return out;
}

/**
 * The user key and revision a `d` key names, or undefined if it is not a
 * well-formed one (a bad escape, a wrong length, a main revision ≥ 2^53).
 * Never throws: it also checks keys that arrived from a peer.
 */
export function parseDataKey(key: Uint8Array): { userKey: Uint8Array; rev: Revision } | undefined {
  if (key[0] !== DATA_TAG) return undefined;
  // Most keys hold no 0x00 byte: then the first 0x00 starts the terminator and the key is one slice.
  const zero = key.indexOf(0, 1);
  if (zero > 0 && key[zero + 1] === 0) return revisionAfter(key, key.slice(1, zero), zero + 2);
  const unescaped = unescapeKey(key, 1);
  return unescaped === undefined ? undefined : revisionAfter(key, unescaped.userKey, unescaped.end);
}

/**
 * The user key escaped in `key` from byte `from` up to its terminator
 * 0x00 0x00, and the index just past the terminator; undefined for a bad
 * escape or a missing terminator. Never throws.
 */
function unescapeKey(key: Uint8Array, from: number): { userKey: Uint8Array; end: number } | undefined {
  const bytes: number[] = [];
  let i = from;
  for (;;) {
    if (i >= key.length) return undefined;
    const b = key[i]!;
    if (b !== 0) {
      bytes.push(b);
      i++;
      continue;
    }
    const next = key[i + 1];
    if (next === 0xff) {
      bytes.push(0);
      i += 2;
      continue;
    }
    if (next !== 0) return undefined;
    return { userKey: Uint8Array.from(bytes), end: i + 2 };
  }
}

/** parseDataKey's end: the inverted revision that fills the rest of `key` from `i`. */
function revisionAfter(key: Uint8Array, userKey: Uint8Array, i: number): { userKey: Uint8Array; rev: Revision } | undefined {
  if (key.length - i !== REVISION_BYTES) return undefined;
  const revBytes = new Uint8Array(REVISION_BYTES);
  for (let j = 0; j < REVISION_BYTES; j++) revBytes[j] = ~key[i + j]! & 0xff;
  // readUint53 would assert on a main revision ≥ 2^53: refuse it here instead.
  if (revBytes[0]! > 0x1f) return undefined;
  return { userKey, rev: readRevision(revBytes, 0) };
}

/** 'd' esc(key) 0x00 0x00: at or below every change of `userKey` (its newest comes first). */
export function dataKeyPrefix(userKey: Uint8Array): Uint8Array {
  return escapedKey(userKey, 0).out;
}

/**
 * Above every change of `userKey` and below every change of any greater key:
 * the prefix with its terminator 0x00 0x00 raised to 0x00 0x01 (a greater
 * key continues with 0x00 0xff or a byte above 0x00 where this one ends).
 */
export function dataKeyVersionsEnd(userKey: Uint8Array): Uint8Array {
  const out = escapedKey(userKey, 0).out;
  out[out.length - 1] = 1;
  return out;
}

/** The same bound from a stored `d` key of the user key (its escaped prefix is the first `prefixBytes` bytes). */
export function versionsEndOfDataKey(stored: Uint8Array, prefixBytes: number): Uint8Array {
  const out = stored.slice(0, prefixBytes);
  out[prefixBytes - 1] = 1;
  return out;
}

/** The seek key for reading `userKey` at main revision `main`: the first change at or after it is the newest ≤ main. */
export function dataKeyAtMain(userKey: Uint8Array, main: number): Uint8Array {
  return dataKey(userKey, { main, sub: MAX_SUB_REVISION });
}

/** The same seek key from a stored `d` key of the user key. */
export function dataKeyAtMainOf(stored: Uint8Array, prefixBytes: number, main: number): Uint8Array {
  const out = new Uint8Array(prefixBytes + REVISION_BYTES);
  out.set(stored.subarray(0, prefixBytes));
  writeRevision(out, prefixBytes, { main, sub: MAX_SUB_REVISION });
  for (let i = prefixBytes; i < out.length; i++) out[i] = ~out[i]! & 0xff;
  return out;
}

/**
 * Bytes of the escaped user key and its terminator at the start of a stored
 * `d` key (the revision fills the rest), or -1 if the key cannot be one.
 * Cheaper than parseDataKey: walking keys in order needs only where one
 * user key's changes end.
 */
export function dataKeyPrefixBytes(stored: Uint8Array): number {
  const n = stored.length - REVISION_BYTES;
  return n >= 3 && stored[0] === DATA_TAG && stored[n - 1] === 0 && stored[n - 2] === 0 ? n : -1;
}

/** The main revision of a stored `d` key whose prefix is `prefixBytes` long (see dataKeyPrefixBytes). */
export function dataKeyMain(stored: Uint8Array, prefixBytes: number): number {
  // The main revision is the first 8 of the 12 inverted bytes; above 2^53 it is no revision of ours.
  let main = 0;
  for (let i = prefixBytes; i < prefixBytes + 8; i++) main = main * 256 + (~stored[i]! & 0xff);
  return main;
}

/** The revision of a stored `d` key (see dataKeyPrefixBytes). */
export function dataKeyRevision(stored: Uint8Array, prefixBytes: number): Revision {
  const sub = ((~stored[prefixBytes + 8]! & 0xff) * 2 ** 24) + (((~stored[prefixBytes + 9]! & 0xff) << 16) | ((~stored[prefixBytes + 10]! & 0xff) << 8) | (~stored[prefixBytes + 11]! & 0xff));
  return { main: dataKeyMain(stored, prefixBytes), sub };
}

/** The `d` keys of every change of every user key in `span`. */
export function dataKeyBounds(span: KeySpan): EngineSpan {
  // 'd' esc(k) 0x00 0x00 is below every version of k and, the escaping keeping byte order and no
  // escaped key being a prefix of another, above every version of any key below k.
  const start = escapedKey(span.start, 0).out;
  const end = span.end === undefined ? Uint8Array.of(DATA_TAG + 1) : escapedKey(span.end, 0).out;
  return { start, end };
}

/**
 * `tag` esc(key) 0x00 0x00 followed by `tail`: a key of another family keyed
 * by user key the way `d` is (intents.ts), so it sorts and splits with the
 * user keys as their versions do.
 */
export function escapedFamilyKey(tag: number, userKey: Uint8Array, tail: Uint8Array = new Uint8Array(0)): Uint8Array {
  assert(tag !== DATA_TAG && tag !== CHANGE_TAG && tag !== META_TAG, () => `family tag ${tag} belongs to the mvcc records`);
  const { out, at } = escapedKey(userKey, tail.length, tag);
  out.set(tail, at);
  return out;
}

/**
 * The user key of a key of family `tag` (escapedFamilyKey) and the bytes
 * after its terminator, or undefined if it is not a well-formed one. Never
 * throws: it also checks keys that arrived from a peer.
 */
export function parseFamilyKey(tag: number, key: Uint8Array): { userKey: Uint8Array; tail: Uint8Array } | undefined {
  if (key[0] !== tag) return undefined;
  const unescaped = unescapeKey(key, 1);
  return unescaped === undefined ? undefined : { userKey: unescaped.userKey, tail: key.subarray(unescaped.end) };
}

/** The keys of family `tag` (escapedFamilyKey) of every user key in `span`. */
export function familyKeyBounds(tag: number, span: KeySpan): EngineSpan {
  const start = escapedKey(span.start, 0, tag).out;
  const end = span.end === undefined ? Uint8Array.of(tag + 1) : escapedKey(span.end, 0, tag).out;
  return { start, end };
}

/** The `e` key of change `rev`. */
export function changeKey(rev: Revision): Uint8Array {
  const out = new Uint8Array(1 + REVISION_BYTES);
  out[0] = CHANGE_TAG;
  writeRevision(out, 1, rev);
  return out;
}

/** The first `e` key at or after `main` (sub 0). */
export function changeKeyAtMain(main: number): Uint8Array {
  return changeKey({ main, sub: 0 });
}

/** Every `e` key, whatever store its user key belongs to. */
export const CHANGE_KEY_BOUNDS: EngineSpan = { start: Uint8Array.of(CHANGE_TAG), end: Uint8Array.of(CHANGE_TAG + 1) };

export function decodeChangeKey(key: Uint8Array): Revision {
  assert(key.length === 1 + REVISION_BYTES && key[0] === CHANGE_TAG, () => `not an mvcc change key (${key.length} bytes, tag ${key[0]})`);
  return readRevision(key, 1);
}

/** Whether `key` is a well-formed `e` key; never throws (see parseDataKey). */
function isChangeKey(key: Uint8Array): boolean {
  return key.length === 1 + REVISION_BYTES && key[0] === CHANGE_TAG && key[1]! <= 0x1f;
}

/**
 * Whether a stored pair is one of the `d` or `e` keys a store owning `span`
 * holds: a well-formed key of either family whose user key (for `e`, the
 * value) lies in the span. For checking a peer's snapshot before it is
 * installed; the records themselves are checked when read (their CRC).
 */
export function isStoreKeyInSpan(span: KeySpan, key: Uint8Array, value: Uint8Array): boolean {
  if (key[0] === INTENT_FAMILY || key[0] === TXN_RECORD_FAMILY) {
    // An intent's key ends at its terminator; a record's carries the transaction id after it.
    const parsed = parseFamilyKey(key[0], key);
    if (parsed === undefined || !spanContains(span, parsed.userKey) || value.length === 0) return false;
    return key[0] === INTENT_FAMILY ? parsed.tail.length === 0 : parsed.tail.length > 0 && parsed.tail.length <= MAX_TXN_ID_BYTES;
  }
  if (key[0] === DATA_TAG) {
    const parsed = parseDataKey(key);
    return parsed !== undefined && spanContains(span, parsed.userKey);
  }
  return isChangeKey(key) && value.length > 0 && spanContains(span, value);
}

/** One change of one key, as stored. A tombstone has an empty value and zero create revision, version and lease. */
export interface StoredRecord {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly tombstone: boolean;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly lease: number;
  /** The key's previous live revision (what a watcher's prev_kv shows); undefined when the key did not exist before. */
  readonly prev: Revision | undefined;
}

const RECORD_FIXED_BYTES = 2 + 4 * 8 + 4 + 4;
/** A record's format and flag bytes, its first two: all isTombstoneRecord reads (with the record's length). */
export const RECORD_HEAD_BYTES = 2;

/**
 * The key and value bytes of a live record from its head (RECORD_HEAD_BYTES)
 * and stored length, or undefined for a tombstone: the record's other parts
 * have fixed sizes, so counting a range's live bytes reads no values.
 */
export function liveKeyValueBytes(stored: Uint8Array, storedBytes: number): number | undefined {
  if (isTombstoneRecord(stored, storedBytes)) return undefined;
  const prevBytes = (stored[1]! & FLAG_HAS_PREV) !== 0 ? REVISION_BYTES : 0;
  const bytes = storedBytes - RECORD_FIXED_BYTES - prevBytes - CHECKSUM_BYTES;
  if (bytes < 0) throw new TesseraError('CORRUPT_DATA', `mvcc record of ${storedBytes} bytes is shorter than its fixed parts; the record is corrupt`);
  return bytes;
}

export function encodeRecord(record: StoredRecord): Uint8Array {
  const prevBytes = record.prev === undefined ? 0 : REVISION_BYTES;
  const out = allocBytes(RECORD_FIXED_BYTES + prevBytes + record.key.length + record.value.length + CHECKSUM_BYTES);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[0] = RECORD_FORMAT;
  out[1] = (record.tombstone ? FLAG_TOMBSTONE : 0) | (record.prev === undefined ? 0 : FLAG_HAS_PREV);
  let offset = 2;
  for (const n of [record.createRevision, record.modRevision, record.version, record.lease]) {
    writeUint53(out, offset, n);
    offset += 8;
  }
  if (record.prev !== undefined) {
    writeRevision(out, offset, record.prev);
    offset += REVISION_BYTES;
  }
  view.setUint32(offset, record.key.length);
  out.set(record.key, offset + 4);
  offset += 4 + record.key.length;
  view.setUint32(offset, record.value.length);
  out.set(record.value, offset + 4);
  sealChecksum(out);
  return out;
}

/** Writes the CRC-32C of all but the last four bytes into the last four. */
function sealChecksum(out: Uint8Array): void {
  const end = out.length - CHECKSUM_BYTES;
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(end, crc32c(out.subarray(0, end)));
}

/** Returns the record without its checksum, or refuses a damaged one: never decode corrupt bytes. */
function verifyChecksum(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.length < CHECKSUM_BYTES + 1) throw new TesseraError('CORRUPT_DATA', `${what}: ${bytes.length} bytes is too short; the record is corrupt`);
  const end = bytes.length - CHECKSUM_BYTES;
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(end);
  if (crc32c(bytes.subarray(0, end)) !== stored) throw new TesseraError('CORRUPT_DATA', `${what}: checksum mismatch; the record is corrupt`);
  return bytes.subarray(0, end);
}

export function decodeRecord(stored: Uint8Array): StoredRecord {
  const bytes = verifyChecksum(stored, 'mvcc record');
  assert(bytes.length >= RECORD_FIXED_BYTES && bytes[0] === RECORD_FORMAT, () => `not an mvcc record (format ${bytes[0]}, ${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = bytes[1]!;
  let offset = 2;
  const numbers: number[] = [];
  for (let i = 0; i < 4; i++, offset += 8) numbers.push(readUint53(bytes, offset));
  let prev: Revision | undefined;
  if ((flags & FLAG_HAS_PREV) !== 0) {
    prev = readRevision(bytes, offset);
    offset += REVISION_BYTES;
  }
  const keyLength = view.getUint32(offset);
  const key = bytes.slice(offset + 4, offset + 4 + keyLength);
  offset += 4 + keyLength;
  const valueLength = view.getUint32(offset);
  const value = bytes.slice(offset + 4, offset + 4 + valueLength);
  assert(offset + 4 + valueLength === bytes.length, 'mvcc record has trailing or missing bytes');
  const [createRevision, modRevision, version, lease] = numbers as [number, number, number, number];
  return { key, value, tombstone: (flags & FLAG_TOMBSTONE) !== 0, createRevision, modRevision, version, lease, prev };
}

/**
 * Whether a stored record is a tombstone, from its flag byte alone (`stored`
 * may be its first RECORD_HEAD_BYTES only, `storedBytes` its length): counting
 * the live keys of a range needs no more, and skips the checksum of every
 * value (as the in-memory index it replaces did). A record that cannot be
 * one is refused.
 */
export function isTombstoneRecord(stored: Uint8Array, storedBytes: number = stored.length): boolean {
  if (storedBytes < RECORD_FIXED_BYTES + CHECKSUM_BYTES || stored.length < RECORD_HEAD_BYTES || stored[0] !== RECORD_FORMAT) {
    throw new TesseraError('CORRUPT_DATA', `mvcc record of format ${stored[0]}, ${storedBytes} bytes; the record is corrupt`);
  }
  return (stored[1]! & FLAG_TOMBSTONE) !== 0;
}

/**
 * The meta record. `compactedRevision` is the logical compaction: reads below
 * it fail from the moment compact() is applied. `finishedCompaction` is how
 * far the physical deletion of superseded records has got; while it lags,
 * `compactionCursor` marks where deletion resumes (after a restart too).
 * `writeSeq` counts this store's mutations (PendingWrites once used it to
 * tell which of its writes the engine held; it now asks the batch).
 */
export interface MvccMeta {
  readonly currentRevision: number;
  readonly compactedRevision: number;
  readonly finishedCompaction: number;
  readonly compactionCursor: Revision | undefined;
  readonly writeSeq: number;
  /**
   * Change records stored: each change adds one, each physical compaction
   * deletion takes one away. LMDB pages carry no checksum, so a damaged page
   * can hide records from every scan; opening the store counts them against
   * this and refuses the difference instead of serving a history with holes.
   */
  readonly recordCount: number;
  /**
   * A compaction was applied, even one at revision 0. etcd's never-compacted
   * store holds -1, so its first Compact(0) succeeds and the next is refused;
   * `compactedRevision` alone (0 for both) cannot tell the two apart.
   */
  readonly everCompacted: boolean;
  /**
   * The live keys at the current revision and their key and value bytes,
   * kept by every write, split and merge (as CockroachDB keeps MVCCStats),
   * so an operator's view costs no walk over the data; undefined when the
   * meta came from format 5, until they are counted (MvccStore.liveKeysAndBytes).
   */
  readonly live: LiveStats | undefined;
}

/** A store's live keys and their key and value bytes (MvccMeta.live). */
export interface LiveStats {
  readonly keys: number;
  readonly bytes: number;
}

/**
 * A store that was never written: at INITIAL_REVISION, never compacted. The
 * compacted revision 0 stands for etcd's -1 ("none"): a read at any revision
 * ≥ 1 passes, as in etcd.
 */
export const EMPTY_META: MvccMeta = {
  currentRevision: INITIAL_REVISION,
  compactedRevision: 0,
  finishedCompaction: 0,
  compactionCursor: undefined,
  writeSeq: 0,
  recordCount: 0,
  everCompacted: false,
  live: { keys: 0, bytes: 0 },
};

/** etcd's compactMainRev: -1 until a compaction is applied, then the compacted revision. */
export function compactFloor(meta: Pick<MvccMeta, 'compactedRevision' | 'everCompacted'>): number {
  return meta.everCompacted ? meta.compactedRevision : -1;
}

const META_BYTES_WITHOUT_LIVE = 1 + 5 * 8 + 1 + REVISION_BYTES + CHECKSUM_BYTES;
/** Format 6 appends the live key count and bytes, and a flag byte saying whether they are known. */
const META_LIVE_AT = META_BYTES_WITHOUT_LIVE - CHECKSUM_BYTES;
const META_BYTES = META_BYTES_WITHOUT_LIVE + 2 * 8 + 1;
/** Bits of the meta record's flag byte. */
const META_FLAG_CURSOR = 1;
const META_FLAG_EVER_COMPACTED = 2;

export function encodeMeta(meta: MvccMeta): Uint8Array {
  assert(meta.currentRevision >= INITIAL_REVISION, 'current revision below the initial revision');
  assert(meta.finishedCompaction <= meta.compactedRevision, 'finished compaction ahead of the compacted revision');
  assert(meta.compactedRevision <= meta.currentRevision, 'compacted revision ahead of the current revision');
  assert(meta.everCompacted || meta.compactedRevision === 0, 'a compacted revision without a compaction');
  const out = new Uint8Array(META_BYTES);
  out[0] = META_FORMAT;
  writeUint53(out, 1, meta.currentRevision);
  writeUint53(out, 9, meta.compactedRevision);
  writeUint53(out, 17, meta.finishedCompaction);
  writeUint53(out, 25, meta.writeSeq);
  writeUint53(out, 33, meta.recordCount);
  out[41] = (meta.compactionCursor === undefined ? 0 : META_FLAG_CURSOR) | (meta.everCompacted ? META_FLAG_EVER_COMPACTED : 0);
  if (meta.compactionCursor !== undefined) writeRevision(out, 42, meta.compactionCursor);
  if (meta.live !== undefined) {
    assert(Number.isSafeInteger(meta.live.keys) && meta.live.keys >= 0 && Number.isSafeInteger(meta.live.bytes) && meta.live.bytes >= 0, () => `live stats out of range: ${meta.live?.keys} keys, ${meta.live?.bytes} bytes`);
    out[META_LIVE_AT] = 1;
    writeUint53(out, META_LIVE_AT + 1, meta.live.keys);
    writeUint53(out, META_LIVE_AT + 9, meta.live.bytes);
  }
  sealChecksum(out);
  return out;
}

export function decodeMeta(stored: Uint8Array): MvccMeta {
  verifyChecksum(stored, 'mvcc meta record');
  const bytes = stored;
  // Intact (the checksum held) but of another format: data from an older build, e.g. in a snapshot.
  if (bytes[0] !== META_FORMAT && bytes[0] !== META_FORMAT_WITHOUT_LIVE) {
    throw new TesseraError('CORRUPT_DATA', `mvcc meta record of format ${bytes[0]}; this build reads formats ${META_FORMAT_WITHOUT_LIVE} and ${META_FORMAT}`);
  }
  const withLive = bytes[0] === META_FORMAT;
  assert(bytes.length === (withLive ? META_BYTES : META_BYTES_WITHOUT_LIVE), () => `not an mvcc meta record (${bytes.length} bytes)`);
  const meta: MvccMeta = {
    currentRevision: readUint53(bytes, 1),
    compactedRevision: readUint53(bytes, 9),
    finishedCompaction: readUint53(bytes, 17),
    writeSeq: readUint53(bytes, 25),
    recordCount: readUint53(bytes, 33),
    compactionCursor: ((bytes[41] as number) & META_FLAG_CURSOR) !== 0 ? readRevision(bytes, 42) : undefined,
    everCompacted: ((bytes[41] as number) & META_FLAG_EVER_COMPACTED) !== 0,
    live: withLive && bytes[META_LIVE_AT] === 1 ? { keys: readUint53(bytes, META_LIVE_AT + 1), bytes: readUint53(bytes, META_LIVE_AT + 9) } : undefined,
  };
  assertRevisionNumber(meta.currentRevision, 'stored current revision');
  assert(meta.currentRevision >= INITIAL_REVISION, () => `stored current revision ${meta.currentRevision} is below the initial revision`);
  assert(meta.compactedRevision <= meta.currentRevision, 'stored compacted revision ahead of the current revision');
  return meta;
}
