import { type Rng, TesseraError, type Timers } from '../base/index.js';
import { type ConfChange, type ConfState, type NodeId, type RawNode, type Ready } from '../raft/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import {
  type Applied,
  type CommandResult,
  encodeCommand,
  type ForwardMessage,
  KvApi,
  keys,
  KvNode,
  type MemberRecord,
  type MembershipCore,
  META_RANGE,
  LoadMeter,
  type MvccStateMachine,
  type NodeLoad,
  type RangeDescriptor,
  type RangeId,
  type RangeMessage,
  type ReplicaRaftOptions,
  type RequestRunner,
  type RevisionMessage,
  type Store,
  type WatchHub,
} from '../kv/index.js';
import { compareBytes, type MvccStore, type TxnRequest } from '../mvcc/index.js';
import { Drainer, LeaderBalancer, MergeQueue, NodeLoadReporter, ReplicaReconciler } from '../placement/index.js';
import { NodeTransactions } from '../txn/index.js';
import type { TxnReply } from './txn_workload.js';
import type { MemoryEngine } from '../storage/memory.js';
import type { KvCommand, KvResult } from './commands.js';

/** The range whose Raft group holds the cluster's membership (the nemesis's leader, conf changes, transfers). */
export const SIM_RANGE = META_RANGE;

/**
 * How many times a client request is routed, in all, while its range refuses
 * it for keys it gave away in a split (RANGE_MISMATCH) or no range here holds
 * its key yet (RANGE_UNAVAILABLE); both are definite refusals, so the last
 * one is a definite failure.
 */
export const ROUTE_ATTEMPTS = 8;
/** Transactions across ranges in the simulator: heartbeats, expiry and the intent sweep scaled to its runs of seconds. */
const SIM_TXN_TIMING = { heartbeatMs: 50, expiryMs: 250, sweepIntervalMs: 150 } as const;

/** Wait between routings: the local replica must apply the split (or install the snapshot) the refusal came from. */
const REROUTE_DELAY_MS = 25;

/** `fail`: it certainly did not happen. `unknown`: it may have happened (the node's deadline passed with it in flight). */
export type ClientReply =
  | { readonly kind: 'ok'; readonly result: KvResult }
  | { readonly kind: 'fail'; readonly reason: string }
  | { readonly kind: 'unknown'; readonly reason: string };

