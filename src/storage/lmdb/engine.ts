import type { Database, RangeOptions, RootDatabase, Transaction } from 'lmdb';
import { assert, TesseraError } from '../../base/index.js';
import { asRecordingBatch, RecordingBatch, type BatchOp } from '../batch.js';
import { compareBytes } from '../bytes.js';
import type { KeyValue, ReadView, ScanOptions, StorageEngine, WriteBatch } from '../engine.js';
import { scanLimit } from '../scan.js';
import { messageOf, openEnvironment, type LmdbOpenOptions } from './environment.js';
import { mergeScan, Overlay, OverlayLayer } from './overlay.js';

export { LMDB_DEFAULT_MAP_SIZE_BYTES, LMDB_FORMAT_VERSION, type LmdbOpenOptions } from './environment.js';

type Db = Database<Uint8Array, Uint8Array>;
/** The smallest key a batch accepts (keys are never empty). */
const LOWEST_KEY = Uint8Array.of(0x00);

/** One key written by a batch, after its deleteRanges were resolved to the keys they delete. */
interface Write {
  readonly key: Uint8Array;
  readonly value: Uint8Array | undefined;
}

interface InFlight {
  readonly seq: number;
  readonly onDurable: (error?: Error) => void;
  state: 'pending' | 'durable' | 'failed';
}

/**
 * The StorageEngine on LMDB (lmdb-js), one environment per node.
 *
 * Commit path. lmdb-js's `transactionSync` fsyncs inside every commit on the
 * main thread (measured: one fdatasync per commit, whatever its flags), so
 * it cannot give group commit. Instead a commit hands its writes to lmdb-js's
 * asynchronous writer (`batch`), which puts every write of one event-loop
 * turn into one LMDB transaction and flushes it once, off the main thread.
 * Until that transaction is durable the batch's writes live in the overlay
 * (overlay.ts), so reads see them as soon as `commit` returns. `onDurable`
 * runs after `db.flushed` resolves for the batch: not at commit, at
 * durability. A deleteRange is resolved at commit to the keys it deletes,
 * which are exactly the keys LMDB will hold when the batch applies, since
 * batches apply in commit order. A staged batch waits in the overlay and is
 * handed to lmdb-js with the next commit, in the same transaction, so the
 * applied state of a loop turn costs no LMDB transaction of its own.
 */
