import { TesseraError, isTesseraError, type Timers, unreachable } from '../base/index.js';
import {
  type CommandResult,
  encodeCommand,
  type LeaseKeeper,
  type LoadMeter,
  MAX_LEASE_TTL_SECONDS,
  PROPOSAL_RETRY_MS,
  type MvccStateMachine,
  RequestRunner,
  type RangeId,
  type RoutedSpan,
  type Router,
  type Store,
} from '../kv/index.js';
import {
  isMvccErrorCode,
  type RangeOptions,
  type RangeResult,
  type TxnRequest,
  type TxnResponse,
  isTxnReadOnly,
  isTxnSerializable,
  type KeyInterval,
  keyInterval,
  mergeRangeResults,
  executeTxn,
  type TxnTarget,
  txnIntervals,
  compareBytes,
  concatBytes,
} from '../mvcc/index.js';
import type { StorageEngine } from '../storage/engine.js';
import { realTimers } from './timers.js';

/** How long a proposal or linearizable read may wait before it fails with an unknown outcome. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 7_000;

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
  /** Deadlines and retries run on these; default the process's own (realTimers). */
  readonly timers?: Timers;
  /** The node's request path (KvNode.requests); default one of KvApi's own on these options. */
  readonly requests?: RequestRunner;
  /** Counts each request this API serves (KvNode.load): a range's qps in /ranges. */
  readonly load?: LoadMeter;
  /** The node's ranges (KvNode): requests go to the range that holds their keys. Absent: every request goes to `rangeId`. */
  readonly ranges?: { readonly router: Router; stateMachineOf(rangeId: RangeId): MvccStateMachine };
  /** Told of each range a request reached and the keys it asked for (the split queue samples them). */
  readonly onRequest?: (rangeId: RangeId, interval: KeyInterval) => void;
}

/** Times a request routed before a split that applied first is routed again before the refusal reaches the client. */
export const MAX_REROUTES = 8;

/**
 * The key-value operations the client APIs (etcd gRPC, the native protocol)
 * serve, on one node: writes go through Raft, reads are linearizable unless
 * serializable is asked for. Errors are TesseraErrors: MVCC's refusal codes
 * (compacted, future revision, …) for refused requests, 'NOT_LEADER' when the
 * proposal was certainly not accepted, and 'TIMEOUT' when the outcome is unknown.
 */
export class KvApi {
  private seq = 0;
  private readonly requests: RequestRunner;

  private readonly timers: Timers;

  constructor(private readonly o: KvApiOptions) {
    this.timers = o.timers ?? realTimers;
    this.requests = o.requests ?? new RequestRunner({ ...o, timers: this.timers });
  }

  get store(): Store {
    return this.o.store;
  }

  /** The newest revision of any range on this node. */
  currentRevision(): number {
    const ranges = this.o.ranges;
    if (ranges === undefined) return this.o.stateMachine.mvcc.currentRevision;
    let rev = 0;
    for (const r of ranges.router.list()) rev = Math.max(rev, ranges.stateMachineOf(r.rangeId).mvcc.currentRevision);
    return rev;
  }