export interface StoreNodeEnv {
  readonly id: NodeId;
  readonly rng: Rng;
  readonly engine: MemoryEngine;
  readonly sabotage: Sabotage;
  readonly raft: ReplicaRaftOptions;
  readonly logRetainEntries: number;
  readonly reproposeOnNewLeader: boolean;
  /** The founding membership, for a founding member's first start. */
  readonly bootstrap: ConfState | undefined;
  send(to: NodeId, messages: readonly RangeMessage[]): void;
  /** A revision service's request or answer to another node (src/kv/revisions.ts). */
  sendRevisions(to: NodeId, message: RevisionMessage): void;
  /** This node's liveness to another node, while it leads a quiesced range (ADR 0010). */
  sendLiveness(to: NodeId, load?: NodeLoad): void;
  /** A request on a range this node holds no replica of, or a reply to one (ADR 0012). */
  sendForward(to: NodeId, message: ForwardMessage): void;
  /** Replicas per data range (`--replicas`); 0: every member holds every range. */
  readonly replicas: number;
  /** Whether the node sweeps intents nobody meets (NodeTransactions.startSweeping): in seeds with the transactional workload. */
  readonly sweepIntents?: boolean;
  /** This node's `--locality` (absent: none). */
  readonly locality?: string;
  /** A member silent this many ticks is dead to placement (`--dead-after-ms`); 0: never. */
  readonly deadAfterTicks: number;
  /** This node's TSO handed out first..last under a confirmed leadership (the revision oracle). */
  onRevisionsHandedOut(first: number, last: number): void;
  scheduleLoop(loop: () => void): void;
  /** The store's proposal window in ms, 0 for none. */
  readonly proposalWindowMs: number;
  /** Deadlines, retries and the lease clock, on the simulator's clock. */
  readonly timers: Timers;
  readonly requestTimeoutMs: number;
  /** Unique per start of the node, as a real node's boot id makes its request ids. */
  readonly requestIdPrefix: string;
  /** Counts what the RequestRunner did (retries, deadlines), for the run's summary. */
  count(what: string): void;
  /** The node's membership logic learned that it was removed from the cluster: stop it. */
  onRemoved(): void;
  onApply(id: NodeId, rangeId: RangeId, applied: Applied): void;
  onReady(id: NodeId, rd: Ready, raw: RawNode): void;
  /** A replica held at a merge installed a snapshot over its log (ADR 0014): its bounds may have changed, as after onReady's snapshot. */
  onSnapshotInLog(id: NodeId): void;
  /** The store stopped serving: its storage failed (a refused sync, a corrupt record read back). */
  onStorageFailed(error: Error): void;
  trace(line: string): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The simulator's ranges hold kilobytes: a byte imbalance this small already moves replicas, so seeds exercise the rule (ADR 0015). */
export const SIM_MIN_BYTES_IMBALANCE = 256;
/** The simulator's clients send a few requests a second: a QPS imbalance this small already moves leaderships. */
export const SIM_MIN_QPS_IMBALANCE = 1;

/**
 * A simulated node running the production kv node (src/kv/kv_node.ts) on
 * the in-memory engine: the same Store, Replica, MVCC state machine, ready
 * loop, watch feed, lease clock, request path and membership logic as the
 * server, with the simulator's transport, clock and disk.
 */
export class SimStoreNode {
  readonly kv: KvNode;
  private readonly reconciler: ReplicaReconciler;
  /** Merges the nemesis asks for under placement (wantMerge), right ranges moved onto their left neighbour's voters first. */
  private readonly merges: MergeQueue;
  private readonly leaders: LeaderBalancer;
  private readonly loadReporter: NodeLoadReporter;
  /** Each range's requests through this node's client API (SimStoreNode has no SplitQueue). */
  private readonly meters = new Map<RangeId, LoadMeter>();
  private readonly drainer: Drainer;
  /** The client API a real node serves etcd's requests with (with placement, it forwards to the nodes holding a range). */
  private readonly api: KvApi;
  private balancing = true;
  /** Client API calls not settled yet (see Scheduler.asyncWork). */
  private apiCalls = 0;
  private stopped = false;

