import { type Rng, TesseraError, type Timers, isTesseraError } from '../base/index.js';
import type { WriteBatch } from '../storage/engine.js';
import { encodeCommand } from './commands.js';
import { INITIAL_RANGE_EPOCH, type RangeDescriptor, type ReplicaDescriptor, encodeDescriptor } from './range_map.js';
import { epochOlder, remaindersAround } from './meta_table.js';
import { type RoutableRange, Router } from './router.js';
import type { ConfState, NodeId, Ready } from '../raft/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import type { StorageEngine } from '../storage/engine.js';
import { META_RANGE, type RangeId, keys, readU64 } from './keys.js';
import { compareBytes } from '../mvcc/bytes.js';
import { KeyHeadBudget } from '../mvcc/index.js';
import { DEFAULT_LEASE_CHECKPOINT_INTERVAL_MS, LeaseKeeper } from './lease_keeper.js';
import { LoadMeter } from './load.js';
import { NODE_LOAD_FRESH_MS, type NodeLoad } from './node_load.js';
import type { MemberRecord } from './members.js';
import { type MembershipLog, MembershipCore } from './membership.js';
import { type CommandResult, type FrozenState, MvccStateMachine } from './mvcc_state_machine.js';
import type { Applied, ReplicaRaftOptions } from './replica.js';
import { PROPOSAL_RETRY_MS, type RequestEvent, RequestRunner } from './requests.js';
import { type RevisionMessage, RevisionService } from './revisions.js';
import { type ForwardMessage, Forwarder } from './forward.js';
import { FEED_CALL_GRACE_MS, type RemoteRange, RemoteFeeds } from './remote_feed.js';
import { type QuiescenceEvent, type RangeMessage, Store, type Transport } from './store.js';
import { type WatchRanges, type WatchSource, WatchHub } from './watch_hub.js';

export { META_RANGE };


/** How often a node compares the meta table with the descriptors of the ranges it leads (repairMetaTable). */
export const META_REPAIR_INTERVAL_MS = 1_000;
/** The next round after one that proposed a repair (one entry a round), or after a membership change this node led. */
export const META_REPAIR_SOON_MS = 50;

/** How often the metadata range's leader looks for keys in other ranges whose lease is gone (see sweepLeaseKeys). */
export const LEASE_SWEEP_INTERVAL_MS = 500;

export interface KvNodeOptions {
  readonly nodeId: NodeId;
  /** The member's name, published in the member table. */
  readonly name: string;
  readonly engine: StorageEngine;
  readonly transport: Transport;
  /** Election jitter, fresh member ids. */
  readonly rng: Rng;
  /** Request deadlines and retries, the lease clock, the proposal window, membership polls. */
  readonly timers: Timers;
  readonly raft: ReplicaRaftOptions;
  readonly scheduleLoop: (loop: () => void) => void;
  readonly logRetainEntries: number;
  /** Bytes of entries kept behind the applied index, at most (default LOG_RETAIN_BYTES). */
  readonly logRetainBytes?: number;
  readonly requestTimeoutMs: number;
  /** Deadline of a membership change (default requestTimeoutMs): it waits for the joint configuration to be left too. */
  readonly membershipTimeoutMs?: number;
  /** Told of each request retry and deadline (the simulator counts them). */
  readonly observeRequests?: (event: RequestEvent) => void;
  /** Unique per start of the node: request ids must never repeat. */
  readonly requestIdPrefix: string;
  /** The store's proposal window in ms (Store's ProposalWindow); 0 or absent for none. */
  readonly proposalWindowMs?: number;
  readonly reproposeOnNewLeader?: boolean;
  /** Delivers ticks owed after a stall before a read asks for a read index (the runtime's Ticker). */
  readonly catchUpClock?: () => void;
  /** The store stopped serving: its storage failed. */
  readonly onStorageFailed: (error: Error) => void;
  /** This node's `--locality` (`zone=a`, tiers outermost first): placement spreads replicas across localities. */
  readonly locality?: string;
  /** How long a remote range feed's long poll waits (default FEED_WAIT_MS); the simulator's runs are shorter. */
  readonly feedWaitMs?: number;
  /** Told what remote range feeds do (RemoteFeedsOptions.observe; the simulator counts it). */
  readonly observeFeeds?: (event: string) => void;
  /** A founding member's first start: the configuration and the founders' records. Absent: join, or restart from disk. */
  readonly bootstrap?: { readonly confState: ConfState; readonly founders: readonly MemberRecord[] };
  readonly membershipLog: MembershipLog;
  /** This node's client URLs, to publish in the member table. */
  readonly clientUrls: () => readonly string[];
  /** Called once, some time after this node learns it was removed from the cluster. */
  readonly onRemoved: () => void;
  /** Observers after the watch feed (the simulator's oracles). */
  readonly onApplied?: (rangeId: RangeId, applied: Applied) => void;
  readonly onReady?: (rangeId: RangeId, rd: Ready) => void;
  /** Deliberate bugs, for the simulator only (sabotage.ts). */
  readonly sabotage?: Sabotage;
  /** Told when a replica quiesces or wakes (ADR 0010; the simulator counts them). */
  readonly onQuiescence?: (rangeId: RangeId, event: QuiescenceEvent) => void;
  /** Told of every batch of revisions this node's TSO handed out (the simulator's revision oracle). */
  readonly onRevisionsHandedOut?: (first: number, last: number) => void;
  /** Placement is on (`--replicas` above 0): a member is removed from the cluster only once no data range lists it (MembershipOptions.removalRefusal). */
  readonly placement?: boolean;
  /** Told of each unfreeze or abort-merge this node proposed for a merge that could not complete (ADR 0014), once answered. */
  readonly onMergeResolved?: (event: { readonly kind: 'unfreeze' | 'abort-merge'; readonly rangeId: RangeId; readonly ok: boolean }) => void;
  /** Told of each replica this node drops because placement moved it away (collectReplicas), and why. */
  readonly onReplicaCollected?: (rangeId: RangeId, why: string) => void;
  /** Told when a replica held at a merge asks for a snapshot past it, and when one is installed in its log (ADR 0014). */
  readonly onHeldMergeRepair?: (rangeId: RangeId, event: string) => void;
}

/** How often a node looks for replicas it should no longer have (see collectReplicas), besides when routing changes. */
export const REPLICA_GC_INTERVAL_MS = 1_000;
/** How often a node tells every member it is alive (announceLiveness); `--dead-after-ms` should be several times this. */
export const LIVENESS_ANNOUNCE_MS = 250;

/** A replica made for a peer's message that no snapshot has set up, and the meta table does not give this node, goes after this long. */
export const UNINITIALIZED_REPLICA_GC_MS = 30_000;

/**
 * A replica held at a merge this many request timeouts asks its range's
 * leader for a snapshot past it (repairHeldMerges): by then the right
 * range's replica it waits for is gone or does not catch up.
 */
export const HELD_MERGE_SNAPSHOT_AFTER_TIMEOUTS = 2;

/** How often a node looks for ranges it leads whose right neighbour is frozen, to finish their merge (see finishFrozenMerges). */
export const FROZEN_MERGE_CHECK_MS = 500;

/**
 * A range frozen this many request timeouts is given up on (ADR 0014): its
 * merge is aborted and the freeze ended. Twice the time finishFrozenMerges
 * waits before it tries the merge again, so that try has its two timeouts.
 */
export const FROZEN_ABORT_AFTER_TIMEOUTS = 4;

/** A merge whose proposer does not lead the frozen right range asks for its leadership every this many polls (see whenFreezeReplicated). */
const FREEZE_TRANSFER_POLLS = 10;

/** The source of a remote range past MAX_FEEDS: no history, so its watchers wait until a feed frees up. */
const NO_FEED: WatchSource = { currentRevision: 0, compactedRevision: 0, events: (o) => ({ events: [], nextRevision: o.fromRevision }) };

/** A revision request waits this share of the request timeout: the RequestRunner retries the proposals it held within the rest. */
const REVISION_DEADLINE_SHARE = 5;

/**
 * The kv side of one node, assembled once for the server, the simulator and
 * the tests (issue 13: it was written three times): the Store with its
 * ranges' MVCC state machines, the watch feed into the node's WatchHub, the
 * leader-side lease clock, the RequestRunner between client APIs and the
 * store, and etcd's membership logic. What differs between a real node and a
 * simulated one (engine, transport, timers, randomness, the loop scheduler)
 * comes in through the options.
 */
