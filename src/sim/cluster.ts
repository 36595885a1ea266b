import { AssertionError, Fnv64, SeededRng, type Rng } from '../base/index.js';
import { type ConfState, type Entry, isAck, type Message, type NodeId, type StepView } from '../raft/index.js';
import { Sabotage } from '../raft/sabotage.js';
import { type Applied, type CommandResult, type ForwardMessage, META_RANGE, type NodeLoad, type RangeId, type RangeMessage, type RevisionMessage } from '../kv/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { type ClientReply, SimStoreNode } from './store_node.js';
import { RangeOracle } from './range_oracle.js';
import { SimNetwork } from './network.js';
import type { SimOptions } from './options.js';
import { Scheduler } from './scheduler.js';

/** Under placement, a member silent this many ticks (a second of virtual time) is dead: its replicas are made again elsewhere while faults run. */
export const SIM_DEAD_AFTER_TICKS = 100;
import { type LogTerms, logMatchingViolation } from './log_matching.js';
import { carrySnapshot } from './snapshot_carrier.js';
import type { ViolationKind } from './violation.js';

/** A simulated machine: its disk outlives crashes; the node process does not. */
export interface Member {
  readonly id: NodeId;
  readonly engine: MemoryEngine;
  /** The founding membership for a founding member; undefined for one added later. */
  readonly bootstrap: ConfState | undefined;
  node: SimStoreNode | undefined;
  /** The next sync persists a vote (for the failpoint that crashes while a vote is on its way to disk). */
  votePending: boolean;
  /** Bumped on every crash, so callbacks scheduled for an older process are ignored. */
  incarnation: number;
  paused: boolean;
  /** Work that arrived while paused, run in order on resume (a stopped process's socket buffers). */
  /** Work that arrived while paused; `ack` marks a peer's answer to what this node sent (see Nemesis.resume). */
  pausedWork: { readonly work: () => void; readonly ack: boolean }[];
  missedTicks: number;
  /** Local clock rate: > 1 runs fast. */
  clockRate: number;
  removed: boolean;
  /** A slow disk (a nemesis fault): until then every sync takes at least slowSyncMs. */
  slowDiskUntilMs: number;
  slowSyncMs: number;
}

export type FaultCounts = Record<string, number>;

/** What the Raft oracles remember of one Raft group (a range): each range has its own terms and log indexes. */
interface GroupOracle {
  readonly leaders: Map<number, NodeId>;
  /** Per applied index, the entry applied there (term:type:hash). */
  readonly appliedAt: Map<number, string>;
  /**
   * Per applied index, the lowest Raft term a node had when it applied it: the
   * entry was committed in that term or an earlier one (a node learns of a
   * commit from a leader of its own term or an older one).
   */
  readonly appliedInTerm: Map<number, number>;
  maxAppliedIndex: number;
}

/**
 * The cluster under test: members, the network between them, and the global
 * invariant oracles (election safety, state machine safety).
 */
export class SimCluster {
  readonly sched = new Scheduler();
  readonly members = new Map<NodeId, Member>();
  readonly net: SimNetwork;
  readonly violations: string[] = [];
  /** The kind of each entry of violations, same order. */
  readonly violationKinds: ViolationKind[] = [];
  readonly faults: FaultCounts = {};
  readonly trace: Fnv64 = new Fnv64();
  readonly traceLines: string[] | undefined;
  /** The Raft oracles' memory, per range. */
  private readonly groups = new Map<RangeId, GroupOracle>();
  /** The range descriptors' oracles (partition of the key space, bounds per epoch). */
  readonly ranges: RangeOracle;
  /** The (range, log index) whose write took each revision, over every node (the revision oracle). */
  private readonly indexOfRevision = new Map<number, string>();
  /** The newest revision a write took on each node process's replica of a range (`id:incarnation:range`). */
  private readonly lastWriteRevision = new Map<string, number>();
  /** Every batch of revisions a TSO handed out, sorted by first revision, disjoint unless a bug hands one out twice. */
  private readonly handedOut: { readonly first: number; readonly last: number; readonly node: NodeId }[] = [];
  /** The newest membership any node applied, with its index. */
  latestConf: { cs: ConfState; index: number };
  nextNodeId: NodeId;
  private readonly sabotage: Sabotage;
  readonly rng: Rng;
  private readonly nodeRng: Rng;
  /** Failpoint before a sync completes (etcd's raftBeforeSave): the nemesis sets the rate. */
  midSyncCrashRate: (vote: boolean) => number = () => 0;
  midSyncCrash: (m: Member, incarnation: number) => void = () => {};
  /** Called when a node stopped itself after a storage failure (the nemesis restarts it). */
  onNodeStopped: (m: Member) => void = () => {};
  /** Called when a node becomes leader (the nemesis listens, to flap leaders). */
  onLeaderElected: (id: NodeId) => void = () => {};

