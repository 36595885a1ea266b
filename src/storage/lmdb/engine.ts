import type { Database, RangeOptions, RootDatabase, Transaction } from 'lmdb';
import { assert, TesseraError } from '../../base/index.js';
import { asRecordingBatch, RecordingBatch, type BatchOp } from '../batch.js';
import { compareBytes } from '../bytes.js';
import type { KeyValue, ReadView, ScanOptions, StorageEngine, VisitOptions, Visitor, WriteBatch } from '../engine.js';
import { countByVisit, scanLimit, valueHeadBytes, visitPairs } from '../scan.js';
import { messageOf, openEnvironment, valueHead, type LmdbOpenOptions } from './environment.js';
import { mergeScan, Overlay, OverlayLayer, type OverlayWrite } from './overlay.js';
import { WriteAheadLog } from './wal.js';

export { LMDB_DEFAULT_MAP_SIZE_BYTES, LMDB_FORMAT_VERSION, type LmdbOpenOptions } from './environment.js';

type Db = Database<Uint8Array, Uint8Array>;
/** The data database through its value-head handle (environment.ts): values read as their lengths. */
type HeadsDb = Database<number, Uint8Array>;
/** Views of `valueHead`'s first n bytes, made once: a visit hands one out per pair without allocating. */
const VALUE_HEAD_VIEWS: readonly Uint8Array[] = Array.from({ length: valueHead.length + 1 }, (_, n) => valueHead.subarray(0, n));
/** The smallest key a batch accepts (keys are never empty). */
const LOWEST_KEY = Uint8Array.of(0x00);

/** One key written by a batch, after its deleteRanges were resolved to the keys they delete. */
type Write = OverlayWrite;

/** A checkpoint is due once the overlay holds this many writes (ADR 0011). */
export const CHECKPOINT_WRITES = 4096;
/** A checkpoint is due once the write-ahead log holds this many bytes (ADR 0011). */
export const CHECKPOINT_LOG_BYTES = 8 * 1024 * 1024;
/**
 * A commit whose log record would be this large goes straight into LMDB as a
 * checkpoint (ADR 0011). The log pays off for small commits, where LMDB's
 * copy-on-write of B-tree pages and its two syncs cost far more than the
 * bytes; a large batch fills LMDB's pages densely, and logging it first
 * would write it twice (a preload of 100-put Txns took 1.6x as long).
 */
export const DIRECT_COMMIT_BYTES = 48 * 1024;

/**
 * The StorageEngine on LMDB (lmdb-js), one environment per node.
 *
 * Commit path (ADR 0011, which amends ADR 0005). A commit appends one record
 * holding its writes, and those of the batches staged since the previous
 * commit, to the write-ahead log (wal.ts): one sequential write and one
 * fdatasync, which runs off the event loop (ADR 0016). The Store commits
 * once per loop turn, so this is the one synced write per turn of DESIGN.md
 * decision 2; `onDurable` runs once the record is on disk, never inside
 * `commit`, and callbacks run in commit order. The writes go into the overlay (overlay.ts), where
 * reads see them, and reach LMDB at a checkpoint: one synchronous LMDB
 * transaction, synced the LMDB way (data pages, then the meta page), that
 * writes the whole overlay and names the log's next generation; the log
 * then starts again. A checkpoint happens inside a commit once the overlay
 * or the log has grown past CHECKPOINT_WRITES or CHECKPOINT_LOG_BYTES (or a
 * commit's record would not fit in the log), and at close. At open, the
 * records of the generation LMDB names are written into LMDB by a
 * checkpoint before anything is read: a crash loses none of them.
 *
 * LMDB itself is only ever written by checkpoints, each synced before it
 * returns, so its file is always a consistent committed state whatever a
 * crash interrupts.
 *
 * A deleteRange is resolved to the keys it deletes when its batch is
 * committed or staged, against LMDB and the overlay, which are exactly the
 * keys it would delete when written, since batches are written in order;
 * the log holds the resolved writes.
 */
/** A committed batch's callback, and whether the batch is durable yet (or failed: `error`). */
interface DurableWaiter {
  readonly onDurable: (error?: Error) => void;
  error: Error | undefined;
  ready: boolean;
}

export class LmdbEngine implements StorageEngine {
  readonly kind = 'lmdb' as const;
  /** Staged batches, not yet written: reads see them, and the next commit writes them first. */
  private overlay: Overlay = Overlay.empty;
  private readonly snapshots = new Set<LmdbSnapshot>();
  private failure: TesseraError | undefined;
  private closing: Promise<void> | undefined;
  /** Callbacks of committed batches not yet called, in commit order; each runs once it and all before it are `ready`. */
  private readonly durable: DurableWaiter[] = [];
  private reportScheduled = false;
  /** Writes of batches staged since the last commit: the next commit's log record carries them ahead of its own. */
  private unlogged: Write[] = [];
  readonly stats = { logAppends: 0, checkpoints: 0, replayedRecords: 0 };