  /** The highest revision any range on this node has compacted at (compaction applies to every range). */
  compactedRevision(): number {
    const ranges = this.o.ranges;
    if (ranges === undefined) return this.o.stateMachine.mvcc.compactedRevision;
    let rev = 0;
    for (const r of ranges.router.list()) rev = Math.max(rev, ranges.stateMachineOf(r.rangeId).mvcc.compactedRevision);
    return rev;
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
    this.o.load?.record();
    const interval = keyInterval(options.key, options.rangeEnd);
    for (let attempt = 0; ; attempt++) {
      const spans = await this.whenRoutable(() => this.route(interval));
      let revision: number | undefined;
      try {
        if (!serializable) await Promise.all(spans.map((s) => this.readBarrier(s.rangeId)));
        revision = await this.readRevision(spans, options.revision ?? 0, serializable);
      } catch (error) {
        // A range frozen or merged away while the barrier or a close waited (ADR 0009 §6): route again.
        if (isTesseraError(error, 'RANGE_MISMATCH') && attempt < MAX_REROUTES) continue;
        throw error;
      }
      // A split may have applied while the barriers waited: the parts must be read by the ranges that hold them now.
      if (attempt < MAX_REROUTES && !sameRoute(spans, this.route(interval))) continue;
      // A part that reaches the end of the key space is etcd's "from key on" (an empty end), not a single key.
      for (const s of spans) this.o.onRequest?.(s.rangeId, spans.length === 1 ? interval : { start: s.start, end: s.end ?? new Uint8Array(0) });
      const at = revision === undefined ? options : { ...options, revision };
      if (spans.length === 1) return this.machine(spans[0]!.rangeId).mvcc.range(at);
      const parts = spans.map((s) => this.machine(s.rangeId).mvcc.range({ ...at, key: s.start, rangeEnd: s.end ?? ALL_FROM_KEY }));
      return mergeRangeResults(parts, options);
    }
  }

  /**
   * The one revision a read over `spans` is served at (ADR 0009 §4), with
   * every range closed at it here, so each part holds exactly the writes at
   * or below it; undefined for a read of one range at its current revision,
   * as before ranges. An asked-for revision above every revision this node
   * has applied is etcd's future revision. Over many ranges without one, a
   * linearizable read takes the highest current revision of the ranges
   * after their read barriers (every write acknowledged before the read is
   * at or below it), a serializable one the lowest (no range waits).
   */
  private async readRevision(spans: readonly RoutedSpan[], requested: number, serializable: boolean): Promise<number | undefined> {
    if (requested <= 0 && spans.length === 1) return undefined;
    const currents = spans.map((s) => this.machine(s.rangeId).mvcc.currentRevision);
    if (requested > 0 && requested > this.currentRevision()) throw new TesseraError('FUTURE_REVISION', 'mvcc: required revision is a future revision');
    const revision = requested > 0 ? requested : serializable ? Math.min(...currents) : Math.max(...currents);
    await Promise.all(spans.map((s) => this.closeAt(s.rangeId, revision)));
    return revision;
  }

  /**
   * Waits until range `rangeId` has applied everything at or below
   * `revision` here: at once if its revision is there, else after a close
   * command, whose stamp is above every revision handed out before it.
   */
  private async closeAt(rangeId: RangeId, revision: number): Promise<void> {
    if (this.machine(rangeId).mvcc.currentRevision >= revision) return;
    const result = await this.propose((requestId) => encodeCommand({ kind: 'close', requestId }), rangeId);
    if (result.kind !== 'close') throw unexpected(result);
    // Only a store that stamps no revisions (one without a TSO) closes nothing: it has one range, and never gets here.
    if (this.machine(rangeId).mvcc.currentRevision < revision) throw new TesseraError('RANGE_UNAVAILABLE', `range ${rangeId} did not close at revision ${revision}`);
  }

  /**
   * `route()`'s answer once this node holds every range it needs: until a
   * joining node's first snapshot, or the right half of a split this node
   * learned of from a snapshot, some keys have no range here yet
   * (RANGE_UNAVAILABLE). That passes, like an election: asked again every
   * PROPOSAL_RETRY_MS until the request's deadline.
   */
  private async whenRoutable<T>(route: () => T): Promise<T> {
    const deadlineMs = this.timers.nowMs() + this.o.requestTimeoutMs;
    for (;;) {
      try {
        return route();
      } catch (error) {
        if (!isTesseraError(error, 'RANGE_UNAVAILABLE') || this.timers.nowMs() + PROPOSAL_RETRY_MS >= deadlineMs) throw error;
        await new Promise<void>((resolve) => this.timers.after(PROPOSAL_RETRY_MS, resolve));
      }
    }
  }

  /** The ranges holding an interval's keys, in key order (one range, `rangeId`, without a router). */
  private route(interval: KeyInterval): RoutedSpan[] {
    const router = this.o.ranges?.router;
    if (router === undefined) return [{ rangeId: this.o.rangeId, start: interval.start, end: interval.end }];
    return router.over(interval);
  }