export class KvNode {
  readonly store: Store;
  readonly watches: WatchHub;
  readonly leaseKeeper: LeaseKeeper;
  readonly requests: RequestRunner;
  readonly membership: MembershipCore;
  /** Client requests served by the metadata range (today every request), per second. */
  readonly load: LoadMeter;
  /** Which range holds a key, from the ranges on this node. */
  readonly router: Router;
  /** Revisions for this node's range leaders, and the TSO when its meta replica leads (ADR 0009 §2). */
  readonly revisions: RevisionService;
  /** Requests on ranges only other nodes hold go out, and peers' come in, through it (ADR 0012). */
  readonly forwarder: Forwarder;
  /** The history of ranges only other nodes hold, for this node's watches (ADR 0013). */
  readonly feeds: RemoteFeeds;
  /** Remote ranges by id, as of router generation `remoteGeneration` (see remoteRange). */
  private remoteById = new Map<RangeId, RemoteRange>();
  private remoteGeneration = -1;
  /** Long polls of peers' feeds waiting for a range to apply a revision (see whenRevision). */
  private readonly revisionWaiters = new Set<{ readonly rangeId: RangeId; readonly revision: number; readonly done: () => void }>();
  private readonly machines = new Map<RangeId, MvccStateMachine>();
  /** One key-head cache budget for every range's MVCC store on this node (KeyHeadBudget). */
  private readonly headBudget = new KeyHeadBudget();
  private nextSweepMs = 0;
  private sweepSeq = 0;
  /** Lease revocations in flight in ranges other than the metadata range (`range:lease`). */
  private readonly sweeping = new Set<string>();
  private metaUpdating = false;
  /** Store.changeSeq at the last lease sweep that found nothing to delete (sweepLeaseKeys). */
  private sweepCleanAt: number | undefined;
  /** Store.changeSeq at the last finishFrozenMerges that found no frozen range here. */
  private unfrozenAt: number | undefined;
  private nextMetaRepairMs = 0;
  /**
   * repairMetaTable's last findings: the table it compared with, and for
   * each range the local descriptor the table held as it is. Both are
   * replaced, never changed in place, so an unchanged pair needs no second
   * look: at 10,000 quiet ranges the comparisons were a quarter of an idle
   * node's CPU.
   */
  private metaMatched: { readonly table: readonly RangeDescriptor[]; readonly ranges: Map<RangeId, RangeDescriptor>; cleanAt?: number | undefined } | undefined;
  /**
   * collectReplicas' last findings: the table it read, each replica it
   * kept with nothing asked, by the descriptor, freeze and configuration it
   * had (looked at again when any of them changes), and the store's
   * changeSeq at the last pass that kept every replica so.
   */
  private gcKept:
    | { readonly table: readonly RangeDescriptor[]; readonly ranges: Map<RangeId, { readonly d: RangeDescriptor; readonly frozen: unknown; readonly cs: ConfState }>; cleanAt?: number | undefined }
    | undefined;
  /** Ranges with a close command in flight from this node (see requestClose). */
  private readonly closing = new Set<RangeId>();
  /** Left ranges with a merge in flight from this node (see mergeRanges). */
  private readonly merging = new Set<RangeId>();
  private nextFrozenCheckMs = 0;
  private nextReplicaGcMs = 0;
  private nextAnnounceMs = 0;
  /** This node's load as placement last worked it out (publishLoad), sent with every liveness announcement (ADR 0015). */
  private ownLoad: NodeLoad | undefined;
  /** The load each peer last reported with its liveness, and when it arrived. */
  private readonly peerLoads = new Map<NodeId, { readonly load: NodeLoad; readonly atMs: number }>();
  private gcGeneration = -1;
  /** Replicas held at a merge here: the entry, since when, and when a snapshot was last asked for (repairHeldMerges). */
  private readonly heldSince = new Map<RangeId, { readonly from: number; readonly sinceMs: number; askedMs: number }>();
  /** When this node last asked a range's leader whether it is still a member (askMembership). */
  private readonly askedAtMs = new Map<RangeId, number>();
  /** Replicas not set up yet, and since when this node has seen them so (see collectReplicas). */
  private readonly uninitializedSinceMs = new Map<RangeId, number>();
  /** Frozen ranges this node has seen, and since when (see finishFrozenMerges). */
  private readonly frozenSinceMs = new Map<RangeId, number>();
  /** Unfreeze and abort-merge proposals in flight from this node (see finishFrozenMerges). */
  private readonly resolving = new Set<string>();

  constructor(private readonly o: KvNodeOptions) {
    // Previous values are loaded for events only while a watcher wants them.
    this.watches = new WatchHub(this.watchRanges(), o.sabotage);
    this.store = new Store({
      nodeId: o.nodeId,
      engine: o.engine,
      transport: o.transport,
      rng: o.rng,
      raft: o.raft,
      stateMachines: (rangeId) => this.stateMachineOf(rangeId),
      scheduleLoop: o.scheduleLoop,
      logRetainEntries: o.logRetainEntries,
      ...(o.logRetainBytes === undefined ? {} : { logRetainBytes: o.logRetainBytes }),
      ...(o.reproposeOnNewLeader === undefined ? {} : { reproposeOnNewLeader: o.reproposeOnNewLeader }),
      ...(o.catchUpClock === undefined ? {} : { catchUpClock: o.catchUpClock }),
      ...(o.proposalWindowMs === undefined || o.proposalWindowMs === 0
        ? {}
        : { proposalWindow: { windowMs: o.proposalWindowMs, nowMs: () => o.timers.nowMs(), after: (ms: number, run: () => void) => void o.timers.after(ms, run) } }),
      ...(o.sabotage === undefined ? {} : { sabotage: o.sabotage }),
      onStorageFailed: o.onStorageFailed,
      revisions: { allocate: (count, done) => this.revisions.allocate(count, done) },
      onApplied: (rangeId, applied) => this.feedWatches(rangeId, applied),
      onTurnApplied: () => {
        this.watches.flush();
        this.wakeRevisionWaiters();
      },
      onRangeOpened: () => this.router.invalidate(),
      ...(o.onQuiescence === undefined ? {} : { onQuiescence: o.onQuiescence }),
      onRangeRetired: (rangeId) => {
        this.machines.delete(rangeId);
        this.closing.delete(rangeId);
        this.router.invalidate();
      },
      onSnapshotInLog: (rangeId, index) => {
        // As for a snapshot Raft installs (onReady).
        this.watches.onReset();
        this.router.invalidate();
        o.onHeldMergeRepair?.(rangeId, `installed a snapshot at ${index} over its log`);
      },
      onReady: (rangeId, rd) => {
        // A snapshot replaces the key space: watchers catch up from its history.
        if (rd.snapshot !== undefined) {
          this.watches.onReset();
          this.router.invalidate();
        }
        if (rangeId === META_RANGE) this.revisions.check();
        // A new leader may hold a membership the table lacks (a change its predecessor applied and
        // died before repairing, seed 5324 under placement): the table is repaired at the next tick,
        // not a repair interval later, or nodes route the range's requests to a member it removed.
        else if (rd.softState?.state === 'leader') this.nextMetaRepairMs = 0;
        o.onReady?.(rangeId, rd);
      },
    });
    this.revisions = this.makeRevisionService();
    this.forwarder = new Forwarder({
      nodeId: o.nodeId,
      timers: o.timers,
      idPrefix: o.requestIdPrefix,
      send: (to, message) => o.transport.sendForward?.(to, message),
      leaderOf: (rangeId) => this.store.replica(rangeId)?.raw.raft.lead,
    });
    this.feeds = new RemoteFeeds({
      timers: o.timers,
      locate: (rangeId) => this.remoteRange(rangeId),
      call: (to, rangeId, op, timeoutMs) => this.forwarder.call(to, rangeId, op, timeoutMs),
      // The serving node's own deadline (a close is a proposal there) answers first.
      callTimeoutMs: o.requestTimeoutMs + (o.feedWaitMs ?? FEED_CALL_GRACE_MS),
      ...(o.feedWaitMs === undefined ? {} : { waitMs: o.feedWaitMs, callGraceMs: o.feedWaitMs }),
      onData: () => this.watches.pump(),
      ...(o.observeFeeds === undefined ? {} : { observe: o.observeFeeds }),
    });
    this.load = new LoadMeter(o.timers);
    this.leaseKeeper = new LeaseKeeper({
      store: this.store,
      rangeId: META_RANGE,
      leases: () => this.stateMachine.leases,
      clock: o.timers,
      requestIdPrefix: `${o.requestIdPrefix}.lease`,
      checkpointIntervalMs: DEFAULT_LEASE_CHECKPOINT_INTERVAL_MS,
    });
    this.requests = new RequestRunner({
      store: this.store,
      rangeId: META_RANGE,
      requestTimeoutMs: o.requestTimeoutMs,
      requestIdPrefix: o.requestIdPrefix,
      timers: o.timers,
      ...(o.observeRequests === undefined ? {} : { observe: o.observeRequests }),
      ...(o.sabotage === undefined ? {} : { sabotage: o.sabotage }),
    });
    this.membership = new MembershipCore({
      store: this.store,
      rangeId: META_RANGE,
      stateMachine: this.stateMachine,
      self: o.nodeId,
      name: o.name,
      requestTimeoutMs: o.membershipTimeoutMs ?? o.requestTimeoutMs,
      requestIdPrefix: o.requestIdPrefix,
      timers: o.timers,
      rng: o.rng.fork(),
      log: o.membershipLog,
      clientUrls: o.clientUrls,
      ...(o.locality === undefined ? {} : { locality: o.locality }),
      onRemoved: o.onRemoved,
      ...(o.placement === true ? { removalRefusal: (id: NodeId) => this.replicasListing(id) } : {}),
      ...(o.sabotage === undefined ? {} : { sabotage: o.sabotage }),
    });
    this.router = new Router(() => this.routableRanges());
    // A founder creates the range; a joining node waits for the leader's snapshot, and a restart finds it on disk.
    const b = o.bootstrap;
    this.store.openRange(META_RANGE, b === undefined ? undefined : { confState: b.confState, seed: (batch) => this.seedFirstRange(batch, b) });
    // Ranges split off the first one, found on disk at a restart.
    for (const id of rangeIdsOnDisk(o.engine)) if (this.store.replica(id) === undefined) this.store.openRange(id);
  }

