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
export const SNAPSHOT_MEASURE_SLICE_PAIRS = 1024;
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
    let last: Uint8Array | undefined;
    try {
      for (const pair of this.view.scan({ start: from ?? this.start, end: this.end })) {
        if (from !== undefined && visited === 0 && compareBytes(pair.key, from) === 0) continue;
        last = pair.key;
        visited++;
        if (!visit(pair) || visited >= maxPairs) return;
      }
      this.done = true;
    } finally {
      // Only the last key is kept, copied: the engine may reuse the arrays a scan returns.
      if (last !== undefined) this.resumeKey = last.slice();
    }
  }
}

/** A key shortened by `stripBytes` and its value, as the snapshot carries them. */
export interface SnapshotPair {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/**
 * Engine keys [start, end) of the view that a snapshot carries, shortened by
 * `stripBytes` (the part every key of the span shares; 0 keeps keys whole).
 */
export interface SnapshotSpan {
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly stripBytes: number;
  /**
   * Keeps only the pairs it accepts, for a span shared with other ranges (the
   * MVCC change index is ordered by revision, not by key); absent: all.
   */
  readonly accept?: ((pair: KeyValue) => boolean) | undefined;
}

export interface StateReaderOptions {
  readonly view: ReadView & { close(): void };
  /** The view's spans, read in this order; each span's keys in key order. */
  readonly spans: readonly SnapshotSpan[];
  /** Pairs that follow the view's (already cut, in key order). */
  readonly tail: readonly SnapshotPair[];
}

/** msgpack's array32 header: the data is one list [key, value, key, value, …] that msgpackr decodes. */
const ARRAY_HEADER_BYTES = 5;

/**
 * A range state's snapshot data, streamed from a read view: one msgpack list
 * of byte strings, key (cut as its span says) and value in turn, span after
 * span (what `MvccStateMachine.restore` reads). The list is written by hand, record by record, so no part of it
 * but the chunk being filled (and one record cut across chunks) is in memory.
 */
export class StateSnapshotReader implements SnapshotDataReader {
  /** One cursor per span for each pass, and the span each pass is in. */
  private readonly sizing: RangeCursor[];
  private readonly sending: RangeCursor[];
  private sizingAt = 0;
  private sendingAt = 0;
  private measuredPairs = 0;
  private measuredBytes = ARRAY_HEADER_BYTES;
  private isMeasured = false;
  /** The chunk being filled, and how far. */
  private chunk: Uint8Array = EMPTY;
  private filled = 0;
  /** Bytes of the record cut at the end of the last chunk (copies), for the next one. */
  private pending: Uint8Array[] = [];
  private headerWritten = false;
  private sentPairs = 0;
  private tailSent = 0;
  private handedOut = 0;
  private isClosed = false;

  constructor(private readonly o: StateReaderOptions) {
    this.sizing = o.spans.map((span) => new RangeCursor(o.view, span.start, span.end));
    this.sending = o.spans.map((span) => new RangeCursor(o.view, span.start, span.end));
  }