  constructor(
    readonly options: SimOptions,
    rng: Rng,
    traceOn: boolean,
  ) {
    this.rng = rng;
    this.nodeRng = rng.fork();
    this.sched.asyncWork = () => {
      for (const m of this.members.values()) if (m.node?.asyncWork === true) return true;
      return false;
    };
    this.net = new SimNetwork(this.sched, rng.fork(), options.netDelayMs);
    this.traceLines = traceOn ? [] : undefined;
    this.sabotage = options.bug === undefined ? Sabotage.of() : Sabotage.of(options.bug);
    this.ranges = new RangeOracle((kind, what) => this.violation(kind, what), (what) => this.count(what));
    const voters = Array.from({ length: options.nodeCount }, (_, i) => i + 1);
    const cs: ConfState = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    this.latestConf = { cs, index: 1 };
    this.nextNodeId = options.nodeCount + 1;
    for (const id of voters) this.addMember(id, cs);
  }

  log(line: string): void {
    this.trace.update(line).update('\n');
    if (this.traceLines !== undefined) this.traceLines.push(`${this.sched.nowMs.toFixed(3).padStart(10)} ${line}`);
  }

  count(fault: string, by = 1): void {
    this.faults[fault] = (this.faults[fault] ?? 0) + by;
  }

  violation(kind: ViolationKind, what: string): void {
    this.log(`VIOLATION ${what}`);
    this.violations.push(`${this.sched.nowMs.toFixed(1)}ms: ${what}`);
    this.violationKinds.push(kind);
  }

  addMember(id: NodeId, bootstrap: ConfState | undefined): Member {
    const m: Member = {
      id,
      engine: new MemoryEngine({ scheduleSync: (flush) => this.scheduleSync(m, flush) }),
      bootstrap,
      node: undefined,
      votePending: false,
      incarnation: 0,
      paused: false,
      pausedWork: [],
      missedTicks: 0,
      clockRate: 1,
      removed: false,
      slowDiskUntilMs: 0,
      slowSyncMs: 0,
    };
    this.members.set(id, m);
    this.start(m);
    return m;
  }

