import { TesseraError, isTesseraError, type Timers, unreachable } from '../base/index.js';
import type { NodeId } from '../raft/index.js';
import {
  type RangeOptions,
  type RangeResult,
  type TxnRequest,
  type TxnResponse,
  isTxnReadOnly,
  isTxnSerializable,
  type KeyInterval,
  type MvccEvent,
  keyInterval,
  mergeRangeResults,
  executeTxn,
  type TxnTarget,
  txnIntervals,
  compareBytes,
  concatBytes,
  type Intent,
  type KeyValue,
  MAX_REVISION,
  type TxnRecord,
} from '../mvcc/index.js';
import type { KvCommand } from './commands.js';
import { isMvccErrorCode } from '../mvcc/errors.js';
import type { StorageEngine } from '../storage/engine.js';
import { encodeCommand } from './commands.js';
import { type EventsPage, FORWARD_GRACE_MS, type ForwardOp, type ForwardValue, type Forwarder, MAX_FEED_WAIT_MS } from './forward.js';

export { FORWARD_GRACE_MS };
import type { RangeId } from './keys.js';
import type { LeaseKeeper } from './lease_keeper.js';
import { MAX_LEASE_TTL_SECONDS } from './leases.js';
import type { LoadMeter } from './load.js';
import type { CommandResult, MvccStateMachine } from './mvcc_state_machine.js';
import { PROPOSAL_RETRY_MS, RequestRunner } from './requests.js';
import type { RoutableRange, RoutedSpan, Router } from './router.js';
import type { Store } from './store.js';
import type { Sabotage } from '../raft/sabotage.js';

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
  /** Deadlines and retries run on these (the server: the process's own; the simulator: virtual time). */
  readonly timers: Timers;
  /** The node's request path (KvNode.requests); default one of KvApi's own on these options. */
  readonly requests?: RequestRunner;
  /** Counts each request this API serves (KvNode.load): a range's qps in /ranges. */
  readonly load?: LoadMeter;
  /**
   * The node's ranges (KvNode): requests go to the range that holds their
   * keys, through the forwarder to a node that holds it when this node holds
   * none (ADR 0012). Absent: every request goes to `rangeId`.
   */
  readonly ranges?: {
    readonly router: Router;
    readonly forwarder?: Forwarder;
    stateMachineOf(rangeId: RangeId): MvccStateMachine;
    /** Resolves once range `rangeId` has applied revision `revision` here, or after `waitMs` (a remote feed's long poll). */
    whenRevision?(rangeId: RangeId, revision: number, waitMs: number): Promise<void>;
  };
  /** Deliberate bugs, for the simulator only (sabotage.ts). */
  readonly sabotage?: Sabotage;
  /**
   * Settles intents of transactions across ranges that a read or a write
   * met (src/txn: from their records, waiting while a transaction is alive,
   * ADR 0017 §4). Absent: no transaction across ranges runs on the
   * cluster, so none can be met; meeting one then is RANGE_UNAVAILABLE.
   */
  readonly intents?: IntentSettler;
  /** Runs Txns over more than one range; absent: they are refused (CROSS_RANGE), as before issue 14. */
  readonly crossRangeTxns?: CrossRangeTxns;
  /** Told of each request forwarded to another node that failed there or got no answer (the server logs them). */
  readonly onForwardFailed?: (event: { readonly rangeId: RangeId; readonly to: number; readonly op: string; readonly code: string; readonly message: string; readonly ms: number }) => void;
  /** Told of each range a request reached and the keys it asked for (the split queue samples them). */
  readonly onRequest?: (rangeId: RangeId, interval: KeyInterval) => void;
}

/** What settles intents a request met (src/txn's resolver). */
export interface IntentSettler {
  settle(intents: readonly Intent[]): Promise<void>;
}

/** What runs an etcd Txn whose keys lie in more than one range (src/txn, ADR 0017). */
export interface CrossRangeTxns {
  run(request: TxnRequest): Promise<TxnResponse>;
}

/** A read of one key at a revision for a transaction across ranges: its version, or an intent whose outcome the read needs. */
export type KeyAtRevision = { readonly kind: 'value'; readonly kv: KeyValue | undefined } | { readonly kind: 'intent'; readonly intent: Intent };

/** Intents a read settles at a time before it looks again. */
export const MAX_READ_BLOCKERS = 64;

/** Times a request routed before a split that applied first is routed again before the refusal reaches the client. */
export const MAX_REROUTES = 8;


/** Ranges whose preferred holder is remembered at most (forward); past it the memory starts again. */
export const MAX_FORWARD_CURSORS = 100_000;

