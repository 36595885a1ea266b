import { createHash, type Hash } from 'node:crypto';
import { TesseraError, assert } from '../../base/index.js';
import type { KeyValue, ReadView } from '../../storage/engine.js';

/**
 * The tessera snapshot file: what Maintenance.Snapshot streams and
 * `etcdctl snapshot save` writes. etcd streams its bolt file; tessera has
 * none, so it streams a dump of every key of the node's storage engine as
 * one snapshotView saw it (a single point in time: Raft state, MVCC data,
 * leases, all ranges). Layout, integers big-endian:
 *
 *   magic      16 bytes  "TESSERASNAPSHOT\n"
 *   version    u32       SNAPSHOT_FORMAT_VERSION
 *   metaBytes  u32       length of the next field
 *   meta       JSON, UTF-8 (SnapshotMeta)
 *   records    per engine pair, in key order: 0x01, keyBytes u32, valueBytes u32, key, value
 *   end        0x00, pairCount u64
 *   padding    zero bytes up to a multiple of SNAPSHOT_ALIGN_BYTES
 *   trailer    32 bytes: sha256 of everything before it
 *
 * The trailer is what etcd appends to its own snapshot stream, so clients
 * that check it (etcd's restore does) can. The padding keeps etcd's test for
 * "this file ends with a hash" true: a file size that is 32 more than a
 * multiple of 512.
 */

export const SNAPSHOT_MAGIC = Buffer.from('TESSERASNAPSHOT\n', 'latin1');
export const SNAPSHOT_FORMAT_VERSION = 1;
/** The body (everything before the trailer) is padded to a multiple of this; see the file comment. */
export const SNAPSHOT_ALIGN_BYTES = 512;
export const SNAPSHOT_TRAILER_BYTES = 32;

const TAG_END = 0x00;
const TAG_PAIR = 0x01;
const RECORD_HEADER_BYTES = 9;
const END_RECORD_BYTES = 9;
/** A meta block larger than this is refused when reading: the writer's is a few hundred bytes. */
const MAX_META_BYTES = 64 * 1024;

/** What the node was when the view was taken (one turn of the event loop). */
export interface SnapshotMeta {
  readonly format: 'tessera-engine-dump';
  readonly nodeId: number;
  /** As the etcd API prints it (hex). */
  readonly clusterId: string;
  readonly engine: string;
  /** The MVCC revision and compacted revision of the served range. */
  readonly revision: number;
  readonly compactRevision: number;
  /** The served range's Raft applied index and term. */
  readonly raftAppliedIndex: number;
  readonly raftTerm: number;
  readonly createdAtMs: number;
}

/** Bytes of the body (all but the trailer) and the number of pairs, from a first pass over the view. */
export interface DumpSize {
  readonly bodyBytes: number;
  readonly pairs: number;
}

function metaBytes(meta: SnapshotMeta): Buffer {
  return Buffer.from(JSON.stringify(meta), 'utf8');
}

function headerBytes(meta: SnapshotMeta): Buffer {
  const json = metaBytes(meta);
  const fixed = Buffer.alloc(SNAPSHOT_MAGIC.length + 8);
  SNAPSHOT_MAGIC.copy(fixed, 0);
  fixed.writeUInt32BE(SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC.length);
  fixed.writeUInt32BE(json.length, SNAPSHOT_MAGIC.length + 4);
  return Buffer.concat([fixed, json]);
}

function paddingFor(unpaddedBytes: number): number {
  return (SNAPSHOT_ALIGN_BYTES - (unpaddedBytes % SNAPSHOT_ALIGN_BYTES)) % SNAPSHOT_ALIGN_BYTES;
}

/** The body size for `pairs` records of `recordBytes` in total (their headers included). */
export function bodySize(meta: SnapshotMeta, pairs: number, recordBytes: number): DumpSize {
  const unpadded = headerBytes(meta).length + recordBytes + END_RECORD_BYTES;
  return { bodyBytes: unpadded + paddingFor(unpadded), pairs };
}

/**
 * Scans a view in key order a slice at a time: each `next(limit)` starts a
 * fresh scan where the last one stopped, so no iterator is held across turns
 * of the event loop. Keys are resumed from inclusively and the repeat is
 * skipped (a key one byte longer could exceed the engine's key limit).
 */
export class ViewCursor {
  private resumeKey: Uint8Array | undefined;
  private done = false;

  constructor(private readonly view: ReadView) {}

