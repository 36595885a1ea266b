import { assert, isTesseraError, TesseraError, type Rng } from '../base/index.js';
import { type ConfChange, type ConfState, DEFAULT_RAFT_OPTIONS, type DropReason, type Message, type NodeId, type ProposeResult, type Ready } from '../raft/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import type { StorageEngine, WriteBatch } from '../storage/engine.js';
import { encodeHardState, encodeJson } from './codec.js';
import { type RangeId, keys, rangePrefix } from './keys.js';
import { type Applied, LOG_RETAIN_BYTES, Replica, type ReplicaRaftOptions } from './replica.js';
import { EntryCacheBudget } from './log_storage.js';
import type { KeyBounds, StateMachineFactory } from './state_machine.js';
import { compareBytes } from '../mvcc/index.js';
import { OpenSnapshotReaders } from './snapshot_stream.js';
import type { ForwardMessage } from './forward.js';
import type { RevisionMessage } from './revisions.js';
import { stampEntry, wantsStamp } from './stamp.js';
import { TSO_MAX_BATCH_REVISIONS, type TsoAnswer } from './tso.js';
import type { NodeLoad } from './node_load.js';

/** Replicas one node holds at most; a peer's messages for more ranges make none (bounds memory against a hostile or buggy peer). */
export const MAX_RANGES_PER_NODE = 100_000;

/** A catch-up of this many ticks or more is a pause (see Store.catchUpTicks). */
export const PAUSE_TICKS = 3;

/** A leader whose last proposal batch held at least this many proposals is busy: it proposes once per window (see ProposalWindow). */
export const PROPOSAL_WINDOW_MIN_BATCH = 4;
/** Held proposals this many or more go to Raft at once, window or not. */
export const PROPOSAL_WINDOW_MAX_BATCH = 256;

/**
 * Group commit for proposals. Every loop turn that appends entries costs each
 * member a synced write and a round of messages, whatever the number of
 * entries, so under load a leader gathers proposals for up to `windowMs`
 * after its previous batch, its own and those followers forward, and
 * appends them together. A leader only holds while busy (its last batch
 * held PROPOSAL_WINDOW_MIN_BATCH or more): a lone client's proposal never
 * waits. Followers forward at once; the leader gathers theirs.
 */
export interface ProposalWindow {
  readonly windowMs: number;
  /** Monotonic milliseconds (the server: performance.now; the simulator: its clock). */
  nowMs(): number;
  /** Runs `run` after `delayMs` (the server: setTimeout; the simulator: an event then). */
  after(delayMs: number, run: () => void): void;
}

/** A proposal waiting for the next batch; a forwarded one (from a follower) has no id and nobody to answer here. */
interface QueuedProposal {
  readonly requestId: string | undefined;
  readonly data: Uint8Array;
  readonly done: ((o: ProposalOutcome) => void) | undefined;
}

/** A Raft message addressed to one range's replica on a peer. */
export interface RangeMessage {
  readonly rangeId: RangeId;
  readonly message: Message;
}

/**
 * Where a node's range leaders get revisions to stamp their proposals with
 * (ADR 0009 §3): the node's revision service (revisions.ts), which asks the
 * meta range leader's TSO. An answer must come, at the latest at the
 * service's deadline; until then the Store asks for no more.
 */
export interface RevisionSource {
  allocate(count: number, done: (answer: TsoAnswer) => void): void;
}

/** Proposals of one range waiting for the revisions asked for them, with the leader term they were asked in. */
interface StampGroup {
  readonly rangeId: RangeId;
  readonly replica: Replica;
  readonly term: number;
  readonly proposals: readonly QueuedProposal[];
}

/** Carries the messages of a loop turn to peers: one batch per peer (DESIGN.md decision 9). */
export interface Transport {
  send(to: NodeId, messages: readonly RangeMessage[]): void;
  /** A node-level message of the revision services (revisions.ts): a request for revisions, or its answer. */
  sendRevisions(to: NodeId, message: RevisionMessage): void;
  /**
   * A node-level "this node is alive" to a peer, one per tick while this node
   * leads a quiesced range (ADR 0010): followers of a quiesced range hear
   * nothing else from its leader, and wake when its node falls silent. A
   * transport without it: the store never quiesces a range. KvNode's
   * announcements carry the node's load (ADR 0015: KvNode.receiveLoad); the
   * store's own do not.
   */
  sendLiveness?(to: NodeId, load?: NodeLoad): void;
  /** A node-level call on a range another node holds, or its reply (forward.ts); a transport without it forwards nothing. */
  sendForward?(to: NodeId, message: ForwardMessage): void;
}

export interface StoreOptions {
  readonly nodeId: NodeId;
  readonly engine: StorageEngine;
  readonly transport: Transport;
  readonly rng: Rng;
  readonly raft: ReplicaRaftOptions;
  readonly stateMachines: StateMachineFactory;
  /** Asks the host to run `loop` soon (the server: setImmediate; the simulator: an event now). */
  readonly scheduleLoop: (loop: () => void) => void;
  readonly logRetainEntries: number;
  /** Bytes of entries kept behind the applied index, at most (default LOG_RETAIN_BYTES). */
  readonly logRetainBytes?: number;
  /** Propose pending proposals again when a new leader appears (default true; see reproposeOnNewLeader). */
  readonly reproposeOnNewLeader?: boolean;
  readonly sabotage?: Sabotage;
  /** Observes every applied entry (the simulator's state machine safety oracle). */
  readonly onApplied?: (rangeId: RangeId, applied: Applied) => void;
  /**
   * After the `onApplied` calls of one turn: every range's state is now what
   * the calls so far described (within a turn, every range applies before
   * the first call, so a range's state can be ahead of them until this).
   */
  readonly onTurnApplied?: () => void;
  readonly onReady?: (rangeId: RangeId, rd: Ready) => void;
  /** Told when a replica quiesces, wakes, or is woken because its leader's node fell silent (ADR 0010; the simulator counts them). */
  readonly onQuiescence?: (rangeId: RangeId, event: QuiescenceEvent) => void;
  /** Told of each range a split created here, once its replica is open. */
  readonly onRangeOpened?: (rangeId: RangeId) => void;
  /** Told of each range a merge retired here (or a snapshot of the range that took it over), once its replica is closed. */
  readonly onRangeRetired?: (rangeId: RangeId) => void;
  /** Told of each snapshot a replica held at a merge installed over entries its log holds (installInLog), once visible. */
  readonly onSnapshotInLog?: (rangeId: RangeId, index: number) => void;
  /**
   * Revisions for the commands a leader proposes: each is stamped with one
   * before Raft appends it (ADR 0009 §3, option 1). Absent: entries carry no
   * stamp and apply at the range's own counter (tests of the store alone).
   */
  readonly revisions?: RevisionSource;
  /** Gathers proposals under load (see ProposalWindow); absent: every loop turn proposes what it has. */
  readonly proposalWindow?: ProposalWindow;
  /**
   * Delivers the ticks the host owes (the server: Ticker.catchUp) before a
   * read index is asked: a leader judges its lease by its tick count, which
   * must not lag real time, e.g. after the event loop was blocked (ADR 0002).
   */
  readonly catchUpClock?: () => void;
  /** Told once when the store stops serving because its storage failed (see Store.failStorage); the host restarts the node. */
  readonly onStorageFailed?: (error: TesseraError) => void;
}

/** How a range is created when its storage is empty (see `Store.openRange`). */
export interface RangeBootstrap {
  readonly confState: ConfState;
  /** Writes the state machine's initial state (e.g. the founding member records) into the bootstrap batch. */
  readonly seed?: (batch: WriteBatch) => void;
}

/** What happened to a replica's quiescence (see StoreOptions.onQuiescence). */
export type QuiescenceEvent = 'quiesced' | 'woke' | 'woken-by-silence';

/** The answer to a proposal: the state machine's result, or why it certainly did not happen. */
export type ProposalOutcome =
  | { readonly kind: 'applied'; readonly result: unknown }
  | { readonly kind: 'dropped'; readonly error: TesseraError; readonly reason?: DropReason };

/** A proposal waiting for its entry to apply; the data is kept to propose it again to a new leader. */
interface PendingProposal {
  readonly rangeId: RangeId;
  /** Absent for a membership change, which is never proposed again (Raft allows one pending at a time). */
  readonly data?: Uint8Array;
  readonly done: (o: ProposalOutcome) => void;
}

interface Turn {
  readonly replica: Replica;
  readonly rd: Ready;
}