/** Failures of the holder asked, not of the request: the next forward asks another. */
const ROUTING_FAILURES: ReadonlySet<string> = new Set(['TIMEOUT', 'NOT_LEADER', 'RANGE_UNAVAILABLE', 'RANGE_MISMATCH', 'RESOURCE_EXHAUSTED', 'CLOSED', 'STORAGE_FAILED']);

/** Stored changes one page of a remote range feed examines at most (fewer when their bytes pass FEED_PAGE_MAX_BYTES). */
export const FEED_PAGE_SCAN_LIMIT = 1_000;
/** Key and value bytes one page of a remote range feed carries at most, unless one revision alone is larger. */
export const FEED_PAGE_MAX_BYTES = 4 * 1024 * 1024;

function eventBytes(events: readonly MvccEvent[]): number {
  let bytes = 0;
  for (const e of events) bytes += e.kv.key.byteLength + e.kv.value.byteLength + (e.prevKv === undefined ? 0 : e.prevKv.key.byteLength + e.prevKv.value.byteLength);
  return bytes;
}

/** An event without absent fields (a packed `undefined` is not a value the peer's checks accept). */
function packableEvent(e: MvccEvent): MvccEvent {
  return e.prevKv === undefined ? { type: e.type, kv: e.kv } : { type: e.type, kv: e.kv, prevKv: e.prevKv };
}

/** Rounds of reads a read-only txn over ranges other nodes hold may need (each nesting level of a txn can add one). */
export const MAX_PREFETCH_ROUNDS = 70;

/**
 * The key-value operations the client APIs (the etcd API, the native protocol,
 * the simulator's clients) serve, on one node: writes go through Raft, reads are linearizable unless
 * serializable is asked for. Errors are TesseraErrors: MVCC's refusal codes
 * (compacted, future revision, …) for refused requests, 'NOT_LEADER' when the
 * proposal was certainly not accepted, and 'TIMEOUT' when the outcome is unknown.
 */
export class KvApi {
  private seq = 0;
  /** Per range only other nodes hold: which of its holders to forward to first (see forward). */
  private readonly forwardCursor = new Map<RangeId, number>();
  private readonly requests: RequestRunner;

  private readonly timers: Timers;

  constructor(private readonly o: KvApiOptions) {
    this.timers = o.timers;
    this.requests = o.requests ?? new RequestRunner({ ...o, timers: this.timers });
    o.ranges?.forwarder?.serveWith((rangeId, op, from) => this.serveForwarded(rangeId, op, from));
  }

  get store(): Store {
    return this.o.store;
  }

  /** The newest revision of any range on this node. */
  currentRevision(): number {
    const ranges = this.o.ranges;
    if (ranges === undefined) return this.o.stateMachine.mvcc.currentRevision;
    let rev = 0;
    for (const r of ranges.router.local()) rev = Math.max(rev, ranges.stateMachineOf(r.rangeId).mvcc.currentRevision);
    return rev;
  }