  /** Starts the node process on a member, from what its disk holds. */
  start(m: Member): void {
    const incarnation = ++m.incarnation;
    const o = this.options;
    m.node = new SimStoreNode({
      id: m.id,
      rng: this.nodeRng.fork(),
      engine: m.engine,
      sabotage: this.sabotage,
      raft: {
        electionTimeoutTicks: o.electionTimeoutTicks,
        heartbeatIntervalTicks: o.heartbeatIntervalTicks,
        preVote: true,
        checkQuorum: true,
        quiesceAfterTicks: o.quiesceAfterTicks,
        readOnlyOption: o.readOnlyOption,
        maxClockDriftRatio: o.maxClockDriftRatio,
        maxSizePerMsgBytes: o.maxSizePerMsgBytes,
        maxInflightMsgs: 16,
        maxInflightBytes: 64 * 1024,
        maxUncommittedEntriesSizeBytes: 256 * 1024,
        // Raft's own invariants after every step and tick, and every leadership as it happens.
        afterStep: (rangeId, node, msg) => {
          node.checkInvariants();
          if (node.state === 'leader' && this.group(rangeId).leaders.get(node.term) !== node.id) this.checkLeader(rangeId, node);
          if (msg?.type === 'MsgApp' && msg.entries.length > 0) this.checkAppendMatches(rangeId, node.id, node.raftLog, msg);
        },
      },
      logRetainEntries: o.snapshotEveryEntries,
      reproposeOnNewLeader: o.reproposeOnNewLeader,
      bootstrap: m.bootstrap,
      send: (to, msgs) => this.send(m, incarnation, to, msgs),
      sendRevisions: (to, message) => this.sendRevisions(m, incarnation, to, message),
      sendLiveness: (to, load) => this.sendLiveness(m, incarnation, to, load),
      sendForward: (to, message) => this.sendForward(m, incarnation, to, message),
      replicas: o.replicas,
      // Three zones in localized placement seeds: each range's replicas spread over them (ADR 0012).
      ...(o.localities ? { locality: `zone=z${m.id % 3}` } : {}),
      deadAfterTicks: o.replicas > 0 ? SIM_DEAD_AFTER_TICKS : 0,
      sweepIntents: o.txnClients > 0,
      onRevisionsHandedOut: (first, last) => this.checkHandedOut(m.id, first, last),
      scheduleLoop: (loop) => this.sched.after(0, () => this.onMember(m, incarnation, loop)),
      timers: {
        nowMs: () => this.sched.nowMs,
        after: (ms, run) => {
          let cancelled = false;
          this.sched.after(ms, () =>
            this.onMember(m, incarnation, () => {
              if (!cancelled) run();
            }),
          );
          return { cancel: () => void (cancelled = true) };
        },
      },
      requestTimeoutMs: o.requestTimeoutMs,
      requestIdPrefix: `n${m.id}.${incarnation}`,
      count: (what) => this.count(what),
      onRemoved: () => this.onMember(m, incarnation, () => this.shutDownRemoved(m, 'its membership logic noticed its removal')),
      proposalWindowMs: o.proposalWindowMs,
      onApply: (id, rangeId, a) => {
        this.checkApplied(id, rangeId, a.entry, m.node?.store.replica(rangeId)?.raw.raft.term);
        this.checkRevision(m, incarnation, rangeId, a);
        if (m.node !== undefined) this.ranges.onApplied(m.id, m.node, rangeId, a);
        // Range 1's configuration is the cluster's membership; other ranges follow it (ReplicaReconciler).
        // A change with a membership context answers with the state machine's result, which carries the ConfState.
        if (a.entry.type === 'conf-change' && rangeId === META_RANGE) this.onConfState(id, confStateOf(a.result), a.entry.index);
      },
      onReady: (_id, rd) => {
        if (rd.hardState !== undefined && rd.hardState.vote !== 0) m.votePending = true;
        // A snapshot may replace a replica's bounds: look once it is installed.
        if (rd.snapshot !== undefined) this.sched.after(0, () => this.onMember(m, incarnation, () => m.node !== undefined && this.ranges.onBoundsMayChange(m.id, m.node)));
      },
      onSnapshotInLog: () => this.sched.after(0, () => this.onMember(m, incarnation, () => m.node !== undefined && this.ranges.onBoundsMayChange(m.id, m.node))),
      onStorageFailed: (error) => this.storageFailed(m, incarnation, error),
      trace: (line) => this.log(line),
    });
    for (const rangeId of m.node.store.rangeIds()) {
      const torn = m.node.store.replica(rangeId)?.log.droppedTornEntry;
      if (torn === undefined) continue;
      this.count('recovery-dropped-torn-entry');
      this.log(`node ${m.id} dropped the partial entry ${torn} at range ${rangeId}'s log tail`);
    }
    this.scheduleTick(m, incarnation);
  }