export class LmdbEngine implements StorageEngine {
  readonly kind = 'lmdb' as const;
  private overlay: Overlay = Overlay.empty;
  private seq = 0;
  private readonly inFlight: InFlight[] = [];
  /** Writes of staged batches not yet handed to lmdb-js, in commit order. */
  private unwritten: Write[] = [];
  private readonly flushing = new Set<Promise<void>>();
  private readonly snapshots = new Set<LmdbSnapshot>();
  private failure: TesseraError | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly root: RootDatabase<Uint8Array, Uint8Array>,
    private readonly data: Db,
  ) {}

  /** Opens (or creates) the environment at `options.path`; refuses anything that is not a tessera environment of this format. */
  static async open(options: LmdbOpenOptions): Promise<LmdbEngine> {
    const env = await openEnvironment(options);
    return new LmdbEngine(env.root, env.data);
  }

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return readKey(this.overlay, this.data, key, undefined);
  }

  scan(options: ScanOptions): Iterable<KeyValue> {
    this.checkOpen();
    return scanMerged(() => this.overlay, this.data, options, undefined);
  }

  newBatch(): WriteBatch {
    return new RecordingBatch();
  }

  commit(batch: WriteBatch, onDurable: (error?: Error) => void): void {
    this.checkOpen();
    if (this.failure) throw this.failure;
    const recorded = asRecordingBatch(batch);
    recorded.seal();
    const seq = this.seq + 1;
    const [overlay, writes] = resolveWrites(this.overlay, this.data, recorded.ops, seq);
    // Staged batches go first, in the same LMDB transaction: batches reach the disk in commit order.
    const all = this.unwritten.length === 0 ? writes : [...this.unwritten, ...writes];
    const committed = this.write(all);
    // Published only after lmdb-js accepted the writes, so a refusal leaves no trace of this batch.
    this.unwritten = [];
    this.seq = seq;
    this.overlay = overlay;
    this.inFlight.push({ seq, onDurable, state: 'pending' });
    this.awaitFlush(seq, committed);
  }

  /**
   * Visible at once, written with the next commit: the overlay holds the
   * writes until then, and the batch counts as in flight, so it is dropped
   * from the overlay only once that commit is durable.
   */
  stage(batch: WriteBatch): void {
    this.checkOpen();
    if (this.failure) throw this.failure;
    const recorded = asRecordingBatch(batch);
    recorded.seal();
    const seq = this.seq + 1;
    const [overlay, writes] = resolveWrites(this.overlay, this.data, recorded.ops, seq);
    this.seq = seq;
    this.overlay = overlay;
    this.unwritten.push(...writes);
    this.inFlight.push({ seq, onDurable: ignoreDurable, state: 'pending' });
  }

  private write(writes: readonly Write[]): Promise<boolean> {
    if (writes.length === 0) return Promise.resolve(true);
    try {
      return this.data.batch(() => writeAll(this.data, writes));
    } catch (error) {
      // Staged batches are already visible; with their write refused the engine must stop.
      if (this.unwritten.length > 0) this.failure ??= writeFailure(error);
      throw error;
    }
  }

  private awaitFlush(seq: number, committed: Promise<boolean>): void {
    const flushed = committed
      .then(() => this.data.flushed)
      .then(
        () => this.settle(seq, undefined),
        (error: unknown) => this.settle(seq, error),
      );
    this.flushing.add(flushed);
    void flushed.finally(() => this.flushing.delete(flushed));
  }

  snapshotView(): ReadView & { close(): void } {
    this.checkOpen();
    const view = new LmdbSnapshot(this.overlay, this.data, this.data.useReadTransaction(), (v) => this.snapshots.delete(v));
    this.snapshots.add(view);
    return view;
  }

  /**
   * The data file's pages in use so far, (last page number + 1) × page size,
   * from LMDB's environment info: what bolt's size is to etcd's dbSize, free
   * pages included. Batches still in the overlay are not in it yet.
   */
  sizeBytes(): number {
    this.checkOpen();
    const stats = this.data.getStats() as { readonly pageSize?: unknown; readonly lastPageNumber?: unknown };
    const { pageSize, lastPageNumber } = stats;
    assert(typeof pageSize === 'number' && Number.isSafeInteger(pageSize) && pageSize > 0, () => `LMDB reported page size ${String(pageSize)}`);
    assert(typeof lastPageNumber === 'number' && Number.isSafeInteger(lastPageNumber) && lastPageNumber >= 0, () => `LMDB reported last page ${String(lastPageNumber)}`);
    return (lastPageNumber + 1) * pageSize;
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    // Staged batches are written now: an orderly close loses nothing that was made visible.
    if (this.unwritten.length > 0 && this.failure === undefined) {
      const writes = this.unwritten;
      this.unwritten = [];
      this.awaitFlush(this.seq, this.write(writes));
    }
    // Wait for every committed batch to be flushed (its callback runs), then release readers and the environment.
    while (this.flushing.size > 0) await Promise.allSettled([...this.flushing]);
    for (const view of [...this.snapshots]) view.close();
    await this.root.close();
  }

  /** Marks batches durable (every one up to `seq`) or failed (`seq` and all after it), then reports in commit order. */
  private settle(seq: number, error: unknown): void {
    if (error === undefined) {
      for (const f of this.inFlight) if (f.seq <= seq && f.state === 'pending') f.state = 'durable';
    } else {
      this.failure ??= writeFailure(error);
      for (const f of this.inFlight) if (f.seq >= seq) f.state = 'failed';
    }
    this.report();
  }

  private report(): void {
    let thrown: unknown;
    // LMDB's shared read transaction must show the flushed batches before the overlay stops covering them.
    this.data.resetReadTxn();
    while (this.inFlight.length > 0 && this.inFlight[0]?.state !== 'pending') {
      const f = this.inFlight.shift() as InFlight;
      if (f.state === 'durable') this.overlay = this.overlay.withoutUpTo(f.seq);
      try {
        if (f.state === 'durable') f.onDurable();
        else f.onDurable(this.failure);
      } catch (error) {
        thrown ??= error;
      }
    }
    // A throwing callback is the caller's bug: surface it as an uncaught exception, as a synchronous throw would be.
    if (thrown !== undefined) process.nextTick(() => { throw thrown; });
  }

  private checkOpen(): void {
    if (this.closing) throw new TesseraError('CLOSED', 'the storage engine is closed');
  }
}

class LmdbSnapshot implements ReadView {
  private closed = false;

  constructor(
    private readonly overlay: Overlay,
    private readonly data: Db,
    private readonly txn: Transaction,
    private readonly onClose: (view: LmdbSnapshot) => void,
  ) {}

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return readKey(this.overlay, this.data, key, this.txn);
  }

  scan(options: ScanOptions): Iterable<KeyValue> {
    this.checkOpen();
    return scanMerged(() => this.overlay, this.data, options, this.txn);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.txn.done();
    this.onClose(this);
  }

  private checkOpen(): void {
    if (this.closed) throw new TesseraError('CLOSED', 'the snapshot view is closed');
  }
}

