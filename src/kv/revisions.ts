import { TesseraError, type Timers } from '../base/index.js';
import type { NodeId, StateType } from '../raft/index.js';
import { encodeCommand } from './commands.js';
import type { RangeId } from './keys.js';
import { FIRST_STAMP_REVISION, markUnstamped } from './stamp.js';
import type { ProposalOutcome, RevisionSource } from './store.js';
import { MAX_REVISION, type PersistWindow, TSO_MAX_BATCH_REVISIONS, TSO_MAX_QUEUED_REQUESTS, TimestampOracle, type TsoAnswer, type TsoSabotage } from './tso.js';

/** How long a dropped window proposal waits before the oracle asks again. */
export const TSO_WINDOW_RETRY_MS = 25;
/** The longest request id a revision message may carry (a node's request id prefix and a counter). */
export const MAX_REVISION_REQUEST_ID_BYTES = 128;

/**
 * A node-level message between revision services (ADR 0009 §2): a range
 * leader's node asks the meta leader's node for `count` revisions, and gets
 * them or a refusal naming the meta leader it knows of (0: none).
 */
export type RevisionMessage =
  | { readonly kind: 'request'; readonly id: string; readonly count: number }
  | { readonly kind: 'answer'; readonly id: string; readonly first: number; readonly last: number }
  | { readonly kind: 'refusal'; readonly id: string; readonly code: 'NOT_LEADER' | 'RESOURCE_EXHAUSTED' | 'TIMEOUT'; readonly leader: NodeId };

/** What the service needs of the Store and of the meta range's replica on this node. */
export interface RevisionHost {
  linearizableRead(rangeId: RangeId, done: (error: TesseraError | undefined) => void): void;
  propose(rangeId: RangeId, requestId: string, data: Uint8Array, done: (o: ProposalOutcome) => void): void;
  /** The meta replica's Raft state on this node; undefined where the node holds none. */
  metaRaft(): { readonly state: StateType; readonly term: number; readonly lead: NodeId } | undefined;
  /** The window bound W the meta range has applied on this node. */
  windowBound(): number;
  /** A bound every revision used before must lie below (the meta range's current revision + 1). */
  floorBound(): number;
}

export interface RevisionServiceOptions {
  readonly nodeId: NodeId;
  readonly metaRange: RangeId;
  readonly host: RevisionHost;
  readonly send: (to: NodeId, message: RevisionMessage) => void;
  readonly timers: Timers;
  /** How long a request may wait for revisions before it fails (retryably: nothing was proposed). */
  readonly deadlineMs: number;
  /** Unique per start of the node: window proposals' request ids and remote request ids. */
  readonly requestIdPrefix: string;
  readonly sabotage?: TsoSabotage;
  /** Told of every batch handed out under a confirmed leadership (the simulator's revision oracle). */
  readonly onHandedOut?: (first: number, last: number) => void;
}

interface Waiting {
  readonly count: number;
  readonly done: (answer: TsoAnswer) => void;
}

/**
 * A node's revision service. Every node asks it for revisions for its range
 * leaders (it is the Store's RevisionSource); the node whose meta replica
 * leads also serves them from its TimestampOracle (tso.ts), to itself and,
 * over the peer transport, to other nodes.
 *
 * The oracle's contract (tso.ts header) is met so: `becomeLeader` once the
 * meta replica leads and has applied an entry of its own term (the
 * leader's no-op, thesis §6.4), with the window W that state holds; `stepDown`
 * as soon as this node sees it no longer leads in that term; windows go
 * through the meta range's log as tso-window commands that want no stamp.
 * A deposed leader that does not know it yet could still hand out revisions
 * below its successor's, so a batch is answered only after a linearizable
 * read of the meta range confirms, after the batch was taken from the
 * oracle, that this node still leads: requests that arrive while one
 * confirmation is in flight share the next one (as reads share a ReadIndex).
 */
export class RevisionService implements RevisionSource {
  private readonly oracle: TimestampOracle;
  private leaderTerm = 0;
  private appliedTerm = 0;
  /** The term in which this node proposed its own barrier entry, if it did (see proposeBarrier). */
  private barrierTerm = 0;
  /** The term this node was first seen leading without an applied entry of that term, and when. */
  private waitingSince: { readonly term: number; readonly atMs: number } | undefined;
  private readonly arrivals: Waiting[] = [];
  /** The batch waiting for its leadership confirmation, if any. */
  private confirming: Waiting[] | undefined;
  private seq = 0;
  private leaderHint: NodeId = 0;
  private readonly outstanding = new Map<string, { readonly count: number; readonly done: (answer: TsoAnswer) => void }>();
  readonly stats = { servedBatches: 0, confirmations: 0, remoteRequests: 0, refusals: 0, timeouts: 0 };

  constructor(private readonly o: RevisionServiceOptions) {
    this.oracle = new TimestampOracle(o.sabotage === undefined ? {} : { sabotage: o.sabotage });
  }