/**
 * The multi-raft store of one node: a Replica per range, keyed by range id,
 * all served by one ready loop. A loop turn takes the Ready of every replica
 * that has one, writes them in one batch, and waits for that one sync (group
 * commit); then it sends every message (one batch per peer), applies the
 * committed entries of all ranges in a second batch, answers proposers and
 * readers, and advances. Nothing is sent or acknowledged before its data is
 * durable. The second batch is staged: it goes to disk with the next turn's
 * write, since a crash only makes the node apply those entries again.
 */
export class Store {
  readonly nodeId: NodeId;
  private readonly replicas = new Map<RangeId, Replica>();
  private readonly pendingProposals = new Map<string, PendingProposal>();
  /** Proposals made since the last loop turn, per range: proposed to Raft together, as one batch. */
  private readonly queuedProposals = new Map<RangeId, QueuedProposal[]>();
  /** Proposals a leader holds until revisions are asked for them (one request in flight at a time, see requestRevisions). */
  private readonly awaitingStamp = new Map<RangeId, QueuedProposal[]>();
  /** The proposals whose revisions are being asked for, if a request is in flight. */
  private stamping: readonly StampGroup[] | undefined;
  /** The last batch held PROPOSAL_WINDOW_MIN_BATCH proposals or more. */
  private busy = false;
  private lastBatchMs = Number.NEGATIVE_INFINITY;
  private windowTimerSet = false;
  /** Reads queued since the last loop turn, per range: they share one ReadIndex (see linearizableRead). */
  private readonly queuedReads = new Map<RangeId, ((error: TesseraError | undefined) => void)[]>();
  private readonly pendingReads = new Map<string, { rangeId: RangeId; index?: number; dones: ((error: TesseraError | undefined) => void)[] }>();
  private writing = false;
  /** A batch was staged (see StorageEngine.stage) and no commit has carried it to disk yet. */
  private staged = false;
  /** A turn wrote (and so carried what was staged) since the last tick. */
  private wroteSinceTick = false;
  private loopScheduled = false;
  private closed = false;
  /** Why the store stopped serving, once its storage failed (see failStorage). */
  private storageFailure: TesseraError | undefined;
  private readSeq = 0;
  /**
   * Part of every ReadIndex context, drawn from the injected Rng on first use.
   * readSeq starts again at 0 on restart: without the nonce, a late answer to
   * a request sent before a crash carries the same context as a read made
   * after it, and would answer it with an older index (a stale read).
   */
  private bootNonce: string | undefined;
  /**
   * Counts what can change a replica's state, leadership or the set of
   * replicas: Ready turns (before and after their apply), snapshots
   * installed over a log, replicas opened and closed. A pass over every
   * range whose answer follows only from that state may skip a second look
   * while it stays the same (`changeSeq`): at 10,000 quiet ranges those
   * passes were most of an idle node's CPU (ADR 0010's benchmark).
   */
  private changes = 0;
  readonly stats = { turns: 0, syncs: 0, messagesSent: 0, entriesApplied: 0, reproposals: 0, revisionRequests: 0, revisionsAbandoned: 0 };
  /** The last leader (and its term) each range's replica reported, to notice a change. */
  private readonly lastLead = new Map<RangeId, { readonly lead: NodeId; readonly term: number }>();
  /** Snapshots being sent to followers: their read views, counted and closed when held too long. */
  readonly snapshotReaders = new OpenSnapshotReaders();
  /** The Raft options of every replica: quiescence only with a transport that carries liveness (ADR 0010). */
  private readonly raftOptions: ReplicaRaftOptions;
  /** Replicas that are ticked and looked at by every loop turn: all but the quiesced ones (ADR 0010). */
  private readonly awake = new Set<RangeId>();
  /** Quiesced replicas whose last Readies the loop has not taken yet: it looks at them until none is left. */
  private readonly settling = new Set<RangeId>();
  /** Quiesced replicas that lead their range: while there is one, this node tells its peers it is alive every tick. */
  private readonly quiescedLeaders = new Set<RangeId>();
  /** The members of ranges this node quiesced as leader: the nodes it tells that it is alive. */
  private readonly livenessPeers = new Set<NodeId>();
  /** This node's ticks since it last heard anything from each peer node (a Raft message or its liveness). */
  private readonly silentTicks = new Map<NodeId, number>();
  /** Ticks counted since this node started (see silentTicksOf). */
  private tickCount = 0;
  /** Replicas whose bounds kept a snapshot of another range out, since takeSnapshotBlockers. */
  private readonly snapshotBlockers = new Set<RangeId>();

  /** The replicas that refused room to another range's snapshot since the last call (see snapshotFits). */
  takeSnapshotBlockers(): RangeId[] {
    const out = [...this.snapshotBlockers];
    this.snapshotBlockers.clear();
    return out;
  }

  /** Replicas to drop at the start of the next turn (removeReplica). */
  private readonly pendingRemovals = new Set<RangeId>();
  /** rangeIds() until a range opens or closes. */
  private sortedIds: RangeId[] | undefined;
  /**
   * Left ranges whose merge entry waits here for this node's replica of the
   * right range to apply through its freeze (ADR 0009 §6): left id → the
   * right range and the freeze entry's index and term.
   */
  private readonly heldMerges = new Map<RangeId, { readonly rightRangeId: RangeId; readonly index: number; readonly term: number }>();
  /** Ranges retired here by a merge: a peer's late message for one makes no empty replica. */
  private readonly retiredRanges = new Set<RangeId>();
  /** Cached log entries of all the replicas here, bounded together (ENTRY_CACHE_NODE_BYTES). */
  private readonly entryCacheBudget = new EntryCacheBudget();
  /** Snapshots for replicas held at a merge, whose log holds them: installed at the start of the next turn (installInLog). */
  private readonly inLogSnapshots = new Map<RangeId, Message>();

  constructor(private readonly o: StoreOptions) {
    this.nodeId = o.nodeId;
    this.raftOptions = o.transport.sendLiveness === undefined ? { ...o.raft, quiesceAfterTicks: 0 } : o.raft;
  }

  /**
   * Opens a range's replica. With `bootstrap`, a range whose storage is empty
   * is created as a founding member: every founder writes the same state, a
   * log truncated at index 1 (term 1) whose applied state holds the founding
   * membership, so members added later start from a snapshot.
   */
  openRange(rangeId: RangeId, bootstrap?: RangeBootstrap): Replica {
    assert(!this.replicas.has(rangeId), () => `range ${rangeId} already open`);
    if (bootstrap !== undefined && this.o.engine.get(keys.applyState(rangeId)) === undefined && this.o.engine.get(keys.hardState(rangeId)) === undefined) {
      const batch = this.o.engine.newBatch();
      batch.put(keys.truncated(rangeId), encodeJson({ index: 1, term: 1 }));
      batch.put(keys.applyState(rangeId), encodeJson({ appliedIndex: 1, confState: bootstrap.confState }));
      batch.put(keys.hardState(rangeId), encodeHardState({ term: 1, vote: 0, commit: 1 }));
      bootstrap.seed?.(batch);
      this.o.engine.commit(batch, () => {});
    }
    const replica = new Replica({
      nodeId: this.nodeId,
      rangeId,
      engine: this.o.engine,
      stateMachine: this.o.stateMachines(rangeId),
      rng: this.o.rng.fork(),
      raft: this.raftOptions,
      logRetainEntries: this.o.logRetainEntries,
      logRetainBytes: this.o.logRetainBytes ?? LOG_RETAIN_BYTES,
      entryCacheBudget: this.entryCacheBudget,
      snapshots: this.snapshotReaders,
      ...(this.o.sabotage === undefined ? {} : { sabotage: this.o.sabotage }),
      onQuiescenceChange: (quiesced) => this.onQuiescenceChange(rangeId, quiesced),
    });
    this.replicas.set(rangeId, replica);
    this.sortedIds = undefined;
    this.changes++;
    this.awake.add(rangeId);
    return replica;
  }

  /** How many of this node's replicas are quiesced (ADR 0010). */
  quiescedCount(): number {
    return this.replicas.size - this.awake.size;
  }

  /**
   * A replica quiesced or woke. A quiesced one is no longer ticked nor looked
   * at by loop turns once its last Readies are taken; one that leads makes
   * this node send its liveness to the range's members every tick.
   */
  private onQuiescenceChange(rangeId: RangeId, quiesced: boolean): void {
    const replica = this.replicas.get(rangeId);
    if (replica !== undefined) this.o.onQuiescence?.(rangeId, quiesced ? 'quiesced' : 'woke');
    if (!quiesced || replica === undefined) {
      this.awake.add(rangeId);
      this.settling.delete(rangeId);
      this.quiescedLeaders.delete(rangeId);
      return;
    }
    this.awake.delete(rangeId);
    this.settling.add(rangeId);
    const raft = replica.raw.raft;
    if (raft.state !== 'leader') return;
    this.quiescedLeaders.add(rangeId);
    for (const id of raft.trk.ids()) if (id !== this.nodeId) this.livenessPeers.add(id);
    this.requestLoop();
  }