function readKey(overlay: Overlay, data: Db, key: Uint8Array, transaction: Transaction | undefined): Uint8Array | undefined {
  const entry = overlay.get(key);
  if (entry !== undefined) return entry.value;
  const value = transaction === undefined ? data.get(key) : data.get(key, { transaction });
  return value === undefined ? undefined : plain(value);
}

/** Checks the options now; reads nothing until the first step (see startScan). */
function scanMerged(overlay: () => Overlay, data: Db, options: ScanOptions, transaction: Transaction | undefined): Iterable<KeyValue> {
  const limit = scanLimit(options);
  const { start, end } = options;
  if (end !== undefined && compareBytes(start, end) >= 0) return [];
  return startScan(overlay, data, start, end, options.reverse === true, limit, transaction);
}

/**
 * Takes the overlay and LMDB's read transaction in the same step, the first
 * one: an overlay taken earlier could miss a batch that LMDB then shows,
 * and the two would mix states.
 */
function* startScan(
  overlay: () => Overlay,
  data: Db,
  start: Uint8Array,
  end: Uint8Array | undefined,
  reverse: boolean,
  limit: number,
  transaction: Transaction | undefined,
): Generator<KeyValue> {
  const entries = overlay().entries({ start, end, reverse });
  yield* mergeScan(entries, lmdbRange(data, start, end, reverse, transaction), reverse, limit);
}

/** LMDB's entries in [start, end), ascending or descending, as plain Uint8Arrays. */
function lmdbRange(data: Db, start: Uint8Array, end: Uint8Array | undefined, reverse: boolean, transaction: Transaction | undefined): Iterable<KeyValue> {
  // lmdb-js walks a reverse range from `start` down to `end`, so the bounds swap and flip inclusiveness.
  // Its default lower end for a reverse walk leaves out the key 0x00, so the lowest possible key is always given.
  const range: RangeOptions = reverse
    ? { reverse: true, ...(end && { start: end, exclusiveStart: true }), end: start.length > 0 ? start : LOWEST_KEY, inclusiveEnd: true }
    : { ...(start.length > 0 && { start }), ...(end && { end }) };
  // No limit on LMDB's side: overlay deletions may hide some of its entries. The merge stops at the limit instead.
  if (transaction !== undefined) range.transaction = transaction;
  return data.getRange(range).map(({ key, value }) => ({ key: plain(key as Uint8Array), value: plain(value) }));
}

/**
 * lmdb-js returns Buffers. Callers get plain Uint8Arrays, as from the memory
 * engine: Buffer's `slice` shares memory and its `toString` decodes, so
 * code that worked in the simulator could behave differently on LMDB.
 */
function plain(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Resolves the batch's operations, in order, into a new overlay layer on top
 * of `overlay`; a deleteRange sees the overlay, the layer as filled so far,
 * and LMDB, and becomes a delete of each key it finds.
 */
function resolveWrites(overlay: Overlay, data: Db, ops: readonly BatchOp[], seq: number): [Overlay, Write[]] {
  const writes: Write[] = [];
  const layer = new OverlayLayer(seq);
  const withLayer = overlay.with(layer);
  const write = (key: Uint8Array, value: Uint8Array | undefined): void => {
    layer.set(key, value);
    writes.push({ key, value });
  };
  for (const op of ops) {
    if (op.kind === 'put') write(op.key, op.value);
    else if (op.kind === 'delete') write(op.key, undefined);
    else {
      const doomed = [...scanMerged(() => withLayer, data, { start: op.start, end: op.end }, undefined)].map((kv) => kv.key);
      for (const key of doomed) write(key, undefined);
    }
  }
  // An empty batch adds no layer.
  return [layer.size === 0 ? overlay : withLayer, writes];
}

const ignoreDurable = (): void => {};

function writeAll(data: Db, writes: readonly Write[]): void {
  for (const w of writes) {
    if (w.value === undefined) void data.remove(w.key);
    else void data.put(w.key, w.value);
  }
}

function writeFailure(error: unknown): TesseraError {
  const message = messageOf(error);
  const code = /MDB_MAP_FULL/.test(message) ? 'RESOURCE_EXHAUSTED' : 'IO_ERROR';
  return new TesseraError(code, `LMDB write failed; the engine accepts no more writes until reopened: ${message}`, { cause: error });
}
