import { allocBytes, assert, TesseraError } from '../base/index.js';
import { crc32c } from './checksum.js';
import { concatBytes } from './bytes.js';
import {
  REVISION_BYTES,
  type Revision,
  INITIAL_REVISION,
  assertRevisionNumber,
  readRevision,
  readUint53,
  writeRevision,
  writeUint53,
} from './revision.js';

/**
 * Storage layout of one MVCC key space under a caller-given prefix P (one
 * prefix per range, so many ranges share one engine). Prefixes of different
 * stores must not be prefixes of one another.
 *
 *   P 'm'                       → meta record (revisions, compaction state)
 *   P 'r' main(8) sub(4)        → one change: an encoded record, tombstones included
 *
 * Revision keys sort in revision order, so history is one ordered scan, as
 * in etcd's "key" bucket.
 */
const META_TAG = 0x6d; // 'm'
const REVISION_TAG = 0x72; // 'r'

/** First byte of every record and meta value; bump it when the layout changes. */
// Format 2 ends every record with a CRC-32C of what precedes it: LMDB keeps no page checksums,
// so a flipped bit in a stored value would otherwise be served as data (bug class 15).
const RECORD_FORMAT = 2;
// Meta format 3: revisions start at INITIAL_REVISION (1, as in etcd). A format-2 meta numbers them
// from 0, so a replica holding it would give the same log entries other revisions than a format-3
// one; it is refused, never reinterpreted. Meta format 4 adds the count of stored change records and
// whether a compaction was ever applied.
const META_FORMAT = 4;
const CHECKSUM_BYTES = 4;

const FLAG_TOMBSTONE = 1;
const FLAG_HAS_PREV = 2;

export function metaKey(prefix: Uint8Array): Uint8Array {
  return concatBytes(prefix, Uint8Array.of(META_TAG));
}

export function revisionKey(prefix: Uint8Array, rev: Revision): Uint8Array {
  const out = new Uint8Array(prefix.length + 1 + REVISION_BYTES);
  out.set(prefix, 0);
  out[prefix.length] = REVISION_TAG;
  writeRevision(out, prefix.length + 1, rev);
  return out;
}

/** The first revision key at or after `main` (sub 0). */
export function revisionKeyAtMain(prefix: Uint8Array, main: number): Uint8Array {
  return revisionKey(prefix, { main, sub: 0 });
}

/** Scan bounds covering every revision key of the store. */
export function revisionKeySpan(prefix: Uint8Array): { start: Uint8Array; end: Uint8Array } {
  return { start: concatBytes(prefix, Uint8Array.of(REVISION_TAG)), end: concatBytes(prefix, Uint8Array.of(REVISION_TAG + 1)) };
}

export function decodeRevisionKey(prefix: Uint8Array, key: Uint8Array): Revision {
  assert(key.length === prefix.length + 1 + REVISION_BYTES, () => `revision key of length ${key.length} under a prefix of ${prefix.length}`);
  assert(key[prefix.length] === REVISION_TAG, 'revision key without its tag');
  return readRevision(key, prefix.length + 1);
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
};

/** etcd's compactMainRev: -1 until a compaction is applied, then the compacted revision. */
export function compactFloor(meta: Pick<MvccMeta, 'compactedRevision' | 'everCompacted'>): number {
  return meta.everCompacted ? meta.compactedRevision : -1;
}

const META_BYTES = 1 + 5 * 8 + 1 + REVISION_BYTES + CHECKSUM_BYTES;
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
  sealChecksum(out);
  return out;
}

export function decodeMeta(stored: Uint8Array): MvccMeta {
  verifyChecksum(stored, 'mvcc meta record');
  const bytes = stored;
  // Intact (the checksum held) but of another format: data from an older build, e.g. in a snapshot.
  if (bytes[0] !== META_FORMAT) throw new TesseraError('CORRUPT_DATA', `mvcc meta record of format ${bytes[0]}; this build reads only format ${META_FORMAT}`);
  assert(bytes.length === META_BYTES, () => `not an mvcc meta record (${bytes.length} bytes)`);
  const meta: MvccMeta = {
    currentRevision: readUint53(bytes, 1),
    compactedRevision: readUint53(bytes, 9),
    finishedCompaction: readUint53(bytes, 17),
    writeSeq: readUint53(bytes, 25),
    recordCount: readUint53(bytes, 33),
    compactionCursor: ((bytes[41] as number) & META_FLAG_CURSOR) !== 0 ? readRevision(bytes, 42) : undefined,
    everCompacted: ((bytes[41] as number) & META_FLAG_EVER_COMPACTED) !== 0,
  };
  assertRevisionNumber(meta.currentRevision, 'stored current revision');
  assert(meta.currentRevision >= INITIAL_REVISION, () => `stored current revision ${meta.currentRevision} is below the initial revision`);
  assert(meta.compactedRevision <= meta.currentRevision, 'stored compacted revision ahead of the current revision');
  return meta;
}