  /** The highest revision any range on this node has compacted at (compaction applies to every range). */
  compactedRevision(): number {
    const ranges = this.o.ranges;
    if (ranges === undefined) return this.o.stateMachine.mvcc.compactedRevision;
    let rev = 0;
    for (const r of ranges.router.local()) rev = Math.max(rev, ranges.stateMachineOf(r.rangeId).mvcc.compactedRevision);
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

  async range(options: RangeOptions, serializable: boolean, forwarded = false): Promise<RangeResult> {
    this.o.load?.record();
    const interval = keyInterval(options.key, options.rangeEnd);
    for (let attempt = 0; ; attempt++) {
      const spans = await this.whenRoutable(() => this.route(interval, forwarded));
      const latest = (options.revision ?? 0) <= 0;
      // The latest state: every transaction acknowledged before this read must be in it, so none of its intents may
      // still stand when the read revision is chosen (a commit revision may be above every range's current one until then).
      const pending = latest && spans.length > 1 ? this.localBlockers(spans, [interval], undefined) : [];
      if (pending.length > 0) {
        await this.settleIntents(pending);
        continue;
      }
      let revision: number | undefined;
      let remoteParts: Map<RangeId, RangeResult>;
      try {
        if (spans.length === 1 && spans[0]!.remote !== undefined) return (await this.forward(spans[0]!, { op: 'range', options, serializable }, attempt)) as RangeResult;
        revision = await this.readRevision(spans, options.revision ?? 0, serializable);
        remoteParts = await this.remoteParts(spans, options, revision, attempt);
      } catch (error) {
        // A range frozen, merged away or moved while the barrier or a close waited (ADR 0009 §6): route again.
        if (isTesseraError(error, 'RANGE_MISMATCH') && attempt < MAX_REROUTES) {
          await this.rerouteDelay(spans);
          continue;
        }
        throw error;
      }
      // A split may have applied while the barriers waited: the parts must be read by the ranges that hold them now.
      if (attempt < MAX_REROUTES && !sameRoute(spans, this.route(interval, forwarded))) continue;
      // Intents of transactions across ranges whose outcome the read needs: settled first, then looked at again (ADR 0017 §4).
      // At the revision chosen: no transaction may show in part (one committed at or below it but not resolved everywhere).
      const blockers = this.localBlockers(spans, [interval], revision);
      if (blockers.length > 0) {
        await this.settleIntents(blockers);
        continue;
      }
      // A part that reaches the end of the key space is etcd's "from key on" (an empty end), not a single key.
      for (const s of spans) if (s.remote === undefined) this.o.onRequest?.(s.rangeId, spans.length === 1 ? interval : { start: s.start, end: s.end ?? new Uint8Array(0) });
      const at = revision === undefined ? options : { ...options, revision };
      if (spans.length === 1) return this.machine(spans[0]!.rangeId).mvcc.range(at);
      const parts = spans.map((s) => remoteParts.get(s.rangeId) ?? this.machine(s.rangeId).mvcc.range(partOptions(at, s)));
      return mergeRangeResults(parts, options);
    }
  }

  /** The parts of a read over many ranges that other nodes hold, each read there at `revision` (closed at it first). */
  private async remoteParts(spans: readonly RoutedSpan[], options: RangeOptions, revision: number | undefined, attempt: number): Promise<Map<RangeId, RangeResult>> {
    const out = new Map<RangeId, RangeResult>();
    if (revision === undefined) return out;
    await Promise.all(
      spans.map(async (s) => {
        if (s.remote === undefined) return;
        out.set(s.rangeId, (await this.forward(s, { op: 'read-at', options: partOptions({ ...options, revision }, s) }, attempt)) as RangeResult);
      }),
    );
    return out;
  }

  /**
   * The one revision a read over `spans` is served at (ADR 0009 §4), with
   * every range held here closed at it, so each part holds exactly the
   * writes at or below it; undefined for a read of one range at its current
   * revision, as before ranges (after its read barrier unless
   * serializable). An asked-for revision above every revision this node
   * and the ranges read know of is etcd's future revision. Over many ranges
   * without one, a linearizable read takes the highest current revision of
   * the ranges after their read barriers (every write acknowledged before
   * the read is at or below it), a serializable one the lowest (no range
   * waits). A range only other nodes hold tells its current revision
   * through the node that answers for it.
   */
  private async readRevision(spans: readonly RoutedSpan[], requested: number, serializable: boolean): Promise<number | undefined> {
    if (requested <= 0 && spans.length === 1) {
      if (!serializable) await this.readBarrier(spans[0]!.rangeId);
      return undefined;
    }
    const currents = await Promise.all(spans.map((s) => this.currentOf(s, serializable)));
    if (requested > 0 && requested > Math.max(this.currentRevision(), ...currents)) throw new TesseraError('FUTURE_REVISION', 'mvcc: required revision is a future revision');
    const revision = requested > 0 ? requested : serializable ? Math.min(...currents) : Math.max(...currents);
    await Promise.all(spans.map((s) => (s.remote === undefined ? this.closeAt(s.rangeId, revision) : undefined)));
    return revision;
  }

  /** A range's current revision, after its read barrier unless serializable: here, or from a node that holds it. */
  private async currentOf(span: RoutedSpan, serializable: boolean): Promise<number> {
    if (span.remote !== undefined) return (await this.forward(span, { op: 'current', serializable }, 0)) as number;
    if (!serializable) await this.readBarrier(span.rangeId);
    return this.machine(span.rangeId).mvcc.currentRevision;
  }

  /**
   * Sends an op on a range only other nodes hold to one of them (ADR 0012),
   * a different one on each attempt; its deadline is the request timeout
   * and a grace, so the serving node's own deadline answers first.
   */
  private forward(span: RoutedSpan, op: ForwardOp, attempt: number): Promise<ForwardValue> {
    const forwarder = this.o.ranges?.forwarder;
    const holders = span.remote ?? [];
    if (forwarder === undefined || holders.length === 0) return Promise.reject(new TesseraError('RANGE_UNAVAILABLE', `range ${span.rangeId} is on other nodes, and this node cannot reach them`));
    // The holder that answered last, else the next one after a holder that failed: a holder whose
    // replica cannot serve (no leader, behind, moved) is not asked again and again.
    // The range's leader first when a holder named it (no second hop there), else the cursor.
    const hint = forwarder.leaderHint(span.rangeId);
    const hinted = hint === undefined ? -1 : holders.indexOf(hint);
    const at = ((hinted >= 0 && attempt === 0 ? hinted : (this.forwardCursor.get(span.rangeId) ?? 0)) + attempt) % holders.length;
    const startMs = this.timers.nowMs();
    return forwarder.call(holders[at]!, span.rangeId, op, this.o.requestTimeoutMs + FORWARD_GRACE_MS).then(
      (value) => {
        this.remember(span.rangeId, at);
        return value;
      },
      (error: unknown) => {
        if (isTesseraError(error) && ROUTING_FAILURES.has(error.code)) this.remember(span.rangeId, at + 1);
        if (isTesseraError(error)) this.o.onForwardFailed?.({ rangeId: span.rangeId, to: holders[at]!, op: op.op, code: error.code, message: error.message, ms: this.timers.nowMs() - startMs });
        throw error;
      },
    );
  }

  private remember(rangeId: RangeId, at: number): void {
    if (this.forwardCursor.size >= MAX_FORWARD_CURSORS) this.forwardCursor.clear();
    this.forwardCursor.set(rangeId, at);
  }

  /** Before routing again a request that met a range elsewhere: the meta table this node routes by may lag a moment behind. */
  private async rerouteDelay(spans: readonly RoutedSpan[]): Promise<void> {
    if (spans.some((s) => s.remote !== undefined)) await new Promise<void>((resolve) => this.timers.after(PROPOSAL_RETRY_MS, resolve));
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

  /**
   * The ranges holding an interval's keys, in key order (one range,
   * `rangeId`, without a router). A request a peer forwarded here is served
   * by ranges held here only: one that is not is RANGE_MISMATCH, and the
   * peer routes it again (a request is forwarded at most once).
   */
  private route(interval: KeyInterval, forwarded = false): RoutedSpan[] {
    const router = this.o.ranges?.router;
    if (router === undefined) return [{ rangeId: this.o.rangeId, start: interval.start, end: interval.end }];
    const spans = router.over(interval);
    if (forwarded) for (const s of spans) if (s.remote !== undefined) throw new TesseraError('RANGE_MISMATCH', `range ${s.rangeId} is not on this node`);
    return spans;
  }

  /**
   * The intents in the ranges held here that a read of `intervals` at
   * `revision` must not pass: writes of transactions across ranges that may
   * have committed at or below it. Undefined, for a read of the latest state
   * made right after this check: every write intent, since a transaction
   * acknowledged before the read may hold a commit revision above every
   * range's current one until its intents are resolved, and the read must
   * see it (strict serializability).
   */
  private localBlockers(spans: readonly RoutedSpan[], intervals: readonly KeyInterval[], revision: number | undefined): Intent[] {
    const found: Intent[] = [];
    for (const s of spans) {
      if (s.remote !== undefined) continue;
      const mvcc = this.machine(s.rangeId).mvcc;
      if (mvcc.intentCount === 0) continue;
      const at = revision ?? MAX_REVISION;
      for (const i of intervals) found.push(...mvcc.conflictingIntents(i, at, MAX_READ_BLOCKERS));
      if (found.length >= MAX_READ_BLOCKERS) break;
    }
    return found;
  }

  /** Settles intents a request met, through the node's resolver (IntentSettler). */
  private async settleIntents(intents: readonly Intent[]): Promise<void> {
    if (this.o.intents === undefined) throw new TesseraError('RANGE_UNAVAILABLE', 'a request met an intent of a transaction across ranges, and this node has no resolver for it');
    await this.o.intents.settle(intents);
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
  private rangeOfTxn(intervals: readonly KeyInterval[], forwarded: boolean): RoutedSpan {
    if (this.o.ranges === undefined) return { rangeId: this.o.rangeId, start: new Uint8Array(0), end: undefined };
    let found: RoutedSpan | undefined;
    for (const interval of intervals) {
      for (const span of this.route(interval, forwarded)) {
        if (found !== undefined && span.rangeId !== found.rangeId) {
          throw new TesseraError('CROSS_RANGE', 'the request touches keys in more than one range; cross-range writes need distributed transactions (issue 14)');
        }
        found = span;
      }
    }
    return found ?? { rangeId: this.o.rangeId, start: new Uint8Array(0), end: undefined };
  }

  /**
   * etcd's Txn. One that only reads (every op on both branches a Range,
   * nested ones included) is served as a read, as etcd serves it: after a
   * read barrier unless every Range is serializable, then on the local store
   * at its current revision, never through the log. It answers what the
   * proposed txn would (the same executeTxn over the same state). A txn on
   * a range only other nodes hold is served by one of them (ADR 0012).
   */
  async txn(request: TxnRequest, forwarded = false): Promise<TxnResponse> {
    this.o.load?.record();
    const intervals = txnIntervals(request);
    if (isTxnReadOnly(request)) return this.readOnlyTxn(request, intervals, forwarded);
    for (let attempt = 0; ; attempt++) {
      let span: RoutedSpan;
      try {
        span = await this.whenRoutable(() => this.rangeOfTxn(intervals, forwarded));
      } catch (error) {
        // Keys in more than one range: a transaction across ranges (ADR 0017), where the node runs them.
        if (isTesseraError(error, 'CROSS_RANGE') && this.o.crossRangeTxns !== undefined && !forwarded) return this.o.crossRangeTxns.run(request);
        throw error;
      }
      const rangeId = span.rangeId;
      try {
        if (span.remote !== undefined) return (await this.forward(span, { op: 'txn', request }, attempt)) as TxnResponse;
        // One request over the whole span of its keys: a load split then avoids cutting keys that txns write together.
        if (this.o.onRequest !== undefined && attempt === 0 && intervals.length > 0) this.o.onRequest(rangeId, coveringInterval(intervals));
        if (rangeId !== this.o.rangeId) await this.checkLeases(request);
        const result = await this.propose((requestId) => encodeCommand({ kind: 'txn', requestId, txn: request }), rangeId);
        if (result.kind === 'txn') return result.response;
        throw unexpected(result);
      } catch (error) {
        // The range split or moved before the txn applied: nothing was written; route it again.
        if (!isTesseraError(error, 'RANGE_MISMATCH') || attempt >= MAX_REROUTES) throw error;
        await this.rerouteDelay([span]);
      }
    }
  }

  /**
   * A Txn that only reads, served as a read (see `txn`). Over one range: on
   * its store at its current revision (by a node that holds it). Over many:
   * at one revision, chosen and closed at as for a Range over many ranges
   * (`readRevision`), every compare and Range of the txn reading each
   * range's part at it.
   */
  private async readOnlyTxn(request: TxnRequest, intervals: readonly KeyInterval[], forwarded: boolean): Promise<TxnResponse> {
    const serializable = isTxnSerializable(request);
    for (let attempt = 0; ; attempt++) {
      const spans = await this.whenRoutable(() => this.txnSpans(intervals, forwarded));
      // As for a Range of the latest state over many ranges (see range).
      const pending = spans.length > 1 ? this.localBlockers(spans, intervals, undefined) : [];
      if (pending.length > 0) {
        await this.settleIntents(pending);
        continue;
      }
      if (this.o.onRequest !== undefined && attempt === 0 && intervals.length > 0 && spans[0]!.remote === undefined) this.o.onRequest(spans[0]!.rangeId, coveringInterval(intervals));
      let revision: number | undefined;
      try {
        if (spans.length === 1 && spans[0]!.remote !== undefined) return (await this.forward(spans[0]!, { op: 'txn', request }, attempt)) as TxnResponse;
        revision = await this.readRevision(spans, 0, serializable);
        if (revision !== undefined && spans.some((s) => s.remote !== undefined)) return await this.readTxnAt(request, revision, attempt);
      } catch (error) {
        // A range frozen, merged away or moved while the barrier or a close waited (ADR 0009 §6): route again.
        if (isTesseraError(error, 'RANGE_MISMATCH') && attempt < MAX_REROUTES) {
          await this.rerouteDelay(spans);
          continue;
        }
        throw error;
      }
      if (attempt < MAX_REROUTES && !sameRanges(spans, this.txnSpans(intervals, forwarded))) continue;
      const blockers = this.localBlockers(spans, intervals, revision);
      if (blockers.length > 0) {
        await this.settleIntents(blockers);
        continue;
      }
      if (revision === undefined) return this.machine(spans[0]!.rangeId).mvcc.readTxn(request);
      return executeTxn(this.readView(revision), request);
    }
  }

  /**
   * A read-only txn at `revision` over ranges some of which only other
   * nodes hold. executeTxn reads synchronously, so it runs over what has
   * been read so far: a part not read yet reads as empty and is noted, the
   * noted parts are read where they are held, and the txn runs again, until
   * a run needs nothing new (its compares then saw real data, and chose the
   * branch they would). Every part is read at `revision`, so the runs agree
   * on what they share.
   */
  private async readTxnAt(request: TxnRequest, revision: number, attempt: number): Promise<TxnResponse> {
    const fetched = new Map<string, RangeResult>();
    for (let round = 0; round < MAX_PREFETCH_ROUNDS; round++) {
      const missing = new Map<string, { readonly span: RoutedSpan; readonly options: RangeOptions }>();
      const response = executeTxn(
        this.readView(revision, (span, options) => {
          const key = partKey(span.rangeId, options);
          const part = fetched.get(key);
          if (part === undefined) missing.set(key, { span, options });
          return part ?? { kvs: [], more: false, count: 0, revision };
        }),
        request,
      );
      if (missing.size === 0) return response;
      await Promise.all([...missing].map(async ([key, m]) => fetched.set(key, (await this.forward(m.span, { op: 'read-at', options: m.options }, attempt)) as RangeResult)));
    }
    throw new TesseraError('TOO_MANY_OPS', `a read-only txn over ranges on other nodes needed more than ${MAX_PREFETCH_ROUNDS} rounds of reads`);
  }

  /** One span per range a txn's intervals reach, in range id order (what `readRevision` needs of each). */
  private txnSpans(intervals: readonly KeyInterval[], forwarded: boolean): RoutedSpan[] {
    const byRange = new Map<RangeId, RoutedSpan>();
    for (const i of intervals) for (const s of this.route(i, forwarded)) if (!byRange.has(s.rangeId)) byRange.set(s.rangeId, s);
    if (byRange.size === 0) return this.route(keyInterval(new Uint8Array(0)), forwarded);
    return [...byRange.values()].sort((a, b) => a.rangeId - b.rangeId);
  }

  /**
   * The node's ranges as one read-only txn target at `revision`, every range
   * held here closed at it; a part of a range only other nodes hold is
   * asked of `remote` (readTxnAt).
   */
  private readView(revision: number, remote?: (span: RoutedSpan, options: RangeOptions) => RangeResult): TxnTarget {
    const range = (options: RangeOptions): RangeResult => {
      const at = { ...options, revision: options.revision !== undefined && options.revision > 0 ? options.revision : revision };
      const spans = this.route(keyInterval(options.key, options.rangeEnd));
      const read = (s: RoutedSpan, o: RangeOptions): RangeResult => {
        if (s.remote === undefined) return this.machine(s.rangeId).mvcc.range(o);
        if (remote === undefined) throw new TesseraError('RANGE_MISMATCH', `range ${s.rangeId} moved to other nodes during a read`);
        return remote(s, o);
      };
      if (spans.length === 1) return read(spans[0]!, at);
      return mergeRangeResults(spans.map((s) => read(s, partOptions(at, s))), options);
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
   * a read below it is then refused in every range alike. A range only
   * other nodes hold is closed and compacted by one of them.
   */
  async compact(revision: number): Promise<number> {
    this.o.load?.record();
    const ranges: readonly RoutableRange[] = this.o.ranges?.router.list() ?? [{ rangeId: this.o.rangeId, bounds: { start: new Uint8Array(0), end: undefined } }];
    if (ranges.length === 1 && ranges[0]!.remote === undefined) return this.compactRange(ranges[0]!.rangeId, revision);
    if (revision <= this.compactedRevision()) throw new TesseraError('COMPACTED', 'mvcc: required revision has been compacted');
    const spans: RoutedSpan[] = ranges.map((r) => ({ rangeId: r.rangeId, start: r.bounds.start, end: r.bounds.end, remote: r.remote }));
    const remoteCurrents = await Promise.all(spans.filter((s) => s.remote !== undefined).map((s) => this.currentOf(s, true)));
    if (revision > Math.max(this.currentRevision(), ...remoteCurrents)) throw new TesseraError('FUTURE_REVISION', 'mvcc: required revision is a future revision');
    await Promise.all(spans.map((s) => (s.remote === undefined ? this.compactHere(s.rangeId, revision) : this.forward(s, { op: 'compact', revision }, 0))));
    return revision;
  }

  /** Closes a range held here at `revision`, then compacts it there unless it already is. */
  private async compactHere(rangeId: RangeId, revision: number): Promise<number> {
    await this.closeAt(rangeId, revision);
    if (revision > this.machine(rangeId).mvcc.compactedRevision) await this.compactRange(rangeId, revision);
    return revision;
  }

  private async compactRange(rangeId: RangeId, revision: number): Promise<number> {
    const result = await this.propose((requestId) => encodeCommand({ kind: 'compact', requestId, revision }), rangeId);
    if (result.kind === 'compact') return result.revision;
    throw unexpected(result);
  }

  /**
   * A peer's op on a range it holds no replica of (ADR 0012), served from
   * the ranges held here only: a range that is not here (moved, merged
   * away, or not set up yet) is RANGE_MISMATCH, and the peer routes again.
   */
  private async serveForwarded(rangeId: RangeId, op: ForwardOp, from: NodeId): Promise<ForwardValue> {
    switch (op.op) {
      case 'range':
        // The deliberate bug: a forwarded linearizable read served without its read barrier.
        return this.range(op.options, op.serializable || this.o.sabotage?.has('forward-read-skips-barrier') === true, true);
      case 'txn':
        return this.txn(op.request, true);
      case 'current':
        this.heldHere(rangeId, undefined);
        return this.currentOf({ rangeId, start: new Uint8Array(0), end: undefined }, op.serializable);
      case 'read-at': {
        const interval = keyInterval(op.options.key, op.options.rangeEnd);
        this.heldHere(rangeId, interval);
        await this.closeAt(rangeId, op.options.revision ?? 0);
        for (;;) {
          this.heldHere(rangeId, interval);
          const blockers = this.localBlockers([{ rangeId, start: interval.start, end: interval.end }], [interval], undefined);
          if (blockers.length === 0) return this.machine(rangeId).mvcc.range(op.options);
          await this.settleIntents(blockers);
        }
      }
      case 'compact':
        this.heldHere(rangeId, undefined);
        return this.compactHere(rangeId, op.revision);
      case 'events':
        return this.serveEvents(rangeId, op);
      case 'members': {
        // Only the leader knows the membership for sure (a follower may not have heard of a change).
        const raft = this.o.store.replica(rangeId)?.raw.raft;
        if (raft === undefined || raft.state !== 'leader') throw new TesseraError('NOT_LEADER', `this node does not lead range ${rangeId}`);
        const c = raft.trk.config;
        return [...new Set([...c.voters[0], ...c.voters[1], ...c.learners, ...c.learnersNext])];
      }
      case 'snapshot': {
        const sent = this.o.store.sendSnapshot(rangeId, from, op.fromIndex);
        if (typeof sent === 'string') throw new TesseraError(this.o.store.replica(rangeId)?.raw.raft.state === 'leader' ? 'RANGE_UNAVAILABLE' : 'NOT_LEADER', sent);
        return sent;
      }
    }
  }

  /**
   * A page of range `rangeId`'s history for a remote range feed (ADR 0013),
   * from this node's replica: any replica serves, since one that applied up
   * to revision C holds every change of the range at or below C. Closed at
   * `closeTo` first if asked (a watcher elsewhere waits for this range to
   * pass a change of another), then waits up to `waitMs` for a change at or
   * past `fromRevision`. The page stops at a revision boundary within
   * FEED_PAGE_MAX_BYTES, or after one revision however large.
   */
  private async serveEvents(rangeId: RangeId, op: Extract<ForwardOp, { op: 'events' }>): Promise<EventsPage> {
    const interval = keyInterval(op.key, op.rangeEnd);
    this.heldHere(rangeId, interval);
    if (op.closeTo > 0) await this.closeAt(rangeId, op.closeTo);
    const wait = this.o.ranges?.whenRevision;
    if (op.waitMs > 0 && wait !== undefined && this.machine(rangeId).mvcc.currentRevision < op.fromRevision) {
      await wait.call(this.o.ranges, rangeId, op.fromRevision, Math.min(op.waitMs, MAX_FEED_WAIT_MS));
    }
    this.heldHere(rangeId, interval);
    const mvcc = this.machine(rangeId).mvcc;
    // The feed's bound is the closed revision: a pending transaction may still add a change above it (ADR 0017 §4).
    const currentRevision = mvcc.closedRevision;
    const compactedRevision = mvcc.compactedRevision;
    if (op.fromRevision < compactedRevision || op.fromRevision > currentRevision) return { events: [], nextRevision: op.fromRevision, currentRevision, compactedRevision };
    for (let scanLimit = FEED_PAGE_SCAN_LIMIT; ; scanLimit = Math.max(1, scanLimit >> 2)) {
      const r = mvcc.events({ fromRevision: op.fromRevision, key: op.key, rangeEnd: op.rangeEnd, prevKv: op.prevKv, scanLimit, toRevision: currentRevision });
      if (scanLimit === 1 || eventBytes(r.events) <= FEED_PAGE_MAX_BYTES) return { events: r.events.map(packableEvent), nextRevision: r.nextRevision, currentRevision, compactedRevision };
    }
  }

  /** Refuses (RANGE_MISMATCH) unless range `rangeId` is served here and holds every key of `interval`. */
  private heldHere(rangeId: RangeId, interval: KeyInterval | undefined): void {
    const router = this.o.ranges?.router;
    if (router === undefined) return;
    const held = router.local().some((r) => r.rangeId === rangeId);
    const spans = interval === undefined ? [] : router.over(interval);
    if (!held || spans.some((s) => s.rangeId !== rangeId)) throw new TesseraError('RANGE_MISMATCH', `range ${rangeId} does not hold those keys on this node`);
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

  /**
   * The range holding `key`, with a replica on this node. A transaction
   * across ranges is coordinated by a node that holds a replica of every
   * range it touches (ADR 0017): one only other nodes hold is CROSS_RANGE.
   */
  localRangeOf(key: Uint8Array): RangeId {
    const span = this.route({ start: key, end: undefined })[0]!;
    if (span.remote !== undefined) throw new TesseraError('CROSS_RANGE', 'a transaction across ranges touches a range with no replica on the node that took it; such transactions are not coordinated yet');
    return span.rangeId;
  }

  /** Proposes one step of a transaction across ranges (src/mvcc/participant.ts) to the range holding `key`, routed again if the range split or moved first. */
  async txnStep(key: Uint8Array, make: (requestId: string) => KvCommand): Promise<CommandResult> {
    for (let attempt = 0; ; attempt++) {
      const rangeId = await this.whenRoutable(() => this.localRangeOf(key));
      try {
        return await this.proposeOnce((requestId) => encodeCommand(make(requestId)), rangeId);
      } catch (error) {
        if (!isTesseraError(error, 'RANGE_MISMATCH') || attempt >= MAX_REROUTES) throw error;
      }
    }
  }

  /** `key` at `revision` for a transaction across ranges: the range closed at it first; an intent below it is answered, not passed (ADR 0017 §4). */
  async keyAt(key: Uint8Array, revision: number, ignoreIntents: boolean): Promise<KeyAtRevision> {
    for (let attempt = 0; ; attempt++) {
      const rangeId = await this.whenRoutable(() => this.localRangeOf(key));
      try {
        await this.closeAt(rangeId, revision);
      } catch (error) {
        if (isTesseraError(error, 'RANGE_MISMATCH') && attempt < MAX_REROUTES) continue;
        throw error;
      }
      if (this.localRangeOf(key) !== rangeId) continue;
      const mvcc = this.machine(rangeId).mvcc;
      const intent = ignoreIntents ? undefined : mvcc.conflictingIntents({ start: key, end: undefined }, revision, 1)[0];
      if (intent !== undefined) return { kind: 'intent', intent };
      return { kind: 'value', kv: mvcc.range({ key, revision }).kvs[0] };
    }
  }

  /**
   * Intents in the ranges this node leads, at most `limit`: the node's sweep
   * settles those nobody meets (a coordinator that crashed), so that they
   * hold no key and no closed revision for good (ADR 0017 §5).
   */
  intentsLedHere(limit: number): Intent[] {
    const found: Intent[] = [];
    const ranges = this.o.ranges?.router.local().map((r) => r.rangeId) ?? [this.o.rangeId];
    for (const rangeId of ranges) {
      if (this.o.store.replica(rangeId)?.raw.raft.state !== 'leader') continue;
      const mvcc = this.machine(rangeId).mvcc;
      if (mvcc.intentCount === 0) continue;
      found.push(...mvcc.intents(undefined, limit - found.length));
      if (found.length >= limit) break;
    }
    return found;
  }

  /** A transaction's record, read after a read barrier on the range holding its primary key. */
  async txnRecord(primary: Uint8Array, txnId: string): Promise<TxnRecord | undefined> {
    const rangeId = await this.whenRoutable(() => this.localRangeOf(primary));
    await this.readBarrier(rangeId);
    return this.machine(this.localRangeOf(primary)).mvcc.txnRecord(primary, txnId);
  }

  /** Resolves once this node may serve a linearizable read (ReadIndex). */
  readBarrier(rangeId: RangeId = this.o.rangeId): Promise<void> {
    return new Promise<void>((resolve, reject) => this.requests.readBarrier((error) => (error === undefined ? resolve() : reject(error)), rangeId));
  }

  /**
   * Proposes a command and waits for its result; retries and deadlines are
   * RequestRunner's (src/kv/requests.ts). A write that met intents of
   * transactions across ranges wrote nothing: they are settled, and it is
   * proposed again (ADR 0017 §6: a single-range write waits, as the youngest).
   */
  private async propose(encode: (requestId: string) => Uint8Array, rangeId: RangeId = this.o.rangeId): Promise<CommandResult> {
    for (;;) {
      const result = await this.proposeOnce(encode, rangeId);
      if (result.kind !== 'txn-blocked') return result;
      await this.settleIntents(result.intents);
    }
  }

  private proposeOnce(encode: (requestId: string) => Uint8Array, rangeId: RangeId): Promise<CommandResult> {
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

/** A request's options for the part of its keys one range holds. */
function partOptions(options: RangeOptions, span: RoutedSpan): RangeOptions {
  return { ...options, key: span.start, rangeEnd: span.end ?? ALL_FROM_KEY };
}

/** Names a part read of a read-only txn: the range and every option, bytes in hex. */
function partKey(rangeId: RangeId, options: RangeOptions): string {
  return `${rangeId}:${JSON.stringify(options, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))}`;
}

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