  /** The replicas a tick or a loop turn looks at, in range id order: the awake ones and the settling. */
  private activeRangeIds(): RangeId[] {
    if (this.settling.size === 0) return [...this.awake].sort((a, b) => a - b);
    return [...new Set([...this.awake, ...this.settling])].sort((a, b) => a - b);
  }

  /**
   * Ticks since this node last heard anything from `peer` (a Raft message or
   * its liveness); since this node started if never (placement's dead-node
   * detection, `--dead-after-ms`).
   */
  silentTicksOf(peer: NodeId): number {
    return this.silentTicks.get(peer) ?? this.tickCount;
  }

  /** A peer node's liveness arrived (see Transport.sendLiveness). */
  receiveLiveness(from: NodeId): void {
    this.silentTicks.set(from, 0);
  }

  /**
   * Per tick, after the replicas' ticks: counts each peer's silence, wakes
   * the quiesced followers of a peer that has been silent for an election
   * timeout (its node is down or cut off: they must be free to elect
   * another leader), and tells the members of this node's quiesced ranges
   * that it is alive. A pause counts as one tick, as for Raft's election
   * timer: a node that was not listening heard nothing.
   */
  private tickLiveness(ticks: number): void {
    const timeoutTicks = this.raftOptions.electionTimeoutTicks ?? DEFAULT_RAFT_OPTIONS.electionTimeoutTicks;
    const counted = ticks >= PAUSE_TICKS ? 1 : ticks;
    this.tickCount += counted;
    for (const [peer, silent] of this.silentTicks) {
      this.silentTicks.set(peer, silent + counted);
      if (silent < timeoutTicks && silent + counted >= timeoutTicks) this.wakeFollowersOf(peer);
    }
    const send = this.o.transport.sendLiveness;
    if (this.quiescedLeaders.size === 0 || send === undefined) return;
    for (const peer of [...this.livenessPeers].sort((a, b) => a - b)) send.call(this.o.transport, peer);
  }

  /** Wakes every quiesced follower whose leader is on `peer` (rare: a peer node fell silent). */
  private wakeFollowersOf(peer: NodeId): void {
    if (this.o.sabotage?.has('quiesce-ignores-leader-death') === true) return;
    for (const id of this.rangeIds()) {
      const raw = this.replicas.get(id)?.raw;
      if (raw === undefined || !raw.quiesced || raw.raft.state === 'leader' || raw.raft.lead !== peer) continue;
      this.o.onQuiescence?.(id, 'woken-by-silence');
      raw.unquiesce();
    }
  }

  /** See `changes`: equal values mean no replica's state, leadership or set changed in between. */
  get changeSeq(): number {
    return this.changes;
  }

  replica(rangeId: RangeId): Replica | undefined {
    return this.replicas.get(rangeId);
  }

  rangeIds(): RangeId[] {
    // Kept sorted between changes: callers ask every tick, and a node may hold 10,000 ranges.
    this.sortedIds ??= [...this.replicas.keys()].sort((a, b) => a - b);
    return [...this.sortedIds];
  }

  /** The ranges whose replicas are not quiesced (ADR 0010), in order. */
  awakeRangeIds(): RangeId[] {
    return [...this.awake].sort((a, b) => a - b);
  }

  tick(): void {
    this.catchUpTicks(1);
  }

  /**
   * Delivers ticks owed at once. PAUSE_TICKS or more mean the process was
   * paused or its event loop blocked: Raft hears of them as one pause
   * (RawNode.tickAfterPause), so a node that all stalled together (a huge
   * apply) does not depose its own leader; fewer are ordinary late timers.
   */
  catchUpTicks(ticks: number): void {
    if (this.storageFailure !== undefined) return;
    this.guarded(() => {
      this.snapshotReaders.tick(ticks);
      // Quiesced replicas are not ticked (ADR 0010): an idle node's tick costs what its awake ranges do.
      for (const id of [...this.awake].sort((a, b) => a - b)) {
        const raw = this.replicas.get(id)?.raw;
        if (raw === undefined) continue;
        if (ticks >= PAUSE_TICKS) raw.tickAfterPause(ticks);
        else for (let i = 0; i < ticks; i++) raw.tick();
      }
      this.tickLiveness(ticks);
      this.writeStaged();
    });
    this.requestLoop();
  }

  private stage(batch: WriteBatch): void {
    this.o.engine.stage(batch);
    this.staged = true;
  }

  /**
   * Staged batches ride with the next turn's write; when the node goes quiet
   * none comes, so a tick writes them if no turn wrote since the previous
   * tick, bounding how long applied state waits in memory (and how much a
   * restart replays) to two ticks, without an extra write per tick under load.
   */
  private writeStaged(): void {
    const wroteSinceTick = this.wroteSinceTick;
    this.wroteSinceTick = false;
    if (!this.staged || this.writing || this.closed || wroteSinceTick) return;
    this.staged = false;
    this.o.engine.commit(this.o.engine.newBatch(), (error) => {
      if (error !== undefined && this.o.sabotage?.has('ignore-sync-failure') !== true) this.failStorage(error);
    });
  }

  /** Steps messages a peer sent; messages for unknown ranges are dropped (the range may be gone). */
  receive(messages: readonly RangeMessage[]): void {
    if (this.storageFailure !== undefined) return;
    this.guarded(() => {
      for (const { rangeId, message } of messages) {
        this.silentTicks.set(message.from, 0);
        const replica = this.replicas.get(rangeId) ?? this.replicaForPeer(rangeId, message);
        if (replica === undefined) continue;
        if (message.type === 'MsgSnap' && !this.snapshotFits(replica, message)) continue;
        if (message.type === 'MsgSnap' && this.installsInLog(replica, message)) {
          this.inLogSnapshots.set(rangeId, message);
          continue;
        }
        if (this.mayNotVote(replica, message)) continue;
        if (!this.gathersForwarded(replica, message)) {
          replica.raw.step(message);
          // A quiesce heartbeat leaves the replica quiesced, maybe with entries to commit and apply.
          if (replica.raw.quiesced) this.settling.add(rangeId);
          continue;
        }
        const normal = message.entries.filter((e) => e.type === 'normal');
        this.queue(rangeId, normal.map((e) => ({ requestId: undefined, data: e.data, done: undefined })));
        // Membership changes go straight to Raft, which checks them against the pending one.
        if (normal.length < message.entries.length) replica.raw.step({ ...message, entries: message.entries.filter((e) => e.type !== 'normal') });
      }
    });
    this.requestLoop();
  }

  /**
   * A range this node has no replica of, named by a peer's message: the range
   * was split while this node's replica of the parent was behind (it will
   * learn of the range from a snapshot, never from the split), or it is new
   * here. A leader's append or heartbeat makes an empty replica, which holds
   * no keys until a snapshot arrives (TiKV's uninitialized peer). Other
   * messages make none: a vote request from a range this node never had
   * cannot be answered with anything it could later be held to.
   */
  private replicaForPeer(rangeId: RangeId, m: Message): Replica | undefined {
    if (m.type !== 'MsgApp' && m.type !== 'MsgHeartbeat' && m.type !== 'MsgSnap') return undefined;
    if (!Number.isSafeInteger(rangeId) || rangeId <= 0 || this.replicas.size >= MAX_RANGES_PER_NODE || this.retiredRanges.has(rangeId)) return undefined;
    return this.openRange(rangeId);
  }

  /**
   * Whether `m` is a vote request that an empty replica (no log, no
   * snapshot) made again after replica GC must leave unanswered. Raft's
   * election safety rests on a voter never losing what it acknowledged
   * (§5.4.1), and such a replica may have: replica GC drops the log of a
   * replica removed from its range, and the node may be added back later,
   * its new replica made empty by the leader's first message. A peer whose
   * own membership is stale still counts the node as a voter; granted its
   * vote, a candidate missing committed entries wins (simulator seed 5126
   * under placement). It votes again once it holds the range's state (a
   * snapshot). An empty replica that never held the range (a split's new
   * range on a node whose parent replica lags) acknowledged nothing, and
   * votes as Raft says: its vote may be what elects the range's leader
   * (seed 222).
   */
  private mayNotVote(replica: Replica, m: Message): boolean {
    if (m.type !== 'MsgVote' && m.type !== 'MsgPreVote') return false;
    return replica.raw.raft.raftLog.lastIndex() === 0 && this.o.engine.get(keys.tombstone(replica.rangeId)) !== undefined;
  }

