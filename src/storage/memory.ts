import { AssertionError, TesseraError, sharesBuffer, type Rng } from '../base/index.js';
import { asRecordingBatch, RecordingBatch, type BatchOp } from './batch.js';
import type { KeyValue, ReadView, ScanOptions, StorageEngine, VisitOptions, Visitor, WriteBatch } from './engine.js';
import { countByVisit, scanLimit, visitPairs } from './scan.js';
import { SortedMap } from './sorted_map.js';

type Image = SortedMap<Uint8Array>;

export interface MemoryEngineOptions {
  /**
   * Asks the caller to run `flush` later, once: that is the moment the disk
   * syncs. The engine asks again when a batch is committed after the flush.
   * Tests pass `(f) => queueMicrotask(f)` or keep `f` to run by hand; the
   * simulator schedules it on its own clock. The engine cannot choose a
   * default: the storage layer may not touch timers or the task queue.
   * It must not call `flush` synchronously.
   */
  readonly scheduleSync: (flush: () => void) => void;
}

export interface CrashReport {
  /** Committed batches that were not yet synced when the crash came. */
  readonly pendingBatches: number;
  /** How many of them (a prefix, in commit order) reached the disk anyway. */
  readonly survived: number;
  /** Whether the batch after the survivors was torn mid-write (dropped, or left with a partial record). */
  readonly torn: boolean;
  /** Whether the torn batch reached the disk with its last tail record cut short (see CrashOptions.tailRecord). */
  readonly partialRecord: boolean;
}

export interface CrashOptions {
  /**
   * Keys of the records at the tail of an append-only log (a Raft log's
   * entries). When given, a torn batch that writes such records may reach
   * the disk with the last of them cut short (a partial record), as when the
   * power fails while a log append is being written; recovery must notice
   * the short record by its length or checksum.
   */
  readonly tailRecord?: (key: Uint8Array) => boolean;
}

/** A sync that failed (an injected EIO): the batches it should have carried never reach the disk. */
export const SYNC_FAILED_MESSAGE = 'sync failed (injected EIO)';

interface PendingBatch {
  readonly ops: readonly BatchOp[];
  readonly onDurable: (error?: Error) => void;
}

const ignoreDurable = (): void => {};

/** Chance that a crash lets some unsynced batches through at all, as src/sim/disk.ts does. */
const CRASH_KEEPS_SOME_CHANCE = 0.5;
/** Chance that a torn batch carrying tail records reaches the disk with its last one cut short, when asked for. */
const PARTIAL_RECORD_CHANCE = 0.5;

/**
 * The in-memory engine, for tests and the simulator. It keeps a durable image
 * (what a restart would find) and the live image (every committed batch); the
 * batches between the two are the unsynced ones. Both images are persistent
 * sorted maps, so a sync is a reference copy and a snapshot costs O(1).
 */
export class MemoryEngine implements StorageEngine {
  readonly kind = 'memory' as const;
  private live: Image = SortedMap.empty();
  private durable: Image = SortedMap.empty();
  private pending: PendingBatch[] = [];
  private syncScheduled = false;
  /** Bumped by a crash, so that a flush scheduled before it does nothing. */
  private epoch = 0;
  private inCommit = false;
  private closed = false;
  /** Syncs that made at least one batch durable (for tests of group commit). */
  syncs = 0;
  /**
   * A failed sync left the live image ahead of what later syncs write: the
   * failed batches never reach the disk, though reads still see them (the
   * kernel marked the dirty pages clean after the failed fsync). Later
   * syncs then write only their own batches. A crash ends it.
   */
  private diverged = false;
  private failNextSyncs = 0;
  /** Bit flips on read (a fault the simulator injects): called with each value read, may return a damaged copy. */
  readFault: ((key: Uint8Array, value: Uint8Array) => Uint8Array) | undefined;
  /** sizeBytes of one image, kept until the live image changes: it costs a full scan. */
  private sizeOf: { readonly image: Image; readonly bytes: number } | undefined;