  private machine(rangeId: RangeId): MvccStateMachine {
    return this.o.ranges?.stateMachineOf(rangeId) ?? this.o.stateMachine;
  }

  /**
   * Lease records live on the metadata range (`rangeId`); a put with a
   * lease to another range is checked here, as that range cannot: the local
   * table first, and after a read barrier on the metadata range if the
   * lease is not there yet (it may have been granted through another node).
   */
  private async checkLeases(request: TxnRequest): Promise<void> {
    const ids = leaseIdsOf(request);
    if (ids.length === 0) return;
    const leases = this.o.stateMachine.leases;
    if (ids.every((id) => leases.has(id))) return;
    await this.readBarrier(this.o.rangeId);
    if (!ids.every((id) => this.o.stateMachine.leases.has(id))) throw new TesseraError('LEASE_NOT_FOUND', 'etcdserver: requested lease not found');
  }

  /** The one range that holds every key a txn names (its `txnIntervals`), or CROSS_RANGE. */
  private rangeOfTxn(intervals: readonly KeyInterval[]): RangeId {
    if (this.o.ranges === undefined) return this.o.rangeId;
    let id: RangeId | undefined;
    for (const interval of intervals) {
      for (const span of this.route(interval)) {
        if (id !== undefined && span.rangeId !== id) {
          throw new TesseraError('CROSS_RANGE', 'the request touches keys in more than one range; cross-range writes need distributed transactions (issue 14)');
        }
        id = span.rangeId;
      }
    }
    return id ?? this.o.rangeId;
  }

  /**
   * etcd's Txn. One that only reads (every op on both branches a Range,
   * nested ones included) is served as a read, as etcd serves it: after a
   * read barrier unless every Range is serializable, then on the local store
   * at its current revision, never through the log. It answers what the
   * proposed txn would (the same executeTxn over the same state).
   */
  async txn(request: TxnRequest): Promise<TxnResponse> {
    this.o.load?.record();
    const intervals = txnIntervals(request);
    if (isTxnReadOnly(request)) return this.readOnlyTxn(request, intervals);
    for (let attempt = 0; ; attempt++) {
      const rangeId = await this.whenRoutable(() => this.rangeOfTxn(intervals));
      // One request over the whole span of its keys: a load split then avoids cutting keys that txns write together.
      if (this.o.onRequest !== undefined && attempt === 0 && intervals.length > 0) this.o.onRequest(rangeId, coveringInterval(intervals));
      if (rangeId !== this.o.rangeId) await this.checkLeases(request);
      try {
        const result = await this.propose((requestId) => encodeCommand({ kind: 'txn', requestId, txn: request }), rangeId);
        if (result.kind === 'txn') return result.response;
        throw unexpected(result);
      } catch (error) {
        // The range split before the txn applied: nothing was written; route it again.
        if (!isTesseraError(error, 'RANGE_MISMATCH') || attempt >= MAX_REROUTES) throw error;
      }
    }
  }

  /**
   * A Txn that only reads, served as a read (see `txn`). Over one range: on
   * its store at its current revision. Over many: at one revision, chosen
   * and closed at as for a Range over many ranges (`readRevision`), every
   * compare and Range of the txn reading each range's part at it.
   */
  private async readOnlyTxn(request: TxnRequest, intervals: readonly KeyInterval[]): Promise<TxnResponse> {
    const serializable = isTxnSerializable(request);
    for (let attempt = 0; ; attempt++) {
      const spans = await this.whenRoutable(() => this.txnSpans(intervals));
      if (this.o.onRequest !== undefined && attempt === 0 && intervals.length > 0) this.o.onRequest(spans[0]!.rangeId, coveringInterval(intervals));
      let revision: number | undefined;
      try {
        if (!serializable) await Promise.all(spans.map((s) => this.readBarrier(s.rangeId)));
        revision = spans.length === 1 ? undefined : await this.readRevision(spans, 0, serializable);
      } catch (error) {
        // A range frozen or merged away while the barrier or a close waited (ADR 0009 §6): route again.
        if (isTesseraError(error, 'RANGE_MISMATCH') && attempt < MAX_REROUTES) continue;
        throw error;
      }
      if (attempt < MAX_REROUTES && !sameRanges(spans, this.txnSpans(intervals))) continue;
      if (revision === undefined) return this.machine(spans[0]!.rangeId).mvcc.readTxn(request);
      return executeTxn(this.readView(revision), request);
    }
  }