  /** The first range at a founder's bootstrap: the whole key space, the founding members. */
  private seedFirstRange(batch: WriteBatch, b: NonNullable<KvNodeOptions['bootstrap']>): void {
    const sm = this.stateMachine;
    sm.seedMembers(batch, b.founders);
    const replicas: ReplicaDescriptor[] = [
      ...b.confState.voters.map((nodeId) => ({ nodeId, role: 'voter' as const })),
      ...b.confState.learners.map((nodeId) => ({ nodeId, role: 'learner' as const })),
    ];
    const first: RangeDescriptor = { rangeId: META_RANGE, start: new Uint8Array(0), end: undefined, epoch: INITIAL_RANGE_EPOCH, replicas };
    sm.seedDescriptor(batch, first);
    sm.metaTable?.seed(batch, first);
  }

  /**
   * The node's ranges as the WatchHub sees them: routed by the router, each
   * closed at its current revision; a range only other nodes hold is read
   * through its remote feed (ADR 0013).
   */
  private watchRanges(): WatchRanges {
    return {
      cover: (interval) => {
        try {
          return this.router.over(interval).map((s) => s.rangeId);
        } catch (error) {
          if (isTesseraError(error, 'RANGE_UNAVAILABLE')) return undefined;
          throw error;
        }
      },
      isRemote: (rangeId) => this.remoteRange(rangeId) !== undefined,
      store: (rangeId) => (this.remoteRange(rangeId) === undefined ? this.stateMachineOf(rangeId).mvcc : (this.feeds.feed(rangeId) ?? NO_FEED)),
      generation: () => this.router.generation,
      newestRevision: () => Math.max(this.newestRevision(), this.feeds.newestRevision()),
      requestClose: (rangeId, revision) => {
        if (this.remoteRange(rangeId) === undefined) this.requestClose(rangeId);
        else this.feeds.feed(rangeId)?.requestClose(revision);
      },
    };
  }

  /** Range `rangeId` when only other nodes hold it (its bounds and holders from the meta table), else undefined. */
  remoteRange(rangeId: RangeId): RemoteRange | undefined {
    if (this.remoteGeneration !== this.router.generation) {
      this.remoteById = new Map();
      for (const r of this.router.list()) if (r.remote !== undefined) this.remoteById.set(r.rangeId, { bounds: r.bounds, holders: r.remote });
      this.remoteGeneration = this.router.generation;
    }
    return this.remoteById.get(rangeId);
  }