  get exhausted(): boolean {
    return this.done;
  }

  /** Calls `visit` for pairs in order until it returns false or `maxPairs` were visited; false when the view is exhausted. */
  step(maxPairs: number, visit: (pair: KeyValue) => boolean): void {
    if (this.done) return;
    const start = this.resumeKey;
    let visited = 0;
    for (const pair of this.view.scan({ start: start ?? new Uint8Array(0) })) {
      if (start !== undefined && Buffer.compare(pair.key, start) === 0) continue;
      this.resumeKey = pair.key.slice();
      visited++;
      if (!visit(pair) || visited >= maxPairs) return;
    }
    this.done = true;
  }
}

/** How many pairs the sizing pass reads per turn of the event loop. */
export const SIZING_SLICE_PAIRS = 4_096;

/** The first pass: the exact body size, so every chunk can carry etcd's remaining_bytes. Yields to the event loop between slices. */
export async function measureDump(view: ReadView, meta: SnapshotMeta, aborted: () => boolean): Promise<DumpSize> {
  const cursor = new ViewCursor(view);
  let pairs = 0;
  let recordBytes = 0;
  while (!cursor.exhausted) {
    if (aborted()) throw new TesseraError('CLOSED', 'snapshot cancelled');
    cursor.step(SIZING_SLICE_PAIRS, (pair) => {
      pairs++;
      recordBytes += RECORD_HEADER_BYTES + pair.key.byteLength + pair.value.byteLength;
      return true;
    });
    await new Promise((resolve) => setImmediate(resolve));
  }
  return bodySize(meta, pairs, recordBytes);
}

/**
 * The second pass: the body in chunks of exactly `chunkBytes` (the last one
 * shorter), then the trailer. A record may straddle chunks, so memory per
 * dump is one chunk plus the record being cut, whatever the values' sizes.
 */
export class DumpWriter {
  private readonly cursor: ViewCursor;
  private readonly hash: Hash = createHash('sha256');
  /** Bytes waiting to be copied into chunks: the header first, then the record being written. */
  private pending: Uint8Array[] = [];
  /** Whether `pending` holds copies (or nothing borrowed from a scan). */
  private pendingOwned = true;
  private pairs = 0;
  private written = 0;
  private endWritten = false;

  constructor(
    view: ReadView,
    meta: SnapshotMeta,
    private readonly size: DumpSize,
    private readonly chunkBytes: number,
  ) {
    assert(Number.isSafeInteger(chunkBytes) && chunkBytes > 0, () => `snapshot chunk size must be a positive integer, got ${chunkBytes}`);
    this.cursor = new ViewCursor(view);
    this.pending.push(headerBytes(meta));
  }

  /** Body bytes still to come after those handed out so far. */
  get remainingBytes(): number {
    return this.size.bodyBytes - this.written;
  }

  /** The next chunk of the body, or undefined once all of it was handed out (then `trailer()`). */
  nextChunk(): Buffer | undefined {
    if (this.remainingBytes === 0) return undefined;
    const chunk = Buffer.allocUnsafe(Math.min(this.chunkBytes, this.remainingBytes));
    let filled = this.drainPending(chunk, 0);
    while (filled < chunk.length) {
      if (!this.cursor.exhausted) {
        this.cursor.step(Number.MAX_SAFE_INTEGER, (pair) => {
          this.queueRecord(pair);
          filled = this.drainPending(chunk, filled);
          return filled < chunk.length;
        });
        continue;
      }
      if (!this.endWritten) {
        this.endWritten = true;
        const end = Buffer.alloc(END_RECORD_BYTES);
        end[0] = TAG_END;
        end.writeBigUInt64BE(BigInt(this.pairs), 1);
        // A snapshotView never changes: a count that differs from the first pass is a bug, never a dump to hand out.
        assert(this.pairs === this.size.pairs, () => `snapshot view changed between passes: ${this.pairs} pairs, ${this.size.pairs} measured`);
        this.pending.push(end);
        filled = this.drainPending(chunk, filled);
        continue;
      }
      // Padding: zeros up to the measured size.
      chunk.fill(0, filled);
      filled = chunk.length;
    }
    // A straddling record's bytes must outlive the scan that produced them: copied once, not per chunk.
    if (!this.pendingOwned) this.pending = this.pending.map((bytes) => bytes.slice());
    this.pendingOwned = true;
    this.written += chunk.length;
    this.hash.update(chunk);
    if (this.remainingBytes === 0) assert(this.pending.length === 0 && this.endWritten, 'snapshot body ended with bytes left over');
    return chunk;
  }

