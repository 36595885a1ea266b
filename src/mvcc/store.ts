import { assert } from '../base/index.js';
import { compareBytes } from './bytes.js';
import { EMPTY_META, changeKey, dataKeyMain, type KeySpan, type LiveStats, type MvccMeta, decodeMeta, encodeMeta, liveKeyValueBytes, metaKey } from './codec.js';
import type { StorageEngine, WriteBatch } from '../storage/engine.js';
import { COMPACTION_BATCH_LIMIT, compact, compactStep } from './compaction.js';
import { type EventsOptions, type EventsResult, readEvents } from './events.js';
import { type HashKVResult, hashKV } from './hash.js';
import { checkInvariants } from './invariants.js';
import { type RangeOptions, type RangeResult, executeRange } from './range.js';
import { MAX_REVISION } from './revision.js';
import { type KeyHeadBudget, type MvccLocation, MvccState, verifyStoredCounts } from './state.js';
import { ReadTxn } from './read-txn.js';
import type { KeyInterval } from './bytes.js';
import * as intents from './intents.js';
import type { Intent, TxnRecord } from './intents.js';
import type { MvccEvent } from './write-txn.js';
import { type TxnOptions, type TxnRequest, type TxnResponse, executeTxn, isTxnReadOnly } from './txn.js';
import { type WriteResult, WriteTxn } from './write-txn.js';

export interface BeginWriteOptions {
  /**
   * The main revision for this transaction's changes: a commit timestamp from
   * the timestamp oracle (DESIGN.md decision 3). It must be above the current
   * revision. Absent: current + 1, etcd's counter.
   */
  readonly revision?: number | undefined;
}

export interface MvccOpenOptions {
  /**
   * Asked at each put and delete: whether the write's events must carry the
   * key's previous value. Loading it costs a storage read per change, which
   * only watchers with prev_kv need (etcd reads it in the watch path, too).
   * A put or delete that asks for prev_kv itself always gets it. Absent:
   * always.
   */
  readonly eventsWantPrevKv?: (() => boolean) | undefined;
  /** The key-head cache's byte budget, shared by a node's stores (KeyHeadBudget). Absent: one of KEY_HEAD_CACHE_BYTES for this store alone. */
  readonly headBudget?: KeyHeadBudget | undefined;
}

/**
 * A multi-version key space with etcd v3's semantics, kept in a StorageEngine:
 * the changes of the user keys in its span, keyed by user key, and a meta
 * record under its own prefix (codec.ts has the layout). Synchronous and deterministic: the same commands
 * applied in the same order give the same revisions, records and hashes on
 * every replica. Writes go into a batch the caller supplies and commits (so
 * the Raft layer can commit them with its applied index); reads see those
 * writes at once, committed or not.
 *
 * Caller contract: commit every batch passed to beginWrite/compact/
 * compactStep, in the order passed, or reopen the store. One write
 * transaction at a time.
 */
export class MvccStore {
  private constructor(private readonly state: MvccState) {}

  /**
   * Opens the store at `location`: reads its meta record and nothing else
   * (the engine's `d` family is the key index, ADR 0009 §1), so opening
   * costs the same at ten keys and ten million. A fresh location gives an
   * empty store at INITIAL_REVISION (1, as in etcd).
   */
  static open(engine: StorageEngine, location: MvccLocation, options: MvccOpenOptions = {}): MvccStore {
    return new MvccStore(MvccState.open(engine, location, options.eventsWantPrevKv ?? (() => true), options.headBudget));
  }

  /** The revision of the last write transaction that changed something; INITIAL_REVISION before the first. */
  get currentRevision(): number {
    return this.state.currentRevision;
  }

  /**
   * The revision at or below which the store's history is final (ADR 0017
   * §4, TiKV's resolved-ts): its current revision, held below the floor of
   * every pending write intent, whose commit may still add a change above
   * the floor. A watch releases changes only up to it.
   */
  get closedRevision(): number {
    this.state.settle();
    return Math.min(this.state.currentRevision, intents.lowestWriteFloor(this.state));
  }

  /** Reads below this revision fail with COMPACTED. */
  get compactedRevision(): number {
    return this.state.compactedRevision;
  }