  get isLeader(): boolean {
    return this.oracle.isLeader;
  }

  /** Revisions for this node's range leaders: from the local oracle, or from the meta leader's node. */
  allocate(count: number, done: (answer: TsoAnswer) => void): void {
    const once = this.withDeadline(done);
    const meta = this.o.host.metaRaft();
    if (this.oracle.isLeader || meta?.lead === this.o.nodeId) return this.serveLocal(count, once);
    const to = meta !== undefined && meta.lead !== 0 ? meta.lead : this.leaderHint;
    if (to === 0 || to === this.o.nodeId) return once({ ok: false, error: notLeader('no meta range leader is known') });
    this.askRemote(to, count, once);
  }

  /** A peer's revision message; its fields were checked by the transport, and are checked again where they matter. */
  receive(from: NodeId, message: RevisionMessage): void {
    if (message.kind === 'request') return this.serveRemote(from, message.id, message.count);
    const waiting = this.outstanding.get(message.id);
    if (waiting === undefined) return; // answered already, timed out, or from an earlier boot
    this.outstanding.delete(message.id);
    if (message.kind === 'refusal') {
      this.stats.refusals++;
      if (message.leader !== this.o.nodeId) this.leaderHint = message.leader;
      return waiting.done({ ok: false, error: new TesseraError(message.code, `meta leader node ${from} refused revisions (${message.code})`) });
    }
    const { first, last } = message;
    // A peer chose these numbers: a batch that is not the one asked for is refused, never stamped.
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || first < FIRST_STAMP_REVISION || last >= MAX_REVISION || last - first + 1 !== waiting.count) {
      return waiting.done({ ok: false, error: new TesseraError('INVALID_ARGUMENT', `node ${from} answered ${first}..${last} for ${waiting.count} revisions`) });
    }
    waiting.done({ ok: true, first, last });
  }

  /** Leadership and applied state may have changed (after each store turn and tick): steps the oracle up or down. */
  check(): void {
    const meta = this.o.host.metaRaft();
    const leads = meta?.state === 'leader';
    if (this.oracle.isLeader && (!leads || meta.term !== this.leaderTerm)) this.stepDown();
    if (this.oracle.isLeader || !leads) return;
    if (this.appliedTerm !== meta.term) return this.proposeBarrier(meta.term);
    this.leaderTerm = meta.term;
    const bound = Math.max(this.o.host.windowBound(), this.o.host.floorBound(), FIRST_STAMP_REVISION);
    this.persist(this.oracle.becomeLeader(bound));
    this.pump();
  }

  /** An entry of the meta range applied on this node (its term tells whether the leader's own no-op has). */
  onMetaApplied(term: number, windowBound: number | undefined): void {
    this.appliedTerm = term;
    if (windowBound !== undefined) this.persist(this.oracle.onWindowPersisted(windowBound));
    this.check();
    this.pump();
  }

  /**
   * Raft's leader appends a no-op of its term, which is the entry the oracle
   * waits to see applied; a leader without one (the commit-old-term
   * sabotage, or a Raft that leaves it out) would leave every write waiting
   * for revisions. So a leader that has applied no entry of its term after
   * half of deadlineMs proposes one of its own: a window that raises nothing (bound
   * 0), once per term, again if it is dropped. Not at once: an entry of the
   * new term would hide that sabotage from the simulator (Figure 8 needs the
   * old entry committed by counting before any new-term entry replicates).
   */
  private proposeBarrier(term: number): void {
    const nowMs = this.o.timers.nowMs();
    if (this.waitingSince?.term !== term) this.waitingSince = { term, atMs: nowMs };
    // Half the deadline: requests waiting since the election can still be served within theirs.
    if (this.barrierTerm === term || nowMs - this.waitingSince.atMs < this.o.deadlineMs / 2) return;
    this.barrierTerm = term;
    const requestId = `${this.o.requestIdPrefix}.tso-barrier:${++this.seq}`;
    const data = markUnstamped(encodeCommand({ kind: 'tso-window', requestId, bound: 0 }));
    this.o.host.propose(this.o.metaRange, requestId, data, (outcome) => {
      if (outcome.kind === 'dropped' && this.barrierTerm === term) this.barrierTerm = 0;
    });
  }

  private stepDown(): void {
    const confirming = this.confirming;
    this.confirming = undefined;
    this.oracle.stepDown();
    const error = notLeader(`node ${this.o.nodeId} no longer leads the meta range`);
    for (const w of [...(confirming ?? []), ...this.arrivals.splice(0)]) w.done({ ok: false, error });
  }

  private serveLocal(count: number, done: (answer: TsoAnswer) => void): void {
    if (this.arrivals.length >= TSO_MAX_QUEUED_REQUESTS) {
      return done({ ok: false, error: new TesseraError('RESOURCE_EXHAUSTED', `${TSO_MAX_QUEUED_REQUESTS} revision requests already wait`) });
    }
    this.arrivals.push({ count, done });
    this.pump();
  }

  /**
   * Takes every request that arrived from the oracle as one batch, then
   * confirms leadership once for all of them. A node that leads the meta
   * range but has not applied its no-op yet keeps them waiting (deadlines
   * bound the wait); a node that does not lead refuses them.
   */
  private pump(): void {
    if (this.confirming !== undefined || this.arrivals.length === 0) return;
    if (!this.oracle.isLeader) {
      const meta = this.o.host.metaRaft();
      if (meta?.state === 'leader') return;
      const error = notLeader(`node ${this.o.nodeId} does not lead the meta range`);
      for (const w of this.arrivals.splice(0)) w.done({ ok: false, error });
      return;
    }
    const batch = this.arrivals.splice(0);
    this.confirming = batch;
    const answers: TsoAnswer[] = [];
    let left = batch.length;
    batch.forEach((w, i) => {
      this.persist(
        this.oracle.allocate(w.count, (answer) => {
          answers[i] = answer;
          if (--left === 0) this.confirm(batch, answers);
        }),
      );
    });
  }

  private confirm(batch: Waiting[], answers: readonly TsoAnswer[]): void {
    if (this.confirming !== batch) return; // stepped down meanwhile: the batch was refused
    this.stats.confirmations++;
    this.o.host.linearizableRead(this.o.metaRange, (error) => {
      if (this.confirming !== batch) return;
      this.confirming = undefined;
      this.stats.servedBatches++;
      batch.forEach((w, i) => {
        const answer = answers[i] as TsoAnswer;
        if (error !== undefined) return w.done({ ok: false, error: notLeader(`meta leadership not confirmed: ${error.message}`) });
        if (answer.ok) this.o.onHandedOut?.(answer.first, answer.last);
        w.done(answer);
      });
      this.pump();
    });
  }

  private serveRemote(from: NodeId, id: string, count: number): void {
    const refuse = (code: 'NOT_LEADER' | 'RESOURCE_EXHAUSTED' | 'TIMEOUT'): void => this.o.send(from, { kind: 'refusal', id, code, leader: this.o.host.metaRaft()?.lead ?? 0 });
    if (typeof id !== 'string' || id.length > MAX_REVISION_REQUEST_ID_BYTES || !Number.isSafeInteger(count) || count < 1 || count > TSO_MAX_BATCH_REVISIONS) return;
    const meta = this.o.host.metaRaft();
    if (!this.oracle.isLeader && meta?.state !== 'leader') return refuse('NOT_LEADER');
    this.serveLocal(
      count,
      this.withDeadline((answer) => {
        if (answer.ok) this.o.send(from, { kind: 'answer', id, first: answer.first, last: answer.last });
        else refuse(answer.error.code === 'RESOURCE_EXHAUSTED' || answer.error.code === 'TIMEOUT' ? answer.error.code : 'NOT_LEADER');
      }),
    );
  }

  private askRemote(to: NodeId, count: number, done: (answer: TsoAnswer) => void): void {
    const id = `${this.o.requestIdPrefix}.tso:${++this.seq}`;
    this.stats.remoteRequests++;
    // The deadline (withDeadline) answers it if the peer does not; forget it then, so a late answer is ignored.
    this.outstanding.set(id, { count, done: (answer) => (this.outstanding.delete(id), done(answer)) });
    this.o.timers.after(this.o.deadlineMs, () => this.outstanding.delete(id));
    this.o.send(to, { kind: 'request', id, count });
  }

  /** Proposes a window the oracle asked for; a dropped proposal is asked again after TSO_WINDOW_RETRY_MS. */
  private persist(window: PersistWindow | undefined): void {
    if (window === undefined) return;
    const requestId = `${this.o.requestIdPrefix}.tso-window:${++this.seq}`;
    const data = markUnstamped(encodeCommand({ kind: 'tso-window', requestId, bound: window.bound }));
    this.o.host.propose(this.o.metaRange, requestId, data, (outcome) => {
      // Applied: onMetaApplied already told the oracle (every replica's apply does, this one's too).
      if (outcome.kind === 'dropped') this.o.timers.after(TSO_WINDOW_RETRY_MS, () => this.persist(this.oracle.onWindowPersistFailed(window.bound)));
    });
  }

  /** `done`, answered once: by its caller, or after deadlineMs with a retryable TIMEOUT (nothing was proposed with them). */
  private withDeadline(done: (answer: TsoAnswer) => void): (answer: TsoAnswer) => void {
    let settled = false;
    const timer = this.o.timers.after(this.o.deadlineMs, () => {
      this.stats.timeouts++;
      finish({ ok: false, error: new TesseraError('TIMEOUT', `no revisions within ${this.o.deadlineMs} ms; nothing was proposed`) });
    });
    const finish = (answer: TsoAnswer): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      done(answer);
    };
    return finish;
  }
}

function notLeader(why: string): TesseraError {
  return new TesseraError('NOT_LEADER', `no revisions: ${why}`);
}