  /**
   * Whether a snapshot may replace the replica's state: its bounds must not
   * overlap any other range this node holds. A replica of the parent that
   * has not applied the split yet still holds those keys; the snapshot waits
   * (the leader sends it again) until that replica's bounds shrink, by the
   * split or by a snapshot of its own (TiKV checks the same).
   */
  private snapshotFits(replica: Replica, m: Message): boolean {
    const data = m.snapshot?.data;
    const sm = replica.stateMachine;
    if (data === undefined || data.byteLength === 0 || sm.snapshotBounds === undefined) return true;
    const bounds = sm.snapshotBounds(data);
    // A state without a descriptor (a range made before descriptors, in tests) is the whole key space.
    if (bounds === undefined) return this.replicas.size === 1;
    if (this.o.sabotage?.has('snapshot-over-newer-descriptor') === true) return true;
    const absorbed: Replica[] = [];
    for (const other of this.replicas.values()) {
      if (other === replica) continue;
      const b = other.stateMachine.bounds;
      if (b === undefined || !boundsOverlap(b, bounds)) continue;
      if (!mergedInto(b, bounds)) {
        // Placement may have moved that range off this node while it was down: replica GC asks (KvNode.collectReplicas).
        this.snapshotBlockers.add(other.rangeId);
        return false;
      }
      absorbed.push(other);
    }
    // Ranges the snapshot's range took over by merges this node never applied (its replica of the
    // left range was behind): their state is in the snapshot, and their groups are retired elsewhere.
    // Only if it will be installed: by Raft (a newer term's snapshot past what is committed here and
    // not in the log), or in the log by a replica held at a merge (installsInLog); otherwise the
    // right replica must stay, for the merge entry this replica may still apply from its log.
    if (absorbed.length > 0 && !raftInstalls(replica, m) && !this.installsInLog(replica, m)) return false;
    // Only ranges this replica itself took over: they continue its bounds, one after another. A range
    // merged into another replica here (whose log may yet apply that merge, which needs the right
    // range's state) and later split off as the snapshot's range is not this range's to retire: the
    // snapshot waits until that replica applied the merge and the split (simulator seed 222).
    if (absorbed.length > 0 && !continuesBounds(sm.bounds, absorbed.map((r) => r.stateMachine.bounds as KeyBounds))) return false;
    if (absorbed.length > 0) {
      const batch = this.o.engine.newBatch();
      for (const other of absorbed) this.deleteRangeState(batch, other.rangeId);
      this.stage(batch);
      for (const other of absorbed) this.closeRetired(other.rangeId);
    }
    return true;
  }

  /**
   * Whether a leader's snapshot is for a replica held at a merge (ADR 0014:
   * it asked for one, KvNode.repairHeldMerges) and is past the held entry,
   * but its log holds the snapshot's last entry with the same term: Raft
   * would take it for covered by the log (it fast-forwards its commit
   * instead) and the held entry would never apply, when the right range's
   * replica it waits for is gone or never catches up. Such a snapshot is
   * installed in place of the entries up to it, the log kept (installInLog).
   */
  private installsInLog(replica: Replica, m: Message): boolean {
    const snapshot = m.snapshot;
    const held = replica.raw.heldFrom;
    const raft = replica.raw.raft;
    if (snapshot === undefined || snapshot.data.byteLength === 0 || held === undefined || raft.state === 'leader' || m.term < raft.term) return false;
    const { index, term, confState } = snapshot.metadata;
    const member = confState.voters.includes(this.nodeId) || confState.learners.includes(this.nodeId) || confState.votersOutgoing.includes(this.nodeId);
    return member && index >= held && index > replica.appliedIndex() && raft.raftLog.termOrUndefined(index) === term;
  }

  /**
   * Installs the snapshots installsInLog took, between turns: the replica's
   * state becomes the snapshot's and its apply goes on after it (the held
   * merge entry is covered), its log unchanged (Replica.installInLog). Raft
   * is then given the message, which it answers as one its log covers.
   */
  private installPendingInLog(): void {
    for (const [rangeId, m] of [...this.inLogSnapshots]) {
      this.inLogSnapshots.delete(rangeId);
      const replica = this.replicas.get(rangeId);
      if (replica === undefined || m.snapshot === undefined) continue;
      if (this.installsInLog(replica, m)) {
        const batch = this.o.engine.newBatch();
        replica.installInLog(batch, m.snapshot);
        this.stage(batch);
        replica.appliedVisible();
        this.heldMerges.delete(rangeId);
        this.o.onSnapshotInLog?.(rangeId, m.snapshot.metadata.index);
      }
      replica.raw.step(m);
      this.settling.add(rangeId);
    }
  }

  /** The merge entry a left range's replica is held at here (mergeGate), if any: the right range and its freeze. */
  heldMerge(leftRangeId: RangeId): { readonly rightRangeId: RangeId; readonly index: number; readonly term: number } | undefined {
    return this.heldMerges.get(leftRangeId);
  }

  /** The left ranges whose replicas are held at a merge here (mergeGate). */
  heldMergeRanges(): RangeId[] {
    return [...this.heldMerges.keys()];
  }

  /**
   * On the range's leader: sends node `to` a snapshot of this replica's
   * applied state now, if that is at or past `fromIndex` (a follower held at
   * a merge it cannot apply asks for one, ADR 0014). The snapshot's index, or
   * why none went.
   */
  sendSnapshot(rangeId: RangeId, to: NodeId, fromIndex: number): number | string {
    const replica = this.replicas.get(rangeId);
    if (replica === undefined || replica.raw.raft.state !== 'leader') return `this node does not lead range ${rangeId}`;
    const applied = replica.visibleAppliedIndex();
    if (applied < fromIndex) return `range ${rangeId}'s leader applied only through ${applied}, not ${fromIndex}`;
    const index = replica.raw.sendSnapshot(to);
    if (index === undefined) return `no snapshot of range ${rangeId} for node ${to} now`;
    // A quiesced leader is looked at by a loop turn only while it settles (ADR 0010).
    this.settling.add(rangeId);
    this.requestLoop();
    return index;
  }

  /**
   * Whether this node's merge entry for the right range may apply (the merge
   * gate, ADR 0009 §6): its replica of the right range shows, in the engine,
   * every entry through the freeze at `index` (term `term`). Otherwise the
   * left range's apply stops before the merge (Replica.apply) and is
   * released when the right replica catches up (releaseHeld). A right
   * replica that holds the freeze entry in its log but has not heard that
   * it committed is told so: the merge committed after the freeze applied
   * on the proposer, and an entry of the same index and term is the same
   * entry with the same log before it (Raft's Log Matching), so no right
   * range whose group is being retired leaves it waiting.
   */
  mergeGate(leftRangeId: RangeId, rightRangeId: RangeId, index: number, term: number): boolean {
    if (this.o.sabotage?.has('merge-skips-freeze') === true || this.rightCaughtUp(rightRangeId, index, term)) {
      this.heldMerges.delete(leftRangeId);
      return true;
    }
    this.heldMerges.set(leftRangeId, { rightRangeId, index, term });
    return false;
  }

  private rightCaughtUp(rightRangeId: RangeId, index: number, term: number): boolean {
    const right = this.replicas.get(rightRangeId);
    // Missing or not set up here: the left replica waits (ADR 0009 §6 on why this cannot last).
    if (right === undefined || right.stateMachine.bounds === undefined) return false;
    if (right.visibleAppliedIndex() >= index) return true;
    const log = right.raw.raft.raftLog;
    if (log.committed < index && log.termOrUndefined(index) === term) {
      log.commitTo(index);
      // A quiesced replica is looked at by a loop turn only while it settles (ADR 0010).
      this.settling.add(rightRangeId);
      this.requestLoop();
    }
    return false;
  }

  /** Releases the left ranges whose right range caught up since their merge entry was held. */
  private releaseHeld(): void {
    for (const [leftId, w] of this.heldMerges) {
      const left = this.replicas.get(leftId);
      if (left === undefined || left.raw.heldFrom === undefined) {
        this.heldMerges.delete(leftId);
        continue;
      }
      if (!this.rightCaughtUp(w.rightRangeId, w.index, w.term)) continue;
      this.heldMerges.delete(leftId);
      left.raw.releaseApply();
      // A follower may have quiesced with its apply held: the loop must look at it again (ADR 0010).
      this.settling.add(leftId);
      this.requestLoop();
    }
  }

