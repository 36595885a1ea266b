import { TesseraError, type Clock } from '../base/index.js';
import { encodeCommand } from './commands.js';
import type { LeaseTable } from './leases.js';
import type { Store } from './store.js';

/** How often the leader records the remaining time of every lease, so a new leader continues from it. */
export const DEFAULT_LEASE_CHECKPOINT_INTERVAL_MS = 5_000;
/** Most expired leases revoked per tick, so a mass expiry does not flood one loop turn. */
export const MAX_REVOKES_PER_TICK = 64;
/** Most leases one checkpoint command carries. */
export const MAX_CHECKPOINTS_PER_COMMAND = 1_000;
/** A revoke that has not applied after this long is proposed again. */
export const REVOKE_RETRY_MS = 3_000;

export interface LeaseKeeperOptions {
  readonly store: Store;
  readonly rangeId: number;
  readonly leases: () => LeaseTable;
  readonly clock: Clock;
  readonly requestIdPrefix: string;
  readonly checkpointIntervalMs: number;
}

/**
 * The leader's side of leases (etcd's lessor): it keeps each lease's
 * deadline on its own monotonic clock, renews it on keep-alive, and proposes
 * the revocation of expired leases (which deletes their keys). Deadlines are
 * not replicated; a new leader starts each lease from the remaining time the
 * last checkpoint recorded (or its full TTL), so a lease's remaining time
 * survives a leader change. Followers refuse keep-alives with NOT_LEADER.
 */
export class LeaseKeeper {
  private readonly deadlines = new Map<number, number>();
  private readonly revoking = new Map<number, number>();
  private leaderTerm = -1;
  private lastCheckpointMs = 0;
  private seq = 0;

  constructor(private readonly o: LeaseKeeperOptions) {}

  private isLeader(): { leader: boolean; term: number } {
    const raft = this.o.store.replica(this.o.rangeId)?.raw.raft;
    return { leader: raft?.state === 'leader', term: raft?.term ?? 0 };
  }

  /** Called on every store tick. */
  tick(): void {
    const { leader, term } = this.isLeader();
    if (!leader) {
      this.leaderTerm = -1;
      this.deadlines.clear();
      this.revoking.clear();
      return;
    }
    const now = this.o.clock.nowMs();
    this.takeOver(term, now);
    this.syncDeadlines(now);
    this.revokeExpired(now);
    if (now - this.lastCheckpointMs >= this.o.checkpointIntervalMs) this.checkpoint(now);
  }

  /** Renews a lease; returns its TTL in seconds. */
  keepAlive(id: number): number {
    const record = this.o.leases().get(id);
    if (record === undefined) throw new TesseraError('LEASE_NOT_FOUND', 'etcdserver: requested lease not found');
    const { leader, term } = this.isLeader();
    if (!leader) throw new TesseraError('NOT_LEADER', 'etcdserver: not leader');
    const now = this.o.clock.nowMs();
    // A leader elected since the last tick takes the leases over now, before renewing one.
    this.takeOver(term, now);
    this.syncDeadlines(now);
    this.deadlines.set(id, now + record.ttlSeconds * 1000);
    return record.ttlSeconds;
  }

  /** On the first tick (or keep-alive) of a new leadership, deadlines start afresh from the checkpoints. */
  private takeOver(term: number, now: number): void {
    if (term === this.leaderTerm) return;
    this.leaderTerm = term;
    this.deadlines.clear();
    this.lastCheckpointMs = now;
  }

  /** Remaining seconds of a lease, as the leader sees it (or the last checkpoint elsewhere). */
  remainingSeconds(id: number): number | undefined {
    const record = this.o.leases().get(id);
    if (record === undefined) return undefined;
    const deadline = this.deadlines.get(id);
    const remainingMs = deadline !== undefined ? deadline - this.o.clock.nowMs() : (record.remainingMs ?? record.ttlSeconds * 1000);
    return Math.max(0, Math.ceil(remainingMs / 1000));
  }

  private syncDeadlines(now: number): void {
    const table = this.o.leases();
    for (const id of table.ids()) {
      if (this.deadlines.has(id)) continue;
      const record = table.get(id);
      if (record !== undefined) this.deadlines.set(id, now + (record.remainingMs ?? record.ttlSeconds * 1000));
    }
    for (const id of [...this.deadlines.keys()]) if (!table.has(id)) this.deadlines.delete(id);
  }

  private revokeExpired(now: number): void {
    let proposed = 0;
    for (const [id, deadline] of this.deadlines) {
      if (deadline > now || proposed >= MAX_REVOKES_PER_TICK) continue;
      const since = this.revoking.get(id);
      if (since !== undefined && now - since < REVOKE_RETRY_MS) continue;
      this.revoking.set(id, now);
      proposed++;
      const requestId = `${this.o.requestIdPrefix}:revoke:${++this.seq}`;
      this.o.store.propose(this.o.rangeId, requestId, encodeCommand({ kind: 'lease-revoke', requestId, id }), () => this.revoking.delete(id));
    }
  }

  private checkpoint(now: number): void {
    this.lastCheckpointMs = now;
    const checkpoints = [...this.deadlines].slice(0, MAX_CHECKPOINTS_PER_COMMAND).map(([id, deadline]) => ({ id, remainingMs: Math.max(0, deadline - now) }));
    if (checkpoints.length === 0) return;
    const requestId = `${this.o.requestIdPrefix}:checkpoint:${++this.seq}`;
    this.o.store.propose(this.o.rangeId, requestId, encodeCommand({ kind: 'lease-checkpoint', requestId, checkpoints }), () => {});
  }
}
