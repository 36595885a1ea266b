import { TesseraError } from '../base/index.js';
import {
  encodeCommand,
  type CommandResult,
  type MvccStateMachine,
  type ProposalOutcome,
  type Store,
  type LeaseKeeper,
  MAX_LEASE_TTL_SECONDS,
} from '../kv/index.js';
import {
  MVCC_ERRORS,
  MvccError,
  type MvccErrorCode,
  type RangeOptions,
  type RangeResult,
  type TxnRequest,
  type TxnResponse,
  isTxnReadOnly,
  isTxnSerializable,
} from '../mvcc/index.js';
import type { StorageEngine } from '../storage/engine.js';

/** How long a proposal or linearizable read may wait before it fails with an unknown outcome. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 7_000;
/** How long a proposal dropped for want of a leader waits before it is proposed again. */
export const PROPOSAL_RETRY_MS = 25;

export interface KvApiOptions {
  readonly store: Store;
  readonly stateMachine: MvccStateMachine;
  readonly rangeId: number;
  readonly requestTimeoutMs: number;
  /** Unique across restarts of this node (request ids must never repeat). */
  readonly requestIdPrefix: string;
  /** The leader-side lease clock; the node ticks it with the store. */
  readonly leaseKeeper?: LeaseKeeper;
  /** The node's storage engine, asked for its size (Maintenance.Status); absent: the size is 0. */
  readonly engine?: Pick<StorageEngine, 'sizeBytes'>;
}

/**
 * The key-value operations the client APIs (etcd gRPC, the native protocol)
 * serve, on one node: writes go through Raft, reads are linearizable unless
 * serializable is asked for. Errors: MvccError (compacted, future revision,
 * …) for refused requests, TesseraError 'NOT_LEADER' when the proposal was
 * certainly not accepted, and 'TIMEOUT' when the outcome is unknown.
 */
export class KvApi {
  private seq = 0;

  constructor(private readonly o: KvApiOptions) {}

  get store(): Store {
    return this.o.store;
  }

  currentRevision(): number {
    return this.o.stateMachine.mvcc.currentRevision;
  }

  compactedRevision(): number {
    return this.o.stateMachine.mvcc.compactedRevision;
  }

  /** etcd's HashKV: a CRC-32C of the key space's history up to `revision` (0 = current). */
  hashKV(revision: number): { hash: number; revision: number; compactRevision: number } {
    const h = this.o.stateMachine.mvcc.hashKV(revision);
    return { hash: h.hash, revision: h.revision, compactRevision: h.compactRevision };
  }

  /** Bytes the node's storage engine holds (etcd's dbSize); 0 when it cannot tell. */
  dbSizeBytes(): number {
    return this.o.engine?.sizeBytes?.() ?? 0;
  }

  raftTerm(): number {
    return this.o.store.replica(this.o.rangeId)?.raw.raft.term ?? 0;
  }

  async range(options: RangeOptions, serializable: boolean): Promise<RangeResult> {
    if (!serializable) await this.readBarrier();
    return this.o.stateMachine.mvcc.range(options);
  }

  /**
   * etcd's Txn. One that only reads (every op on both branches a Range,
   * nested ones included) is served as a read, as etcd serves it: after a
   * read barrier unless every Range is serializable, then on the local store
   * at its current revision, never through the log. It answers what the
   * proposed txn would (the same executeTxn over the same state).
   */
  async txn(request: TxnRequest): Promise<TxnResponse> {
    if (isTxnReadOnly(request)) {
      if (!isTxnSerializable(request)) await this.readBarrier();
      return this.o.stateMachine.mvcc.readTxn(request);
    }
    const result = await this.propose((requestId) => encodeCommand({ kind: 'txn', requestId, txn: request }));
    if (result.kind === 'txn') return result.response;
    throw unexpected(result);
  }

  async compact(revision: number): Promise<number> {
    const result = await this.propose((requestId) => encodeCommand({ kind: 'compact', requestId, revision }));
    if (result.kind === 'compact') return result.revision;
    throw unexpected(result);
  }