  constructor(private readonly options: MemoryEngineOptions) {}

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    const value = this.live.get(key);
    return value === undefined || this.readFault === undefined ? value : this.readFault(key, value);
  }

  scan(options: ScanOptions): Iterable<KeyValue> {
    this.checkOpen();
    const kvs = scanImage(this.live, options);
    return this.readFault === undefined ? kvs : faulty(kvs, this.readFault);
  }

  visit(options: VisitOptions, visitor: Visitor): void {
    visitPairs(this.scan(options), options, visitor);
  }

  count(options: ScanOptions): number {
    return countByVisit(this, options);
  }

  /** The next `count` syncs fail (EIO): their batches' callbacks get the error and the batches never reach the disk. */
  failSyncs(count: number): void {
    this.failNextSyncs += count;
  }

  newBatch(): WriteBatch {
    return new RecordingBatch();
  }

  commit(batch: WriteBatch, onDurable: (error?: Error) => void): void {
    this.accept(batch, onDurable);
    if (this.syncScheduled) return; // Group commit: the sync already asked for covers this batch too.
    this.syncScheduled = true;
    const epoch = this.epoch;
    this.inCommit = true;
    try {
      this.options.scheduleSync(() => this.flush(epoch));
    } finally {
      this.inCommit = false;
    }
  }

  /** Like commit, but no sync is asked for: the batch waits, unsynced, for the next commit's sync (or close). */
  stage(batch: WriteBatch): void {
    this.accept(batch, ignoreDurable);
  }

  /** Applies the batch to the live image and queues it, unsynced. */
  private accept(batch: WriteBatch, onDurable: (error?: Error) => void): void {
    this.checkOpen();
    const recorded = asRecordingBatch(batch);
    recorded.seal();
    // The images keep what they are given for good; a view into a larger buffer (putOwned of a slab
    // allocation, see base/bytes.ts) would keep that whole buffer alive, so it is copied, once.
    const ops = recorded.ops.map(owned);
    this.live = applyOps(this.live, ops);
    this.pending.push({ ops, onDurable });
  }

  snapshotView(): ReadView & { close(): void } {
    this.checkOpen();
    return new MemorySnapshot(this.live);
  }

  /** Key and value bytes of every committed pair, durable or not (what the engine holds in memory). */
  sizeBytes(): number {
    this.checkOpen();
    if (this.sizeOf?.image !== this.live) {
      let bytes = 0;
      for (const [key, value] of this.live.entries({ start: new Uint8Array(0) })) bytes += key.length + value.length;
      this.sizeOf = { image: this.live, bytes };
    }
    return this.sizeOf.bytes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Closing syncs: an orderly shutdown loses nothing that was committed.
    try {
      this.flush(this.epoch);
    } finally {
      this.closed = true;
    }
  }

  /** Whether committed batches wait for a sync. */
  hasUnsynced(): boolean {
    return this.pending.length > 0;
  }

  /**
   * Simulates a power cut and restart on the same disk: unsynced batches are
   * lost except a random prefix that reached the platter; the batch after that
   * prefix may have been torn mid-write, and recovery drops it. Their
   * `onDurable` callbacks never run. The engine is open again afterwards,
   * holding exactly what a restarted node would find. Snapshots taken before
   * the crash must not be used after it.
   */
  crash(rng: Rng, options: CrashOptions = {}): CrashReport {
    const pendingBatches = this.pending.length;
    let survived = 0;
    let torn = false;
    let partialRecord = false;
    if (pendingBatches > 0 && rng.chance(CRASH_KEEPS_SOME_CHANCE)) {
      survived = rng.intBelow(pendingBatches + 1);
      torn = survived < pendingBatches;
      for (const batch of this.pending.slice(0, survived)) this.durable = applyOps(this.durable, batch.ops);
      const tornBatch = this.pending[survived];
      if (tornBatch !== undefined && options.tailRecord !== undefined && rng.chance(PARTIAL_RECORD_CHANCE)) {
        const ops = withPartialTail(tornBatch.ops, options.tailRecord, rng);
        if (ops !== undefined) this.durable = applyOps(this.durable, ops);
        partialRecord = ops !== undefined;
      }
    }
    this.pending = [];
    this.diverged = false;
    this.failNextSyncs = 0;
    this.readFault = undefined;
    this.live = this.durable;
    this.syncScheduled = false;
    this.epoch++;
    this.closed = false;
    return { pendingBatches, survived, torn, partialRecord };
  }

  private flush(epoch: number): void {
    if (this.inCommit) throw new AssertionError('MemoryEngine: scheduleSync ran flush synchronously inside commit');
    if (epoch !== this.epoch || this.closed) return;
    this.syncScheduled = false;
    if (this.pending.length === 0) return;
    const batches = this.pending;
    this.pending = [];
    if (this.failNextSyncs > 0) {
      this.failNextSyncs--;
      this.diverged = true;
      return runCallbacks(batches, new TesseraError('IO_ERROR', SYNC_FAILED_MESSAGE));
    }
    // Every pending batch is in the live image, so the synced image is the live one (unless a failed sync lost some).
    if (this.diverged) for (const batch of batches) this.durable = applyOps(this.durable, batch.ops);
    else this.durable = this.live;
    this.syncs++;
    runCallbacks(batches);
  }

  private checkOpen(): void {
    if (this.closed) throw new TesseraError('CLOSED', 'the storage engine is closed');
  }
}