  /** Deletes every range-local key of a retired range (its Raft state and log, descriptor, MVCC meta record, …); its user keys' data stays. */
  private deleteRangeState(batch: WriteBatch, rangeId: RangeId): void {
    batch.deleteRange(rangePrefix(rangeId), keys.rangeEnd(rangeId));
  }

  /**
   * Closes the replica of a range a merge retired, once its state is deleted
   * in a visible batch. What waits on it here can never be served: the range
   * refused every command after its freeze on every replica and applies
   * nothing more, so its proposals and reads are answered RANGE_MISMATCH,
   * which the client API routes again (to the merged range).
   */
  private closeRetired(rangeId: RangeId): void {
    this.retiredRanges.add(rangeId);
    this.closeReplica(rangeId, retiredError(rangeId), retiredError(rangeId));
  }

  /**
   * Drops this node's replica of a range that no longer has this node as a
   * member (placement moved it: the removal applied here, or the meta table
   * shows a newer membership without this node), or that was made for a
   * peer's message and never set up: its Raft state goes, and the data of
   * the keys it held, which its members hold (CockroachDB's replica GC). A
   * later snapshot may make it again, should placement bring the range back.
   * Proposals it had handed to Raft may still commit through the members, so
   * they get an unknown outcome (TIMEOUT); the rest RANGE_MISMATCH, which
   * the client API routes again, to the nodes that hold the range now.
   */
  removeReplica(rangeId: RangeId): void {
    if (!this.replicas.has(rangeId)) return;
    // At the start of a turn, with none in flight: a turn's apply of this replica may be waiting for its sync.
    this.pendingRemovals.add(rangeId);
    this.requestLoop();
  }

  /** Removes the replicas removeReplica asked for; only between turns. */
  private removePending(): void {
    for (const rangeId of [...this.pendingRemovals]) {
      this.pendingRemovals.delete(rangeId);
      this.removeNow(rangeId);
    }
  }

  private removeNow(rangeId: RangeId): void {
    const replica = this.replicas.get(rangeId);
    if (replica === undefined) return;
    const batch = this.o.engine.newBatch();
    // A replica never set up holds no keys: restoring its empty state would clear every key (it has no bounds).
    if (replica.stateMachine.bounds !== undefined) replica.stateMachine.restore(batch, new Uint8Array(0));
    const hard = replica.raw.raft;
    this.deleteRangeState(batch, rangeId);
    // Its term and vote stay (with an empty log, nothing committed), as for a replica made for a peer's
    // message: should the range come back here, this node never votes twice in one term.
    batch.put(keys.hardState(rangeId), encodeHardState({ term: hard.term, vote: hard.vote, commit: 0 }));
    // And a tombstone: a replica made here again starts empty, though this one may have acknowledged entries.
    batch.put(keys.tombstone(rangeId), new Uint8Array([1]));
    this.stage(batch);
    const moved = new TesseraError('RANGE_MISMATCH', `range ${rangeId} moved off this node`);
    this.closeReplica(rangeId, new TesseraError('TIMEOUT', `range ${rangeId} moved off this node while a proposal was in flight; its outcome is unknown`), moved);
  }

  /** Closes a replica: its proposals in Raft get `inRaft`, the queued ones and its reads `queued`. */
  private closeReplica(rangeId: RangeId, inRaft: TesseraError, queued: TesseraError): void {
    const replica = this.replicas.get(rangeId);
    if (replica === undefined) return;
    this.replicas.delete(rangeId);
    this.sortedIds = undefined;
    this.changes++;
    this.awake.delete(rangeId);
    this.settling.delete(rangeId);
    this.quiescedLeaders.delete(rangeId);
    this.lastLead.delete(rangeId);
    this.heldMerges.delete(rangeId);
    replica.stateMachine.detachLog?.();
    const proposed: ((o: ProposalOutcome) => void)[] = [];
    const waiting: ((o: ProposalOutcome) => void)[] = [];
    for (const [id, p] of this.pendingProposals) {
      if (p.rangeId !== rangeId) continue;
      this.pendingProposals.delete(id);
      proposed.push(p.done);
    }
    for (const map of [this.queuedProposals, this.awaitingStamp]) {
      for (const q of map.get(rangeId) ?? []) if (q.done !== undefined) waiting.push(q.done);
      map.delete(rangeId);
    }
    const reads = this.queuedReads.get(rangeId) ?? [];
    this.queuedReads.delete(rangeId);
    for (const [ctx, pr] of this.pendingReads) {
      if (pr.rangeId !== rangeId) continue;
      this.pendingReads.delete(ctx);
      reads.push(...pr.dones);
    }
    this.o.onRangeRetired?.(rangeId);
    for (const done of proposed) done({ kind: 'dropped', error: inRaft });
    for (const done of waiting) done({ kind: 'dropped', error: queued });
    for (const done of reads) done(queued);
  }

  /**
   * A leader stamps a follower's forwarded commands as its own (ADR 0009 §3:
   * stamped in the order Raft appends them), so it always takes them out of
   * the MsgProp. Without revisions, only a busy leader gathers them into its
   * next batch; stepping them would append them alone, at once.
   */
  private gathersForwarded(replica: Replica, m: Message): boolean {
    if (m.type !== 'MsgProp' || replica.raw.raft.state !== 'leader') return false;
    if (this.o.revisions !== undefined) return m.entries.some((e) => e.type === 'normal');
    return this.o.proposalWindow !== undefined && this.busy && m.entries.every((e) => e.type === 'normal');
  }

  private queue(rangeId: RangeId, proposals: readonly QueuedProposal[]): void {
    queueFor(this.queuedProposals, rangeId).push(...proposals);
  }

  private queuedCount(): number {
    let n = 0;
    for (const queue of this.queuedProposals.values()) n += queue.length;
    return n;
  }

  /**
   * Proposes a command; `done` gets the applied result or a definite drop.
   * Commands proposed in one event-loop turn reach Raft together at the
   * loop's next turn (one MsgProp, so one append per follower for all).
   */
  propose(rangeId: RangeId, requestId: string, data: Uint8Array, done: (o: ProposalOutcome) => void): void {
    if (this.retiredRanges.has(rangeId)) return done({ kind: 'dropped', error: retiredError(rangeId) });
    // Moved off this node (removeReplica) after the request was routed here: never proposed; routed again.
    if (!this.replicas.has(rangeId)) return done({ kind: 'dropped', error: notHereError(rangeId) });
    if (this.storageFailure !== undefined) return done({ kind: 'dropped', error: this.storageFailure });
    this.queue(rangeId, [{ requestId, data, done }]);
    this.requestLoop();
  }

  /** Hands the queued proposals of every range to Raft, one batch per range, unless the window holds them. */
  private proposeQueued(): void {
    const queued = this.queuedCount();
    if (queued === 0 || this.holdsProposals(queued)) return;
    this.busy = queued >= PROPOSAL_WINDOW_MIN_BATCH;
    if (this.o.proposalWindow !== undefined) this.lastBatchMs = this.o.proposalWindow.nowMs();
    for (const [rangeId, queue] of this.queuedProposals) {
      this.queuedProposals.delete(rangeId);
      const replica = this.replicas.get(rangeId);
      if (replica === undefined || queue.length === 0) continue;
      // A leader stamps; a follower forwards the bare commands, and their leader stamps them.
      if (this.o.revisions === undefined || replica.raw.raft.state !== 'leader') {
        this.proposeNow(rangeId, replica, queue);
        continue;
      }
      const unstamped = queue.filter((q) => !wantsStamp(q.data));
      if (unstamped.length > 0) this.proposeNow(rangeId, replica, unstamped);
      const stamped = queue.filter((q) => wantsStamp(q.data));
      if (stamped.length > 0) queueFor(this.awaitingStamp, rangeId).push(...stamped);
    }
    this.requestRevisions();
  }

  /** Hands proposals to Raft (`datas`: their stamped bytes); the pending entry keeps the bare command, to be stamped afresh if proposed again. */
  private proposeNow(rangeId: RangeId, replica: Replica, queue: readonly QueuedProposal[], datas?: readonly Uint8Array[]): void {
    if (queue.length === 0) return; // every proposal of the batch was abandoned
    const res: ProposeResult = replica.raw.proposeBatch(datas ?? queue.map((q) => q.data));
    for (const q of queue) {
      if (q.done === undefined || q.requestId === undefined) continue; // forwarded: its proposer tracks it
      if (res.kind === 'dropped') q.done({ kind: 'dropped', error: res.error, reason: res.reason });
      else this.pendingProposals.set(q.requestId, { rangeId, data: q.data, done: q.done });
    }
  }

