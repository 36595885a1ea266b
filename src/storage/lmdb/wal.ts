import { closeSync, fdatasync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AssertionError, CRC32, TesseraError } from '../../base/index.js';
import type { OverlayWrite } from './overlay.js';

/**
 * The LMDB engine's write-ahead log (ADR 0011). A commit appends one record
 * holding its writes and fdatasyncs it: one sequential write and one flush,
 * where an LMDB commit writes a dozen B-tree pages, fdatasyncs them, then
 * writes its meta page through an O_DSYNC descriptor (two waits for the
 * device). The writes reach LMDB later, at a checkpoint (engine.ts).
 *
 * The file has a fixed size, zero-filled when it is made, so an append
 * overwrites blocks the file already owns: fdatasync then flushes data
 * only, with no size or extent change for the journal to commit (etcd
 * preallocates its WAL segments for the same reason).
 *
 * Record: length (u32, payload bytes), CRC-32 (u32, over the generation and
 * the payload), generation (u32), payload. The generation is the one the
 * LMDB environment names as not yet checkpointed; after a checkpoint the
 * log starts again at offset 0 under the next generation, so records of
 * older generations left further on end a replay like the zeros do.
 *
 * Payload: the number of writes (u32), then per write the key's length
 * (u32), the key, the value's length (u32; 0xffffffff for a delete) and the
 * value.
 *
 * The fdatasync runs on libuv's thread pool, so the event loop goes on
 * serving sockets while the device works (the leader's disk write in
 * parallel with replication, Raft thesis §10.2.1). At most one sync is in
 * flight: records appended meanwhile are written when it ends, all at once,
 * and share the next sync (group commit). A record is therefore only
 * written once every record before it is on disk, so a crash can tear at
 * most the records of the one sync in flight, which follow every durable
 * one: replay still finds the durable records as a prefix, and a damaged
 * record followed by a whole one still means damage, not a torn tail.
 */

/** The log's file in the environment directory. */
export const WAL_FILE = 'wal.log';
/** The log's size; a commit that does not fit checkpoints instead (engine.ts). */
export const WAL_FILE_BYTES = 32 * 1024 * 1024;
const RECORD_HEADER_BYTES = 12;
const DELETE_MARK = 0xffffffff;
const ZERO_CHUNK_BYTES = 1024 * 1024;
/** Replay reads the log in chunks of this size (a record may span several). */
const READ_CHUNK_BYTES = 4 * 1024 * 1024;

export class WriteAheadLog {
  /** Where the next record goes: past every record appended, written or waiting. */
  private offsetBytes = 0;
  /** Records appended while a sync was in flight, written when it ends. */
  private readonly waiting: { readonly bytes: Uint8Array; readonly at: number; readonly done: (error?: Error) => void }[] = [];
  /** The sync in flight, if any. */
  private syncing: Promise<void> | undefined;
  /** The error of a failed write or sync; every later append gets it. */
  private failure: Error | undefined;

  private constructor(
    private readonly fd: number,
    readonly sizeBytes: number,
  ) {}

  /** Opens the log in `dir`, making it (zero-filled, synced, its directory entry synced) if it is missing or short. */
  static open(dir: string, sizeBytes: number = WAL_FILE_BYTES): WriteAheadLog {
    const path = join(dir, WAL_FILE);
    const fd = openSync(path, 'a+');
    closeSync(fd);
    const rw = openSync(path, 'r+');
    try {
      const have = fstatSync(rw).size;
      if (have < sizeBytes) {
        const zeros = new Uint8Array(ZERO_CHUNK_BYTES);
        for (let at = have; at < sizeBytes; at += ZERO_CHUNK_BYTES) writeSync(rw, zeros, 0, Math.min(ZERO_CHUNK_BYTES, sizeBytes - at), at);
        fsyncSync(rw);
        syncDirectory(dirname(path));
      }
      return new WriteAheadLog(rw, Math.max(have, sizeBytes));
    } catch (error) {
      closeSync(rw);
      throw error;
    }
  }