  measure(maxPairs: number): boolean {
    if (this.isMeasured) return true;
    this.checkOpen();
    // `maxPairs` bounds the pairs read, counted or not, across the spans this step reaches.
    let budget = maxPairs;
    while (this.sizingAt < this.sizing.length && budget > 0) {
      const span = this.o.spans[this.sizingAt]!;
      const cursor = this.sizing[this.sizingAt]!;
      let read = 0;
      cursor.step(budget, (pair) => {
        read++;
        if (span.accept === undefined || span.accept(pair)) this.countPair(pair.key.byteLength - span.stripBytes, pair.value.byteLength);
        return true;
      });
      budget -= read;
      if (!cursor.exhausted) break;
      this.sizingAt++;
    }
    if (this.sizingAt < this.sizing.length) return false;
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
    this.chunk = chunk;
    this.filled = 0;
    this.drain();
    while (this.filled < chunk.byteLength) {
      if (!this.headerWritten) {
        this.headerWritten = true;
        this.writeArrayHeader(this.measuredPairs * 2);
      } else if (this.sendingAt < this.sending.length) {
        const span = this.o.spans[this.sendingAt]!;
        const cursor = this.sending[this.sendingAt]!;
        cursor.step(Number.MAX_SAFE_INTEGER, (pair) => {
          if (span.accept === undefined || span.accept(pair)) this.writePair(pair.key.subarray(span.stripBytes), pair.value);
          return this.filled < chunk.byteLength;
        });
        if (cursor.exhausted) this.sendingAt++;
      } else {
        const p = this.o.tail[this.tailSent];
        // The view never changes: data beyond the measured size is a bug, never a snapshot to send.
        assert(p !== undefined, () => `snapshot data ran out at ${this.handedOut + this.filled} of ${this.measuredBytes} measured bytes`);
        this.tailSent++;
        this.writePair(p.key, p.value);
      }
    }
    this.chunk = EMPTY;
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

  private writePair(key: Uint8Array, value: Uint8Array): void {
    this.writeBinHeader(key.byteLength);
    this.write(key);
    this.writeBinHeader(value.byteLength);
    this.write(value);
    this.sentPairs++;
  }

  /** Copies `bytes` into the chunk; what does not fit waits, copied (the engine may reuse a scan's arrays), for the next chunk. */
  private write(bytes: Uint8Array): void {
    const room = this.chunk.byteLength - this.filled;
    if (bytes.byteLength <= room) {
      this.chunk.set(bytes, this.filled);
      this.filled += bytes.byteLength;
      return;
    }
    if (room > 0) {
      this.chunk.set(bytes.subarray(0, room), this.filled);
      this.filled += room;
    }
    this.pending.push(bytes.slice(room));
  }

  private writeArrayHeader(items: number): void {
    const h = new Uint8Array(ARRAY_HEADER_BYTES);
    h[0] = 0xdd;
    writeU32(h, 1, items);
    this.write(h);
  }

  /** msgpack's bin 8/16/32 header for `length` bytes, written in place when it fits (the common case). */
  private writeBinHeader(length: number): void {
    const bytes = binHeaderBytes(length);
    if (this.chunk.byteLength - this.filled < bytes) {
      this.write(binHeader(length));
      return;
    }
    const c = this.chunk;
    const at = this.filled;
    if (bytes === 2) {
      c[at] = 0xc4;
      c[at + 1] = length;
    } else if (bytes === 3) {
      c[at] = 0xc5;
      c[at + 1] = length >>> 8;
      c[at + 2] = length & 0xff;
    } else {
      c[at] = 0xc6;
      writeU32(c, at + 1, length);
    }
    this.filled += bytes;
  }

  /** Moves bytes left over from the previous chunk into this one. */
  private drain(): void {
    while (this.pending.length > 0 && this.filled < this.chunk.byteLength) {
      const head = this.pending.shift() as Uint8Array;
      const room = this.chunk.byteLength - this.filled;
      if (head.byteLength <= room) {
        this.chunk.set(head, this.filled);
        this.filled += head.byteLength;
      } else {
        this.chunk.set(head.subarray(0, room), this.filled);
        this.filled += room;
        this.pending.unshift(head.subarray(room));
      }
    }
  }

  private checkOpen(): void {
    if (this.isClosed) throw new TesseraError('CLOSED', 'the snapshot reader is closed');
  }
}

function checkChunkBytes(maxBytes: number): void {
  assert(Number.isSafeInteger(maxBytes) && maxBytes > 0, () => `snapshot chunk size must be a positive integer, got ${maxBytes}`);
}

const EMPTY = new Uint8Array(0);

function writeU32(target: Uint8Array, at: number, value: number): void {
  target[at] = value >>> 24;
  target[at + 1] = (value >>> 16) & 0xff;
  target[at + 2] = (value >>> 8) & 0xff;
  target[at + 3] = value & 0xff;
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
  writeU32(h, 1, length);
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

  /**
   * Throws SNAPSHOT_TEMPORARILY_UNAVAILABLE (Raft asks again later) when no
   * more may be opened; one for the meta range (`priority`) may pass the
   * limit by one, so data ranges' snapshots never starve it.
   */
  admit(priority = false): void {
    this.prune();
    if (this.openedAt.size >= MAX_OPEN_SNAPSHOT_VIEWS + (priority ? 1 : 0)) {
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