  constructor(private readonly env: StoreNodeEnv) {
    const trace = (fields: object, message: string): void => env.trace(`${env.id} membership: ${message} ${JSON.stringify(fields)}`);
    const founders = env.bootstrap?.voters ?? [];
    this.kv = new KvNode({
      nodeId: env.id,
      // What simMemberRecord holds: founders have nothing to publish; a member added through the API publishes it.
      name: `s${env.id}`,
      engine: env.engine,
      transport: {
        send: (to, msgs) => env.send(to, msgs),
        sendRevisions: (to, message) => env.sendRevisions(to, message),
        sendLiveness: (to, load) => env.sendLiveness(to, load),
        sendForward: (to, message) => env.sendForward(to, message),
      },
      rng: env.rng,
      timers: env.timers,
      raft: { ...env.raft, logger: (l) => env.trace(l) },
      scheduleLoop: (loop) => env.scheduleLoop(loop),
      logRetainEntries: env.logRetainEntries,
      requestTimeoutMs: env.requestTimeoutMs,
      // Long polls scaled to the simulator's short runs: a feed stuck on a holder cut off for a
      // second would outlast the convergence window.
      feedWaitMs: env.requestTimeoutMs / 2,
      membershipTimeoutMs: env.requestTimeoutMs * 5,
      observeRequests: (event) => env.count(`request-${event}`),
      requestIdPrefix: env.requestIdPrefix,
      proposalWindowMs: env.proposalWindowMs,
      reproposeOnNewLeader: env.reproposeOnNewLeader,
      onStorageFailed: (error) => env.onStorageFailed(error),
      ...(env.bootstrap === undefined ? {} : { bootstrap: { confState: env.bootstrap, founders: founders.map(simMemberRecord) } }),
      membershipLog: { info: trace, warn: trace, debug: trace },
      clientUrls: () => [],
      onRemoved: () => env.onRemoved(),
      onApplied: (rangeId, a) => env.onApply(env.id, rangeId, a),
      onReady: (_range, rd) => env.onReady(env.id, rd, this.raw),
      sabotage: env.sabotage,
      onRevisionsHandedOut: (first, last) => env.onRevisionsHandedOut(first, last),
      onQuiescence: (_range, event) => env.count(`quiesce-${event}`),
      placement: env.replicas > 0,
      ...(env.locality === undefined ? {} : { locality: env.locality }),
      observeFeeds: (event) => env.count(`feed-${event}`),
      onReplicaCollected: (rangeId, why) => (env.count('replica-gc'), env.trace(`${env.id} range ${rangeId} replica dropped: ${why}`)),
      onHeldMergeRepair: (rangeId, event) => {
        const installed = event.startsWith('installed');
        env.count(installed ? 'held-merge-snapshot-installed' : event.includes('asks') ? 'held-merge-snapshot-asked' : 'held-merge-snapshot-sent');
        env.trace(`${env.id} range ${rangeId} merge held: ${event}`);
        if (installed) env.onSnapshotInLog(env.id);
      },
      onMergeResolved: (e) => (env.count(`merge-${e.kind}-${e.ok ? 'ok' : 'not-yet'}`), env.trace(`${env.id} range ${e.rangeId} ${e.kind}: ${e.ok ? 'done' : 'not done'}`)),
    });
    // Only the merges the nemesis asks for (no size or load rule): the seed decides when ranges merge.
    this.merges = new MergeQueue({
      kv: this.kv,
      timers: env.timers,
      rangeMaxBytes: 0,
      rangeSplitQps: 0,
      qps: () => 0,
      auto: false,
      checkIntervalMs: env.requestTimeoutMs / 2,
      observe: (e) => {
        env.count(e.kind === 'merge' ? 'merge-queue-ok' : 'merge-queue-failed');
        env.trace(`${env.id} merge queue: ${e.kind === 'merge' ? `range ${e.merged.rangeId} took over ${e.rightRangeId}` : `range ${e.rangeId}: ${e.error.code} ${e.error.message}`}`);
      },
    });
    // As the server does: every range keeps range 1's members, so membership changes reach every range.
    this.reconciler = new ReplicaReconciler({
      kv: this.kv,
      replicas: env.replicas,
      deadAfterTicks: env.deadAfterTicks,
      merges: this.merges,
      observe: (e) => {
        if (e.change.startsWith('removed decommissioned member')) env.count('decommission-removed');
        if (e.change.startsWith('ask for the leadership')) env.count('balance-ask-leadership');
        env.trace(`${env.id} range ${e.rangeId} membership: ${e.change}`);
      },
      observeBalance: (e) => (env.count(`balance-${e.reason}`), env.trace(`${env.id} range ${e.rangeId} balance (${e.reason}): ${e.out} gives way to ${e.into}`)),
      minBytesImbalance: SIM_MIN_BYTES_IMBALANCE,
    });
    // As the server does: leaders spread over the nodes, so leadership moves while clients run.
    this.drainer = new Drainer({ kv: this.kv, timers: env.timers, observe: (e) => env.trace(`${env.id} decommission: ${JSON.stringify(e)}`) });
    // Transactions across ranges (ADR 0017): as the server wires them.
    let txns: NodeTransactions | undefined;
    this.api = new KvApi({
      intents: { settle: (intents) => txns!.settle(intents) },
      crossRangeTxns: { run: (request) => txns!.run(request) },
      timers: env.timers,
      store: this.kv.store,
      stateMachine: this.kv.stateMachine,
      rangeId: META_RANGE,
      requestTimeoutMs: env.requestTimeoutMs,
      requestIdPrefix: env.requestIdPrefix,
      leaseKeeper: this.kv.leaseKeeper,
      requests: this.kv.requests,
      ranges: this.kv,
      sabotage: env.sabotage,
      // As the server's SplitQueue does: each range's requests metered where they arrive, for load reports (ADR 0015).
      onRequest: (rangeId) => this.meterOf(rangeId).record(),
    });
    // The simulator's runs last seconds: a dead coordinator's intents are swept within one, not the server's 5-15 s.
    txns = new NodeTransactions({ api: this.api, allocate: (count, done) => this.kv.revisions.allocate(count, done), timers: env.timers, idPrefix: `${env.requestIdPrefix}.txn`, ...SIM_TXN_TIMING });
    // Only in seeds that run transactions across ranges: the sweep's timer would move every other seed's schedule.
    if (env.sweepIntents === true) txns.startSweeping();
    const qps = (rangeId: RangeId): number => this.meters.get(rangeId)?.qps() ?? 0;
    this.loadReporter = new NodeLoadReporter({ kv: this.kv, timers: env.timers, qps });
    this.leaders = new LeaderBalancer({
      kv: this.kv,
      timers: env.timers,
      qps,
      minQpsImbalance: SIM_MIN_QPS_IMBALANCE,
      observe: (e) => (env.count(e.reason === 'qps' ? 'leader-balance-qps' : 'leader-balance'), env.trace(`${env.id} range ${e.rangeId} leadership to ${e.to} (balance by ${e.reason})`)),
    });
  }