  /**
   * Resolves once range `rangeId` has applied `revision` on this node, or
   * after `waitMs` (a peer's feed long-polls this way). At most
   * MAX_FORWARD_SERVING wait, as each is a forwarded call being served.
   */
  whenRevision(rangeId: RangeId, revision: number, waitMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const waiter = {
        rangeId,
        revision,
        done: () => {
          if (!this.revisionWaiters.delete(waiter)) return;
          timer.cancel();
          resolve();
        },
      };
      const timer = this.o.timers.after(waitMs, waiter.done);
      this.revisionWaiters.add(waiter);
    });
  }

  private wakeRevisionWaiters(): void {
    for (const w of this.revisionWaiters) {
      const sm = this.machines.get(w.rangeId);
      // A replica made for a peer's message has no store until its snapshot: it waits on (its timer bounds it).
      if (sm !== undefined && sm.descriptor === undefined) continue;
      if (sm === undefined || sm.mvcc.currentRevision >= w.revision) w.done();
    }
  }

  /**
   * The highest revision any range on this node has applied, frozen ranges
   * included (they are not routed, but their changes were applied here: a
   * watch buffer that starts above them must not start below their last).
   */
  newestRevision(): number {
    let newest = 0;
    for (const id of this.store.rangeIds()) {
      const sm = this.machines.get(id);
      if (sm?.descriptor !== undefined) newest = Math.max(newest, sm.mvcc.currentRevision);
    }
    return newest;
  }

  /**
   * Asks range `rangeId` to close at a fresh revision (a `close` command,
   * ADR 0009 §4), unless this node has one in flight for it: a watcher
   * here waits for the range to pass changes other ranges applied. Forwarded
   * to the range's leader like any proposal; a failed one is asked again on
   * the watcher's next turn.
   */
  requestClose(rangeId: RangeId): void {
    if (this.closing.has(rangeId) || this.store.replica(rangeId) === undefined) return;
    this.closing.add(rangeId);
    // Through the request path: a forwarded proposal the leader lost is proposed again, and a deadline ends it.
    this.requests.propose((requestId) => encodeCommand({ kind: 'close', requestId }), () => this.closing.delete(rangeId), rangeId);
  }

  /**
   * The ranges this node serves keys of: not a replica made for a peer's
   * message (it holds none until its snapshot), nor a range frozen for a
   * merge (its keys are served again by the left neighbour once the merge
   * applies here; until then they are RANGE_UNAVAILABLE, which reads, writes
   * and watches wait out).
   */
  private routableRanges(): RoutableRange[] {
    const held: RoutableRange[] = [];
    const frozen = new Set<RangeId>();
    const table = this.stateMachine.metaTable?.all() ?? [];
    const byId: ReadonlyMap<RangeId, RangeDescriptor> = this.stateMachine.metaTable?.byRangeId() ?? new Map();
    for (const id of this.store.rangeIds()) {
      const sm = this.machines.get(id);
      const bounds = sm?.bounds;
      if (sm?.frozen !== undefined) frozen.add(id);
      // A replica the table shows moved off this node (one that missed its removal while down) is
      // served by the range's members meanwhile, until replica GC drops it.
      else if (bounds !== undefined && !movedAway(sm?.descriptor, byId.get(id), this.o.nodeId) && !this.mergedAwayHere(sm?.descriptor, byId.has(id))) held.push({ rangeId: id, bounds });
    }
    return [...held, ...remoteRanges({ held, table, frozen, self: this.o.nodeId })];
  }

  /** Whether a replica here whose range the meta table no longer lists (`listed` false) was merged away (mergedAway): its keys are served by the range that took it over. */
  private mergedAwayHere(d: RangeDescriptor | undefined, listed: boolean): boolean {
    if (d === undefined || listed) return false;
    const absorber = this.stateMachine.metaTable?.lookup(d.start);
    return absorber !== undefined && mergedAway(d, absorber, this.o.nodeId);
  }

  /**
   * Splits range `rangeId` at `splitKey` (ADR 0009 §5): a fresh range id
   * from the metadata range, then the split command in the range's own log,
   * for the epoch the key was chosen under. `done` gets the two new
   * descriptors, or why not (RANGE_MISMATCH when the range changed first).
   */
  splitRange(rangeId: RangeId, splitKey: Uint8Array, done: (outcome: { left: RangeDescriptor; right: RangeDescriptor } | TesseraError) => void): void {
    const d = this.machines.get(rangeId)?.descriptor;
    if (d === undefined) return done(new TesseraError('RANGE_UNAVAILABLE', `range ${rangeId} is not on this node`));
    const version = d.epoch.version;
    this.requests.propose(
      (requestId) => encodeCommand({ kind: 'alloc-range-id', requestId }),
      (outcome) => {
        if (outcome.kind === 'failed') return done(outcome.error);
        const allocated = outcome.result as CommandResult;
        if (allocated.kind !== 'range-id') return done(resultError(allocated));
        this.requests.propose(
          (requestId) => encodeCommand({ kind: 'split', requestId, splitKey, newRangeId: allocated.id, version }),
          (o2) => {
            if (o2.kind === 'failed') return done(o2.error);
            const r = o2.result as CommandResult;
            if (r.kind !== 'split') return done(resultError(r));
            // The meta table learns of the split now; if this is lost, the halves' leaders repair it (repairMetaTable).
            this.proposeMetaUpdate([r.left, r.right], 'split');
            done({ left: r.left, right: r.right });
          },
          rangeId,
        );
      },
      META_RANGE,
    );
  }

  /**
   * Merges range `leftId` with its right neighbour (ADR 0009 §6), which must
   * have the same replicas and be led here too. First the right range is
   * frozen by a `freeze` in its own log (a frozen range is frozen again at
   * no cost, so an interrupted merge is finished by asking again); then,
   * once every replica of it holds the freeze entry in its log, a `merge`
   * in the left range's log takes it over. `done` gets the merged
   * descriptor, or why not: RANGE_MISMATCH when either range changed first.
   */
  mergeRanges(leftId: RangeId, done: (outcome: { merged: RangeDescriptor; rightRangeId: RangeId } | TesseraError) => void): void {
    if (this.merging.has(leftId)) return done(new TesseraError('RANGE_MISMATCH', `range ${leftId} has a merge in flight from this node`));
    this.merging.add(leftId);
    this.startMerge(leftId, (outcome) => {
      this.merging.delete(leftId);
      done(outcome);
    });
  }

  private startMerge(leftId: RangeId, done: (outcome: { merged: RangeDescriptor; rightRangeId: RangeId } | TesseraError) => void): void {
    const left = this.machines.get(leftId)?.descriptor;
    if (left === undefined) return done(new TesseraError('RANGE_UNAVAILABLE', `range ${leftId} is not on this node`));
    if (this.machines.get(leftId)?.frozen !== undefined) return done(new TesseraError('RANGE_MISMATCH', `range ${leftId} is itself frozen for a merge`));
    const rightId = this.rightNeighbourOf(leftId);
    const right = rightId === undefined ? undefined : this.machines.get(rightId)?.descriptor;
    if (rightId === undefined || right === undefined) return done(new TesseraError('RANGE_UNAVAILABLE', `range ${leftId} has no right neighbour on this node`));
    if (!sameReplicas(left.replicas, right.replicas)) return done(new TesseraError('RANGE_MISMATCH', `ranges ${leftId} and ${rightId} have different replicas`));
    const proposeMerge = (frozen: { index: number; term: number; version: number }, leftConfVersion: number): void => {
      this.requests.propose(
        (requestId) => encodeCommand({ kind: 'merge', requestId, rightRangeId: rightId, rightVersion: frozen.version, rightFrozenIndex: frozen.index, rightFrozenTerm: frozen.term, leftConfVersion, leftVersion: left.epoch.version }),
        (o) => {
          if (o.kind === 'failed') return done(o.error);
          const r = o.result as CommandResult;
          if (r.kind !== 'merge') return done(resultError(r));
          // As after a split: the table learns at once (it replaces the two older entries), not at the next repair.
          this.proposeMetaUpdate([r.merged], 'merge');
          done({ merged: r.merged, rightRangeId: r.rightRangeId });
        },
        leftId,
      );
    };
    if (this.o.sabotage?.has('merge-skips-freeze') === true) {
      // The deliberate bug: no freeze, no wait; the merge names where the right range is on this node now.
      const replica = this.store.replica(rightId);
      if (replica === undefined) return done(new TesseraError('RANGE_UNAVAILABLE', `range ${rightId} is not on this node`));
      const index = replica.appliedIndex();
      return proposeMerge({ index, term: replica.raw.raft.raftLog.termOrUndefined(index) ?? 1, version: right.epoch.version }, left.epoch.confVersion);
    }
    this.requests.propose(
      (requestId) => encodeCommand({ kind: 'freeze', requestId, version: right.epoch.version, leftRangeId: leftId, leftVersion: left.epoch.version }),
      (o) => {
        if (o.kind === 'failed') return done(o.error);
        const r = o.result as CommandResult;
        if (r.kind !== 'freeze') return done(resultError(r));
        // Frozen already, by a merge naming another left range or version: only that one may take it
        // over, or the freeze ends (finishFrozenMerges).
        if (r.leftRangeId !== 0 && (r.leftRangeId !== leftId || r.leftVersion !== left.epoch.version)) {
          return done(new TesseraError('RANGE_MISMATCH', `range ${rightId} is frozen for range ${r.leftRangeId} at version ${r.leftVersion}`));
        }
        this.whenFreezeReplicated(leftId, rightId, r.index, this.o.timers.nowMs() + this.o.requestTimeoutMs, (outcome) => (typeof outcome === 'number' ? proposeMerge(r, outcome) : done(outcome)));
      },
      rightId,
    );
  }

  /** The range on this node that starts where range `leftId` ends, if any. */
  /** Why member `id` may not leave the cluster yet: the data ranges the meta table lists it in, if any. */
  private replicasListing(id: NodeId): string | undefined {
    const held = (this.stateMachine.metaTable?.all() ?? []).filter((d) => d.rangeId !== META_RANGE && d.replicas.some((r) => r.nodeId === id));
    if (held.length === 0) return undefined;
    return `member ${id.toString(16)} still holds replicas of ${held.length} ranges (${held.slice(0, 8).map((d) => d.rangeId).join(', ')}${held.length > 8 ? ', …' : ''})`;
  }

  rightNeighbourOf(leftId: RangeId): RangeId | undefined {
    const end = this.machines.get(leftId)?.descriptor?.end;
    if (end === undefined) return undefined;
    for (const id of this.store.rangeIds()) {
      const d = this.machines.get(id)?.descriptor;
      if (d !== undefined && id !== leftId && compareBytes(d.start, end) === 0) return id;
    }
    return undefined;
  }

  /**
   * Waits until this node leads range `rangeId` and every replica of it, and
   * every replica the left range `leftId` has, holds its log through `index`
   * (the freeze); answers the left range's conf version then, which the
   * merge names. Then the merge may commit: a replica that has the entry but
   * not yet its commit is told of it by the merge gate (Store.mergeGate),
   * none is left needing entries from a group the merge retires, and a
   * replica added to the left range later makes the merge refused (its
   * right replica may hold nothing). Polled every PROPOSAL_RETRY_MS until
   * `deadlineMs`.
   */
  private whenFreezeReplicated(leftId: RangeId, rangeId: RangeId, index: number, deadlineMs: number, done: (outcome: number | TesseraError) => void, polls = 0): void {
    const raft = this.store.replica(rangeId)?.raw.raft;
    const left = this.machines.get(leftId)?.descriptor;
    if (raft === undefined || left === undefined) return done(new TesseraError('RANGE_MISMATCH', `range ${raft === undefined ? rangeId : leftId} is gone`));
    const holds = (id: NodeId): boolean => (raft.trk.progress.get(id)?.match ?? 0) >= index;
    // Applied through the freeze here: every membership change before it is in the progress tracker,
    // and none after it applies (a frozen range refuses them), so the replicas seen now stay.
    const applied = (this.store.replica(rangeId)?.appliedIndex() ?? 0) >= index;
    // A replica of the right range on a node the left range lacks would never retire (the merge does not
    // apply there): the merge cannot go on, and the freeze is aborted (finishFrozenMerges).
    const extra = raft.trk.ids().find((id) => !left.replicas.some((r) => r.nodeId === id));
    if (raft.state === 'leader' && applied && extra !== undefined) return done(new TesseraError('RANGE_MISMATCH', `range ${rangeId} has a replica on ${extra}, which range ${leftId} lacks`));
    if (raft.state === 'leader' && applied && raft.trk.ids().every(holds) && left.replicas.every((r) => holds(r.nodeId))) return done(left.epoch.confVersion);
    if (this.o.timers.nowMs() + PROPOSAL_RETRY_MS >= deadlineMs) return done(new TesseraError('TIMEOUT', `range ${rangeId}'s replicas did not all receive its freeze at ${index} in time`));
    // Only the leader knows what its followers hold: the range's leadership is asked over now and then.
    if (raft.state !== 'leader' && raft.lead !== 0 && polls % FREEZE_TRANSFER_POLLS === 0) this.store.transferLeader(rangeId, this.o.nodeId);
    this.o.timers.after(PROPOSAL_RETRY_MS, () => this.whenFreezeReplicated(leftId, rangeId, index, deadlineMs, done, polls + 1));
  }

  /** Proposes descriptors to the meta table (a refused or stale update changes nothing); one repair in flight per node. */
  private proposeMetaUpdate(descriptors: readonly RangeDescriptor[], why: 'split' | 'merge' | 'repair'): void {
    if (why === 'repair') this.metaUpdating = true;
    const encoded = descriptors.map((d) => encodeDescriptor(d));
    this.requests.propose((requestId) => encodeCommand({ kind: 'meta-update', requestId, descriptors: encoded }), () => {
      if (why !== 'repair') return;
      this.metaUpdating = false;
      // A round repairs one entry: while some were stale, the next round comes soon.
      this.nextMetaRepairMs = Math.min(this.nextMetaRepairMs, this.o.timers.nowMs() + META_REPAIR_SOON_MS);
    }, META_RANGE);
  }

  /**
   * Every META_REPAIR_INTERVAL_MS, for each range this node leads: if the
   * meta table does not hold its descriptor as it is (a split whose update
   * was lost, a membership change), propose the local descriptors that
   * tile the keys of the table entries it overlaps (the table applies them
   * only if they are newer and cover exactly those keys).
   */
  private repairMetaTable(): void {
    const nowMs = this.o.timers.nowMs();
    if (nowMs < this.nextMetaRepairMs || this.metaUpdating) return;
    this.nextMetaRepairMs = nowMs + META_REPAIR_INTERVAL_MS;
    const table = this.stateMachine.metaTable;
    if (table === undefined || this.stateMachine.descriptor === undefined) return;
    const all = table.all();
    if (this.metaMatched?.table !== all) this.metaMatched = { table: all, ranges: new Map() };
    // Every range it leads was found in the table as it is, and nothing changed since.
    const seq = this.store.changeSeq;
    if (this.metaMatched.cleanAt === seq) return;
    const matched = this.metaMatched.ranges;
    this.metaMatched.cleanAt = seq;
    for (const r of this.router.local()) {
      if (this.store.replica(r.rangeId)?.raw.raft.state !== 'leader') continue;
      const d = this.machines.get(r.rangeId)?.descriptor;
      if (d !== undefined && matched.get(r.rangeId) === d) continue;
      const held = d === undefined ? undefined : table.lookup(d.start);
      if (d !== undefined && held !== undefined && held.rangeId === d.rangeId && !epochOlder(held, d)) matched.set(r.rangeId, d);
      if (d === undefined || (held !== undefined && held.rangeId === d.rangeId && !epochOlder(held, d))) continue;
      // The table lacks this one as it is: looked at again next time, whatever happens meanwhile.
      this.metaMatched.cleanAt = undefined;
      const stale = table.overlapping(d);
      const first = stale[0];
      const last = stale[stale.length - 1];
      if (first === undefined || last === undefined) continue;
      let local: (RangeDescriptor | undefined)[] = [];
      try {
        local = this.router.over({ start: first.start, end: last.end ?? new Uint8Array(0) }).map((s) => (s.remote === undefined ? this.machines.get(s.rangeId)?.descriptor : undefined));
      } catch (error) {
        if (!isTesseraError(error, 'RANGE_UNAVAILABLE')) throw error;
        local = [undefined];
      }
      if (local.every((x) => x !== undefined)) {
        this.proposeMetaUpdate(local as RangeDescriptor[], 'repair');
        return;
      }
      // Some of those keys are in ranges this node does not hold (placement moved them, ADR 0012): its
      // own descriptor, and what the stale entries hold beyond it, as remainders their leaders replace later.
      const pieces = [d, ...remaindersAround(first, d), ...(last === first ? [] : remaindersAround(last, d))];
      if (pieces.length <= 3 && !pieces.slice(1).some((p, i, all) => all.findIndex((q) => q.rangeId === p.rangeId) !== i)) {
        this.proposeMetaUpdate(pieces, 'repair');
        return;
      }
    }
  }

  /** The state machine of the metadata range (today the only one). */
  get stateMachine(): MvccStateMachine {
    return this.stateMachineOf(META_RANGE);
  }

  /** After every store tick: leases expire on the leader, membership duties run, then watchers behind catch up a step. */
  tick(): void {
    this.store.tick();
    this.afterTicks();
  }

  /** Ticks owed after a pause, delivered at once (see Store.catchUpTicks); the services run once per tick. */
  catchUpTicks(ticks: number): void {
    this.store.catchUpTicks(ticks);
    for (let i = 0; i < ticks; i++) this.afterTicks();
  }

  receive(messages: readonly RangeMessage[]): void {
    this.store.receive(messages);
  }

  /** A peer's revision request or answer (the transport checked its fields). */
  receiveForward(from: NodeId, message: ForwardMessage): void {
    this.forwarder.receive(from, message);
  }

  receiveRevisions(from: NodeId, message: RevisionMessage): void {
    this.revisions.receive(from, message);
  }

  private makeRevisionService(): RevisionService {
    const o = this.o;
    const store = this.store;
    return new RevisionService({
      nodeId: o.nodeId,
      metaRange: META_RANGE,
      host: {
        linearizableRead: (rangeId, done) => store.linearizableRead(rangeId, done),
        propose: (rangeId, requestId, data, done) => store.propose(rangeId, requestId, data, done),
        metaRaft: () => store.replica(META_RANGE)?.raw.raft,
        windowBound: () => this.stateMachine.tsoWindow,
        floorBound: () => this.stateMachine.mvcc.currentRevision + 1,
      },
      send: (to, message) => o.transport.sendRevisions(to, message),
      timers: o.timers,
      deadlineMs: Math.max(1, Math.floor(o.requestTimeoutMs / REVISION_DEADLINE_SHARE)),
      requestIdPrefix: o.requestIdPrefix,
      ...(o.sabotage === undefined ? {} : { sabotage: o.sabotage }),
      ...(o.onRevisionsHandedOut === undefined ? {} : { onHandedOut: o.onRevisionsHandedOut }),
    });
  }

  close(): void {
    this.feeds.close();
    for (const w of this.revisionWaiters) w.done();
    this.store.close();
  }

  private afterTicks(): void {
    this.revisions.check();
    this.repairMetaTable();
    this.leaseKeeper.tick();
    this.sweepLeaseKeys();
    this.finishFrozenMerges();
    this.repairHeldMerges();
    this.collectReplicas();
    this.membership.tick();
    this.watches.pump();
  }

  /**
   * Every REPLICA_GC_INTERVAL_MS: drops the replicas of ranges that moved off
   * this node (Store.removeReplica), and tells every member of the cluster
   * this node is alive (placement counts a member silent for
   * `--dead-after-ms` as dead; quiesced ranges carry no other message). A
   * replica goes when the range's leader says its configuration lacks this
   * node (asked when the replica's own membership or a newer one in the meta
   * table leaves the node out), or it was merged away, or it was never set
   * up and the table does not give it this node for
   * UNINITIALIZED_REPLICA_GC_MS. Never range 1 (every member holds it),
   * a range this node leads, or one frozen or held for a merge.
   */
  private collectReplicas(): void {
    const nowMs = this.o.timers.nowMs();
    this.announceLiveness(nowMs);
    const due = nowMs >= this.nextReplicaGcMs;
    // Also as soon as the routing changes (a meta-table update, a snapshot): a node back from a crash
    // learns there that a range moved away, and its replica would otherwise serve nobody for a second.
    if (!due && this.router.generation === this.gcGeneration) return;
    this.gcGeneration = this.router.generation;
    if (due) this.nextReplicaGcMs = nowMs + REPLICA_GC_INTERVAL_MS;
    const metaTable = this.stateMachine.metaTable;
    const table: ReadonlyMap<RangeId, RangeDescriptor> = metaTable?.byRangeId() ?? new Map();
    const all = metaTable?.all() ?? [];
    if (this.gcKept?.table !== all) this.gcKept = { table: all, ranges: new Map() };
    // A pass that kept every replica on their state alone gives the same answer until some state changes.
    const seq = this.store.changeSeq;
    if (this.gcKept.cleanAt !== seq) {
      let clean = true;
      for (const rangeId of this.store.rangeIds()) if (!this.lookToCollect(rangeId, table, nowMs)) clean = false;
      this.gcKept.cleanAt = clean ? seq : undefined;
    }
    for (const rangeId of this.store.takeSnapshotBlockers()) this.askMembership(rangeId, table.get(rangeId), nowMs);
  }

  /**
   * collectReplicas' look at one replica: drops it if it should go. True
   * when the answer follows from the replica's state and the table alone
   * (kept, or never looked at here), false when it may change with time
   * alone (a wait, a question to the range's leader) or the replica went.
   */
  private lookToCollect(rangeId: RangeId, table: ReadonlyMap<RangeId, RangeDescriptor>, nowMs: number): boolean {
    const self = this.o.nodeId;
    const kept = (this.gcKept as NonNullable<KvNode['gcKept']>).ranges;
    const replica = this.store.replica(rangeId);
    const sm = this.machines.get(rangeId);
    if (rangeId === META_RANGE || replica === undefined || replica.raw.raft.state === 'leader' || replica.raw.heldFrom !== undefined) return true;
    const seen = kept.get(rangeId);
    if (seen !== undefined && sm !== undefined && seen.d === sm.descriptor && seen.frozen === sm.frozen && seen.cs === replica.currentConfState()) return true;
    kept.delete(rangeId);
    const listed = table.get(rangeId);
    // A frozen replica stays for its merge, unless the table shows it merged into a range this node is
    // not a member of (a replica the merge left behind: it never retires otherwise).
    const absorber = sm?.frozen === undefined || sm.descriptor === undefined || listed !== undefined ? undefined : this.stateMachine.metaTable?.lookup(sm.descriptor.start);
    // Nor one the table shows moved off this node since: removed while it lagged, it never hears the
    // range's unfreeze; the range's leader says whether it is still a member (simulator seed 8294).
    const keptForMerge = absorber === undefined || sm?.descriptor === undefined || !mergedAway(sm.descriptor, absorber, self);
    if (sm?.frozen !== undefined && keptForMerge && !movedAway(sm.descriptor, listed, self)) return false;
    const listedHere = listed !== undefined && listed.replicas.some((r) => r.nodeId === self);
    const d = sm?.descriptor;
    let why: string;
    if (d === undefined) {
      if (listedHere) this.uninitializedSinceMs.delete(rangeId);
      const since = this.uninitializedSinceMs.get(rangeId) ?? nowMs;
      if (!listedHere) this.uninitializedSinceMs.set(rangeId, since);
      // Not while this node lacks range 1 (a node joining): it has no table to be listed in yet, and
      // dropping would waste the snapshot on its way (a 1 GB join dropped 258 such replicas in 420 s).
      const tableKnown = this.stateMachine.descriptor !== undefined;
      if (listedHere || !tableKnown || nowMs - since < UNINITIALIZED_REPLICA_GC_MS) return false;
      why = 'never set up, and not listed for this node';
    } else {
      this.uninitializedSinceMs.delete(rangeId);
      const decided = this.removalReason(rangeId, listed, listedHere, nowMs);
      // Kept with nothing asked: the same descriptor, freeze, configuration and table give the same answer.
      if (decided === 'keep') kept.set(rangeId, { d, frozen: sm?.frozen, cs: replica.currentConfState() });
      if (decided === 'keep') return true;
      if (decided === 'asked') return false;
      why = decided.drop;
    }
    this.uninitializedSinceMs.delete(rangeId);
    this.o.onReplicaCollected?.(rangeId, why);
    this.store.removeReplica(rangeId);
    return false;
  }

  /**
   * Every LIVENESS_ANNOUNCE_MS, tells every voter of range 1 this node is
   * alive: placement counts a member silent for `--dead-after-ms` as dead,
   * and a quiet cluster's nodes would otherwise hear nothing from each other
   * (quiesced ranges send no heartbeats, ADR 0010).
   */
  private announceLiveness(nowMs: number): void {
    if (nowMs < this.nextAnnounceMs) return;
    this.nextAnnounceMs = nowMs + LIVENESS_ANNOUNCE_MS;
    const self = this.o.nodeId;
    const load = this.ownLoad;
    for (const id of this.store.replica(META_RANGE)?.currentConfState().voters ?? []) if (id !== self) this.o.transport.sendLiveness?.(id, load);
  }

  /** This node's load, to be told to every member with its liveness from now on (placement works it out: ADR 0015). */
  publishLoad(load: NodeLoad): void {
    this.ownLoad = load;
  }

  /** A peer's load, which came with its liveness (the transport checked its fields). */
  receiveLoad(from: NodeId, load: NodeLoad): void {
    this.peerLoads.set(from, { load, atMs: this.o.timers.nowMs() });
  }

  /** The load of each voter of range 1 that reported one within NODE_LOAD_FRESH_MS, this node's own included (ADR 0015). */
  nodeLoads(): ReadonlyMap<NodeId, NodeLoad> {
    const out = new Map<NodeId, NodeLoad>();
    const nowMs = this.o.timers.nowMs();
    for (const id of this.store.replica(META_RANGE)?.currentConfState().voters ?? []) {
      const heard = this.peerLoads.get(id);
      const load = id === this.o.nodeId ? this.ownLoad : heard !== undefined && nowMs - heard.atMs <= NODE_LOAD_FRESH_MS ? heard.load : undefined;
      if (load !== undefined) out.set(id, load);
    }
    return out;
  }

  /**
   * Asks the leader of range `rangeId`, through the nodes the meta table
   * lists for it, whether this node is still a member, and drops this
   * node's replica if not. The leader's configuration is the one sure
   * answer: the table may lag a re-addition, and this replica may have
   * missed its removal (CockroachDB's replica GC asks the range too). An
   * addition after the answer reaches this node as a learner, which a
   * snapshot sets up again. At most one question per range every
   * REPLICA_GC_INTERVAL_MS.
   */
  private askMembership(rangeId: RangeId, listed: RangeDescriptor | undefined, nowMs: number): void {
    if (listed === undefined || rangeId === META_RANGE || (this.askedAtMs.get(rangeId) ?? -Infinity) > nowMs - REPLICA_GC_INTERVAL_MS) return;
    const holders = listed.replicas.map((r) => r.nodeId).filter((id) => id !== this.o.nodeId);
    if (holders.length === 0) return;
    this.askedAtMs.set(rangeId, nowMs);
    const ask = (i: number): void => {
      if (i >= holders.length) return;
      this.forwarder.call(holders[i] as NodeId, rangeId, { op: 'members' }, this.o.requestTimeoutMs).then(
        (value) => {
          const members = value as readonly number[];
          const replica = this.store.replica(rangeId);
          if (members.includes(this.o.nodeId) || replica === undefined || replica.raw.raft.state === 'leader') return;
          this.o.onReplicaCollected?.(rangeId, `its leader (on node ${holders[i]}) lists members ${members.join(',')} without this node`);
          this.store.removeReplica(rangeId);
        },
        () => ask(i + 1),
      );
    };
    ask(0);
  }

  /**
   * Why this node's initialized replica of `rangeId` goes, or undefined: a
   * replica dropped while still a voter would lose entries it acknowledged,
   * so each rule is sure. (1) Its own log, applied to its end, leaves it out
   * of the configuration: the leader counts no acknowledgement of it since,
   * and an addition after would reach it as a learner first. (2) The meta
   * table lists the range at a newer membership without it: the table may
   * lag a re-addition, so the range's leader is asked (askMembership).
   */
  private removalReason(rangeId: RangeId, listed: RangeDescriptor | undefined, listedHere: boolean, nowMs: number): { readonly drop: string } | 'keep' | 'asked' {
    const replica = this.store.replica(rangeId);
    const d = this.machines.get(rangeId)?.descriptor;
    if (replica === undefined || d === undefined) return 'keep';
    const self = this.o.nodeId;
    // Merged away (ADR 0014): the range no longer has a leader to ask, and this node, not a member of the
    // range that took it over, never applies that merge. Kept where it is a member: its merge gate needs it.
    const absorber = listed === undefined ? this.stateMachine.metaTable?.lookup(d.start) : undefined;
    if (absorber !== undefined && mergedAway(d, absorber, self)) return { drop: `merged into range ${absorber.rangeId}, which this node holds no replica of` };
    const cs = replica.currentConfState();
    const member = [...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext].includes(self);
    // A configuration without this node is not enough to drop the replica, even applied to the end of
    // its log and not listed in the table: a replica added again and caught up from the log passes
    // through the old configuration that removed it, while the table may lag its re-addition. Dropped
    // then, it lost entries it acknowledged, and the leader, which counts them, never sent them again
    // (simulator seed 282). Only the range's leader says for sure (askMembership).
    const newerWithout = listed !== undefined && !listedHere && listed.epoch.confVersion > d.epoch.confVersion && listed.epoch.version >= d.epoch.version;
    // The table says it moved, or its own configuration does (with entries it may never apply: a
    // removed replica hears no more commits): the range's leader says for sure (askMembership).
    if (!newerWithout && (member || listedHere)) return 'keep';
    this.askMembership(rangeId, listed, nowMs);
    return 'asked';
  }

  /**
   * On the metadata range's leader, every LEASE_SWEEP_INTERVAL_MS: keys of
   * other ranges whose lease is gone are deleted there (a lease-revoke
   * command in that range). The lease table lives on the metadata range; a
   * lease's keys may lie in any range (issue 13), so its expiry or
   * revocation reaches them this way, each range at its own revision: not
   * atomically across ranges, which needs issue 14's transactions. A key
   * whose put raced with the revocation is deleted by the next sweep.
   */
  private sweepLeaseKeys(): void {
    const nowMs = this.o.timers.nowMs();
    if (nowMs < this.nextSweepMs) return;
    this.nextSweepMs = nowMs + LEASE_SWEEP_INTERVAL_MS;
    if (this.store.replica(META_RANGE)?.raw.raft.state !== 'leader') return;
    // Nothing to delete last time, and no lease, attachment or replica changed since (Store.changeSeq).
    const seq = this.store.changeSeq;
    if (this.sweepCleanAt === seq && this.sweeping.size === 0) return;
    this.sweepCleanAt = seq;
    const records = this.stateMachine.leases;
    // The state machines themselves, not a lookup per range id: at 10,000 quiet ranges this walk, twice
    // a second, was the largest cost left on range 1's leader (ADR 0010's benchmark).
    for (const [rangeId, sm] of this.machines) {
      // Most ranges carry no lease: asked cheaply, so an idle node with 10,000 ranges pays little (ADR 0010).
      if (rangeId === META_RANGE || sm.descriptor === undefined || sm.frozen !== undefined || !sm.leases.hasAttached() || this.store.replica(rangeId) === undefined) continue;
      for (const id of sm.leases.attachedIds()) {
        const tag = `${rangeId}:${id}`;
        if (records.has(id) || this.sweeping.has(tag)) continue;
        this.sweeping.add(tag);
        this.sweepCleanAt = undefined;
        const requestId = `${this.o.requestIdPrefix}.sweep:${++this.sweepSeq}`;
        this.store.propose(rangeId, requestId, encodeCommand({ kind: 'lease-revoke', requestId, id }), () => this.sweeping.delete(tag));
      }
    }
  }

  /**
   * A frozen range serves nothing until its left neighbour takes it over; a
   * merge whose proposer failed (a deadline, a lost leadership, a crash, a
   * replica move that raced it) leaves it so. Every FROZEN_MERGE_CHECK_MS,
   * for each range frozen here for two request timeouts (the proposer's
   * wait for the freeze and its merge proposal, each bounded by one): the
   * leader of the left range the freeze names merges the two again (the
   * freeze is asked again at no cost); from FROZEN_ABORT_AFTER_TIMEOUTS on,
   * any node holding both sides takes the way back (ADR 0014): once it sees
   * that the merge can no longer apply (mergeCannotApply) it proposes the
   * `unfreeze`, and until then an `abort-merge` in the left range's log,
   * which makes it so. This runs whether the merge queue is on or not: a
   * range frozen before a restart with merges turned off must not stay
   * unavailable.
   */
  private finishFrozenMerges(): void {
    const nowMs = this.o.timers.nowMs();
    if (nowMs < this.nextFrozenCheckMs) return;
    this.nextFrozenCheckMs = nowMs + FROZEN_MERGE_CHECK_MS;
    // Nothing was frozen here, and no replica's state changed since (a freeze is applied).
    const seq = this.store.changeSeq;
    if (this.unfrozenAt === seq) return;
    const frozen = new Map<RangeId, FrozenState>();
    for (const [id, sm] of this.machines) {
      const f = sm.frozen;
      if (f !== undefined && this.store.replica(id) !== undefined) frozen.set(id, f);
    }
    for (const id of [...this.frozenSinceMs.keys()]) if (!frozen.has(id)) this.frozenSinceMs.delete(id);
    for (const id of frozen.keys()) if (!this.frozenSinceMs.has(id)) this.frozenSinceMs.set(id, nowMs);
    // Nothing frozen, nothing to finish: the walk below (a neighbour search per range) was most of
    // an idle node's CPU at 2,000 ranges (ADR 0010's benchmark).
    this.unfrozenAt = frozen.size === 0 ? seq : undefined;
    if (frozen.size === 0) return;
    for (const [rightId, f] of frozen) {
      const frozenMs = nowMs - (this.frozenSinceMs.get(rightId) ?? nowMs);
      if (frozenMs < 2 * this.o.requestTimeoutMs) continue;
      const sabotaged = this.o.sabotage?.has('unfreeze-without-abort') === true;
      if (sabotaged || (f.leftRangeId !== 0 && this.mergeCannotApply(f))) {
        this.proposeUnfreeze(rightId, f);
        continue;
      }
      // A freeze that names no left range (recorded before they were named) is only ever finished.
      const leftId = f.leftRangeId !== 0 ? f.leftRangeId : this.leftNeighbourOf(rightId);
      if (leftId === undefined) continue;
      const aborting = f.leftRangeId !== 0 && frozenMs >= FROZEN_ABORT_AFTER_TIMEOUTS * this.o.requestTimeoutMs;
      if (aborting) this.proposeAbortMerge(leftId, rightId, f);
      else if (!this.merging.has(leftId) && this.store.replica(leftId)?.raw.raft.state === 'leader' && this.rightNeighbourOf(leftId) === rightId) this.mergeRanges(leftId, () => {});
    }
  }

  /**
   * Every FROZEN_MERGE_CHECK_MS (with finishFrozenMerges): a replica of a
   * left range whose apply has been held at a merge entry for
   * HELD_MERGE_SNAPSHOT_AFTER_TIMEOUTS request timeouts asks its range's
   * leader for a snapshot past that entry, at most once per such period
   * (ADR 0014 §6). Its merge gate waits for this node's replica of the
   * right range to apply through the freeze; one that is gone (replica GC
   * found it merged away) or never catches up (made by a split this
   * replica replayed, on a node the right range never had) keeps it waiting
   * for good, and nothing else ends the wait: the merge has applied on the
   * left range's other replicas, which retired the right range. The leader's
   * snapshot covers the merged span; its log holds the entry, so the Store
   * installs it in place (Store.installsInLog) and retires what remains of
   * the right range here (Store.snapshotFits).
   */
  private repairHeldMerges(): void {
    const nowMs = this.o.timers.nowMs();
    const held = this.store.heldMergeRanges();
    if (held.length === 0 && this.heldSince.size === 0) return;
    const waitMs = HELD_MERGE_SNAPSHOT_AFTER_TIMEOUTS * this.o.requestTimeoutMs;
    for (const id of [...this.heldSince.keys()]) if (!held.includes(id)) this.heldSince.delete(id);
    for (const leftId of held) {
      const raw = this.store.replica(leftId)?.raw;
      const from = raw?.heldFrom;
      if (raw === undefined || from === undefined) continue;
      let h = this.heldSince.get(leftId);
      if (h === undefined || h.from !== from) this.heldSince.set(leftId, (h = { from, sinceMs: nowMs, askedMs: nowMs }));
      if (nowMs - h.askedMs < waitMs) continue;
      h.askedMs = nowMs;
      // Its leader as this replica knows it first, then the nodes the meta table lists (NOT_LEADER from a follower).
      const lead = raw.raft.lead;
      const listed = this.stateMachine.metaTable?.all().find((d) => d.rangeId === leftId)?.replicas.map((r) => r.nodeId) ?? [];
      const asked = [...new Set([...(lead > 0 ? [lead] : []), ...listed])].filter((id) => id !== this.o.nodeId);
      const ask = (i: number): void => {
        if (i >= asked.length) return;
        const to = asked[i] as NodeId;
        this.forwarder.call(to, leftId, { op: 'snapshot', fromIndex: from }, this.o.requestTimeoutMs).then(
          (index) => this.o.onHeldMergeRepair?.(leftId, `held at ${from}: node ${to} sent a snapshot at ${String(index)}`),
          () => ask(i + 1),
        );
      };
      this.o.onHeldMergeRepair?.(leftId, `held at ${from} since ${Math.round(h.sinceMs)} ms: asks ${asked.join(',')} for a snapshot`);
      ask(0);
    }
  }

  /**
   * Whether this node's replica of the left range a freeze names (`f`:
   * range and epoch version) shows that the merge can never apply there
   * (ADR 0014): it is frozen itself at that version (a frozen range applies
   * no merge, and leaves that state only retired, or at a new version by an
   * unfreeze), or it left that version by another change than a merge (an
   * abort-merge, a split, an unfreeze: leftVersionWithoutMerge). Both are
   * facts of the left range's committed log, alike on every replica, and
   * a merge naming the version could apply only before them, which it did
   * not (it would have changed the version); or a range here took it over
   * by a merge at that version (absorbedAt: it was frozen at its final
   * version, as above). Either way no replica of the
   * left range applies the merge, and none of another range does (the
   * freeze names this one).
   */
  private mergeCannotApply(f: FrozenState): boolean {
    const left = this.machines.get(f.leftRangeId);
    const d = left?.descriptor;
    if (left !== undefined && d !== undefined) {
      if (left.frozen !== undefined && d.epoch.version === f.leftVersion) return true;
      if (left.leftVersionWithoutMerge(f.leftVersion)) return true;
    }
    // Merged away at that version (it was frozen then): some range here remembers taking it over.
    for (const id of this.store.rangeIds()) if (this.machines.get(id)?.descriptor !== undefined && this.machines.get(id)?.absorbedAt(f.leftRangeId, f.leftVersion) === true) return true;
    return false;
  }

  /** Ends range `rightId`'s freeze `f` (ADR 0014): proposed only once mergeCannotApply, one at a time per range. */
  private proposeUnfreeze(rightId: RangeId, f: FrozenState): void {
    const tag = `unfreeze:${rightId}`;
    if (this.resolving.has(tag)) return;
    this.resolving.add(tag);
    this.requests.propose(
      (requestId) => encodeCommand({ kind: 'unfreeze', requestId, version: f.version, frozenIndex: f.index, frozenTerm: f.term }),
      (o) => {
        this.resolving.delete(tag);
        const r = o.kind === 'applied' ? (o.result as CommandResult) : undefined;
        this.o.onMergeResolved?.({ kind: 'unfreeze', rangeId: rightId, ok: r?.kind === 'unfreeze' });
        // The meta table learns the new version at once, not at the next repair.
        if (r?.kind === 'unfreeze') this.proposeMetaUpdate([r.descriptor], 'merge');
      },
      rightId,
    );
  }

  /** Moves the left range past the version a freeze names (ADR 0014), through its own log; one at a time per range. */
  private proposeAbortMerge(leftId: RangeId, rightId: RangeId, f: FrozenState): void {
    const tag = `abort:${leftId}`;
    if (this.resolving.has(tag) || this.store.replica(leftId) === undefined) return;
    this.resolving.add(tag);
    this.requests.propose(
      (requestId) => encodeCommand({ kind: 'abort-merge', requestId, rightRangeId: rightId, leftVersion: f.leftVersion }),
      (o) => {
        this.resolving.delete(tag);
        const r = o.kind === 'applied' ? (o.result as CommandResult) : undefined;
        this.o.onMergeResolved?.({ kind: 'abort-merge', rangeId: leftId, ok: r?.kind === 'merge-aborted' && r.aborted });
        if (r?.kind === 'merge-aborted' && r.aborted) this.proposeMetaUpdate([r.descriptor], 'merge');
        // The unfreeze follows at the next check, once this node's replica shows the abort applied.
        this.nextFrozenCheckMs = 0;
      },
      leftId,
    );
  }

  /** The range on this node that ends where range `rightId` starts, if any. */
  leftNeighbourOf(rightId: RangeId): RangeId | undefined {
    const start = this.machines.get(rightId)?.descriptor?.start;
    if (start === undefined) return undefined;
    for (const id of this.store.rangeIds()) {
      const d = this.machines.get(id)?.descriptor;
      if (d !== undefined && id !== rightId && d.end !== undefined && compareBytes(d.end, start) === 0) return id;
    }
    return undefined;
  }

  /**
   * Whether placement must leave range `rangeId`'s replicas as they are
   * (ADR 0014): it is frozen for a merge, its right neighbour here is, or
   * this node is merging it with its right neighbour. From the freeze until
   * the merge applies or is aborted, a move of either side makes the merge
   * refused (the left's conf version) or impossible (a frozen range refuses
   * membership changes); this keeps placement from starting one.
   */
  mergePinned(rangeId: RangeId): boolean {
    const sm = this.machines.get(rangeId);
    if (this.merging.has(rangeId) || sm?.frozen !== undefined) return true;
    // The frozen ranges seen (a few at most), not a walk over every range: placement asks for each.
    const end = sm?.descriptor?.end;
    if (end === undefined || this.frozenSinceMs.size === 0) return false;
    for (const id of this.frozenSinceMs.keys()) {
      const f = this.machines.get(id);
      if (f?.frozen !== undefined && f.descriptor !== undefined && compareBytes(f.descriptor.start, end) === 0) return true;
    }
    return false;
  }

  /** The state machine of a range on this node (made on first use, as the Store opens the range). */
  stateMachineOf(rangeId: RangeId): MvccStateMachine {
    let sm = this.machines.get(rangeId);
    if (sm === undefined) this.machines.set(rangeId, (sm = new MvccStateMachine(this.o.engine, rangeId, { eventsWantPrevKv: () => this.watches.wantsPrevKv, headBudget: this.headBudget }, { requireDescriptor: true, holdsLeaseRecords: rangeId === META_RANGE, holdsMetaTable: rangeId === META_RANGE, mergeGate: (right, index, term) => this.store.mergeGate(rangeId, right, index, term), ...(this.o.sabotage === undefined ? {} : { sabotage: this.o.sabotage }) })));
    return sm;
  }

  /** Every applied change reaches the watchers in revision order: transactions and lease revocations. */
  private feedWatches(rangeId: RangeId, applied: Applied): void {
    const result = applied.result as CommandResult | undefined;
    // A split or a merge changes bounds; a freeze takes the range out of routing (routableRanges).
    // A leader's membership change reaches the meta table at the next repair round, at once.
    if (applied.entry.type === 'conf-change' && rangeId !== META_RANGE && this.store.replica(rangeId)?.raw.raft.state === 'leader') this.nextMetaRepairMs = 0;
    // A membership change too: a replica the meta table shows moved away is not routed to (movedAway).
    // A freeze pins its left neighbour at once (mergePinned), not at the next frozen-range check.
    if (result?.kind === 'freeze' && !this.frozenSinceMs.has(rangeId)) this.frozenSinceMs.set(rangeId, this.o.timers.nowMs());
    if (result?.kind === 'split' || result?.kind === 'merge' || result?.kind === 'freeze' || result?.kind === 'unfreeze' || result?.kind === 'merge-aborted' || result?.kind === 'meta-update' || applied.entry.type === 'conf-change') this.router.invalidate();
    if (result?.kind === 'txn' && result.events.length > 0) this.watches.onApplied(result.response.revision, result.events);
    if (result?.kind === 'lease-revoke' && result.events.length > 0) this.watches.onApplied(result.revision, result.events);
    // A transaction's changes at its commit revision C, which may be below the range's revision: the closed revision held the watch below C until now (ADR 0017 §4).
    if (result?.kind === 'txn-resolved' && result.events.length > 0) this.watches.onApplied(result.revision, result.events, true);
    if (rangeId === META_RANGE) this.revisions.onMetaApplied(applied.entry.term, result?.kind === 'tso-window' ? result.bound : undefined);
    this.o.onApplied?.(rangeId, applied);
  }
}