  /**
   * Asks for revisions for every proposal a leader holds, one request for all
   * ranges (ADR 0009 §2: one message per loop turn, many revisions). Only one
   * request is in flight: a later one could be answered first and put higher
   * revisions ahead of lower ones in the log. A proposal is only ever stamped
   * with revisions asked for after it was queued, so a write that began after
   * another one ended takes a higher revision (real-time order).
   */
  private requestRevisions(): void {
    const source = this.o.revisions;
    if (source === undefined || this.stamping !== undefined || this.awaitingStamp.size === 0) return;
    const groups: StampGroup[] = [];
    let count = 0;
    for (const [rangeId, proposals] of this.awaitingStamp) {
      if (count >= TSO_MAX_BATCH_REVISIONS) break;
      const replica = this.replicas.get(rangeId);
      this.awaitingStamp.delete(rangeId);
      if (replica === undefined) continue;
      if (replica.raw.raft.state !== 'leader') {
        this.proposeNow(rangeId, replica, proposals);
        continue;
      }
      // At most one TSO batch per request; what does not fit waits for the next.
      const take = proposals.slice(0, TSO_MAX_BATCH_REVISIONS - count);
      if (take.length < proposals.length) this.awaitingStamp.set(rangeId, proposals.slice(take.length));
      groups.push({ rangeId, replica, term: replica.raw.raft.term, proposals: take });
      count += take.length;
    }
    if (count === 0) return;
    this.stamping = groups;
    this.stats.revisionRequests++;
    source.allocate(count, (answer) => this.onRevisions(groups, answer));
  }

  /**
   * Revisions arrived (or were refused). In this same synchronous step each
   * group is stamped and handed to Raft, but only where its replica still
   * leads in the term they were asked in: otherwise another leader may have
   * stamped later writes with higher revisions already. A replica that leads
   * in a later term asks afresh; a follower forwards the bare commands (its
   * leader stamps them). Refused revisions drop the proposals, which never
   * reached Raft, as retryable (the RequestRunner proposes them again).
   */
  private onRevisions(groups: readonly StampGroup[], answer: TsoAnswer): void {
    if (this.stamping !== groups) return;
    this.stamping = undefined;
    if (this.storageFailure !== undefined || this.closed) {
      const error = this.storageFailure ?? new TesseraError('CLOSED', `node ${this.nodeId} closed`);
      for (const g of groups) for (const q of g.proposals) q.done?.({ kind: 'dropped', error });
      return;
    }
    this.guarded(() => {
      let next = answer.ok ? answer.first : 0;
      for (const g of groups) {
        if (this.replicas.get(g.rangeId) !== g.replica) {
          // Retired by a merge meanwhile (closeRetired): nothing of the range is proposed again.
          const error = retiredError(g.rangeId);
          for (const q of g.proposals) q.done?.({ kind: 'dropped', error });
          if (answer.ok) next += g.proposals.length;
          continue;
        }
        const { state, term } = g.replica.raw.raft;
        if (answer.ok && state === 'leader' && term === g.term) {
          this.proposeNow(g.rangeId, g.replica, g.proposals, g.proposals.map((q) => stampEntry(q.data, next++)));
        } else if (state !== 'leader') {
          this.proposeNow(g.rangeId, g.replica, g.proposals);
        } else if (term !== g.term) {
          queueFor(this.awaitingStamp, g.rangeId).unshift(...g.proposals);
        } else if (!answer.ok) {
          const error = new TesseraError('NOT_LEADER', `no revisions to stamp the proposal with: ${answer.error.message}`, { cause: answer.error });
          for (const q of g.proposals) q.done?.({ kind: 'dropped', error, reason: 'no-leader' });
        }
        if (answer.ok && !(state === 'leader' && term === g.term)) {
          this.stats.revisionsAbandoned += g.proposals.length;
          next += g.proposals.length;
        }
      }
      // Proposals queued while this request was in flight, or put back above, ask now: no later write may come to wake them.
      this.requestRevisions();
    });
    this.requestLoop();
  }

  /** Whether a busy leader's window is still open: the proposals wait, and a timer ends the wait. */
  private holdsProposals(queued: number): boolean {
    const w = this.o.proposalWindow;
    if (w === undefined || !this.busy || queued >= PROPOSAL_WINDOW_MAX_BATCH || !this.leadsAnyRange()) return false;
    const waitMs = this.lastBatchMs + w.windowMs - w.nowMs();
    if (waitMs <= 0) return false;
    if (!this.windowTimerSet) {
      this.windowTimerSet = true;
      w.after(waitMs, () => {
        this.windowTimerSet = false;
        this.requestLoop();
      });
    }
    return true;
  }

  private leadsAnyRange(): boolean {
    for (const r of this.replicas.values()) if (r.raw.raft.state === 'leader') return true;
    return false;
  }

  /**
   * Proposes a membership change. With `answer`, the state machine's result
   * for the applied change (its context names the request) goes to `done`,
   * like a command's; a dropped proposal is answered at once.
   */
  proposeConfChange(rangeId: RangeId, cc: ConfChange, answer?: { readonly requestId: string; readonly done: (o: ProposalOutcome) => void }): ProposeResult {
    this.refuseIfFailed();
    const res = this.mustReplica(rangeId).raw.proposeConfChange(cc);
    if (answer !== undefined) {
      if (res.kind === 'dropped') answer.done({ kind: 'dropped', error: res.error, reason: res.reason });
      else this.pendingProposals.set(answer.requestId, { rangeId, done: answer.done });
    }
    this.requestLoop();
    return res;
  }

  transferLeader(rangeId: RangeId, to: NodeId): void {
    this.refuseIfFailed();
    this.mustReplica(rangeId).raw.transferLeader(to);
    this.requestLoop();
  }

  /** The transport's report on a snapshot it sent (etcd's ReportSnapshot). */
  reportSnapshot(rangeId: RangeId, to: NodeId, ok: boolean): void {
    if (this.storageFailure !== undefined) return;
    this.replicas.get(rangeId)?.raw.reportSnapshot(to, ok);
    this.requestLoop();
  }

  /**
   * Waits until this replica may serve a linearizable read (ReadIndex, thesis
   * §6.4); `done(undefined)` then. Reads that arrive in one event-loop turn
   * share one ReadIndex, as etcd's read loop batches them: its index is taken
   * after every one of them arrived, so it is current for each, and a batch
   * costs the leader one heartbeat round, not one per read.
   */
  linearizableRead(rangeId: RangeId, done: (error: TesseraError | undefined) => void): void {
    if (this.retiredRanges.has(rangeId)) return done(retiredError(rangeId));
    if (!this.replicas.has(rangeId)) return done(notHereError(rangeId));
    if (this.storageFailure !== undefined) return done(this.storageFailure);
    queueFor(this.queuedReads, rangeId).push(done);
    this.requestLoop();
  }

  /** Asks Raft for one read index per range for the reads queued since the last loop turn. */
  private readQueued(): void {
    if (this.queuedReads.size > 0) this.o.catchUpClock?.();
    for (const [rangeId, dones] of this.queuedReads) {
      this.queuedReads.delete(rangeId);
      const replica = this.replicas.get(rangeId);
      if (replica === undefined || dones.length === 0) continue;
      this.bootNonce ??= this.o.rng.nextUint32().toString(36) + this.o.rng.nextUint32().toString(36);
      const ctx = `${this.nodeId}:${this.bootNonce}:${++this.readSeq}`;
      const reason = replica.raw.readIndex(ctx);
      if (reason !== undefined) {
        const error = new TesseraError('NOT_LEADER', `read refused: ${reason}`);
        for (const done of dones) done(error);
        continue;
      }
      this.pendingReads.set(ctx, { rangeId, dones });
    }
  }

  /** Forgets a proposal whose caller gave up; a later apply then answers nobody. */
  /** Forgets a proposal; true when it had not reached Raft yet (still queued, or waiting for its revision), so it certainly did not happen. */
  abandon(requestId: string): boolean {
    let queued = false;
    for (const queue of [...this.queuedProposals.values(), ...this.awaitingStamp.values()]) {
      const i = queue.findIndex((q) => q.requestId === requestId);
      if (i >= 0) {
        queue.splice(i, 1);
        queued = true;
      }
    }
    const inRaft = this.pendingProposals.delete(requestId);
    return queued && !inRaft;
  }

  close(): void {
    this.closed = true;
    this.snapshotReaders.closeAll();
  }