  get store(): Store {
    return this.kv.store;
  }

  /** Watches on this node, fed by every applied change (the same hub the server uses). */
  get watches(): WatchHub {
    return this.kv.watches;
  }

  /** etcd's Cluster API logic, as a real node runs it (src/kv/membership.ts). */
  get membership(): MembershipCore {
    return this.kv.membership;
  }

  private get sm(): MvccStateMachine {
    return this.kv.stateMachine;
  }

  private get requests(): RequestRunner {
    return this.kv.requests;
  }

  get raw(): RawNode {
    const r = this.store.replica(SIM_RANGE);
    if (r === undefined) throw new Error('sim range missing');
    return r.raw;
  }

  stop(): void {
    this.stopped = true;
    this.kv.close();
  }

  isStopped(): boolean {
    return this.stopped;
  }

  private meterOf(rangeId: RangeId): LoadMeter {
    let meter = this.meters.get(rangeId);
    if (meter === undefined) this.meters.set(rangeId, (meter = new LoadMeter(this.env.timers)));
    return meter;
  }

  tick(): void {
    this.kv.tick();
    this.loadReporter.tick();
    this.merges.tick();
    this.reconciler.tick();
    if (this.balancing && this.drainer.state === 'serving') this.leaders.tick();
    this.drainer.tick();
  }

  /** Stops moving leaderships to balance them: the convergence check wants a quiet cluster. */
  stopBalancing(): void {
    this.balancing = false;
    this.reconciler.stopBalancing();
  }

  /** `tessera node decommission` of this node: it drains, then the cluster removes it. */
  decommission(): void {
    this.drainer.start();
  }

  /** Ticks owed after a pause, delivered at once as the node runtime's Ticker does. */
  catchUpTicks(ticks: number): void {
    this.kv.catchUpTicks(ticks);
    this.merges.tick();
    this.reconciler.tick();
    if (this.balancing && this.drainer.state === 'serving') this.leaders.tick();
    this.drainer.tick();
  }

  receive(messages: readonly RangeMessage[]): void {
    this.store.receive(messages);
  }

  /** Whether promise-based work is in flight on this node: client API calls, forwarded requests (Scheduler.asyncWork). */
  get asyncWork(): boolean {
    return this.apiCalls > 0 || this.kv.forwarder.busy;
  }

  receiveForward(from: NodeId, message: ForwardMessage): void {
    this.kv.receiveForward(from, message);
  }

  receiveRevisions(from: NodeId, message: RevisionMessage): void {
    this.kv.receiveRevisions(from, message);
  }

  receiveLiveness(from: NodeId, load?: NodeLoad): void {
    this.store.receiveLiveness(from);
    if (load !== undefined) this.kv.receiveLoad(from, load);
  }

  reportSnapshot(rangeId: RangeId, to: NodeId, ok: boolean): void {
    this.store.reportSnapshot(rangeId, to, ok);
  }

  /** The range holding a workload key on this node, if it holds one. */
  rangeOfKey(key: string): RangeId | undefined {
    const r = this.route(encoder.encode(key));
    return r instanceof TesseraError ? undefined : r;
  }

  /** The range of `key` by this node's router, or why none (RANGE_UNAVAILABLE: not set up here yet). */
  private route(key: Uint8Array): RangeId | TesseraError {
    try {
      const span = this.kv.router.over({ start: key, end: undefined })[0];
      // A range only other nodes hold: not one this node can serve from its own replicas.
      if (span === undefined || span.remote !== undefined) return new TesseraError('RANGE_UNAVAILABLE', 'no replica of the range here');
      return span.rangeId;
    } catch (error) {
      if (error instanceof TesseraError && error.code === 'RANGE_UNAVAILABLE') return error;
      throw error;
    }
  }