  /**
   * A store that met a failed sync or a corrupt record stops serving (it must
   * not assert or go on). The process exits; what the disk holds is what a
   * restart finds, as after a crash, and the nemesis restarts it.
   */
  private storageFailed(m: Member, incarnation: number, error: Error): void {
    if (m.incarnation !== incarnation || m.node === undefined) return;
    this.count('storage-failed-stop');
    this.log(`node ${m.id} stopped serving: ${error.message}`);
    m.node.stop();
    m.node = undefined;
    m.paused = false;
    m.pausedWork = [];
    m.incarnation++;
    m.engine.crash(this.rng);
    this.onNodeStopped(m);
  }

  /** The member's disk syncs after a drawn delay; the failpoint may crash the process first. */
  private scheduleSync(m: Member, flush: () => void): void {
    const [lo, hi] = this.options.diskSyncMs;
    const slowMs = this.sched.nowMs < m.slowDiskUntilMs ? m.slowSyncMs : 0;
    const delayMs = slowMs + lo + this.rng.float() * (hi - lo);
    const incarnation = m.incarnation;
    this.sched.after(delayMs, () => this.onMember(m, incarnation, flush));
    const vote = m.votePending;
    m.votePending = false;
    if (this.rng.chance(this.midSyncCrashRate(vote))) this.sched.after(this.rng.float() * delayMs, () => this.midSyncCrash(m, incarnation));
  }

  /** Runs `work` on the member's current process, or buffers it while paused. */
  onMember(m: Member, incarnation: number, work: () => void, ack = false): void {
    if (m.incarnation !== incarnation || m.node === undefined || m.node.isStopped()) return;
    if (m.paused) {
      m.pausedWork.push({ work, ack });
      return;
    }
    this.guard(m, work);
  }

  /** Assertion failures inside a node are violations (a bug crashes the node, it never goes unnoticed). */
  guard(m: Member, work: () => void): void {
    try {
      work();
    } catch (err) {
      // Any throw out of a node is a crash of that node: an assertion, or an error nobody handled.
      const what = err instanceof AssertionError ? 'assertion' : `crashed with ${err instanceof Error ? err.name : 'a throw'}`;
      this.violation(err instanceof AssertionError ? 'raft-invariant' : 'crash', `node ${m.id} ${what}: ${err instanceof Error ? err.message : String(err)}`);
      m.node?.stop();
      m.node = undefined;
    }
  }

  private scheduleTick(m: Member, incarnation: number): void {
    this.sched.after(this.options.tickMs / m.clockRate, () => {
      if (m.incarnation !== incarnation || m.node === undefined) return;
      if (m.paused) {
        // The host's monotonic clock keeps running: the ticks are delivered on resume.
        m.missedTicks++;
      } else {
        this.guard(m, () => m.node?.tick());
      }
      this.scheduleTick(m, incarnation);
    });
  }

  private send(from: Member, incarnation: number, to: NodeId, msgs: readonly RangeMessage[]): void {
    if (from.incarnation !== incarnation) return;
    void to;
    for (const { rangeId, message: msg } of msgs) {
      this.log(`send r${rangeId} ${msg.from}->${msg.to} ${msg.type} t${msg.term} i${msg.index} c${msg.commit} n${msg.entries.length}${msg.reject ? ' rej' : ''}`);
      // The peer transport refuses a frame carrying a message from another node than its connection's,
      // with every message and snapshot chunk queued behind it (wire.ts): no node may send one.
      if (msg.from !== from.id) this.violation('wire', `wire: node ${from.id} sent a ${msg.type} of range ${rangeId} from node ${msg.from}, which a real peer refuses`);
      // A snapshot's data is read a chunk per event first; the network then carries it whole, with its range.
      carrySnapshot({
        sched: this.sched,
        message: msg,
        alive: () => from.incarnation === incarnation && from.node !== undefined,
        send: (full) => this.net.send(full, (d) => this.deliver(rangeId, d), (d) => this.snapshotDone(rangeId, d, false)),
        failed: (m) => this.snapshotDone(rangeId, m, false),
      });
    }
  }

  private sendRevisions(from: Member, incarnation: number, to: NodeId, message: RevisionMessage): void {
    if (from.incarnation !== incarnation) return;
    this.log(`tso ${from.id}->${to} ${message.kind} ${message.id}`);
    this.carryNodeMessage(from, to, (node) => node.receiveRevisions(from.id, message));
  }