  /** Bytes appended since the last reset. */
  get usedBytes(): number {
    return this.offsetBytes;
  }

  /** The bytes a record of `writes` takes. */
  static recordBytes(writes: readonly OverlayWrite[]): number {
    let n = RECORD_HEADER_BYTES + 4;
    for (const w of writes) n += 8 + w.key.length + (w.value?.length ?? 0);
    return n;
  }

  /**
   * The records of generation `generation` from the start of the file, in
   * order, up to the first that is not one: a torn tail (a crash during an
   * append, which was never acknowledged), zeros, or an older generation.
   * A record that fails its CRC while a whole record of the generation
   * follows it is damage in the middle of the log, not a torn tail:
   * CORRUPT_DATA, never a silent loss of what followed.
   */
  replay(generation: number): OverlayWrite[][] {
    const records: OverlayWrite[][] = [];
    let at = 0;
    for (;;) {
      const record = this.readRecord(at, generation);
      if (record === undefined) break;
      if (record === 'bad') {
        const length = this.readU32(at);
        if (length !== undefined && this.readRecord(at + RECORD_HEADER_BYTES + length, generation) instanceof Object) {
          throw new TesseraError('CORRUPT_DATA', `write-ahead log: the record at byte ${at} fails its checksum, yet records follow it`);
        }
        break;
      }
      records.push(record.writes);
      at = record.next;
    }
    this.offsetBytes = 0;
    return records;
  }

  /**
   * Appends one record; `done` runs once it is on disk, or with the error
   * that stopped it. The caller checked that it fits (usedBytes counts
   * records not yet written). Callbacks run in append order.
   */
  append(generation: number, writes: readonly OverlayWrite[], done: (error?: Error) => void): void {
    const bytes = encodeRecord(generation, writes);
    if (this.offsetBytes + bytes.length > this.sizeBytes) throw new AssertionError(`write-ahead log: a ${bytes.length}-byte record does not fit`);
    if (this.failure !== undefined) return done(this.failure);
    this.waiting.push({ bytes, at: this.offsetBytes, done });
    this.offsetBytes += bytes.length;
    if (this.syncing === undefined) this.writeAndSync();
  }

  /** Writes the records waiting, then starts one fdatasync for all of them. */
  private writeAndSync(): void {
    const group = this.waiting.splice(0);
    const dones = group.map((r) => r.done);
    try {
      for (const r of group) {
        let done = 0;
        while (done < r.bytes.length) done += writeSync(this.fd, r.bytes, done, r.bytes.length - done, r.at + done);
      }
    } catch (error) {
      return this.fail(error, dones);
    }
    this.syncing = new Promise<void>((resolve) => {
      fdatasync(this.fd, (error) => {
        this.syncing = undefined;
        resolve();
        if (error !== null) return this.fail(error, dones);
        for (const done of dones) done();
        if (this.waiting.length > 0) this.writeAndSync();
      });
    });
  }

  /** After a failed write or sync nothing more is written: the page cache cannot be trusted (fsyncgate). */
  private fail(error: unknown, dones: readonly ((error?: Error) => void)[]): void {
    this.failure ??= error instanceof Error ? error : new Error(String(error));
    const all = [...dones, ...this.waiting.splice(0).map((r) => r.done)];
    for (const done of all) done(this.failure);
  }

  /** Resolves once no sync is in flight (records that wait for it are then written and synced by a new one). */
  async idle(): Promise<void> {
    while (this.syncing !== undefined) await this.syncing;
  }

  /**
   * Starts again at offset 0 (after a checkpoint moved the next generation
   * into LMDB). Records not yet written are dropped: the checkpoint holds
   * their writes, so their callbacks run when the sync in flight ends (or
   * now, with none in flight), keeping append order.
   */
  reset(): void {
    this.offsetBytes = 0;
    const covered = this.waiting.splice(0);
    if (covered.length === 0) return;
    if (this.syncing === undefined) for (const r of covered) r.done();
    else void this.syncing.then(() => { for (const r of covered) r.done(); });
  }

  close(): void {
    closeSync(this.fd);
  }