  /**
   * The bytes (stored keys and records) compaction deleted since the last
   * call: the kv layer lowers its range's approximate size by them, so a
   * range whose keys were deleted and compacted becomes small enough to
   * merge (ADR 0014). Alike on every replica: compaction steps apply in log
   * order over the same records.
   */
  takeDeletedBytes(): number {
    const bytes = this.state.deletedBytes;
    this.state.deletedBytes = 0;
    return bytes;
  }

  /** True while superseded records from the last compaction are still being deleted (see compactStep). */
  get compactionPending(): boolean {
    return this.state.compactionCursor !== undefined;
  }

  /**
   * The live keys at the current revision and their key and value bytes (an
   * operator's view, `GET /ranges`): kept in the meta record by every write,
   * split and merge, so this reads nothing; a store opened from a format-5
   * meta counts them once here (countLiveKeysAndBytes).
   */
  liveKeysAndBytes(): LiveStats {
    this.state.settle();
    assert(!this.state.writing, 'store.liveKeysAndBytes during a write transaction');
    if (this.state.live !== undefined) return this.state.live;
    const counted = this.countLiveKeysAndBytes();
    // Kept from now on by every write; persisted with the next meta record this store writes.
    this.state.live = counted;
    return counted;
  }

  /** liveKeysAndBytes by a walk over every key's newest record head (reads no value): the stored count's check, and its start for a format-5 meta. */
  countLiveKeysAndBytes(): LiveStats {
    this.state.settle();
    assert(!this.state.writing, 'store.countLiveKeysAndBytes during a write transaction');
    let keys = 0;
    let bytes = 0;
    const span = this.state.span;
    this.state.forEachKeyAt({ start: span.start, end: span.end ?? new Uint8Array(0) }, this.state.currentRevision, (head) => {
      const b = liveKeyValueBytes(head.raw, head.rawBytes);
      if (b === undefined) return;
      keys++;
      bytes += b;
    }, { headsOnly: true });
    return { keys, bytes };
  }

  /** etcd's Range at the current revision or a past one. */
  range(options: RangeOptions): RangeResult {
    this.state.settle();
    assert(!this.state.writing, 'store.range during a write transaction; read through the transaction');
    return executeRange(this.state, options, this.state.currentRevision);
  }

  /** Starts a write transaction whose records go into `batch`. End it with `end()` before anything else touches the store. */
  beginWrite(batch: WriteBatch, options: BeginWriteOptions = {}): WriteTxn {
    this.state.settle();
    assert(!this.state.writing, 'a write transaction is already open');
    const revision = options.revision ?? this.state.currentRevision + 1;
    assert(revision <= MAX_REVISION, 'revision space exhausted');
    const txn = new WriteTxn(this.state, batch, revision);
    this.state.writing = true;
    return txn;
  }

  /**
   * etcd's Txn RPC as one write transaction (see executeTxn). A request that
   * fails its checks throws its refusal (errors.ts) and writes nothing; one that changes
   * nothing (all reads, or deletes of absent keys) leaves the revision alone.
   */
  txn(batch: WriteBatch, request: TxnRequest, options: TxnOptions & BeginWriteOptions = {}): { response: TxnResponse; result: WriteResult } {
    const txn = this.beginWrite(batch, options);
    let response: TxnResponse;
    try {
      response = executeTxn(txn, request, options);
    } catch (error) {
      assert(txn.changeCount === 0, 'a txn failed after it had written');
      txn.end();
      throw error;
    }
    return { response, result: txn.end() };
  }

  /**
   * A txn that only reads (isTxnReadOnly), answered from the current state
   * without a write transaction or a batch: the same response txn() would
   * give it (header revision the current one), and the same refusal for a
   * compacted or future read revision. Whether the state is recent enough is
   * the caller's business (a read barrier, or a serializable read).
   */
  readTxn(request: TxnRequest): TxnResponse {
    this.state.settle();
    assert(!this.state.writing, 'store.readTxn during a write transaction');
    assert(isTxnReadOnly(request), 'store.readTxn of a txn that writes');
    const response = executeTxn(new ReadTxn(this.state), request);
    assert(response.revision === this.state.currentRevision, 'a read-only txn answered at another revision');
    return response;
  }

