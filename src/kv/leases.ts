import { assert } from '../base/index.js';
import type { MvccEvent, MvccStore } from '../mvcc/index.js';
import { toKeyString } from '../mvcc/bytes.js';
import type { ReadView, WriteBatch } from '../storage/engine.js';
import { decodeJson, encodeJson } from './codec.js';
import { type RangeId, keys, readU64 } from './keys.js';

/** etcd's upper bound on a lease TTL (seconds). */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;

export interface LeaseRecord {
  readonly id: number;
  readonly ttlSeconds: number;
  /** Remaining time the last leader checkpointed; a new leader starts the lease from it. */
  readonly remainingMs?: number;
}

interface Lease {
  record: LeaseRecord;
  readonly keys: Set<string>;
}

/**
 * The replicated lease table of a range (etcd's lessor state): leases and the
 * keys attached to them. Changes happen only when commands are applied, so
 * every replica holds the same table. Records live under the range's 'n'
 * keys, inside the part of the key space that snapshots copy; attachments
 * are rebuilt from the MVCC key space at open and kept current from the
 * events of every applied transaction.
 */
export class LeaseTable {
  private readonly leases = new Map<number, Lease>();
  private readonly keyLease = new Map<string, number>();

  constructor(
    private readonly rangeId: RangeId,
    view: ReadView,
    mvcc: MvccStore,
    /**
     * Whether lease records live in this range (the metadata range). Other
     * ranges keep only which of their keys carry which lease id, for the
     * lease's revocation to find them (issue 13: keys and leases in
     * different ranges).
     */
    private readonly holdsRecords = true,
  ) {
    for (const kv of view.scan({ start: keys.leaseStart(rangeId), end: keys.leaseEnd(rangeId) })) {
      const record = decodeJson<LeaseRecord>(kv.value, 'lease record');
      assert(record.id === readU64(kv.key, 10), 'lease record key and id agree');
      this.leases.set(record.id, { record, keys: new Set() });
    }
    const all = mvcc.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) });
    for (const kv of all.kvs) if (kv.lease !== 0) this.attach(toKeyString(kv.key), kv.lease);
  }

  has(id: number): boolean {
    return this.leases.has(id);
  }

  get(id: number): LeaseRecord | undefined {
    return this.leases.get(id)?.record;
  }

  ids(): number[] {
    return [...this.leases.keys()].sort((a, b) => a - b);
  }

  /** Keys attached to a lease, as key strings (see mvcc toKeyString), sorted. */
  keysOf(id: number): string[] {
    return [...(this.leases.get(id)?.keys ?? [])].sort();
  }

  grant(batch: WriteBatch, record: LeaseRecord): void {
    assert(!this.leases.has(record.id), () => `lease ${record.id} granted twice`);
    this.leases.set(record.id, { record, keys: new Set() });
    batch.put(keys.lease(this.rangeId, record.id), encodeJson(record));
  }

  /** Forgets a lease; the caller deletes its keys in the same batch first. */
  remove(batch: WriteBatch, id: number): void {
    const lease = this.leases.get(id);
    if (lease === undefined) return;
    for (const k of lease.keys) this.keyLease.delete(k);
    this.leases.delete(id);
    batch.delete(keys.lease(this.rangeId, id));
  }

  checkpoint(batch: WriteBatch, id: number, remainingMs: number): void {
    const lease = this.leases.get(id);
    if (lease === undefined) return;
    lease.record = { ...lease.record, remainingMs };
    batch.put(keys.lease(this.rangeId, id), encodeJson(lease.record));
  }

  /** Forgets the attachments of keys from `splitKey` on: a split gave them to another range. */
  dropKeysFrom(splitKey: Uint8Array): void {
    const from = toKeyString(splitKey);
    for (const [k, id] of [...this.keyLease]) if (k >= from) this.detach(k, id);
  }

  /** Keeps attachments current from one applied transaction's changes. */
  onEvents(events: readonly MvccEvent[]): void {
    for (const e of events) {
      const now = e.type === 'PUT' ? e.kv.lease : 0;
      // No key has a lease and this change attaches none: nothing to look up.
      if (now === 0 && this.keyLease.size === 0) continue;
      const k = toKeyString(e.kv.key);
      const old = this.keyLease.get(k);
      if (old === now) continue;
      if (old !== undefined) this.detach(k, old);
      if (now !== 0) this.attach(k, now);
    }
  }

  private attach(k: string, id: number): void {
    let lease = this.leases.get(id);
    if (lease === undefined) {
      // A key may carry the id of a lease revoked before it was written (cannot happen through
      // Txn, which checks leases); then it is simply not attached. Where no records are kept,
      // the attachment is all there is.
      if (this.holdsRecords) return;
      this.leases.set(id, (lease = { record: { id, ttlSeconds: 0 }, keys: new Set() }));
    }
    lease.keys.add(k);
    this.keyLease.set(k, id);
  }

  private detach(k: string, id: number): void {
    const lease = this.leases.get(id);
    lease?.keys.delete(k);
    this.keyLease.delete(k);
    if (!this.holdsRecords && lease?.keys.size === 0) this.leases.delete(id);
  }

  /** Whether any of this range's keys carries a lease (cheap: the lease sweep asks it of every range). */
  hasAttached(): boolean {
    return this.keyLease.size > 0;
  }

  /** The lease ids this range's keys carry (where no records are kept: every id it knows). */
  attachedIds(): number[] {
    return [...this.leases.entries()].filter(([, l]) => l.keys.size > 0).map(([id]) => id).sort((a, b) => a - b);
  }
}