  /** A request on a range the sender holds no replica of, or its reply (ADR 0012): over the same faulty network. */
  private sendForward(from: Member, incarnation: number, to: NodeId, message: ForwardMessage): void {
    if (from.incarnation !== incarnation) return;
    this.log(`fwd ${from.id}->${to} ${message.kind} ${message.id}${message.kind === 'call' ? ` range ${message.rangeId}` : ''}`);
    this.carryNodeMessage(from, to, (node) => node.receiveForward(from.id, message));
  }

  /** A node's liveness (ADR 0010): over the same faulty network as everything else. */
  private sendLiveness(from: Member, incarnation: number, to: NodeId, load: NodeLoad | undefined): void {
    if (from.incarnation !== incarnation) return;
    this.carryNodeMessage(from, to, (node) => node.receiveLiveness(from.id, load));
  }

  /** A node-level message (not a range's) over the faulty network, delivered to `to` if it is still a running member. */
  private carryNodeMessage(from: Member, to: NodeId, deliver: (node: SimStoreNode) => void): void {
    this.net.carry(
      from.id,
      to,
      () => {
        const target = this.members.get(to);
        if (target === undefined || target.removed) return;
        this.onMember(target, target.incarnation, () => {
          if (target.node !== undefined) deliver(target.node);
        });
      },
      () => {},
    );
  }

