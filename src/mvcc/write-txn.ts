import { assert } from '../base/index.js';
import type { WriteBatch } from '../storage/engine.js';
import { keyInterval } from './bytes.js';
import { type StoredRecord, dataKeyRevision } from './codec.js';
import { mvccError } from './errors.js';
import { type KeyValue, type RangeOptions, type RangeResult, executeRange, recordKeyValue } from './range.js';
import { MAX_REVISION, MAX_SUB_REVISION, type Revision, assertRevisionNumber } from './revision.js';
import type { LiveHead, MvccState } from './state.js';
import type { VersionHead } from './versions.js';

/** A key's current change, live: what a put continues and a delete ends. */
interface LiveKey {
  readonly record: StoredRecord;
  readonly rev: Revision;
}

/** A change as watchers see it (etcd's mvccpb.Event). A DELETE's kv has the key and mod revision only. */
export interface MvccEvent {
  readonly type: 'PUT' | 'DELETE';
  readonly kv: KeyValue;
  /**
   * The key's value before the change; absent if the key did not exist, its
   * previous value was compacted, or nobody asked for it (MvccOpenOptions).
   */
  readonly prevKv?: KeyValue | undefined;
}

export interface PutOptions {
  /** Lease to attach; 0 or absent: none. Lease ids are safe integers (see the report on lease id width). */
  readonly leaseId?: number | undefined;
  /** Return the previous key-value pair. */
  readonly prevKv?: boolean | undefined;
  /** Keep the current value (the key must exist, and `value` must be empty). */
  readonly ignoreValue?: boolean | undefined;
  /** Keep the current lease (the key must exist, and `leaseId` must be 0). */
  readonly ignoreLease?: boolean | undefined;
}

export interface PutResult {
  /** Header revision: the revision of this write transaction. */
  readonly revision: number;
  readonly prevKv?: KeyValue | undefined;
}

export interface DeleteRangeResult {
  readonly deleted: number;
  /** Header revision: this transaction's revision if it has changed anything, else the current one. */
  readonly revision: number;
  /** The deleted pairs, in key order, when asked for. */
  readonly prevKvs: KeyValue[];
}

export interface WriteResult {
  /** The store's revision after the transaction: its own if it changed anything, else unchanged. */
  readonly revision: number;
  /** The changes in sub-revision order, for live watchers; prevKv as MvccOpenOptions.eventsWantPrevKv says. */
  readonly events: MvccEvent[];
}

/**
 * A write transaction (etcd's storeTxnWrite). Every change gets main revision
 * `revision` and the next sub-revision; records go into the caller's batch
 * and the store's overlay of pending writes at once, so reads in the
 * transaction see its own writes.
 * Nothing is visible to other readers until `end()`; the caller then commits
 * the batch. A transaction that changes nothing leaves the revision alone.
 */
export class WriteTxn {
  private readonly events: MvccEvent[] = [];
  private open = true;

  /** @internal Use MvccStore.beginWrite. */
  constructor(
    private readonly state: MvccState,
    private readonly batch: WriteBatch,
    /** The main revision this transaction's changes get. */
    readonly revision: number,
  ) {
    assertRevisionNumber(revision, 'write revision');
    assert(revision > state.currentRevision, () => `write revision ${revision} is not after the current revision ${state.currentRevision}`);
  }

  /** The revision reads in this transaction see: its own once it has changed something, else the store's. */
  get viewRevision(): number {
    return this.events.length > 0 ? this.revision : this.state.currentRevision;
  }

  get compactedRevision(): number {
    return this.state.compactedRevision;
  }

  get changeCount(): number {
    return this.events.length;
  }

  range(options: RangeOptions): RangeResult {
    this.assertOpen();
    return executeRange(this.state, options, this.viewRevision);
  }

  put(key: Uint8Array, value: Uint8Array, options: PutOptions = {}): PutResult {
    this.assertOpen();
    const leaseId = options.leaseId ?? 0;
    checkPut(key, value, leaseId, options);
    const keepsOld = options.ignoreValue === true || options.ignoreLease === true;
    const wantPrev = keepsOld || options.prevKv === true || this.state.eventsWantPrevKv();
    // The key's current state is its newest stored change (the overlay holds this txn's and this turn's writes).
    // Only a put that hands out or keeps the old value reads its record; the others take the key-head cache's
    // summary of it (MvccState.liveHead), which is how a put costs no engine read, as with the in-memory index.
    const old = wantPrev ? this.liveKey(this.state.newestAt(key, MAX_REVISION)) : undefined;
    const prev = old?.record;
    const live: LiveHead | undefined = wantPrev
      ? old && { rev: old.rev, createRevision: old.record.createRevision, version: old.record.version, kvBytes: old.record.key.byteLength + old.record.value.byteLength }
      : this.state.liveHead(key);
    if (keepsOld && live === undefined) throw mvccError('KEY_NOT_FOUND');
    const rev = this.nextRevision();
    const record: StoredRecord = {
      key,
      value: options.ignoreValue === true ? prev!.value : value,
      tombstone: false,
      createRevision: live?.createRevision ?? rev.main,
      modRevision: rev.main,
      version: (live?.version ?? 0) + 1,
      lease: options.ignoreLease === true ? prev!.lease : leaseId,
      prev: live?.rev,
    };
    // The batch first: if it refuses the record, nothing else has moved and the txn stays usable.
    this.state.putRecord(this.batch, rev, record);
    this.state.countLive(live === undefined ? 1 : 0, record.key.byteLength + record.value.byteLength - (live?.kvBytes ?? 0));
    const prevKv = prev === undefined ? undefined : recordKeyValue(prev);
    this.events.push({ type: 'PUT', kv: recordKeyValue(record), prevKv });
    return { revision: this.revision, prevKv: options.prevKv === true ? prevKv : undefined };
  }