  /** Routes again after a definite refusal, or, on the last attempt, answers the refusal as a definite failure. */
  private reroute(attemptsLeft: number, why: TesseraError | string, attempt: (attemptsLeft: number) => void, reply: (r: ClientReply) => void): void {
    const reason = typeof why === 'string' ? why : why.message;
    if (attemptsLeft <= 1) return reply({ kind: 'fail', reason: `${reason} (routed ${ROUTE_ATTEMPTS} times)` });
    this.env.count('client-reroute');
    this.env.timers.after(REROUTE_DELAY_MS, () => attempt(attemptsLeft - 1));
  }

  /**
   * A client's write, as a real node's KvApi sends it: routed to the range
   * holding its key, through the node's RequestRunner, and routed again when
   * that range refuses it for a key a split gave away (the refusal is
   * applied alike everywhere: nothing was written).
   */
  write(command: KvCommand, reply: (r: ClientReply) => void): void {
    const txn = toTxn(command);
    if (this.env.replicas > 0) return this.writeThroughApi(command, txn, reply);
    const key = encoder.encode(command.key);
    const attempt = (attemptsLeft: number): void => {
      const rangeId = this.route(key);
      if (rangeId instanceof TesseraError) return this.reroute(attemptsLeft, rangeId, attempt, reply);
      this.requests.propose(
        (requestId) => encodeCommand({ kind: 'txn', requestId, txn }),
        (outcome) => {
          // Its range was merged away before the write applied (Store.closeRetired): certainly not done.
          if (outcome.kind === 'failed' && outcome.error.code === 'RANGE_MISMATCH') return this.reroute(attemptsLeft, outcome.error, attempt, reply);
          if (outcome.kind === 'failed') return reply(failure(outcome.error));
          const result = outcome.result as CommandResult;
          if (result.kind === 'txn') {
            const revision = result.response.revision;
            return reply({ kind: 'ok', result: command.op === 'cas' ? { succeeded: result.response.succeeded, revision } : { revision } });
          }
          if (result.kind === 'error' && result.code === 'RANGE_MISMATCH') return this.reroute(attemptsLeft, result.message, attempt, reply);
          if (result.kind === 'error') return reply({ kind: 'fail', reason: result.message });
          // A duplicate: an earlier copy of this request applied and its answer went to nobody.
          reply({ kind: 'unknown', reason: `result ${result.kind}` });
        },
        rangeId,
      );
    };
    attempt(ROUTE_ATTEMPTS);
  }

  /**
   * A client's linearizable read: a read barrier on the key's range, then
   * that replica's store, if it still holds the key (a split applied
   * meanwhile moves it: routed again).
   */
  read(key: string, reply: (r: ClientReply) => void): void {
    const k = encoder.encode(key);
    if (this.env.replicas > 0) return this.readThroughApi(k, reply);
    const attempt = (attemptsLeft: number): void => {
      const rangeId = this.route(k);
      if (rangeId instanceof TesseraError) return this.reroute(attemptsLeft, rangeId, attempt, reply);
      this.requests.readBarrier((error) => {
        if (error?.code === 'RANGE_MISMATCH') return this.reroute(attemptsLeft, error, attempt, reply);
        if (error !== undefined) return reply(failure(error));
        const sm = this.kv.stateMachineOf(rangeId);
        if (!holds(sm.descriptor, k)) return this.reroute(attemptsLeft, `range ${rangeId} no longer holds ${key}`, attempt, reply);
        const kv = sm.mvcc.range({ key: k }).kvs[0];
        reply({ kind: 'ok', result: { value: kv === undefined ? null : decoder.decode(kv.value) } });
      }, rangeId);
    };
    attempt(ROUTE_ATTEMPTS);
  }

  /**
   * A write through the client API a real node serves etcd with (KvApi):
   * under placement the node may hold no replica of the key's range, and
   * the API forwards it to one that does (ADR 0012). A TIMEOUT is an
   * unknown outcome; every other refusal is definite.
   */
  private writeThroughApi(command: KvCommand, txn: TxnRequest, reply: (r: ClientReply) => void): void {
    this.apiCalls++;
    this.api.txn(txn).finally(() => this.apiCalls--).then(
      (response) => reply({ kind: 'ok', result: command.op === 'cas' ? { succeeded: response.succeeded, revision: response.revision } : { revision: response.revision } }),
      (error: unknown) => reply(error instanceof TesseraError ? failure(error) : { kind: 'unknown', reason: String(error) }),
    );
  }