  /**
   * The TSO's half of the revision oracle: no revision is handed out twice,
   * by any node, in any term (tso.ts: a new meta leader starts above every
   * window an earlier one persisted). A write's stamp is checked again at
   * apply (checkRevision), but a range that is not the meta range would
   * commit a twice-given revision, so the hand-out itself is checked.
   */
  private checkHandedOut(node: NodeId, first: number, last: number): void {
    const list = this.handedOut;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((list[mid] as { first: number }).first < first) lo = mid + 1;
      else hi = mid;
    }
    const before = list[lo - 1];
    const after = list[lo];
    const clash = before !== undefined && before.last >= first ? before : after !== undefined && after.first <= last ? after : undefined;
    if (clash !== undefined) this.violation('revision', `revision: the TSO on node ${node} handed out ${first}..${last}, and node ${clash.node} had handed out ${clash.first}..${clash.last}`);
    list.splice(lo, 0, { first, last, node });
  }

  private deliver(rangeId: RangeId, msg: Message): void {
    const to = this.members.get(msg.to);
    if (to === undefined || to.node === undefined || to.removed) {
      this.snapshotDone(rangeId, msg, false);
      return;
    }
    const incarnation = to.incarnation;
    this.onMember(
      to,
      incarnation,
      () => {
        to.node?.receive([{ rangeId, message: msg }]);
        this.snapshotDone(rangeId, msg, true);
      },
      isAck(msg),
    );
  }

  /** The transport tells the sender how a snapshot send of a range ended, as etcd's ReportSnapshot does. */
  private snapshotDone(rangeId: RangeId, msg: Message, ok: boolean): void {
    if (msg.type !== 'MsgSnap') return;
    const from = this.members.get(msg.from);
    if (from === undefined || from.node === undefined) return;
    const inc = from.incarnation;
    this.sched.after(0.1, () => this.onMember(from, inc, () => from.node?.reportSnapshot(rangeId, msg.to, ok)));
  }

  private group(rangeId: RangeId): GroupOracle {
    let g = this.groups.get(rangeId);
    if (g === undefined) this.groups.set(rangeId, (g = { leaders: new Map(), appliedAt: new Map(), appliedInTerm: new Map(), maxAppliedIndex: 0 }));
    return g;
  }

  /** Node `id`'s Raft log of range `rangeId`, if it runs and holds the range. */
  private logOf(id: NodeId, rangeId: RangeId): LogTerms | undefined {
    return this.members.get(id)?.node?.store.replica(rangeId)?.raw.raft.raftLog;
  }

  // ---- oracles -------------------------------------------------------------------

  /**
   * Election safety (Figure 3): at most one leader per term. Leader
   * completeness (Figure 3): a new leader's log holds every entry committed
   * in an earlier term, checked over the part of its log it has not
   * compacted. An entry is known committed in an earlier term when a node
   * applied it while its term was below the new leader's. Newer entries may
   * be missing: a paused candidate can count votes of its term that were
   * granted before the cluster moved on, and win a term older than entries
   * already applied (seed 6498); it can commit nothing, since every member of
   * the newer terms refuses its appends. All of it per range: each range is
   * its own Raft group, with its own terms and indexes.
   */
  private checkLeader(rangeId: RangeId, node: StepView): void {
    const { id, term } = node;
    const g = this.group(rangeId);
    this.log(`leader r${rangeId} ${id} term ${term}`);
    const prev = g.leaders.get(term);
    if (prev !== undefined && prev !== id) this.violation('election-safety', `election safety: two leaders of range ${rangeId} in term ${term}: ${prev} and ${id}`);
    g.leaders.set(term, id);
    const log = node.raftLog;
    // Every retained index, not a recent window: an entry committed long ago matters as much (issue 12).
    for (let i = log.firstIndex(); i <= g.maxAppliedIndex; i++) {
      const applied = g.appliedAt.get(i);
      const committedBy = g.appliedInTerm.get(i);
      const t = log.termOrUndefined(i);
      if (applied !== undefined && committedBy !== undefined && committedBy < term && (t === undefined || !applied.startsWith(`${t}:`))) {
        this.violation('leader-completeness', `leader completeness: leader ${id} of range ${rangeId} term ${term} lacks entry ${i} (${applied}) that was applied; it has term ${t ?? 'none'} there`);
        break;
      }
    }
    this.checkLogMatching(rangeId, id, log);
    if (rangeId === META_RANGE) this.onLeaderElected(id);
  }

  /** Log Matching of a range between a new leader and every running node (bounded by the retained logs). */
  private checkLogMatching(rangeId: RangeId, id: NodeId, log: LogTerms): void {
    for (const other of this.members.keys()) {
      const otherLog = other === id ? undefined : this.logOf(other, rangeId);
      if (otherLog === undefined) continue;
      const v = logMatchingViolation({ id, log }, { id: other, log: otherLog });
      if (v !== undefined) {
        this.violation('log-matching', `range ${rangeId}: ${v}`);
        return;
      }
    }
  }

  /**
   * Log Matching where an append just landed: the receiver and the sender
   * must agree on every term from the entry before the message's first to its
   * last. The property holds between any two logs at any time, so a sender
   * that has moved on since is still a fair witness.
   */
  private checkAppendMatches(rangeId: RangeId, id: NodeId, log: LogTerms, msg: Message): void {
    const senderLog = this.logOf(msg.from, rangeId);
    if (senderLog === undefined) return;
    const window = { lo: msg.index, hi: msg.index + msg.entries.length };
    const v = logMatchingViolation({ id, log }, { id: msg.from, log: senderLog }, window);
    if (v !== undefined) this.violation('log-matching', `range ${rangeId}: ${v}`);
  }

  /**
   * Revisions never repeat or go back (issue 13's oracle): on each node
   * process, every applied write takes a revision above the one before it,
   * and over the whole cluster one revision belongs to one log entry. (A
   * restarted process applies again from its durable index, so each process
   * is checked on its own; and each range, since ranges apply independently
   * of each other, so only one range's writes are in revision order.)
   */
  private checkRevision(m: Member, incarnation: number, rangeId: RangeId, a: Applied): void {
    const result = a.result as CommandResult | undefined;
    if (result?.kind !== 'txn' || result.events.length === 0) return;
    const revision = result.response.revision;
    const proc = `${m.id}:${incarnation}:${rangeId}`;
    const last = this.lastWriteRevision.get(proc) ?? 0;
    if (revision <= last) this.violation('revision', `revision: node ${m.id} applied a write of range ${rangeId} at revision ${revision} (index ${a.entry.index}) after one at ${last}`);
    this.lastWriteRevision.set(proc, revision);
    const entry = `range ${rangeId} index ${a.entry.index}`;
    const taken = this.indexOfRevision.get(revision);
    if (taken === undefined) this.indexOfRevision.set(revision, entry);
    else if (taken !== entry) this.violation('revision', `revision: ${revision} was taken by the writes at ${taken} and ${entry}`);
  }

  /** State machine safety (Figure 3): every node applies the same entry at each index of a range. */
  private checkApplied(id: NodeId, rangeId: RangeId, e: Entry, term: number | undefined): void {
    const g = this.group(rangeId);
    if (term !== undefined) g.appliedInTerm.set(e.index, Math.min(term, g.appliedInTerm.get(e.index) ?? term));
    const digest = `${e.term}:${e.type}:${new Fnv64().updateBytes(e.data).digest()}`;
    const prev = g.appliedAt.get(e.index);
    if (e.index > g.maxAppliedIndex) g.maxAppliedIndex = e.index;
    if (prev === undefined) g.appliedAt.set(e.index, digest);
    else if (prev !== digest) this.violation('state-machine-safety', `state machine safety: node ${id} applied ${digest} at index ${e.index} of range ${rangeId}, another node applied ${prev}`);
  }

  private onConfState(id: NodeId, cs: ConfState, index: number): void {
    this.log(`${id} conf at ${index}: voters=${cs.voters.join(',')} out=${cs.votersOutgoing.join(',')} learners=${cs.learners.join(',')}`);
    if (index <= this.latestConf.index) return;
    const before = confIds(this.latestConf.cs);
    this.latestConf = { cs, index };
    const after = new Set(confIds(cs));
    // The operator shuts down a member once its removal is applied, so it cannot disrupt the rest.
    for (const gone of before) {
      if (after.has(gone)) continue;
      const m = this.members.get(gone);
      if (m === undefined || m.removed) continue;
      this.shutDownRemoved(m, 'its removal was applied');
    }
  }

  /** A removed member stops for good, as the operator (or the node itself) stops a removed etcd member. */
  shutDownRemoved(m: Member, why: string): void {
    if (m.removed) return;
    this.log(`member ${m.id} removed (${why}); shutting it down`);
    m.node?.stop();
    m.node = undefined;
    m.removed = true;
  }

  // ---- views -----------------------------------------------------------------------

  running(): Member[] {
    return [...this.members.values()].filter((m) => m.node !== undefined && !m.removed).sort((a, b) => a.id - b.id);
  }

  /** The leader with the highest term among running, unpaused members. */
  leader(): Member | undefined {
    let best: Member | undefined;
    for (const m of this.running()) {
      const r = m.node?.raw.raft;
      if (r === undefined || r.state !== 'leader' || m.paused) continue;
      if (best === undefined || r.term > (best.node?.raw.raft.term ?? 0)) best = m;
    }
    return best;
  }

  memberIds(): NodeId[] {
    return confIds(this.latestConf.cs);
  }

  /** Sends a client request to a node; the reply comes back through `reply` after a network hop. */
  request<R = ClientReply>(target: NodeId, work: (node: SimStoreNode, reply: (r: R) => void) => void, reply: (r: R) => void): void {
    const m = this.members.get(target);
    const hop = (): number => 0.1 + this.rng.float() * 0.4;
    if (m === undefined || m.node === undefined || m.removed) return; // connection refused: the client times out
    const inc = m.incarnation;
    this.sched.after(hop(), () =>
      this.onMember(m, inc, () => {
        const node = m.node;
        if (node === undefined) return;
        work(node, (r) => this.sched.after(hop(), () => reply(r)));
      }),
    );
  }

  /** Random choice from the node rng (deterministic). */
  pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.rng.intBelow(items.length)];
  }
}

export function confIds(cs: ConfState): NodeId[] {
  return [...new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext])].sort((a, b) => a - b);
}

export { SeededRng };

function confStateOf(result: unknown): ConfState {
  const r = result as { kind?: unknown; confState?: ConfState };
  return r.kind === 'conf-change' && r.confState !== undefined ? r.confState : (result as ConfState);
}