  /** Deletes the live keys in etcd's (key, range_end) interval. */
  deleteRange(key: Uint8Array, rangeEnd?: Uint8Array, options: { prevKv?: boolean | undefined } = {}): DeleteRangeResult {
    this.assertOpen();
    if (key.length === 0) throw mvccError('EMPTY_KEY');
    // Collected first: the tombstones go into the overlay the walk reads.
    const victims: LiveKey[] = [];
    this.state.forEachKeyAt(keyInterval(key, rangeEnd), MAX_REVISION, (head) => {
      const live = this.liveKey(head);
      if (live !== undefined) victims.push(live);
    });
    const wantPrev = options.prevKv === true || this.state.eventsWantPrevKv();
    const prevKvs: KeyValue[] = [];
    for (const victim of victims) {
      const prevKv = this.deleteKey(victim, wantPrev);
      if (prevKv !== undefined) prevKvs.push(prevKv);
    }
    const revision = this.events.length > 0 ? this.revision : this.state.currentRevision;
    return { deleted: victims.length, revision, prevKvs: options.prevKv === true ? prevKvs : [] };
  }

  /** Publishes the transaction: the new revision and meta go into the batch. Returns the events for live watchers. */
  end(): WriteResult {
    this.assertOpen();
    this.open = false;
    this.state.writing = false;
    if (this.events.length === 0) return { revision: this.state.currentRevision, events: [] };
    this.state.currentRevision = this.revision;
    this.state.persistMeta(this.batch);
    return { revision: this.revision, events: this.events };
  }

  /** Deletes a live key; returns its previous pair if `wantPrev`. */
  private deleteKey(live: LiveKey, wantPrev: boolean): KeyValue | undefined {
    const { key } = live.record;
    const rev = this.nextRevision();
    const record: StoredRecord = {
      key,
      value: new Uint8Array(0),
      tombstone: true,
      createRevision: 0,
      modRevision: rev.main,
      version: 0,
      lease: 0,
      prev: live.rev,
    };
    this.state.putRecord(this.batch, rev, record);
    this.state.countLive(-1, -(key.byteLength + live.record.value.byteLength));
    const prevKv = wantPrev ? recordKeyValue(live.record) : undefined;
    this.events.push({ type: 'DELETE', kv: tombstoneKeyValue(key, rev.main), prevKv });
    return prevKv;
  }

  /** The decoded change a lookup found, if the key is live there. */
  private liveKey(head: VersionHead | undefined): LiveKey | undefined {
    if (head === undefined) return undefined;
    const record = this.state.recordOf(head);
    return record.tombstone ? undefined : { record, rev: dataKeyRevision(head.dataKey, head.prefixBytes) };
  }

  private nextRevision(): { main: number; sub: number } {
    assert(this.events.length <= MAX_SUB_REVISION, 'too many changes in one write transaction');
    return { main: this.revision, sub: this.events.length };
  }

  private assertOpen(): void {
    assert(this.open, 'write transaction already ended');
  }
}

/** etcd's checkPutRequest, minus what the lease owner checks. */
function checkPut(key: Uint8Array, value: Uint8Array, leaseId: number, options: PutOptions): void {
  if (key.length === 0) throw mvccError('EMPTY_KEY');
  if (options.ignoreValue === true && value.length !== 0) throw mvccError('VALUE_PROVIDED');
  if (options.ignoreLease === true && leaseId !== 0) throw mvccError('LEASE_PROVIDED');
  assert(Number.isSafeInteger(leaseId) && leaseId >= 0, () => `lease id must be a safe non-negative integer, got ${leaseId}`);
}

/** What etcd puts in a DELETE event: the key and, patched in, the mod revision. */
export function tombstoneKeyValue(key: Uint8Array, main: number): KeyValue {
  return { key, value: new Uint8Array(0), createRevision: 0, modRevision: main, version: 0, lease: 0 };
}