  /** Why the store stopped serving, if its storage failed. */
  failure(): TesseraError | undefined {
    return this.storageFailure;
  }

  /**
   * Fail-stop on a storage failure: a refused sync, or a record whose
   * checksum does not match. After a failed fsync the kernel may have dropped
   * the dirty pages and a retry can report success for data that is gone
   * (PostgreSQL's "fsyncgate"), and a corrupt record must never be served or
   * applied. So the store answers waiting reads and the proposals that had
   * not reached Raft yet with STORAGE_FAILED, refuses new ones, and runs no
   * more loop turns; Raft's in-memory state is no longer trusted. Proposals
   * already handed to Raft get no answer, as at close: they may have been
   * forwarded and may still commit, so their outcome is unknown to this
   * node and their callers' deadlines answer them. The host restarts the
   * node, which recovers from what the disk holds.
   */
  failStorage(cause: unknown): void {
    if (this.storageFailure !== undefined) return;
    const why = cause instanceof Error ? cause.message : String(cause);
    const error = new TesseraError('STORAGE_FAILED', `node ${this.nodeId} stopped serving: storage failed: ${why}`, { cause });
    this.storageFailure = error;
    this.closed = true;
    this.snapshotReaders.closeAll();
    this.pendingProposals.clear();
    const queued = [...this.queuedProposals.values(), ...this.awaitingStamp.values()].flat();
    this.queuedProposals.clear();
    this.awaitingStamp.clear();
    const reads = [...this.queuedReads.values()].flat();
    this.queuedReads.clear();
    for (const pr of this.pendingReads.values()) reads.push(...pr.dones);
    this.pendingReads.clear();
    for (const q of queued) q.done?.({ kind: 'dropped', error });
    for (const done of reads) done(error);
    this.o.onStorageFailed?.(error);
  }

  /** Runs `work`; a storage failure it meets (a corrupt record read back) stops the store instead of escaping. */
  private guarded(work: () => void): void {
    try {
      work();
    } catch (error) {
      if (!isTesseraError(error, 'CORRUPT_DATA') && !isTesseraError(error, 'IO_ERROR')) throw error;
      this.failStorage(error);
    }
  }

  private refuseIfFailed(): void {
    if (this.storageFailure !== undefined) throw this.storageFailure;
  }

  private mustReplica(rangeId: RangeId): Replica {
    const r = this.replicas.get(rangeId);
    if (r === undefined) throw new TesseraError('INVALID_ARGUMENT', `range ${rangeId} is not on node ${this.nodeId}`);
    return r;
  }

  private requestLoop(): void {
    if (this.loopScheduled || this.closed) return;
    this.loopScheduled = true;
    this.o.scheduleLoop(() => {
      this.loopScheduled = false;
      this.guarded(() => this.loop());
    });
  }

  /** One turn of the ready loop. Only one turn is in flight: the next waits for this one's sync. */
  loop(): void {
    if (this.closed) return;
    // Even while a turn is in flight: Raft may take proposals between ready() and advance(); their
    // appends go out with the next Ready.
    this.proposeQueued();
    this.readQueued();
    if (this.writing) return;
    if (this.pendingRemovals.size > 0 || this.inLogSnapshots.size > 0) this.changes++;
    if (this.pendingRemovals.size > 0) this.removePending();
    if (this.inLogSnapshots.size > 0) this.installPendingInLog();
    const turns: Turn[] = [];
    for (const id of this.activeRangeIds()) {
      const replica = this.replicas.get(id);
      if (replica === undefined) continue;
      if (replica.raw.hasReady()) turns.push({ replica, rd: replica.raw.ready() });
      else this.settling.delete(id);
    }
    if (turns.length === 0) return;
    this.stats.turns++;
    this.changes++;
    const batch = this.o.engine.newBatch();
    // Each turn waits for the previous one's sync, so what the log holds now is durable.
    const durableLast = new Map(turns.map((t) => [t.replica, t.replica.log.lastIndex()]));
    for (const t of turns) {
      this.o.onReady?.(t.replica.rangeId, t.rd);
      t.replica.persist(batch, t.rd);
    }
    const early = this.messagesBeforeSync(turns, durableLast);
    this.writing = true;
    const finish = (error?: Error): void => {
      // After a failed sync nothing that turn wrote may be acknowledged, and the sync is not retried.
      if (error !== undefined && this.o.sabotage?.has('ignore-sync-failure') !== true) return this.failStorage(error);
      this.writing = false;
      if (this.closed) return;
      this.guarded(() => this.afterDurable(turns, early));
    };
    if (batch.count > 0 && turns.some((t) => t.rd.mustSync)) {
      this.stats.syncs++;
      this.staged = false;
      this.wroteSinceTick = true;
      this.o.engine.commit(batch, finish);
    } else if (batch.count > 0) {
      // Only commit indexes changed: they need not be durable (a restart recomputes them), so the
      // batch is staged, written with the next commit, and the turn goes on without waiting.
      this.stage(batch);
      this.writing = false;
      this.afterDurable(turns, early);
    } else {
      // Nothing to persist (messages or reads only): nothing to wait for. The next turn is still
      // scheduled, not run from here, so a turn never recurses into itself.
      this.writing = false;
      this.afterDurable(turns, early);
    }
  }

  /**
   * What may go out before this turn's sync. A leader's appends and
   * heartbeats may (Raft thesis §10.2.1: the leader writes its log in
   * parallel with replicating it): a follower may persist and acknowledge
   * them at once, and although the leader counts its own copy towards
   * commitment before it is durable, nobody learns of that commit before the
   * next turn, which starts after this sync. So only a message whose commit
   * index the leader already holds durably goes early (with a single voter,
   * a new entry commits at once, and its commit index must wait). Votes and
   * acknowledgements always wait: they promise what is on disk. The
   * deliberate persistence bugs send some of those early too.
   */
  private messagesBeforeSync(turns: readonly Turn[], durableLast: ReadonlyMap<Replica, number>): Set<Message> {
    const early = new Set<Message>();
    const sab = this.o.sabotage;
    for (const t of turns) {
      const durable = durableLast.get(t.replica) ?? 0;
      for (const m of t.rd.messages) {
        if ((m.type === 'MsgApp' || m.type === 'MsgHeartbeat') && m.commit <= durable) early.add(m);
        if (sab === undefined) continue;
        const vote = m.type === 'MsgVoteResp' || m.type === 'MsgPreVoteResp' || m.type === 'MsgVote';
        if (sab.has('ack-before-sync') || (sab.has('vote-before-persist') && vote)) early.add(m);
      }
    }
    if (early.size > 0) this.sendAll(turns, (m) => early.has(m));
    return early;
  }

  private afterDurable(turns: readonly Turn[], alreadySent: ReadonlySet<Message>): void {
    this.changes++;
    this.sendAll(turns, (m) => !alreadySent.has(m));
    const applyBatch = this.o.engine.newBatch();
    const applied: { rangeId: RangeId; items: Applied[] }[] = [];
    for (const t of turns) applied.push({ rangeId: t.replica.rangeId, items: t.replica.apply(applyBatch, t.rd) });
    // After every range applied into the batch: a retired range's own apply this turn writes nothing that survives.
    const retired = turns.flatMap((t) => t.replica.retired.splice(0));
    for (const id of retired) this.deleteRangeState(applyBatch, id);
    // Applied state is derived from the durable log, so it need not be synced before answering:
    // after a crash the entries are applied again from the log. Staged, it rides with the next
    // turn's write instead of costing a transaction and a sync of its own.
    if (applyBatch.count > 0) this.stage(applyBatch);
    for (const t of turns) t.replica.appliedVisible();
    for (const t of turns) this.openCreated(t.replica);
    for (const t of turns) {
      // Only through what applied: entries from a held merge on come again (Replica.apply).
      t.replica.raw.advance(t.replica.appliedIndex());
      t.replica.raw.checkInvariants();
    }
    for (const id of retired) this.closeRetired(id);
    for (const { rangeId, items } of applied) {
      for (const a of items) {
        this.stats.entriesApplied++;
        this.o.onApplied?.(rangeId, a);
        this.answerProposal(a);
      }
    }
    if (applied.length > 0) this.o.onTurnApplied?.();
    for (const t of turns) for (const rs of t.rd.readStates) this.noteReadIndex(rs.context, rs.index);
    this.serveReads();
    this.releaseHeld();
    // After advance (a proposal made between ready() and advance() would be taken for part of this
    // Ready) and after answering (what applied in this turn needs no second copy).
    for (const t of turns) {
      // A leader is known by its term too: the same node elected again in a later term starts with
      // none of what was sent to it before (its MsgProp or ReadIndex may have been lost).
      const { lead, term } = t.replica.raw.raft;
      const last = this.lastLead.get(t.replica.rangeId);
      if (lead === 0 || (last !== undefined && last.lead === lead && last.term === term) || this.replicas.get(t.replica.rangeId) !== t.replica) continue;
      this.lastLead.set(t.replica.rangeId, { lead, term });
      this.reproposeOnNewLeader(t.replica);
      this.rereadOnNewLeader(t.replica.rangeId);
    }
    this.requestLoop();
  }