class MemorySnapshot implements ReadView {
  private closed = false;

  constructor(private readonly image: Image) {}

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return this.image.get(key);
  }

  scan(options: ScanOptions): Iterable<KeyValue> {
    this.checkOpen();
    return scanImage(this.image, options);
  }

  visit(options: VisitOptions, visitor: Visitor): void {
    visitPairs(this.scan(options), options, visitor);
  }

  count(options: ScanOptions): number {
    return countByVisit(this, options);
  }

  close(): void {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new TesseraError('CLOSED', 'the snapshot view is closed');
  }
}

function owned(op: BatchOp): BatchOp {
  if (op.kind !== 'put' || (!sharesBuffer(op.key) && !sharesBuffer(op.value))) return op;
  return { kind: 'put', key: sharesBuffer(op.key) ? op.key.slice() : op.key, value: sharesBuffer(op.value) ? op.value.slice() : op.value };
}

/**
 * The torn batch as it reached the disk with a partial tail record: its ops up
 * to the last put of a tail record, that record's value cut short. Undefined
 * if the batch writes no tail record.
 */
function withPartialTail(ops: readonly BatchOp[], isTail: (key: Uint8Array) => boolean, rng: Rng): BatchOp[] | undefined {
  let last = -1;
  ops.forEach((op, i) => {
    if (op.kind === 'put' && isTail(op.key)) last = i;
  });
  const tail = ops[last];
  if (tail === undefined || tail.kind !== 'put') return undefined;
  const cut = tail.value.slice(0, rng.intBelow(tail.value.length));
  return [...ops.slice(0, last), { kind: 'put', key: tail.key, value: cut }, ...ops.slice(last + 1)];
}

function* faulty(kvs: Iterable<KeyValue>, fault: (key: Uint8Array, value: Uint8Array) => Uint8Array): Generator<KeyValue> {
  for (const kv of kvs) yield { key: kv.key, value: fault(kv.key, kv.value) };
}

function applyOps(image: Image, ops: readonly BatchOp[]): Image {
  for (const op of ops) {
    if (op.kind === 'put') image = image.set(op.key, op.value);
    else if (op.kind === 'delete') image = image.delete(op.key);
    else image = image.deleteRange(op.start, op.end);
  }
  return image;
}

function scanImage(image: Image, options: ScanOptions): Iterable<KeyValue> {
  const limit = scanLimit(options); // checked now, not at the first next()
  return limited(image.entries({ start: options.start, end: options.end, reverse: options.reverse }), limit);
}

function* limited(entries: Iterable<[Uint8Array, Uint8Array]>, limit: number): Generator<KeyValue> {
  let n = 0;
  for (const [key, value] of entries) {
    yield { key, value };
    if (++n >= limit) return;
  }
}

/** Runs every callback in order; one that throws does not stop the later ones, and the first error is rethrown. */
function runCallbacks(batches: readonly PendingBatch[], error?: Error): void {
  let first: unknown;
  let failed = false;
  for (const batch of batches) {
    try {
      batch.onDurable(error);
    } catch (error) {
      if (!failed) first = error;
      failed = true;
    }
  }
  if (failed) throw first;
}