/**
 * The meta table's ranges that this node holds no replica of, where they
 * overlap none it holds (`held`): the table may lag behind a split or a
 * merge this node applied, and its own replicas are the truth for their
 * keys. Each lists the nodes of its replicas, voters first.
 */
function remoteRanges(o: { held: readonly RoutableRange[]; table: readonly RangeDescriptor[]; frozen: ReadonlySet<RangeId>; self: NodeId }): RoutableRange[] {
  const out: RoutableRange[] = [];
  const sorted = [...o.held].sort((a, b) => compareBytes(a.bounds.start, b.bounds.start));
  for (const d of o.table) {
    // A range frozen here for a merge is waited out (RANGE_UNAVAILABLE), as before ranges moved.
    if (o.frozen.has(d.rangeId) || overlapsAny(sorted, d)) continue;
    const others = d.replicas.filter((r) => r.nodeId !== o.self);
    const remote = [...others.filter((r) => r.role === 'voter'), ...others.filter((r) => r.role !== 'voter')].map((r) => r.nodeId);
    if (remote.length > 0) out.push({ rangeId: d.rangeId, bounds: { start: d.start, end: d.end }, remote });
  }
  return out;
}

/**
 * Whether this node's replica of a range is out of the range: its own
 * membership leaves this node out, or the meta table lists the range at a
 * newer membership that does. Another holder serves its keys meanwhile.
 */