  /** The sha256 of the whole body; only once every chunk was handed out. */
  trailer(): Buffer {
    assert(this.remainingBytes === 0, () => `snapshot trailer asked for with ${this.remainingBytes} body bytes to go`);
    return this.hash.digest();
  }

  private queueRecord(pair: KeyValue): void {
    const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
    header[0] = TAG_PAIR;
    header.writeUInt32BE(pair.key.byteLength, 1);
    header.writeUInt32BE(pair.value.byteLength, 5);
    this.pending.push(header, pair.key, pair.value);
    this.pendingOwned = false;
    this.pairs++;
  }

  /** Copies pending bytes into `chunk` from `offset`; returns the new fill level. */
  private drainPending(chunk: Buffer, offset: number): number {
    while (this.pending.length > 0 && offset < chunk.length) {
      const head = this.pending[0] as Uint8Array;
      const n = Math.min(head.byteLength, chunk.length - offset);
      chunk.set(head.subarray(0, n), offset);
      offset += n;
      if (n === head.byteLength) this.pending.shift();
      else this.pending[0] = head.subarray(n);
    }
    return offset;
  }
}

/** A snapshot file read back: its meta and pairs, after the trailer and the structure were checked. */
export interface DecodedSnapshot {
  readonly version: number;
  readonly meta: SnapshotMeta;
  readonly pairs: readonly KeyValue[];
}

function corrupt(message: string): TesseraError {
  return new TesseraError('CORRUPT_DATA', `tessera snapshot: ${message}`);
}

/** Reads a whole snapshot file (tests, `restore` tooling); a damaged or truncated one throws CORRUPT_DATA. */
export function decodeSnapshot(file: Uint8Array): DecodedSnapshot {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (bytes.length < SNAPSHOT_MAGIC.length + 8 + END_RECORD_BYTES + SNAPSHOT_TRAILER_BYTES) throw corrupt(`${bytes.length} bytes is too short`);
  if (!bytes.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC)) throw corrupt('bad magic (not a tessera snapshot; etcd snapshots are bolt files)');
  const body = bytes.subarray(0, bytes.length - SNAPSHOT_TRAILER_BYTES);
  const trailer = bytes.subarray(body.length);
  if (!createHash('sha256').update(body).digest().equals(trailer)) throw corrupt('sha256 trailer does not match the content');
  let pos = SNAPSHOT_MAGIC.length;
  const version = bytes.readUInt32BE(pos);
  if (version !== SNAPSHOT_FORMAT_VERSION) throw corrupt(`format version ${version} is not supported (this build reads ${SNAPSHOT_FORMAT_VERSION})`);
  const metaLength = bytes.readUInt32BE(pos + 4);
  pos += 8;
  if (metaLength > MAX_META_BYTES || pos + metaLength > body.length) throw corrupt(`meta of ${metaLength} bytes does not fit`);
  const meta = JSON.parse(body.subarray(pos, pos + metaLength).toString('utf8')) as SnapshotMeta;
  pos += metaLength;
  const pairs: KeyValue[] = [];
  for (;;) {
    const tag = body[pos];
    if (tag === TAG_END) break;
    if (tag !== TAG_PAIR || pos + RECORD_HEADER_BYTES > body.length) throw corrupt(`bad record at byte ${pos}`);
    const keyLength = body.readUInt32BE(pos + 1);
    const valueLength = body.readUInt32BE(pos + 5);
    const keyStart = pos + RECORD_HEADER_BYTES;
    const end = keyStart + keyLength + valueLength;
    if (end > body.length) throw corrupt(`record at byte ${pos} runs past the end`);
    pairs.push({ key: body.subarray(keyStart, keyStart + keyLength), value: body.subarray(keyStart + keyLength, end) });
    pos = end;
  }
  if (pos + END_RECORD_BYTES > body.length) throw corrupt('end record truncated');
  const count = Number(body.readBigUInt64BE(pos + 1));
  if (count !== pairs.length) throw corrupt(`end record counts ${count} pairs, the file holds ${pairs.length}`);
  pos += END_RECORD_BYTES;
  if (body.length % SNAPSHOT_ALIGN_BYTES !== 0 || body.subarray(pos).some((b) => b !== 0)) throw corrupt('padding is not zeros to a 512-byte boundary');
  return { version, meta, pairs };
}