  /** One span per range a txn's intervals reach, in range id order (what `readRevision` needs of each). */
  private txnSpans(intervals: readonly KeyInterval[]): RoutedSpan[] {
    const byRange = new Map<RangeId, RoutedSpan>();
    for (const i of intervals) for (const s of this.route(i)) if (!byRange.has(s.rangeId)) byRange.set(s.rangeId, s);
    if (byRange.size === 0) return this.route(keyInterval(new Uint8Array(0)));
    return [...byRange.values()].sort((a, b) => a.rangeId - b.rangeId);
  }

  /** The node's ranges as one read-only txn target at `revision`, every range closed at it here. */
  private readView(revision: number): TxnTarget {
    const range = (options: RangeOptions): RangeResult => {
      const at = { ...options, revision: options.revision !== undefined && options.revision > 0 ? options.revision : revision };
      const spans = this.route(keyInterval(options.key, options.rangeEnd));
      if (spans.length === 1) return this.machine(spans[0]!.rangeId).mvcc.range(at);
      return mergeRangeResults(spans.map((s) => this.machine(s.rangeId).mvcc.range({ ...at, key: s.start, rangeEnd: s.end ?? ALL_FROM_KEY })), options);
    };
    return {
      viewRevision: revision,
      compactedRevision: this.compactedRevision(),
      changeCount: 0,
      range,
      put: () => unreachable('a put reached a read-only txn; the caller checks isTxnReadOnly'),
      deleteRange: () => unreachable('a delete reached a read-only txn; the caller checks isTxnReadOnly'),
    };
  }

  /**
   * etcd's Compact, on every range, each closed at `revision` first so that
   * all compact at it (a range that saw no write since is moved up to it):
   * a read below it is then refused in every range alike.
   */
  async compact(revision: number): Promise<number> {
    this.o.load?.record();
    const ranges = this.o.ranges?.router.list() ?? [{ rangeId: this.o.rangeId }];
    if (ranges.length === 1) return this.compactRange(ranges[0]!.rangeId, revision);
    if (revision <= this.compactedRevision()) throw new TesseraError('COMPACTED', 'mvcc: required revision has been compacted');
    if (revision > this.currentRevision()) throw new TesseraError('FUTURE_REVISION', 'mvcc: required revision is a future revision');
    await Promise.all(
      ranges.map(async (r) => {
        await this.closeAt(r.rangeId, revision);
        if (revision > this.machine(r.rangeId).mvcc.compactedRevision) await this.compactRange(r.rangeId, revision);
      }),
    );
    return revision;
  }

  private async compactRange(rangeId: RangeId, revision: number): Promise<number> {
    const result = await this.propose((requestId) => encodeCommand({ kind: 'compact', requestId, revision }), rangeId);
    if (result.kind === 'compact') return result.revision;
    throw unexpected(result);
  }