/**
 * Whether the meta table shows the range of `here` merged into `absorber`
 * (another range, of a higher version, holding its start) that does not
 * list `self`: a replica left on a node that had been moved off the range
 * before its merge (ADR 0014). Range ids are never reused, so a newer
 * range over its keys means it is gone.
 */
function mergedAway(here: RangeDescriptor, absorber: RangeDescriptor, self: NodeId): boolean {
  return absorber.rangeId !== here.rangeId && absorber.epoch.version > here.epoch.version && !absorber.replicas.some((r) => r.nodeId === self);
}

function movedAway(here: RangeDescriptor | undefined, listed: RangeDescriptor | undefined, self: NodeId): boolean {
  if (here === undefined || listed === undefined || listed.replicas.some((r) => r.nodeId === self)) return false;
  if (!here.replicas.some((r) => r.nodeId === self)) return true;
  return listed.epoch.confVersion > here.epoch.confVersion && listed.epoch.version >= here.epoch.version;
}

/** Whether `d` overlaps any of `sorted` (by start, disjoint): a binary search for the last one starting before d's end. */
function overlapsAny(sorted: readonly RoutableRange[], d: RangeDescriptor): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  let last = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const b = (sorted[mid] as RoutableRange).bounds;
    if (d.end === undefined || compareBytes(b.start, d.end) < 0) {
      last = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (last < 0) return false;
  const end = (sorted[last] as RoutableRange).bounds.end;
  return end === undefined || compareBytes(end, d.start) > 0;
}