  private constructor(
    private readonly root: RootDatabase<Uint8Array, Uint8Array>,
    private readonly data: Db,
    private readonly heads: HeadsDb,
    private readonly values: Db,
    private readonly meta: Db,
    private readonly wal: WriteAheadLog,
    /** The log generation LMDB names: the log's records of it are not in LMDB yet. */
    private generation: number,
  ) {}

  /** Opens (or creates) the environment at `options.path`; refuses anything that is not a tessera environment of this format. */
  static async open(options: LmdbOpenOptions): Promise<LmdbEngine> {
    const env = await openEnvironment(options);
    let wal: WriteAheadLog | undefined;
    try {
      wal = WriteAheadLog.open(options.path, options.walBytes);
      const generation = readGeneration(env.meta, options.path);
      const engine = new LmdbEngine(env.root, env.data, env.heads, env.values, env.meta, wal, generation);
      engine.replay();
      return engine;
    } catch (error) {
      wal?.close();
      await env.root.close();
      throw error instanceof TesseraError ? error : new TesseraError('IO_ERROR', `${options.path}: cannot open the write-ahead log: ${messageOf(error)}`, { cause: error });
    }
  }

  /** Writes the log's records of the current generation into LMDB (one checkpoint): what was committed before a crash. */
  private replay(): void {
    const records = this.wal.replay(this.generation);
    this.stats.replayedRecords = records.length;
    if (records.length > 0) this.checkpoint(records.flat());
  }

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return readKey(this.overlay, this.data, key, undefined);
  }

  scan(options: ScanOptions): Iterable<KeyValue> {
    this.checkOpen();
    return scanMerged(() => this.overlay, this.values, options, undefined);
  }

  visit(options: VisitOptions, visitor: Visitor): void {
    this.checkOpen();
    visitMerged(this.overlay, this.values, this.heads, options, visitor, undefined);
  }

  count(options: ScanOptions): number {
    this.checkOpen();
    return countMerged(this, this.overlay, this.data, options, undefined);
  }

  newBatch(): WriteBatch {
    return new RecordingBatch();
  }

  commit(batch: WriteBatch, onDurable: (error?: Error) => void): void {
    this.checkOpen();
    if (this.failure) throw this.failure;
    const recorded = asRecordingBatch(batch);
    recorded.seal();
    const layer = resolveLayer(this.overlay, this.values, recorded.ops);
    const writes = [...layer.finalWrites()];
    // Staged batches go first, in the same record: batches reach the disk in commit order.
    const logged = this.unlogged.length === 0 ? writes : [...this.unlogged, ...writes];
    const waiter: DurableWaiter = { onDurable, error: undefined, ready: false };
    this.durable.push(waiter);
    try {
      if (logged.length > 0) {
        const due = this.overlay.size + layer.size >= CHECKPOINT_WRITES || this.wal.usedBytes >= CHECKPOINT_LOG_BYTES;
        const recordBytes = WriteAheadLog.recordBytes(logged);
        if (due || recordBytes >= DIRECT_COMMIT_BYTES || this.wal.usedBytes + recordBytes > this.wal.sizeBytes) {
          // The overlay and this batch go to LMDB in one synced transaction: this commit is a checkpoint.
          this.checkpoint(writes);
        } else {
          this.wal.append(this.generation, logged, (error) => this.logged(waiter, error));
          this.stats.logAppends++;
          if (layer.size > 0) this.overlay = this.overlay.with(layer);
        }
      } else {
        // Nothing to write: durable once every batch before it is.
        waiter.ready = true;
      }
      this.unlogged = [];
    } catch (cause) {
      // Neither the record nor the checkpoint can be trusted to be on disk (after a failed fdatasync
      // the page cache cannot be trusted either); staged batches were already visible, so the
      // engine cannot go on.
      this.failure = writeFailure(cause);
      waiter.error = this.failure;
      waiter.ready = true;
    }
    this.reportReady();
  }

  /** The log's answer for a record: the batch is durable, unless the write or sync failed. */
  private logged(waiter: DurableWaiter, error: Error | undefined): void {
    if (error !== undefined) {
      this.failure ??= writeFailure(error);
      // A checkpoint since has put the batch into LMDB, synced: it is durable all the same.
      if (!waiter.ready) waiter.error = this.failure;
    }
    waiter.ready = true;
    this.reportReady();
  }

  /**
   * Writes the overlay, then `writes`, into LMDB in one synced transaction
   * that also names the log's next generation, then empties the overlay and
   * starts the log again. Until that transaction is durable, LMDB names the
   * current generation, whose records the log still holds.
   */
  private checkpoint(writes: readonly Write[]): void {
    const all = this.overlay.isEmpty ? writes : [...this.overlay.writes(), ...writes];
    // A u32 on disk (wal.ts): it wraps after 2^32 checkpoints, long after any record of that number is gone.
    const next = (this.generation + 1) >>> 0;
    this.writeSynced(all, next);
    this.generation = next;
    this.overlay = Overlay.empty;
    // Every batch committed so far is in the overlay just written: all of them are durable now.
    for (const w of this.durable) w.ready = true;
    this.wal.reset();
    this.stats.checkpoints++;
  }

  /**
   * Visible at once, written with the next commit: the overlay holds the
   * writes until then.
   */
  stage(batch: WriteBatch): void {
    this.checkOpen();
    if (this.failure) throw this.failure;
    const recorded = asRecordingBatch(batch);
    recorded.seal();
    const layer = resolveLayer(this.overlay, this.values, recorded.ops);
    // An empty batch adds no layer.
    if (layer.size === 0) return;
    this.overlay = this.overlay.with(layer);
    for (const w of layer.finalWrites()) this.unlogged.push(w);
  }

  snapshotView(): ReadView & { close(): void } {
    this.checkOpen();
    const view = new LmdbSnapshot(this.overlay, this.data, this.values, this.heads, this.data.useReadTransaction(), (v) => this.snapshots.delete(v));
    this.snapshots.add(view);
    return view;
  }

  /**
   * The data file's pages in use so far, (last page number + 1) × page size,
   * from LMDB's environment info: what bolt's size is to etcd's dbSize, free
   * pages included. Staged batches are not in it yet.
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
    // Staged and logged batches go to LMDB now: an orderly close loses nothing that was made
    // visible, and leaves the log with nothing to replay.
    if (!this.overlay.isEmpty && this.failure === undefined) {
      try {
        this.checkpoint([]);
        this.unlogged = [];
        this.reportReady();
      } catch (cause) {
        this.failure = writeFailure(cause);
      }
    }
    // A sync in flight must end before its descriptor closes; the checkpoint above made its batches durable anyway.
    await this.wal.idle();
    this.wal.close();
    // Let the callbacks of committed batches run before the environment goes.
    await Promise.resolve();
    for (const view of [...this.snapshots]) view.close();
    await this.root.close();
  }

  /** One LMDB transaction holding `writes` and the log generation `generation`, synced to disk when it returns. */
  private writeSynced(writes: readonly Write[], generation: number): void {
    const data = this.data;
    const meta = this.meta;
    this.root.transactionSync(() => {
      for (const w of writes) {
        if (w.value === undefined) data.removeSync(w.key);
        else data.putSync(w.key, w.value);
      }
      meta.putSync(GENERATION_KEY, encodeGeneration(generation));
    });
  }

  /** Queues `onDurable`; the queue runs from one microtask, in commit order. */
  /** Runs, from one microtask, the callbacks at the head of the queue whose batches are durable. */
  private reportReady(): void {
    if (this.reportScheduled || !(this.durable[0]?.ready ?? false)) return;
    this.reportScheduled = true;
    void Promise.resolve().then(() => this.report());
  }

  private report(): void {
    this.reportScheduled = false;
    let thrown: unknown;
    let n = 0;
    while (n < this.durable.length && this.durable[n]!.ready) n++;
    for (const { onDurable, error } of this.durable.splice(0, n)) {
      try {
        onDurable(error);
      } catch (cause) {
        thrown ??= cause;
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
    private readonly values: Db,
    private readonly heads: HeadsDb,
    private readonly txn: Transaction,
    private readonly onClose: (view: LmdbSnapshot) => void,
  ) {}

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return readKey(this.overlay, this.data, key, this.txn);
  }

  scan(options: ScanOptions): Iterable<KeyValue> {
    this.checkOpen();
    return scanMerged(() => this.overlay, this.values, options, this.txn);
  }

  visit(options: VisitOptions, visitor: Visitor): void {
    this.checkOpen();
    visitMerged(this.overlay, this.values, this.heads, options, visitor, this.txn);
  }

  count(options: ScanOptions): number {
    this.checkOpen();
    return countMerged(this, this.overlay, this.data, options, this.txn);
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

/**
 * A visit (StorageEngine.visit). With staged batches that write in its
 * range it merges them in through scanMerged; otherwise (nothing staged, as
 * between loop turns, or nothing staged there) it reads LMDB's cursor
 * directly: no generator layer, no object per pair, and with
 * `valueHeadBytes` no copy of the values (the heads handle).
 */
function visitMerged(overlay: Overlay, values: Db, heads: HeadsDb, options: VisitOptions, visitor: Visitor, transaction: Transaction | undefined): void {
  const limit = scanLimit(options);
  const head = valueHeadBytes(options);
  const { start, end } = options;
  if (end !== undefined && compareBytes(start, end) >= 0) return;
  // Staged batches that write nothing in the range leave it to LMDB: a write turn's reads of keys it has
  // not written (the MVCC store's seek for a new key's newest change) take the direct path.
  if (!overlay.isEmpty && overlay.touches(start, end)) return visitPairs(scanMerged(() => overlay, values, options, transaction), options, visitor);
  const range = rangeOptions(start, end, options.reverse === true, transaction);
  if (limit !== Infinity) range.limit = limit;
  if (head === undefined) {
    // The values handle gives plain arrays, keys and values (environment.ts, PlainCopier).
    for (const { key, value } of values.getRange(range)) {
      if (visitor(key as Uint8Array, value, value.length) === false) return;
    }
    return;
  }
  for (const { key, value: size } of heads.getRange(range)) {
    // The decoder left the value's first bytes in valueHead when it read this pair.
    if (visitor(key as Uint8Array, VALUE_HEAD_VIEWS[Math.min(size, head)]!, size) === false) return;
  }
}

/**
 * A count (StorageEngine.count): LMDB's own (lmdb-js getCount, a cursor walk
 * in C) for a plain forward range with nothing staged over it, a visit for
 * the rest.
 */
function countMerged(view: ReadView, overlay: Overlay, data: Db, options: ScanOptions, transaction: Transaction | undefined): number {
  const limit = scanLimit(options);
  const { start, end } = options;
  if (end !== undefined && compareBytes(start, end) >= 0) return 0;
  if (!overlay.isEmpty || limit !== Infinity || options.reverse === true) return countByVisit(view, options);
  return data.getCount(rangeOptions(start, end, false, transaction));
}

/** lmdb-js's range options for [start, end), ascending or descending. */
function rangeOptions(start: Uint8Array, end: Uint8Array | undefined, reverse: boolean, transaction: Transaction | undefined): RangeOptions {
  // lmdb-js walks a reverse range from `start` down to `end`, so the bounds swap and flip inclusiveness.
  // Its default lower end for a reverse walk leaves out the key 0x00, so the lowest possible key is always given.
  const range: RangeOptions = reverse
    ? { reverse: true, ...(end && { start: end, exclusiveStart: true }), end: start.length > 0 ? start : LOWEST_KEY, inclusiveEnd: true }
    : { ...(start.length > 0 && { start }), ...(end && { end }) };
  if (transaction !== undefined) range.transaction = transaction;
  return range;
}

/** LMDB's entries in [start, end), ascending or descending, as plain Uint8Arrays (read through the values handle). */
function lmdbRange(data: Db, start: Uint8Array, end: Uint8Array | undefined, reverse: boolean, transaction: Transaction | undefined): Iterable<KeyValue> {
  // No limit on LMDB's side: overlay deletions may hide some of its entries. The merge stops at the limit instead.
  const range = rangeOptions(start, end, reverse, transaction);
  return data.getRange(range).map(({ key, value }) => ({ key: key as Uint8Array, value }));
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
 * and LMDB, and becomes a delete of each key it finds. The layer keeps each
 * key's last write only: the batch goes to LMDB in one transaction, so the
 * others could never be seen (an apply batch rewrites the MVCC meta record
 * once per command).
 */
function resolveLayer(overlay: Overlay, data: Db, ops: readonly BatchOp[]): OverlayLayer {
  const layer = new OverlayLayer();
  const withLayer = overlay.with(layer);
  for (const op of ops) {
    if (op.kind === 'put') layer.set(op.key, op.value);
    else if (op.kind === 'delete') layer.set(op.key, undefined);
    else {
      const doomed = [...scanMerged(() => withLayer, data, { start: op.start, end: op.end }, undefined)].map((kv) => kv.key);
      for (const key of doomed) layer.set(key, undefined);
    }
  }
  return layer;
}

/** Where LMDB's meta database keeps the log generation (ADR 0011). */
const GENERATION_KEY = new TextEncoder().encode('wal-generation');

function encodeGeneration(generation: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, generation, true);
  return bytes;
}

/** The generation a checkpoint last named; 0 for an environment no checkpoint has written yet. */
function readGeneration(meta: Db, path: string): number {
  const bytes = meta.get(GENERATION_KEY);
  if (bytes === undefined) return 0;
  if (bytes.length !== 4) throw new TesseraError('CORRUPT_DATA', `${path}: the write-ahead log generation record is ${bytes.length} bytes, not 4`);
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
}

function writeFailure(error: unknown): TesseraError {
  const message = messageOf(error);
  const code = /MDB_MAP_FULL/.test(message) ? 'RESOURCE_EXHAUSTED' : 'IO_ERROR';
  return new TesseraError(code, `LMDB write failed; the engine accepts no more writes until reopened: ${message}`, { cause: error });
}