  /** Grants a lease; `id` 0 lets the node choose one. Returns the id and TTL. */
  async leaseGrant(id: number, ttlSeconds: number): Promise<{ id: number; ttlSeconds: number; revision: number }> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) throw new TesseraError('INVALID_ARGUMENT', 'etcdserver: lease TTL must be positive');
    if (ttlSeconds > MAX_LEASE_TTL_SECONDS) throw new TesseraError('INVALID_ARGUMENT', 'etcdserver: too large lease TTL');
    const leaseId = id !== 0 ? id : this.newLeaseId();
    const result = await this.propose((requestId) => encodeCommand({ kind: 'lease-grant', requestId, id: leaseId, ttlSeconds }));
    if (result.kind === 'lease-grant') return { id: result.id, ttlSeconds: result.ttlSeconds, revision: result.revision };
    throw unexpected(result);
  }

  async leaseRevoke(id: number): Promise<number> {
    const result = await this.propose((requestId) => encodeCommand({ kind: 'lease-revoke', requestId, id }));
    if (result.kind === 'lease-revoke') return result.revision;
    throw unexpected(result);
  }

  /** Renews a lease on the leader; returns its TTL. Followers answer NOT_LEADER. */
  leaseKeepAlive(id: number): number {
    if (this.o.leaseKeeper === undefined) throw new TesseraError('NOT_LEADER', 'etcdserver: not leader');
    return this.o.leaseKeeper.keepAlive(id);
  }

  /** TTL, remaining seconds and attached keys of a lease, or undefined if it does not exist. */
  leaseTimeToLive(id: number): { ttlSeconds: number; remainingSeconds: number; keys: string[] } | undefined {
    const record = this.o.stateMachine.leases.get(id);
    if (record === undefined) return undefined;
    const remaining = this.o.leaseKeeper?.remainingSeconds(id) ?? record.ttlSeconds;
    return { ttlSeconds: record.ttlSeconds, remainingSeconds: remaining, keys: this.o.stateMachine.leases.keysOf(id) };
  }

  leaseIds(): number[] {
    return this.o.stateMachine.leases.ids();
  }

  /** A fresh lease id: positive, below 2^53, unlikely to collide (a collision is refused as LEASE_EXIST). */
  private newLeaseId(): number {
    const salt = [...this.o.requestIdPrefix].reduce((h, c) => (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0, 7);
    return ((salt & 0x1fffff) * 0x100000000 + ((++this.seq * 2654435761) >>> 0)) || 1;
  }

  /** Resolves once this node may serve a linearizable read (ReadIndex). */
  readBarrier(): Promise<void> {
    return this.withTimeout('read', (resolve, reject) =>
      this.o.store.linearizableRead(this.o.rangeId, (error) => (error === undefined ? resolve() : reject(error))),
    );
  }

  /**
   * Proposes a command and waits for its result. A proposal dropped because
   * no leader is known (an election is under way) or leadership is being
   * handed over certainly did not happen, so it is proposed again until the
   * deadline, as etcd's server waits out an election; if the deadline ends
   * with every attempt dropped, the answer is a definite "no leader", and
   * only a proposal still in flight then has an unknown outcome.
   */
  private propose(encode: (requestId: string) => Uint8Array): Promise<CommandResult> {
    const requestId = `${this.o.requestIdPrefix}:${++this.seq}`;
    const data = encode(requestId);
    const deadlineMs = performance.now() + this.o.requestTimeoutMs;
    return new Promise<CommandResult>((resolve, reject) => {
      let settled = false;
      let inFlight = false;
      let retry: NodeJS.Timeout | undefined;
      let lastDrop: TesseraError | undefined;
      const settle = (f: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(retry);
        f();
      };
      const attempt = (): void => {
        inFlight = true;
        this.o.store.propose(this.o.rangeId, requestId, data, (outcome: ProposalOutcome) => {
          inFlight = false;
          if (outcome.kind === 'dropped') {
            lastDrop = new TesseraError('NOT_LEADER', outcome.error.message, { cause: outcome.error });
            const transient = outcome.reason === 'no-leader' || outcome.reason === 'leader-transfer-in-progress';
            if (transient && performance.now() + PROPOSAL_RETRY_MS < deadlineMs) retry = setTimeout(attempt, PROPOSAL_RETRY_MS);
            else settle(() => reject(lastDrop));
            return;
          }
          const result = outcome.result as CommandResult;
          settle(() => (result.kind === 'error' ? reject(commandError(result.code, result.message)) : resolve(result)));
        });
      };
      const timer = setTimeout(() => {
        if (inFlight) this.o.store.abandon(requestId);
        // The outcome is unknown, not failed, if an attempt may still commit.
        settle(() => reject(inFlight || lastDrop === undefined ? new TesseraError('TIMEOUT', `proposal timed out after ${this.o.requestTimeoutMs} ms; its outcome is unknown`) : lastDrop));
      }, this.o.requestTimeoutMs);
      attempt();
    });
  }

  private withTimeout<T>(what: string, start: (resolve: (v: T) => void, reject: (e: unknown) => void) => void, onTimeout?: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        onTimeout?.();
        // The outcome is unknown, not failed: the command may still commit.
        reject(new TesseraError('TIMEOUT', `${what} timed out after ${this.o.requestTimeoutMs} ms; its outcome is unknown`));
      }, this.o.requestTimeoutMs);
      start(
        (v) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(v);
        },
        (e) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }
}

/** A refused command: MVCC's own codes keep their etcd statuses; lease codes get theirs. */
function commandError(code: string, message: string): Error {
  if (Object.hasOwn(MVCC_ERRORS, code)) return new MvccError(code as MvccErrorCode);
  if (code === 'LEASE_EXIST') return new TesseraError('ALREADY_EXISTS', message);
  return new TesseraError('INVALID_ARGUMENT', message);
}

function unexpected(result: CommandResult): Error {
  if (result.kind === 'duplicate') return new TesseraError('TIMEOUT', 'request applied twice; the first outcome is unknown');
  return new TesseraError('INVALID_ARGUMENT', `unexpected command result ${result.kind}`);
}