/** A refused command's result as an error (its code, when it is a TesseraError code). */
function resultError(r: CommandResult): TesseraError {
  if (r.kind === 'error') return new TesseraError(r.code === 'RANGE_MISMATCH' ? 'RANGE_MISMATCH' : 'INVALID_ARGUMENT', r.message);
  return new TesseraError('INVALID_ARGUMENT', `unexpected command result ${r.kind}`);
}

/** Whether two descriptors name the same replicas in the same roles (a merge needs that). */
function sameReplicas(a: readonly ReplicaDescriptor[], b: readonly ReplicaDescriptor[]): boolean {
  const key = (rs: readonly ReplicaDescriptor[]): string => rs.map((r) => `${r.nodeId}:${r.role}`).sort().join(',');
  return key(a) === key(b);
}

/** The ids of the ranges whose Raft state is on disk (each has an applied state record), in order. */
function rangeIdsOnDisk(engine: StorageEngine): RangeId[] {
  const ids: RangeId[] = [];
  // Range-local keys start `r` + id; one seek per range: skip to the next id after each.
  let from = keys.applyState(0);
  for (;;) {
    const next = first(engine, from, keys.rangeEnd(Number.MAX_SAFE_INTEGER - 1));
    if (next === undefined) return ids;
    const id = readU64(next, 1);
    const apply = keys.applyState(id);
    if (engine.get(apply) !== undefined) ids.push(id);
    from = keys.rangeEnd(id);
  }
}

function first(engine: StorageEngine, start: Uint8Array, end: Uint8Array): Uint8Array | undefined {
  for (const { key } of engine.scan({ start, end, limit: 1 })) return key;
  return undefined;
}
