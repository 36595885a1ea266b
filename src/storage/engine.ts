/**
 * The storage engine interface: one ordered byte-key store per node holding
 * the Raft logs, hard states and applied indexes of every range and their
 * MVCC data (DESIGN.md decision 2). Implementations: the in-memory engine
 * (tests and the simulator) and LMDB (src/storage/lmdb, the only code that
 * imports `lmdb`). Both pass the one conformance suite in
 * conformance.testlib.ts.
 *
 * Contract:
 * - Reads are synchronous and see every committed batch, durable or not (the
 *   single writer reads its own writes).
 * - `commit` applies a batch atomically and returns once it is visible. Its
 *   `onDurable` callback runs once the batch, and every batch committed
 *   before it, is on stable storage. Nothing may be acknowledged before that.
 *   Batches become durable in commit order; a crash keeps a prefix of them.
 * - `stage` is a commit that asks for no write of its own: the batch is
 *   visible at once and goes to stable storage with the next `commit` (ahead
 *   of that commit's batch, in order) or at `close`. It suits state that can
 *   be rebuilt after a crash, such as applied state, which is replayed from
 *   the durable log; it spares that state a write and a sync of its own.
 * - `onDurable` never runs synchronously inside `commit`, so callers can
 *   commit from inside their loop and continue there.
 * - Keys are compared as unsigned bytes. `end` bounds are exclusive.
 * - Keys are 1..MAX_KEY_BYTES bytes, values at most MAX_VALUE_BYTES; a batch
 *   refuses others with INVALID_ARGUMENT when they are queued. A range whose
 *   start is not below its end is empty.
 * - Batches copy what they are given. Arrays returned by reads are read-only:
 *   the in-memory engine shares them with its own state.
 * - A scan iterates one consistent state, taken no later than its first
 *   step (the first `next()`); commits made while iterating do not show in it.
 *   `visit` is the same scan with a callback, made for hot paths: no
 *   generator layers and no object per pair, and with `valueHeadBytes` no
 *   copy of the values either. Its visitor must not commit or stage.
 * - After `close`, reads and commits throw TesseraError 'CLOSED'.
 */

/** LMDB's key limit with its default 4 KiB pages (mdb_env_get_maxkeysize); the other engines keep to it too. */
export const MAX_KEY_BYTES = 1978;
/** Largest value one put may store: far above any request (1.5 MiB) or snapshot chunk, well below LMDB's 4 GiB. */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024;

export interface KeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export interface ScanOptions {
  /** First key, inclusive. */
  readonly start: Uint8Array;
  /** End key, exclusive; undefined scans to the end of the key space. */
  readonly end?: Uint8Array | undefined;
  readonly reverse?: boolean | undefined;
  /** Max pairs returned; undefined or 0 means no limit. */
  readonly limit?: number | undefined;
}

/**
 * The most value bytes a visit may ask for with `valueHeadBytes`: enough for
 * a record's format and flag bytes and a length, small enough that an engine
 * can keep them in one reused array.
 */
export const MAX_VALUE_HEAD_BYTES = 16;

export interface VisitOptions extends ScanOptions {
  /**
   * When set (1..MAX_VALUE_HEAD_BYTES), the visitor gets only the first
   * `valueHeadBytes` bytes of each value (all of a shorter one), in an array
   * the engine reuses: valid during that call only. The engine then need not
   * copy values out of storage (a count of a million keys reads a flag byte
   * of each). The third argument is the value's full length either way.
   */
  readonly valueHeadBytes?: number | undefined;
}

/** Called once per pair of a visit, in scan order; returning false ends the visit. */
export type Visitor = (key: Uint8Array, value: Uint8Array, valueBytes: number) => boolean | void;

export interface ReadView {
  get(key: Uint8Array): Uint8Array | undefined;
  scan(options: ScanOptions): Iterable<KeyValue>;
  /** The pairs `scan(options)` would yield, given to `visitor` as they are read (see the contract above). */
  visit(options: VisitOptions, visitor: Visitor): void;
  /**
   * How many pairs `scan(options)` would yield, read like a scan (a key a
   * scan would miss is not counted), without handing any out: LMDB counts
   * in its own code, several times faster than a visit.
   */
  count(options: ScanOptions): number;
}

export interface WriteBatch {
  put(key: Uint8Array, value: Uint8Array): void;
  /**
   * Like put, but the batch takes `key` and `value` as they are instead of
   * copying them: for arrays the caller has just made and never touches
   * again (an encoded record), to save a copy of every value written.
   */
  putOwned(key: Uint8Array, value: Uint8Array): void;
  delete(key: Uint8Array): void;
  /** Deletes every key in [start, end). */
  deleteRange(start: Uint8Array, end: Uint8Array): void;
  /** Number of operations queued. */
  readonly count: number;
  /** Bytes of keys and values queued (for limits and metrics). */
  readonly sizeBytes: number;
  /** True once the batch was committed or staged: its writes are visible in the engine, and it takes no more. */
  readonly sealed: boolean;
}

export interface StorageEngine extends ReadView {
  readonly kind: 'memory' | 'lmdb';
  newBatch(): WriteBatch;
  /** Applies `batch` atomically and makes it visible; `onDurable` runs once it is synced (or with the error). */
  commit(batch: WriteBatch, onDurable: (error?: Error) => void): void;
  /** Applies `batch` atomically and makes it visible, to be written with the next `commit` (see the contract above). */
  stage(batch: WriteBatch): void;
  /** A consistent view that later commits do not change (for snapshots and long reads). Release it with `close`. */
  snapshotView(): ReadView & { close(): void };
  /**
   * Bytes the engine's storage holds, for monitoring (etcd's Status dbSize):
   * LMDB's high-water mark in its data file (free pages inside it count, as
   * in bolt's size, which etcd reports), the memory engine's key and value
   * bytes. It may lag the batches not yet durable. Optional: an engine that
   * cannot tell leaves it out and is reported as 0.
   */
  sizeBytes?(): number;
  /** Flushes and closes; idempotent. */
  close(): Promise<void>;
}