  /**
   * Opens the ranges that this turn's splits created, now that the batch
   * holding their state is visible. An empty replica made earlier for a
   * peer's message is replaced; one that a snapshot already filled is newer
   * than the split and stays.
   */
  private openCreated(replica: Replica): void {
    for (const id of replica.created.splice(0)) {
      const existing = this.replicas.get(id);
      if (existing !== undefined) {
        // Filled by a snapshot: it applied past its start. Not the state machine's bounds: the state
        // machine is the range's, and this split has just written its descriptor, so an empty replica
        // kept here would go on with no log and persist commit 0 over the split's state (sim seed 889).
        if (existing.appliedIndex() > 0) continue;
        existing.stateMachine.detachLog?.();
        this.replicas.delete(id);
        this.sortedIds = undefined;
        this.changes++;
        this.onQuiescenceChange(id, false);
      }
      const created = this.openRange(id);
      // One voter campaigns at once, so the new range is not leaderless for an election timeout;
      // every voter's log is the same (the split's), so it wins. Not always the parent's leader
      // (TiKV's choice): the voter at the new range id's position among the sorted voters, so
      // the leaders of a range's halves spread over the nodes. If that voter has not applied the
      // split yet, it campaigns when it does, or an election timeout elects another.
      if (this.nodeId === splitCampaigner(id, created.currentConfState().voters)) created.raw.campaign();
      this.o.onRangeOpened?.(id);
    }
  }

  /**
   * A ReadIndex request the old leader never answered (it stepped down, or
   * the message was lost) would leave its reads waiting for their deadline.
   * Under a new leader they are asked for again; a read index taken later is
   * still current for a read that has not been answered yet. An answer to the
   * old request, should one still come, finds no entry and is ignored.
   */
  private rereadOnNewLeader(rangeId: RangeId): void {
    for (const [ctx, pr] of this.pendingReads) {
      if (pr.rangeId !== rangeId || pr.index !== undefined) continue;
      this.pendingReads.delete(ctx);
      queueFor(this.queuedReads, rangeId).push(...pr.dones);
    }
  }

  private sendAll(turns: readonly Turn[], include: (m: Message) => boolean): void {
    const byPeer = new Map<NodeId, RangeMessage[]>();
    for (const t of turns) {
      for (const m of t.rd.messages) {
        if (!include(m)) continue;
        let list = byPeer.get(m.to);
        if (list === undefined) byPeer.set(m.to, (list = []));
        list.push({ rangeId: t.replica.rangeId, message: m });
      }
    }
    for (const to of [...byPeer.keys()].sort((a, b) => a - b)) {
      const list = byPeer.get(to) as RangeMessage[];
      this.stats.messagesSent += list.length;
      this.o.transport.send(to, list);
    }
  }

  /**
   * A new leader may never have received the proposals this node forwarded to
   * the old one: they were lost with it, or they are in its log and may still
   * commit. Proposing them again is safe because the state machine applies a
   * request id once (a second copy answers 'duplicate' and nobody waits for
   * it), and it spares the callers a wait for their deadline.
   */
  private reproposeOnNewLeader(replica: Replica): void {
    if (this.o.reproposeOnNewLeader === false) return;
    const datas: Uint8Array[] = [];
    for (const p of this.pendingProposals.values()) if (p.rangeId === replica.rangeId && p.data !== undefined) datas.push(p.data);
    if (datas.length === 0) return;
    this.stats.reproposals += datas.length;
    // A leader stamps them as it stamps any proposal (the next loop turn), with revisions asked for now.
    if (this.o.revisions !== undefined && replica.raw.raft.state === 'leader') this.queue(replica.rangeId, datas.map((data) => ({ requestId: undefined, data, done: undefined })));
    else replica.raw.proposeBatch(datas);
  }

  private answerProposal(a: Applied): void {
    const id = requestIdOf(a);
    if (id === undefined) return;
    const pending = this.pendingProposals.get(id);
    if (pending === undefined) return;
    this.pendingProposals.delete(id);
    pending.done({ kind: 'applied', result: a.result });
  }

  private noteReadIndex(ctx: string, index: number): void {
    const pending = this.pendingReads.get(ctx);
    if (pending !== undefined) pending.index = index;
  }

  private serveReads(): void {
    for (const [ctx, pr] of this.pendingReads) {
      if (pr.index === undefined) continue;
      const replica = this.replicas.get(pr.rangeId);
      if (replica === undefined || replica.appliedIndex() < pr.index) continue;
      this.pendingReads.delete(ctx);
      for (const done of pr.dones) done(undefined);
    }
  }
}

/** State machines tag results with the request id they answer. */
function requestIdOf(a: Applied): string | undefined {
  const r = a.result as { requestId?: unknown } | undefined;
  return r !== undefined && r !== null && typeof r === 'object' && typeof r.requestId === 'string' ? r.requestId : undefined;
}

/** A request for a range with no replica here (moved off this node, or never here): RANGE_MISMATCH, routed again. */
function notHereError(rangeId: RangeId): TesseraError {
  return new TesseraError('RANGE_MISMATCH', `range ${rangeId} is not on this node`);
}

/** What waits on a range a merge retired here gets: RANGE_MISMATCH, which the client API routes again. */
function retiredError(rangeId: RangeId): TesseraError {
  return new TesseraError('RANGE_MISMATCH', `range ${rangeId} was merged into its left neighbour; route again`);
}

/** The voter that campaigns first for range `rangeId`, new from a split (see openCreated). */
export function splitCampaigner(rangeId: RangeId, voters: readonly NodeId[]): NodeId | undefined {
  const sorted = [...voters].sort((a, b) => a - b);
  return sorted.length === 0 ? undefined : sorted[rangeId % sorted.length];
}

/**
 * Whether a range with bounds `b` was merged into the range a snapshot gives
 * `incoming`: its keys lie inside the incoming bounds, and its epoch version
 * is below the incoming one (a merge raises the version above both sides'; a
 * range split off later from the incoming range would be above it).
 */
function mergedInto(b: KeyBounds, incoming: KeyBounds): boolean {
  if (b.epoch === undefined || incoming.epoch === undefined || b.epoch.version >= incoming.epoch.version) return false;
  const startInside = compareBytes(b.start, incoming.start) >= 0;
  const endInside = incoming.end === undefined || (b.end !== undefined && compareBytes(b.end, incoming.end) <= 0);
  return startInside && endInside;
}

/** Whether two key spans share a key (`end` undefined: the end of the key space). */
function boundsOverlap(a: KeyBounds, b: KeyBounds): boolean {
  const aBeforeB = a.end !== undefined && compareBytes(a.end, b.start) <= 0;
  const bBeforeA = b.end !== undefined && compareBytes(b.end, a.start) <= 0;
  return !aBeforeB && !bBeforeA;
}

/** The list under `key`, made empty on first use. */
function queueFor<K, V>(map: Map<K, V[]>, key: K): V[] {
  let queue = map.get(key);
  if (queue === undefined) map.set(key, (queue = []));
  return queue;
}

/** Whether `ranges` (in any order) tile the keys right after `own`, each starting where the one before ends. */
function continuesBounds(own: KeyBounds | undefined, ranges: readonly KeyBounds[]): boolean {
  if (own === undefined || own.end === undefined) return false;
  let at: Uint8Array = own.end;
  const rest = [...ranges];
  while (rest.length > 0) {
    const i = rest.findIndex((b) => compareBytes(b.start, at) === 0);
    if (i < 0) return false;
    const [next] = rest.splice(i, 1) as [KeyBounds];
    if (next.end === undefined) return rest.length === 0;
    at = next.end;
  }
  return true;
}

/** Whether Raft installs a leader's snapshot (Raft.restore): of a current term, past the commit index, not in the log. */
function raftInstalls(replica: Replica, m: Message): boolean {
  const raft = replica.raw.raft;
  const meta = m.snapshot?.metadata;
  return meta !== undefined && m.term >= raft.term && meta.index > raft.raftLog.committed && raft.raftLog.termOrUndefined(meta.index) !== meta.term;
}
