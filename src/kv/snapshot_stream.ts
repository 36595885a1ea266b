import { AssertionError, TesseraError, assert } from '../base/index.js';
import type { Snapshot, SnapshotMetadata } from '../raft/index.js';
import { compareBytes } from '../storage/bytes.js';
import type { KeyValue, ReadView } from '../storage/engine.js';

/**
 * A range snapshot's data leaves the sender in chunks of at most this many
 * bytes (a transport may ask for smaller ones): the sender never holds more
 * of it than one chunk and the record being cut.
 */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Pairs one step of a snapshot's sizing pass reads: a step costs about as much as a chunk of small pairs. */
export const SNAPSHOT_MEASURE_SLICE_PAIRS = 4096;
/**
 * Ticks a snapshot's read view may be held, sent or not: then it is closed
 * and the send fails (Raft makes a new snapshot later). A held LMDB read
 * transaction keeps every page it sees, so the data file grows by whatever
 * is written meanwhile. 1200 ticks is 2 minutes at the default 100 ms tick,
 * twice the transport's acknowledgement timeout.
 */
export const SNAPSHOT_VIEW_MAX_HOLD_TICKS = 1200;
/** Snapshot read views a node holds at once; past it Raft hears that a snapshot is temporarily unavailable and asks again later. */
export const MAX_OPEN_SNAPSHOT_VIEWS = 8;

/**
 * A snapshot's data, produced incrementally from a read view taken when the
 * snapshot was made (so it is the state at the snapshot's index, whatever is
 * written later). Two passes over the view, each in bounded steps: `measure`
 * sizes the data (the receiver is told its size first), then `nextChunk`
 * hands it out. Every step reads a bounded amount, so the host runs the
 * steps between turns of its loops (the server between event-loop turns,
 * the simulator as events), never all at once.
 */
export interface SnapshotDataReader {
  /** Reads up to `maxPairs` more for the sizing pass; true once the size is known. */
  measure(maxPairs: number): boolean;
  readonly measured: boolean;
  /** The data's size in bytes; only once measured. */
  readonly totalBytes: number;
  /** Bytes not yet handed out; only once measured. */
  readonly remainingBytes: number;
  /** The next `maxBytes` of the data (fewer only at the end); undefined once all of it was handed out. Only once measured. */
  nextChunk(maxBytes: number): Uint8Array | undefined;
  /** Releases the read view; idempotent. A closed reader refuses further steps (CLOSED). */
  close(): void;
  readonly closed: boolean;
}

/**
 * A snapshot as the leader's Raft sends it: the metadata, and the data as a
 * reader. Whoever carries the MsgSnap to the follower (the peer transport,
 * the simulator's network) streams the data and delivers a snapshot with the
 * bytes, and closes the reader however the send ends. Reading `data` whole is
 * a bug: it would bring back the blocking copy this replaces.
 */
export interface StreamedSnapshot extends Snapshot {
  readonly reader: SnapshotDataReader;
}

class Streamed implements StreamedSnapshot {
  constructor(
    readonly metadata: SnapshotMetadata,
    readonly reader: SnapshotDataReader,
  ) {}

  get data(): Uint8Array {
    throw new AssertionError('a streamed snapshot was used as a whole: stream its reader (snapshotReaderOf) instead');
  }
}

export function streamedSnapshot(metadata: SnapshotMetadata, reader: SnapshotDataReader): StreamedSnapshot {
  return new Streamed(metadata, reader);
}

/** The reader of a snapshot made by this node, or undefined for a snapshot that carries its bytes. */
export function snapshotReaderOf(snapshot: Snapshot): SnapshotDataReader | undefined {
  return snapshot instanceof Streamed ? snapshot.reader : undefined;
}

/** The snapshot with its data read whole: for tests, and in-process hosts that deliver messages as objects. */
export function readSnapshotData(reader: SnapshotDataReader, chunkBytes = SNAPSHOT_CHUNK_BYTES): Uint8Array {
  try {
    while (!reader.measure(SNAPSHOT_MEASURE_SLICE_PAIRS));
    const out = new Uint8Array(reader.totalBytes);
    let at = 0;
    for (let chunk = reader.nextChunk(chunkBytes); chunk !== undefined; chunk = reader.nextChunk(chunkBytes)) {
      out.set(chunk, at);
      at += chunk.byteLength;
    }
    return out;
  } finally {
    reader.close();
  }
}

/** A reader over bytes already in memory (a snapshot that arrived whole, or a test's). */
export class BytesSnapshotReader implements SnapshotDataReader {
  private offset = 0;
  private isClosed = false;

  constructor(private readonly data: Uint8Array) {}

  measure(): boolean {
    this.checkOpen();
    return true;
  }

  get measured(): boolean {
    return true;
  }

  get totalBytes(): number {
    return this.data.byteLength;
  }

  get remainingBytes(): number {
    return this.data.byteLength - this.offset;
  }