  /** An etcd Txn through the client API (the transactional workload, txn_workload.ts): keys in several ranges make it a transaction across ranges. */
  apiTxn(request: TxnRequest, reply: (r: TxnReply) => void): void {
    this.apiCalls++;
    this.api.txn(request).finally(() => this.apiCalls--).then(
      (response) => reply({ kind: 'ok', response }),
      (error: unknown) => reply(error instanceof TesseraError ? failure(error) : { kind: 'unknown', reason: String(error) }),
    );
  }

  /** A linearizable read through the client API (see writeThroughApi). */
  private readThroughApi(key: Uint8Array, reply: (r: ClientReply) => void): void {
    this.apiCalls++;
    this.api.range({ key }, false).finally(() => this.apiCalls--).then(
      (result) => {
        const kv = result.kvs[0];
        reply({ kind: 'ok', result: { value: kv === undefined ? null : decoder.decode(kv.value) } });
      },
      (error: unknown) => reply(error instanceof TesseraError ? failure(error) : { kind: 'fail', reason: String(error) }),
    );
  }

  /** Merges range `leftId` with its right neighbour from this node (KvNode.mergeRanges): the merged descriptor, or why not. */
  mergeRanges(leftId: RangeId, done: (outcome: { merged: RangeDescriptor; rightRangeId: RangeId } | TesseraError) => void): void {
    this.kv.mergeRanges(leftId, done);
  }

  /** Asks this node's merge queue to merge range `leftId` with its right neighbour until `untilMs`, moving replicas first (placement). */
  wantMerge(leftId: RangeId, untilMs: number): void {
    this.merges.want(leftId, untilMs);
  }

  /** Splits range `rangeId` at `key` from this node (KvNode.splitRange): the two descriptors, or why not. */
  splitRange(rangeId: RangeId, key: string, done: (outcome: { left: RangeDescriptor; right: RangeDescriptor } | TesseraError) => void): void {
    this.kv.splitRange(rangeId, encoder.encode(key), done);
  }

  proposeConfChange(cc: ConfChange): boolean {
    return this.store.proposeConfChange(SIM_RANGE, cc).kind === 'appended';
  }

  transferLeader(to: NodeId): void {
    this.store.transferLeader(SIM_RANGE, to);
  }

  /** `key` as this node's store holds it at `revision`: its value and mod revision, null when absent, 'compacted', or 'not-yet' (a revision it has not reached). */
  readAt(key: string, revision: number): { value: string; modRevision: number } | null | 'compacted' | 'not-yet' {
    const rangeId = this.route(encoder.encode(key));
    // No range here holds the key: it cannot show the write.
    if (rangeId instanceof TesseraError) return 'not-yet';
    const mvcc = this.kv.stateMachineOf(rangeId).mvcc;
    if (revision <= mvcc.compactedRevision) return 'compacted';
    if (revision > mvcc.currentRevision) return 'not-yet';
    const kv = mvcc.range({ key: encoder.encode(key), revision }).kvs[0];
    return kv === undefined ? null : { value: decoder.decode(kv.value), modRevision: kv.modRevision };
  }

