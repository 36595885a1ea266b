import { AssertionError, Fnv64, SeededRng, type Rng } from '../base/index.js';
import { type ConfState, type Entry, isAck, type Message, type NodeId } from '../raft/index.js';
import { Sabotage } from '../raft/sabotage.js';
import type { Applied, CommandResult, RangeMessage, RevisionMessage } from '../kv/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { type ClientReply, SIM_RANGE, SimStoreNode } from './store_node.js';
import { SimNetwork } from './network.js';
import type { SimOptions } from './options.js';
import { Scheduler } from './scheduler.js';
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
  private readonly leaders = new Map<number, NodeId>();
  private readonly appliedAt = new Map<number, string>();
  /**
   * Per applied index, the lowest Raft term a node had when it applied it: the
   * entry was committed in that term or an earlier one (a node learns of a
   * commit from a leader of its own term or an older one).
   */
  private readonly appliedInTerm = new Map<number, number>();
  /** The log index whose write took each revision, over every node (the revision oracle). */
  private readonly indexOfRevision = new Map<number, number>();
  /** The newest revision a write took on each node process (`id:incarnation`). */
  private readonly lastWriteRevision = new Map<string, number>();
  /** Every batch of revisions a TSO handed out, sorted by first revision, disjoint unless a bug hands one out twice. */
  private readonly handedOut: { readonly first: number; readonly last: number; readonly node: NodeId }[] = [];
  private maxAppliedIndex = 0;
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
    this.net = new SimNetwork(this.sched, rng.fork(), options.netDelayMs);
    this.traceLines = traceOn ? [] : undefined;
    this.sabotage = options.bug === undefined ? Sabotage.of() : Sabotage.of(options.bug);
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
        readOnlyOption: o.readOnlyOption,
        maxClockDriftRatio: o.maxClockDriftRatio,
        maxSizePerMsgBytes: o.maxSizePerMsgBytes,
        maxInflightMsgs: 16,
        maxInflightBytes: 64 * 1024,
        maxUncommittedEntriesSizeBytes: 256 * 1024,
        // Raft's own invariants after every step and tick, and every leadership as it happens.
        afterStep: (node, msg) => {
          node.checkInvariants();
          if (node.state === 'leader' && this.leaders.get(node.term) !== node.id) this.checkLeader(node.id, node.term);
          if (msg?.type === 'MsgApp' && msg.entries.length > 0) this.checkAppendMatches(node.id, node.raftLog, msg);
        },
      },
      logRetainEntries: o.snapshotEveryEntries,
      reproposeOnNewLeader: o.reproposeOnNewLeader,
      bootstrap: m.bootstrap,
      send: (to, msgs) => this.send(m, incarnation, to, msgs),
      sendRevisions: (to, message) => this.sendRevisions(m, incarnation, to, message),
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
      onApply: (id, a) => {
        this.checkApplied(id, a.entry, m.node?.raw.raft.term);
        this.checkRevision(m, incarnation, a);
        // A change with a membership context answers with the state machine's result, which carries the ConfState.
        if (a.entry.type === 'conf-change') this.onConfState(id, confStateOf(a.result), a.entry.index);
      },
      onReady: (_id, rd) => {
        if (rd.hardState !== undefined && rd.hardState.vote !== 0) m.votePending = true;
      },
      onStorageFailed: (error) => this.storageFailed(m, incarnation, error),
      trace: (line) => this.log(line),
    });
    const torn = m.node.store.replica(SIM_RANGE)?.log.droppedTornEntry;
    if (torn !== undefined) {
      this.count('recovery-dropped-torn-entry');
      this.log(`node ${m.id} dropped the partial entry ${torn} at its log's tail`);
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
    for (const { message: msg } of msgs) {
      this.log(`send ${msg.from}->${msg.to} ${msg.type} t${msg.term} i${msg.index} c${msg.commit} n${msg.entries.length}${msg.reject ? ' rej' : ''}`);
      // A snapshot's data is read a chunk per event first; the network then carries it whole.
      carrySnapshot({
        sched: this.sched,
        message: msg,
        alive: () => from.incarnation === incarnation && from.node !== undefined,
        send: (full) => this.net.send(full, (d) => this.deliver(d), (d) => this.snapshotDone(d, false)),
        failed: (m) => this.snapshotDone(m, false),
      });
    }
  }

  private sendRevisions(from: Member, incarnation: number, to: NodeId, message: RevisionMessage): void {
    if (from.incarnation !== incarnation) return;
    this.log(`tso ${from.id}->${to} ${message.kind} ${message.id}`);
    this.net.carry(
      from.id,
      to,
      () => {
        const target = this.members.get(to);
        if (target === undefined || target.removed) return;
        this.onMember(target, target.incarnation, () => target.node?.receiveRevisions(from.id, message));
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

  private deliver(msg: Message): void {
    const to = this.members.get(msg.to);
    if (to === undefined || to.node === undefined || to.removed) {
      this.snapshotDone(msg, false);
      return;
    }
    const incarnation = to.incarnation;
    this.onMember(
      to,
      incarnation,
      () => {
        to.node?.receive([{ rangeId: SIM_RANGE, message: msg }]);
        this.snapshotDone(msg, true);
      },
      isAck(msg),
    );
  }

  /** The transport tells the sender how a snapshot send ended, as etcd's ReportSnapshot does. */
  private snapshotDone(msg: Message, ok: boolean): void {
    if (msg.type !== 'MsgSnap') return;
    const from = this.members.get(msg.from);
    if (from === undefined || from.node === undefined) return;
    const inc = from.incarnation;
    this.sched.after(0.1, () => this.onMember(from, inc, () => from.node?.reportSnapshot(msg.to, ok)));
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
   * the newer terms refuses its appends.
   */
  private checkLeader(id: NodeId, term: number): void {
    this.log(`leader ${id} term ${term}`);
    const prev = this.leaders.get(term);
    if (prev !== undefined && prev !== id) this.violation('election-safety', `election safety: two leaders in term ${term}: ${prev} and ${id}`);
    this.leaders.set(term, id);
    const log = this.members.get(id)?.node?.raw.raft.raftLog;
    if (log !== undefined) {
      // Every retained index, not a recent window: an entry committed long ago matters as much (issue 12).
      for (let i = log.firstIndex(); i <= this.maxAppliedIndex; i++) {
        const applied = this.appliedAt.get(i);
        const committedBy = this.appliedInTerm.get(i);
        const t = log.termOrUndefined(i);
        if (applied !== undefined && committedBy !== undefined && committedBy < term && (t === undefined || !applied.startsWith(`${t}:`))) {
          this.violation('leader-completeness', `leader completeness: leader ${id} of term ${term} lacks entry ${i} (${applied}) that was applied; it has term ${t ?? 'none'} there`);
          break;
        }
      }
    }
    this.checkLogMatching(id);
    this.onLeaderElected(id);
  }

  /** Log Matching between a new leader and every running node (bounded by the retained logs). */
  private checkLogMatching(id: NodeId): void {
    const log = this.members.get(id)?.node?.raw.raft.raftLog;
    if (log === undefined) return;
    for (const [other, m] of this.members) {
      const otherLog = m.node?.raw.raft.raftLog;
      if (other === id || otherLog === undefined) continue;
      const v = logMatchingViolation({ id, log }, { id: other, log: otherLog });
      if (v !== undefined) {
        this.violation('log-matching', v);
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
  private checkAppendMatches(id: NodeId, log: LogTerms, msg: Message): void {
    const senderLog = this.members.get(msg.from)?.node?.raw.raft.raftLog;
    if (senderLog === undefined) return;
    const window = { lo: msg.index, hi: msg.index + msg.entries.length };
    const v = logMatchingViolation({ id, log }, { id: msg.from, log: senderLog }, window);
    if (v !== undefined) this.violation('log-matching', v);
  }

  /**
   * Revisions never repeat or go back (issue 13's oracle): on each node
   * process, every applied write takes a revision above the one before it,
   * and over the whole cluster one revision belongs to one log entry. (A
   * restarted process applies again from its durable index, so each process
   * is checked on its own.)
   */
  private checkRevision(m: Member, incarnation: number, a: Applied): void {
    const result = a.result as CommandResult | undefined;
    if (result?.kind !== 'txn' || result.events.length === 0) return;
    const revision = result.response.revision;
    const proc = `${m.id}:${incarnation}`;
    const last = this.lastWriteRevision.get(proc) ?? 0;
    if (revision <= last) this.violation('revision', `revision: node ${m.id} applied a write at revision ${revision} (index ${a.entry.index}) after one at ${last}`);
    this.lastWriteRevision.set(proc, revision);
    const index = this.indexOfRevision.get(revision);
    if (index === undefined) this.indexOfRevision.set(revision, a.entry.index);
    else if (index !== a.entry.index) this.violation('revision', `revision: ${revision} was taken by the writes at indexes ${index} and ${a.entry.index}`);
  }

  /** State machine safety (Figure 3): every node applies the same entry at each index. */
  private checkApplied(id: NodeId, e: Entry, term: number | undefined): void {
    if (term !== undefined) this.appliedInTerm.set(e.index, Math.min(term, this.appliedInTerm.get(e.index) ?? term));
    const digest = `${e.term}:${e.type}:${new Fnv64().updateBytes(e.data).digest()}`;
    const prev = this.appliedAt.get(e.index);
    if (e.index > this.maxAppliedIndex) this.maxAppliedIndex = e.index;
    if (prev === undefined) this.appliedAt.set(e.index, digest);
    else if (prev !== digest) this.violation('state-machine-safety', `state machine safety: node ${id} applied ${digest} at index ${e.index}, another node applied ${prev}`);
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
  request(target: NodeId, work: (node: SimStoreNode, reply: (r: ClientReply) => void) => void, reply: (r: ClientReply) => void): void {
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