  /** Grants a lease; `id` 0 lets the node choose one. Returns the id and TTL. */
  async leaseGrant(id: number, ttlSeconds: number): Promise<{ id: number; ttlSeconds: number; revision: number }> {
    this.o.load?.record();
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) throw new TesseraError('INVALID_ARGUMENT', 'etcdserver: lease TTL must be positive');
    if (ttlSeconds > MAX_LEASE_TTL_SECONDS) throw new TesseraError('INVALID_ARGUMENT', 'etcdserver: too large lease TTL');
    const leaseId = id !== 0 ? id : this.newLeaseId();
    const result = await this.propose((requestId) => encodeCommand({ kind: 'lease-grant', requestId, id: leaseId, ttlSeconds }));
    if (result.kind === 'lease-grant') return { id: result.id, ttlSeconds: result.ttlSeconds, revision: result.revision };
    throw unexpected(result);
  }

  async leaseRevoke(id: number): Promise<number> {
    this.o.load?.record();
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
    // The lease's keys in every range on this node (the metadata range holds the record, any range the keys).
    const keys = this.o.stateMachine.leases.keysOf(id);
    for (const r of this.o.ranges?.router.list() ?? []) if (r.rangeId !== this.o.rangeId) keys.push(...this.machine(r.rangeId).leases.keysOf(id));
    return { ttlSeconds: record.ttlSeconds, remainingSeconds: remaining, keys: keys.sort() };
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
  readBarrier(rangeId: RangeId = this.o.rangeId): Promise<void> {
    return new Promise<void>((resolve, reject) => this.requests.readBarrier((error) => (error === undefined ? resolve() : reject(error)), rangeId));
  }

  /** Proposes a command and waits for its result; retries and deadlines are RequestRunner's (src/kv/requests.ts). */
  private propose(encode: (requestId: string) => Uint8Array, rangeId: RangeId = this.o.rangeId): Promise<CommandResult> {
    return new Promise<CommandResult>((resolve, reject) =>
      this.requests.propose(
        encode,
        (outcome) => {
          if (outcome.kind === 'failed') return reject(outcome.error);
          const result = outcome.result as CommandResult;
          if (result.kind === 'error') reject(commandError(result.code, result.message));
          else resolve(result);
        },
        rangeId,
      ),
    );
  }
}

/** A refused command: MVCC's own codes come back as they were thrown on apply; lease codes get theirs. */
function commandError(code: string, message: string): Error {
  if (isMvccErrorCode(code)) return new TesseraError(code, message);
  if (code === 'RANGE_MISMATCH') return new TesseraError('RANGE_MISMATCH', message);
  if (code === 'LEASE_EXIST') return new TesseraError('ALREADY_EXISTS', message);
  return new TesseraError('INVALID_ARGUMENT', message);
}

function unexpected(result: CommandResult): Error {
  if (result.kind === 'duplicate') return new TesseraError('TIMEOUT', 'request applied twice; the first outcome is unknown');
  return new TesseraError('INVALID_ARGUMENT', `unexpected command result ${result.kind}`);
}

/** etcd's range_end "\0": every key from `key` on. */
const ALL_FROM_KEY = new Uint8Array([0]);

function sameRoute(a: readonly RoutedSpan[], b: readonly RoutedSpan[]): boolean {
  return a.length === b.length && a.every((s, i) => s.rangeId === b[i]!.rangeId && sameEnd(s.end, b[i]!.end));
}

function sameRanges(a: readonly RoutedSpan[], b: readonly RoutedSpan[]): boolean {
  return a.length === b.length && a.every((s, i) => s.rangeId === b[i]!.rangeId);
}

function sameEnd(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
}

/** The lease ids a txn's puts carry, nested txns included. */
function leaseIdsOf(request: TxnRequest): number[] {
  const out: number[] = [];
  for (const op of [...request.success, ...request.failure]) {
    if (op.type === 'put' && (op.put.lease ?? 0) !== 0) out.push(op.put.lease as number);
    else if (op.type === 'txn') out.push(...leaseIdsOf(op.txn));
  }
  return out;
}

/** The smallest interval holding every one of `intervals` (etcd's form: an empty end reaches the end of the key space). */
function coveringInterval(intervals: readonly KeyInterval[]): KeyInterval {
  if (intervals.length === 1) return intervals[0]!;
  let start = intervals[0]!.start;
  let end: Uint8Array | undefined;
  let toEnd = false;
  for (const i of intervals) {
    if (compareBytes(i.start, start) < 0) start = i.start;
    // A single key's interval ends just after it.
    const e = i.end === undefined ? concatBytes(i.start, new Uint8Array([0])) : i.end;
    if (e.length === 0) toEnd = true;
    else if (end === undefined || compareBytes(e, end) > 0) end = e;
  }
  return { start, end: toEnd ? new Uint8Array(0) : end };
}