  private readU32(at: number): number | undefined {
    if (at + 4 > this.sizeBytes) return undefined;
    const b = new Uint8Array(4);
    if (readSync(this.fd, b, 0, 4, at) !== 4) return undefined;
    return new DataView(b.buffer).getUint32(0, true);
  }

  /** The record at `at`: undefined where none of the generation starts, 'bad' for a record of it that fails its checksum. */
  private readRecord(at: number, generation: number): { writes: OverlayWrite[]; next: number } | 'bad' | undefined {
    if (at + RECORD_HEADER_BYTES > this.sizeBytes) return undefined;
    const header = new Uint8Array(RECORD_HEADER_BYTES);
    if (readSync(this.fd, header, 0, RECORD_HEADER_BYTES, at) !== RECORD_HEADER_BYTES) return undefined;
    const view = new DataView(header.buffer);
    const length = view.getUint32(0, true);
    const crc = view.getUint32(4, true);
    const gen = view.getUint32(8, true);
    if (length === 0 && crc === 0 && gen === 0) return undefined;
    // A length past the file is a torn or damaged header; it is judged like a bad checksum.
    if (length < 4 || at + RECORD_HEADER_BYTES + length > this.sizeBytes) return gen === generation ? 'bad' : undefined;
    const payload = new Uint8Array(length);
    let read = 0;
    while (read < length) {
      const n = readSync(this.fd, payload, read, Math.min(READ_CHUNK_BYTES, length - read), at + RECORD_HEADER_BYTES + read);
      if (n === 0) return 'bad';
      read += n;
    }
    const genBytes = header.subarray(8, 12);
    if (CRC32.finish(CRC32.update(CRC32.update(CRC32.init, genBytes), payload)) !== crc) return gen === generation ? 'bad' : undefined;
    if (gen !== generation) return undefined;
    return { writes: decodePayload(payload, at), next: at + RECORD_HEADER_BYTES + length };
  }
}

function encodeRecord(generation: number, writes: readonly OverlayWrite[]): Uint8Array {
  const bytes = new Uint8Array(WriteAheadLog.recordBytes(writes));
  const view = new DataView(bytes.buffer);
  let at = RECORD_HEADER_BYTES;
  view.setUint32(at, writes.length, true);
  at += 4;
  for (const w of writes) {
    view.setUint32(at, w.key.length, true);
    bytes.set(w.key, at + 4);
    at += 4 + w.key.length;
    if (w.value === undefined) {
      view.setUint32(at, DELETE_MARK, true);
      at += 4;
    } else {
      view.setUint32(at, w.value.length, true);
      bytes.set(w.value, at + 4);
      at += 4 + w.value.length;
    }
  }
  view.setUint32(0, bytes.length - RECORD_HEADER_BYTES, true);
  view.setUint32(8, generation, true);
  const crc = CRC32.finish(CRC32.update(CRC32.update(CRC32.init, bytes.subarray(8, 12)), bytes.subarray(RECORD_HEADER_BYTES)));
  view.setUint32(4, crc, true);
  return bytes;
}

function decodePayload(payload: Uint8Array, at: number): OverlayWrite[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const bad = (): TesseraError => new TesseraError('CORRUPT_DATA', `write-ahead log: the record at byte ${at} passes its checksum but does not decode`);
  let p = 0;
  const u32 = (): number => {
    if (p + 4 > payload.length) throw bad();
    const v = view.getUint32(p, true);
    p += 4;
    return v;
  };
  const bytes = (n: number): Uint8Array => {
    if (p + n > payload.length) throw bad();
    const b = payload.slice(p, p + n);
    p += n;
    return b;
  };
  const count = u32();
  const writes: OverlayWrite[] = [];
  for (let i = 0; i < count; i++) {
    const key = bytes(u32());
    const length = u32();
    writes.push({ key, value: length === DELETE_MARK ? undefined : bytes(length) });
  }
  if (p !== payload.length) throw bad();
  return writes;
}

/** Makes a new file's directory entry durable (a file made and synced can still vanish with its entry). */
function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