  nextChunk(maxBytes: number): Uint8Array | undefined {
    this.checkOpen();
    checkChunkBytes(maxBytes);
    if (this.offset >= this.data.byteLength) return undefined;
    const end = Math.min(this.data.byteLength, this.offset + maxBytes);
    const chunk = this.data.subarray(this.offset, end);
    this.offset = end;
    return chunk;
  }

  close(): void {
    this.isClosed = true;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  private checkOpen(): void {
    if (this.isClosed) throw new TesseraError('CLOSED', 'the snapshot reader is closed');
  }
}

/**
 * Scans [start, end) of a view a slice at a time: each step starts a fresh
 * scan where the last one stopped, so no engine iterator is held between
 * steps. It resumes from the last key inclusively and skips it.
 */
class RangeCursor {
  private resumeKey: Uint8Array | undefined;
  private done = false;

  constructor(
    private readonly view: ReadView,
    private readonly start: Uint8Array,
    private readonly end: Uint8Array,
  ) {}

  get exhausted(): boolean {
    return this.done;
  }

  /** Calls `visit` for pairs in order until it returns false or `maxPairs` were visited. */
  step(maxPairs: number, visit: (pair: KeyValue) => boolean): void {
    if (this.done) return;
    const from = this.resumeKey;
    let visited = 0;
    for (const pair of this.view.scan({ start: from ?? this.start, end: this.end })) {
      if (from !== undefined && compareBytes(pair.key, from) === 0) continue;
      this.resumeKey = pair.key.slice();
      visited++;
      if (!visit(pair) || visited >= maxPairs) return;
    }
    this.done = true;
  }
}

/** A key shortened by `stripBytes` and its value, as the snapshot carries them. */
export interface SnapshotPair {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export interface StateReaderOptions {
  readonly view: ReadView & { close(): void };
  /** The view's keys in [start, end) go first, in order. */
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  /** Leading bytes cut from each view key (the part every key of the range shares). */
  readonly stripBytes: number;
  /** Pairs that follow the view's (already cut, in key order, all past `end`). */
  readonly tail: readonly SnapshotPair[];
}

/** msgpack's array32 header: the data is one list [key, value, key, value, …] that msgpackr decodes. */
const ARRAY_HEADER_BYTES = 5;

/**
 * A range state's snapshot data, streamed from a read view: one msgpack list
 * of byte strings, key suffix and value in turn (what `MvccStateMachine.restore`
 * reads). The list is written by hand, record by record, so no part of it
 * but the chunk being filled (and one record cut across chunks) is in memory.
 */
export class StateSnapshotReader implements SnapshotDataReader {
  private readonly sizing: RangeCursor;
  private readonly sending: RangeCursor;
  private measuredPairs = 0;
  private measuredBytes = ARRAY_HEADER_BYTES;
  private isMeasured = false;
  /** Bytes waiting to be copied into chunks: the list header first, then the record being written. */
  private pending: Uint8Array[] = [];
  private pendingOwned = true;
  private headerQueued = false;
  private sentPairs = 0;
  private tailSent = 0;
  private handedOut = 0;
  private isClosed = false;

  constructor(private readonly o: StateReaderOptions) {
    this.sizing = new RangeCursor(o.view, o.start, o.end);
    this.sending = new RangeCursor(o.view, o.start, o.end);
  }

  measure(maxPairs: number): boolean {
    if (this.isMeasured) return true;
    this.checkOpen();
    this.sizing.step(maxPairs, (pair) => {
      this.countPair(pair.key.byteLength - this.o.stripBytes, pair.value.byteLength);
      return true;
    });
    if (!this.sizing.exhausted) return false;
    for (const p of this.o.tail) this.countPair(p.key.byteLength, p.value.byteLength);
    assert(this.measuredPairs * 2 <= 0xffff_ffff, () => `snapshot of ${this.measuredPairs} pairs is past msgpack's list length`);
    this.isMeasured = true;
    return true;
  }

  get measured(): boolean {
    return this.isMeasured;
  }

  get totalBytes(): number {
    assert(this.isMeasured, 'snapshot size asked for before it was measured');
    return this.measuredBytes;
  }

  get remainingBytes(): number {
    return this.totalBytes - this.handedOut;
  }