  /**
   * A digest of one range's replica, for comparing replicas: its bounds and
   * epoch, its visible keys, and for range 1 the member table. Undefined
   * for a replica without bounds (made for a peer's message, still empty).
   */
  rangeDigest(rangeId: RangeId): string | undefined {
    const sm = this.kv.stateMachineOf(rangeId);
    const d = sm.descriptor;
    if (d === undefined || this.store.replica(rangeId) === undefined) return undefined;
    const kvs = sm.mvcc.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) }).kvs;
    const members = rangeId === META_RANGE ? ` members ${this.memberIds().join(',')}` : '';
    return `${describeBounds(d)} v${d.epoch.version}: ${kvs.map((kv) => `${decoder.decode(kv.key)}=${decoder.decode(kv.value)}`).join(';')}${members}`;
  }

  /**
   * Why the live stats one range's replica keeps (MvccStore.liveKeysAndBytes,
   * what `/ranges` reports) differ from the live keys it holds, or undefined
   * when they agree or the replica holds nothing yet.
   */
  liveStatsProblem(rangeId: RangeId): string | undefined {
    const sm = this.kv.stateMachineOf(rangeId);
    if (sm.descriptor === undefined || this.store.replica(rangeId) === undefined) return undefined;
    const kvs = sm.mvcc.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) }).kvs;
    const held = { keys: kvs.length, bytes: kvs.reduce((n, kv) => n + kv.key.byteLength + kv.value.byteLength, 0) };
    const kept = sm.mvcc.liveKeysAndBytes();
    if (kept.keys === held.keys && kept.bytes === held.bytes) return undefined;
    return `keeps live stats of ${kept.keys} keys and ${kept.bytes} bytes but holds ${held.keys} keys and ${held.bytes} bytes`;
  }

  /** The ranges this node has a replica of, initialized or not. */
  rangeIds(): RangeId[] {
    return this.store.rangeIds();
  }

  /** The ids in the replicated member table, sorted. */
  memberIds(): number[] {
    return this.sm.members.all().map((m) => m.id);
  }

  /** The members of the applied incoming configuration (the member table must list exactly these), sorted. */
  incomingConfIds(): number[] {
    const cs = this.store.replica(SIM_RANGE)?.currentConfState();
    return [...new Set([...(cs?.voters ?? []), ...(cs?.learners ?? []), ...(cs?.learnersNext ?? [])])].sort((a, b) => a - b);
  }

  mvccStore(): MvccStore {
    return this.sm.mvcc;
  }

  /** The MVCC stores of the ranges this node holds keys of: together, the node's whole history. */
  rangeStores(): MvccStore[] {
    return this.kv.router.local().map((r) => this.kv.stateMachineOf(r.rangeId).mvcc);
  }

  /** The applied index of this node's replica of `rangeId` (0 without one). */
  applied(rangeId: RangeId = SIM_RANGE): number {
    return this.store.replica(rangeId)?.appliedIndex() ?? 0;
  }
}

function toTxn(command: KvCommand): TxnRequest {
  const key = encoder.encode(command.key);
  switch (command.op) {
    case 'put':
      return { compare: [], success: [{ type: 'put', put: { key, value: encoder.encode(command.value) } }], failure: [] };
    case 'delete':
      return { compare: [], success: [{ type: 'deleteRange', deleteRange: { key } }], failure: [] };
    case 'cas': {
      // Absent is "version 0"; present compares the value (values are unique per key).
      const compare =
        command.expected === null
          ? { key, target: 'VERSION' as const, result: 'EQUAL' as const, operand: 0 }
          : { key, target: 'VALUE' as const, result: 'EQUAL' as const, value: encoder.encode(command.expected) };
      return { compare: [compare], success: [{ type: 'put', put: { key, value: encoder.encode(command.value) } }], failure: [] };
    }
  }
}

const LOG_PREFIX = keys.logStart(SIM_RANGE).subarray(0, 10);

/** Whether `key` is one of a range's Raft log entries (the tail records a torn append cuts short): `r`, the range id, the log tag, the index. */
export function isSimLogEntryKey(key: Uint8Array): boolean {
  return key.length === LOG_PREFIX.length + 8 && key[0] === LOG_PREFIX[0] && key[9] === LOG_PREFIX[9];
}

/** Whether a descriptor's bounds hold `key`. */
function holds(d: RangeDescriptor | undefined, key: Uint8Array): boolean {
  return d !== undefined && compareBytes(d.start, key) <= 0 && (d.end === undefined || compareBytes(key, d.end) < 0);
}

/** A range's bounds as text, for digests and violation messages. */
export function describeBounds(b: { readonly start: Uint8Array; readonly end: Uint8Array | undefined }): string {
  return `[${decoder.decode(b.start)}, ${b.end === undefined ? '∞' : decoder.decode(b.end)})`;
}

/** The member record the simulator gives node `id` (founders at bootstrap, others when added). */
export function simMemberRecord(id: NodeId): MemberRecord {
  return { id, name: `s${id}`, peerUrls: [`http://sim-${id}:2380`], clientUrls: [] };
}

/** A TIMEOUT (or a transaction across ranges whose outcome is unknown) may still have happened; every other refusal certainly did not. */
function failure(error: TesseraError): ClientReply & { kind: 'fail' | 'unknown' } {
  return error.code === 'TIMEOUT' || error.code === 'TXN_OUTCOME_UNKNOWN' ? { kind: 'unknown', reason: error.message } : { kind: 'fail', reason: error.message };
}