  /**
   * Compacts history at `revision` (etcd's Compact): COMPACTED if revision ≤
   * the compacted revision, FUTURE_REVISION if above the current one. Reads
   * below `revision` fail at once; superseded records are deleted in steps
   * of `stepLimit`, the first one now. Returns true when that deletion is
   * complete; otherwise call compactStep until it returns true.
   */
  compact(revision: number, batch: WriteBatch, stepLimit: number = COMPACTION_BATCH_LIMIT): boolean {
    this.state.settle();
    return compact(this.state, revision, batch, stepLimit);
  }

  /** Deletes up to `limit` more superseded records; true once none are left. A no-op returning true when nothing is pending. */
  compactStep(batch: WriteBatch, limit: number = COMPACTION_BATCH_LIMIT): boolean {
    this.state.settle();
    return compactStep(this.state, batch, limit);
  }

  /**
   * Raises the current revision to `revision` without a change (a range's
   * closed revision, ADR 0009 §4): no later write may take a revision at or
   * below it, and every read at it sees what the store holds now.
   */
  advanceTo(batch: WriteBatch, revision: number): void {
    this.state.settle();
    assert(!this.state.writing, 'store.advanceTo during a write transaction');
    assert(Number.isSafeInteger(revision) && revision > this.state.currentRevision && revision <= MAX_REVISION, () => `advanceTo ${revision} is not above the current revision ${this.state.currentRevision}`);
    this.state.currentRevision = revision;
    this.state.persistMeta(batch);
  }

  /** History of a key range from `fromRevision` on, for watchers starting in the past. */
  events(options: EventsOptions): EventsResult {
    this.state.settle();
    assert(!this.state.writing, 'store.events during a write transaction');
    return readEvents(this.state, options);
  }

  /** Digest of the history up to `revision` (0: current), etcd's HashKV. */
  hashKV(revision = 0): HashKVResult {
    this.state.settle();
    assert(!this.state.writing, 'store.hashKV during a write transaction');
    return hashKV(this.state, revision);
  }

  /**
   * Splits the store at `splitKey` (strictly inside its span): this store
   * keeps the keys below it, and the keys from it on become the store whose
   * meta record is at `right.metaPrefix`, which this writes into `batch`. The
   * new store starts at this one's revisions and compaction; no record moves.
   * Open the right-hand store only after `batch` is committed or staged.
   * Returns the stored bytes (keys and records) that went to the right.
   */
  splitOff(batch: WriteBatch, splitKey: Uint8Array, rightMetaPrefix: Uint8Array): number {
    this.state.settle();
    assert(!this.state.writing, 'store.splitOff during a write transaction');
    const { span } = this.state;
    assert(compareBytes(splitKey, span.start) > 0 && (span.end === undefined || compareBytes(splitKey, span.end) < 0), 'a split key strictly inside the span');
    const moved = this.state.narrowTo(splitKey.slice());
    const right: MvccMeta = { ...this.state.meta, writeSeq: 0, recordCount: moved.records, live: moved.live };
    batch.put(metaKey(rightMetaPrefix), encodeMeta(right));
    this.state.persistMeta(batch);
    return moved.bytes;
  }

  /**
   * Merges the store whose meta record is at `rightMetaPrefix` into this one
   * (ADR 0009 §6): its span starts at this one's end and ends at `end`. The
   * caller deletes the right store's meta record in `batch` and never opens
   * it again. A compaction left pending by the two compacted revisions
   * differing is finished here, so both sides hold the same history.
   */
  absorb(batch: WriteBatch, end: Uint8Array | undefined, rightMetaPrefix: Uint8Array): void {
    this.state.settle();
    assert(!this.state.writing, 'store.absorb during a write transaction');
    const raw = this.state.engine.get(metaKey(rightMetaPrefix));
    const right = raw === undefined ? EMPTY_META : decodeMeta(raw);
    this.state.widenTo(end, right);
    this.state.persistMeta(batch);
    if (this.compactionPending) compactStep(this.state, batch, Number.MAX_SAFE_INTEGER);
  }