  nextChunk(maxBytes: number): Uint8Array | undefined {
    checkChunkBytes(maxBytes);
    if (this.remainingBytes === 0) return undefined; // the reader closed itself after the last chunk
    this.checkOpen();
    const chunk = new Uint8Array(Math.min(maxBytes, this.remainingBytes));
    let filled = this.drain(chunk, 0);
    while (filled < chunk.byteLength) {
      if (!this.headerQueued) {
        this.headerQueued = true;
        this.pending.push(arrayHeader(this.measuredPairs * 2));
      } else if (!this.sending.exhausted) {
        this.sending.step(Number.MAX_SAFE_INTEGER, (pair) => {
          this.queuePair(pair.key.subarray(this.o.stripBytes), pair.value);
          filled = this.drain(chunk, filled);
          return filled < chunk.byteLength;
        });
        continue;
      } else {
        const p = this.o.tail[this.tailSent];
        // The view never changes: data beyond the measured size is a bug, never a snapshot to send.
        assert(p !== undefined, () => `snapshot data ran out at ${this.handedOut + filled} of ${this.measuredBytes} measured bytes`);
        this.tailSent++;
        this.queuePair(p.key, p.value);
      }
      filled = this.drain(chunk, filled);
    }
    // A record cut across chunks must outlive the scan that read it (LMDB may reuse its buffers): copied once.
    if (!this.pendingOwned) this.pending = this.pending.map((bytes) => bytes.slice());
    this.pendingOwned = true;
    this.handedOut += chunk.byteLength;
    if (this.remainingBytes === 0) {
      assert(this.pending.length === 0 && this.sentPairs === this.measuredPairs, () => `snapshot view changed between passes: ${this.sentPairs} pairs sent, ${this.measuredPairs} measured`);
      this.close();
    }
    return chunk;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.pending = [];
    this.o.view.close();
  }

  get closed(): boolean {
    return this.isClosed;
  }

  private countPair(keyBytes: number, valueBytes: number): void {
    this.measuredPairs++;
    this.measuredBytes += binHeaderBytes(keyBytes) + keyBytes + binHeaderBytes(valueBytes) + valueBytes;
  }

  private queuePair(key: Uint8Array, value: Uint8Array): void {
    this.pending.push(binHeader(key.byteLength), key, binHeader(value.byteLength), value);
    this.pendingOwned = false;
    this.sentPairs++;
  }

  /** Copies pending bytes into `chunk` from `offset`; returns the new fill level. */
  private drain(chunk: Uint8Array, offset: number): number {
    while (this.pending.length > 0 && offset < chunk.byteLength) {
      const head = this.pending[0] as Uint8Array;
      const n = Math.min(head.byteLength, chunk.byteLength - offset);
      chunk.set(head.subarray(0, n), offset);
      offset += n;
      if (n === head.byteLength) this.pending.shift();
      else this.pending[0] = head.subarray(n);
    }
    return offset;
  }

  private checkOpen(): void {
    if (this.isClosed) throw new TesseraError('CLOSED', 'the snapshot reader is closed');
  }
}

function checkChunkBytes(maxBytes: number): void {
  assert(Number.isSafeInteger(maxBytes) && maxBytes > 0, () => `snapshot chunk size must be a positive integer, got ${maxBytes}`);
}

function arrayHeader(items: number): Uint8Array {
  const h = new Uint8Array(ARRAY_HEADER_BYTES);
  h[0] = 0xdd;
  new DataView(h.buffer).setUint32(1, items);
  return h;
}

function binHeaderBytes(length: number): number {
  return length < 0x100 ? 2 : length < 0x1_0000 ? 3 : 5;
}

/** msgpack's bin 8/16/32 header for `length` bytes. */
function binHeader(length: number): Uint8Array {
  if (length < 0x100) return Uint8Array.of(0xc4, length);
  if (length < 0x1_0000) return Uint8Array.of(0xc5, length >>> 8, length & 0xff);
  const h = new Uint8Array(5);
  h[0] = 0xc6;
  new DataView(h.buffer).setUint32(1, length);
  return h;
}

/**
 * The snapshot readers a node holds open, each with the tick it was opened
 * at: at most MAX_OPEN_SNAPSHOT_VIEWS at once, none longer than
 * SNAPSHOT_VIEW_MAX_HOLD_TICKS. Whoever streams a reader closes it when the
 * send ends; this bounds what a lost or stalled send can hold.
 */
export class OpenSnapshotReaders {
  private readonly openedAt = new Map<SnapshotDataReader, number>();
  private ticks = 0;

  /** Throws SNAPSHOT_TEMPORARILY_UNAVAILABLE (Raft asks again later) when no more may be opened. */
  admit(): void {
    this.prune();
    if (this.openedAt.size >= MAX_OPEN_SNAPSHOT_VIEWS) {
      throw new TesseraError('SNAPSHOT_TEMPORARILY_UNAVAILABLE', `${this.openedAt.size} snapshots are being sent already`);
    }
  }

  track<R extends SnapshotDataReader>(reader: R): R {
    this.openedAt.set(reader, this.ticks);
    return reader;
  }

  /** Moves time on; closes readers held SNAPSHOT_VIEW_MAX_HOLD_TICKS or longer. */
  tick(ticks: number): void {
    this.ticks += ticks;
    for (const [reader, at] of this.openedAt) if (this.ticks - at >= SNAPSHOT_VIEW_MAX_HOLD_TICKS) reader.close();
    this.prune();
  }

  closeAll(): void {
    for (const reader of this.openedAt.keys()) reader.close();
    this.openedAt.clear();
  }

  /** Readers still open. */
  get count(): number {
    this.prune();
    return this.openedAt.size;
  }

  private prune(): void {
    for (const reader of this.openedAt.keys()) if (reader.closed) this.openedAt.delete(reader);
  }
}