  /** The main revision of `key`'s newest change, a delete included; 0 when the store holds none (never written, or compacted away). */
  newestChangeRevision(key: Uint8Array): number {
    this.state.settle();
    const head = this.state.newestAt(key, MAX_REVISION);
    return head === undefined ? 0 : dataKeyMain(head.dataKey, head.prefixBytes);
  }

  /** Whether any store on this engine holds a change at revision `main`.`sub` (the `e` index is shared). */
  hasChange(main: number, sub: number): boolean {
    this.state.settle();
    return this.state.pending.get(changeKey({ main, sub })) !== undefined;
  }

  /** The intent on `key`, if any (ADR 0017 §3). */
  intent(key: Uint8Array): Intent | undefined {
    this.state.settle();
    return intents.readIntent(this.state, key);
  }

  /** The intents on keys of `interval` (default: the store's whole span) in this store, in key order, at most `limit` (0: all). */
  intents(interval: KeyInterval = intents.wholeSpan(this.state.span), limit = 0): Intent[] {
    this.state.settle();
    if (intents.intentCount(this.state) === 0) return [];
    return intents.intentsIn(this.state, interval, limit);
  }

  /** How many intents the store holds: 0 lets a read skip looking for them. */
  get intentCount(): number {
    this.state.settle();
    return intents.intentCount(this.state);
  }

  /**
   * The intents a read of `interval` at `revision` must not pass (ADR 0017
   * §4): writes (not read locks) whose floor is below it, so that their
   * commit revision may be at or below it. No interval: the whole span (a
   * compaction at `revision` may not pass them either).
   */
  conflictingIntents(interval: KeyInterval | undefined, revision: number, limit = 0): Intent[] {
    const found: Intent[] = [];
    for (const intent of this.intents(interval)) {
      if (intent.write.kind === 'lock' || intents.intentFloor(intent) >= revision) continue;
      found.push(intent);
      if (limit > 0 && found.length >= limit) break;
    }
    return found;
  }

  /** Lays an intent (intents.layIntent); no other transaction's intent may be on its key. */
  layIntent(batch: WriteBatch, intent: Intent): void {
    this.state.settle();
    intents.layIntent(this.state, batch, intent);
  }

  /** Resolves the intent of `txnId` on `key`: committed at `commitRevision`, or dropped (intents.resolveIntent). */
  resolveIntent(batch: WriteBatch, key: Uint8Array, txnId: string, commitRevision: number | undefined): MvccEvent | undefined {
    this.state.settle();
    return intents.resolveIntent(this.state, batch, key, txnId, commitRevision);
  }

  txnRecord(primary: Uint8Array, txnId: string): TxnRecord | undefined {
    this.state.settle();
    return intents.readTxnRecord(this.state, primary, txnId);
  }

  writeTxnRecord(batch: WriteBatch, record: TxnRecord): void {
    this.state.settle();
    intents.writeTxnRecord(this.state, batch, record);
  }

  deleteTxnRecord(batch: WriteBatch, primary: Uint8Array, txnId: string): void {
    this.state.settle();
    intents.deleteTxnRecord(this.state, batch, primary, txnId);
  }

  /** Every transaction record in the store's span. */
  txnRecords(): TxnRecord[] {
    this.state.settle();
    return intents.txnRecordsIn(this.state);
  }

  /** The user keys this store holds. */
  get span(): KeySpan {
    return this.state.span;
  }

  /** Asserts that the stored history is consistent; reads everything (tests, diagnostics). */
  checkInvariants(): void {
    checkInvariants(this.state);
  }

  /**
   * Reads the whole stored history once and refuses, with CORRUPT_DATA, a
   * store whose records or change index entries differ in number from what
   * the meta record counts, or whose records fail their checksum. LMDB pages
   * carry no checksum, so a damaged page can hide records from every scan;
   * open() no longer reads them all, so this is the check for callers that
   * want it (a node at start). O(history).
   */
  verifyHistory(): void {
    this.state.settle();
    assert(!this.state.writing, 'store.verifyHistory during a write transaction');
    verifyStoredCounts(this.state.pending, this.state.span, this.state.meta);
  }
}
