/**
 * The timestamp oracle (TSO): the one cluster-wide revision counter, run by
 * the meta range leader (ADR 0009 §2).
 *
 * Modelled on TiKV PD's TSO: the leader persists an upper bound through Raft
 * and hands out revisions below it from memory, so a write costs no Raft
 * round of its own; a new leader starts above the last persisted bound, so
 * revisions rise strictly across failovers. Unlike PD, a revision is a plain
 * counter, not physical milliseconds << 18: that is past 2^53 already, and a
 * revision must stay an exact JavaScript number. At one million revisions a
 * second a counter lasts 285 years below 2^53 (ADR 0009 §2).
 *
 * Pure and deterministic: no clock, no timers, no I/O. The oracle never
 * persists anything itself. It returns a `PersistWindow` for the caller to
 * propose through the meta range's Raft log, and is told what became of it
 * (`onWindowPersisted`, `onWindowPersistFailed`).
 *
 * The caller's contract, which the oracle cannot check:
 * - Applying a persisted window keeps the larger bound (W = max(W, bound)),
 *   so a late or repeated proposal never lowers it.
 * - `becomeLeader` is called with the bound applied once the leader's own
 *   term-start entry is applied (Raft thesis §6.4), so the bound covers every
 *   window any earlier leader was told was persisted.
 * - `stepDown` is called before another node can become leader (the meta
 *   leader serves revisions only under its leader lease, as PD's TSO serves
 *   only while it holds its etcd lease). Without that a deposed leader that
 *   does not know it yet could hand out a revision below one its successor
 *   already handed out: still unique, but no longer rising in real time,
 *   which the linearizable reads of ADR 0009 §4 need.
 */
import { assert, TesseraError } from '../base/index.js';

/** Revisions stay below this bound, so every revision is an exact JavaScript number (2^53 − 1). */
export const MAX_REVISION = Number.MAX_SAFE_INTEGER;
/** How far one persisted window reaches past the current bound (ADR 0009 §2). */
export const TSO_WINDOW_REVISIONS = 100_000;
/** Ask for the next window when fewer revisions than this remain, so that writes do not wait for a Raft round. */
export const TSO_REFILL_BELOW = TSO_WINDOW_REVISIONS / 4;
/** Requests queued while the window is exhausted; more are refused, so a stuck persist cannot grow memory without bound. */
export const TSO_MAX_QUEUED_REQUESTS = 1024;
/** The largest batch one request may ask for: one window, so that any single request fits once a window lands. */
export const TSO_MAX_BATCH_REVISIONS = TSO_WINDOW_REVISIONS;
/**
 * The deliberate bug of ADR 0009 §3: the oracle serves from the window it has
 * asked to persist before it is persisted, so a new leader may hand out the
 * same revisions again. One of src/raft/sabotage.ts's BugNames.
 */
export const TSO_SERVES_BEFORE_PERSIST = 'tso-serves-before-persist';

/** An answer to `allocate`: `count` consecutive revisions `first..last`, or a refusal. */
export type TsoAnswer =
  | { readonly ok: true; readonly first: number; readonly last: number }
  | { readonly ok: false; readonly error: TesseraError };

export type TsoDone = (answer: TsoAnswer) => void;

/** "Persist the window up to `bound`": propose through the meta range's Raft log; revisions below `bound` may then be handed out. */
export interface PersistWindow {
  readonly bound: number;
}

/** Compatible with src/raft/sabotage.ts's `Sabotage`, which this layer may not construct. */
export interface TsoSabotage {
  has(name: string): boolean;
}

export interface TimestampOracleOptions {
  /** Deliberate bugs, for the simulator and tests only. */
  readonly sabotage?: TsoSabotage;
}

interface QueuedRequest {
  readonly count: number;
  readonly done: TsoDone;
}

/**
 * The TSO state machine on one node. A follower refuses every request; a
 * leader serves revisions in [next, persistedBound) and keeps at most one
 * window proposal in flight. `done` callbacks may run before the call that
 * caused them returns, and may call back into the oracle.
 */
export class TimestampOracle {
  private leader = false;
  /** Revisions below this are covered by a window the Raft log holds (exclusive). */
  private bound = 0;
  /** The next revision to hand out; never above `bound` (unless sabotaged). */
  private next = 0;
  /** The bound of the window proposal in flight, if any; always above `bound`. */
  private requestedBound: number | undefined;
  private readonly queue: QueuedRequest[] = [];
  /** The last revision this instance handed out, to check that it only ever rises. */
  private lastHandedOut = 0;
  private readonly servesBeforePersist: boolean;

  constructor(options: TimestampOracleOptions = {}) {
    this.servesBeforePersist = options.sabotage?.has(TSO_SERVES_BEFORE_PERSIST) === true;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  /** The persisted bound this leader serves under (exclusive); 0 on a follower. */
  get persistedBound(): number {
    return this.bound;
  }

  /** The next revision a leader would hand out. */
  get nextRevision(): number {
    return this.next;
  }

  /** The bound of the window proposal in flight, if any. */
  get inFlightBound(): number | undefined {
    return this.requestedBound;
  }

  get queuedRequests(): number {
    return this.queue.length;
  }

  /**
   * This node's replica became meta range leader, and `persistedBound` is the
   * bound its applied state holds. Revisions a predecessor handed out are all
   * below that bound, but which ones it cannot know, so it starts at the
   * bound itself (the first revision none could have handed out, PD's
   * "start above the last saved time") and serves nothing until a new
   * window above it is persisted. Returns that window to propose.
   */
  becomeLeader(persistedBound: number): PersistWindow | undefined {
    // Preconditions: leadership is entered once per term, with a bound that
    // covers what this instance handed out before (etcd's revision 0 means
    // "none", so a fresh cluster's bound is 1).
    assert(!this.leader, 'TSO: becomeLeader on a leader; stepDown first');
    assertBound(persistedBound, 'persisted bound');
    assert(persistedBound >= 1, 'TSO: a persisted bound is at least 1 (revision 0 means none)');
    assert(
      this.servesBeforePersist || persistedBound > this.lastHandedOut,
      () => `TSO: persisted bound ${persistedBound} is not above revision ${this.lastHandedOut} this node handed out`,
    );
    // Transition.
    this.leader = true;
    this.bound = persistedBound;
    this.next = persistedBound;
    this.requestedBound = undefined;
    const window = this.requestWindow();
    this.checkInvariants();
    return window;
  }

  /**
   * This node is no longer meta range leader (or may not be: its lease ran
   * out). Queued requests fail with NOT_LEADER, which is definite: they were
   * handed nothing. The window it knew is forgotten; the next leadership is
   * told its bound by `becomeLeader`.
   */
  stepDown(): void {
    if (!this.leader) return;
    this.leader = false;
    this.bound = 0;
    this.next = 0;
    this.requestedBound = undefined;
    const failed = this.queue.splice(0);
    this.checkInvariants();
    for (const request of failed) request.done({ ok: false, error: notLeader() });
  }

  /**
   * Hands out `count` consecutive revisions, one batch for all the writes a
   * node's range leaders stamp in one loop turn (ADR 0009 §2, as PD clients
   * batch). Served at once if the window holds them and no earlier request
   * waits; otherwise queued until a window lands. Returns a window to
   * propose, if this request made the oracle ask for one.
   */
  allocate(count: number, done: TsoDone): PersistWindow | undefined {
    // Guards: the count comes from a peer's message, so a bad one is refused, not asserted.
    if (!Number.isSafeInteger(count) || count < 1 || count > TSO_MAX_BATCH_REVISIONS) {
      done({ ok: false, error: new TesseraError('INVALID_ARGUMENT', `TSO: a batch is 1..${TSO_MAX_BATCH_REVISIONS} revisions, not ${count}`) });
      return undefined;
    }
    if (!this.leader) {
      done({ ok: false, error: notLeader() });
      return undefined;
    }
    if (this.wouldPassMax(count)) {
      done({ ok: false, error: revisionsExhausted(count) });
      return undefined;
    }
    // Transition: serve now, or wait behind earlier requests for the next window.
    if (this.queue.length === 0 && this.fits(count)) {
      this.serve(count, done);
    } else if (this.queue.length >= TSO_MAX_QUEUED_REQUESTS) {
      done({ ok: false, error: new TesseraError('RESOURCE_EXHAUSTED', `TSO: ${TSO_MAX_QUEUED_REQUESTS} requests already wait for a window`) });
      return undefined;
    } else {
      this.queue.push({ count, done });
    }
    // `done` may have stepped this oracle down or asked for a window already; requestWindow checks both.
    const window = this.requestWindow();
    this.checkInvariants();
    return window;
  }

  /**
   * A window proposal committed and applied: revisions below
   * `persistedBound` may be handed out. Serves the queue, then asks for the
   * next window if it runs low. A bound at or below the one known is a late
   * or repeated proposal and changes nothing.
   */
  onWindowPersisted(persistedBound: number): PersistWindow | undefined {
    assertBound(persistedBound, 'persisted bound');
    // Guards: a follower forgets windows (becomeLeader brings the bound); a stale bound raises nothing.
    if (!this.leader || persistedBound <= this.bound) return undefined;
    // Transition. Any committed bound may be served under: it is durable, and
    // every later leader starts at or above it.
    this.bound = persistedBound;
    if (this.requestedBound !== undefined && persistedBound >= this.requestedBound) this.requestedBound = undefined;
    this.drainQueue();
    const window = this.requestWindow();
    this.checkInvariants();
    return window;
  }

  /**
   * The proposal for `bound` was dropped or its outcome is unknown. Asks
   * again (the caller may pace retries). If it committed after all, the
   * bound only rises, which is safe. A bound that is not the one in flight
   * is an older proposal and changes nothing.
   */
  onWindowPersistFailed(bound: number): PersistWindow | undefined {
    if (!this.leader || bound !== this.requestedBound) return undefined;
    this.requestedBound = undefined;
    const window = this.requestWindow();
    this.checkInvariants();
    return window;
  }

  /** Asserts the oracle's invariants (the property tests call it after every step). */
  checkInvariants(): void {
    if (!this.leader) {
      assert(this.queue.length === 0 && this.requestedBound === undefined, 'TSO: a follower holds no requests and no window proposal');
      return;
    }
    assert(this.bound <= MAX_REVISION && this.next <= MAX_REVISION, 'TSO: bound and next stay within MAX_REVISION');
    assert(this.requestedBound === undefined || this.requestedBound > this.bound, 'TSO: a window in flight is above the persisted bound');
    if (this.servesBeforePersist) return;
    assert(this.next <= this.bound, () => `TSO: next revision ${this.next} is above the persisted bound ${this.bound}`);
    assert(this.queue.length === 0 || this.requestedBound !== undefined, 'TSO: queued requests always wait for a window in flight');
  }

  /** Proposes the next window if none is in flight and requests wait or fewer than TSO_REFILL_BELOW revisions remain. */
  private requestWindow(): PersistWindow | undefined {
    if (!this.leader || this.requestedBound !== undefined) return undefined;
    if (this.queue.length === 0 && this.bound - this.next >= TSO_REFILL_BELOW) return undefined;
    // max(): only a sabotaged oracle has handed out revisions at or above its bound.
    const from = Math.max(this.bound, this.next);
    const target = Math.min(MAX_REVISION, from + TSO_WINDOW_REVISIONS);
    if (target <= this.bound) return undefined; // at MAX_REVISION: nothing left to persist
    this.requestedBound = target;
    return { bound: target };
  }

  /** Serves queued requests in arrival order while the window holds them; refuses those that would pass MAX_REVISION. */
  private drainQueue(): void {
    while (this.leader && this.queue.length > 0) {
      const head = this.queue[0]!;
      if (this.wouldPassMax(head.count)) {
        this.queue.shift();
        head.done({ ok: false, error: revisionsExhausted(head.count) });
      } else if (this.fits(head.count)) {
        this.queue.shift();
        this.serve(head.count, head.done);
      } else {
        return;
      }
    }
  }

  private serve(count: number, done: TsoDone): void {
    const first = this.next;
    const last = first + count - 1;
    // Postconditions, checked before anything is handed out: below 2^53, below the window, rising.
    assert(last < MAX_REVISION, () => `TSO: revision ${last} would reach MAX_REVISION`);
    assert(last < this.servableBound(), () => `TSO: revision ${last} is not below the persisted bound ${this.bound}`);
    assert(this.servesBeforePersist || first > this.lastHandedOut, () => `TSO: revision ${first} does not rise above ${this.lastHandedOut}`);
    this.next = last + 1;
    this.lastHandedOut = last;
    done({ ok: true, first, last });
  }

  private fits(count: number): boolean {
    return count <= this.servableBound() - this.next;
  }

  /** The persisted bound; under the deliberate bug, the bound merely asked for. */
  private servableBound(): number {
    if (this.servesBeforePersist && this.requestedBound !== undefined) return Math.max(this.bound, this.requestedBound);
    return this.bound;
  }

  /** Whether `count` more revisions would reach MAX_REVISION (written so that nothing is added past 2^53). */
  private wouldPassMax(count: number): boolean {
    return count > MAX_REVISION - this.next;
  }
}

/**
 * A range leader's closed revision (ADR 0009 §4): no write at or below it is
 * still in flight in the range, and none will be stamped there. It is one
 * below the smallest revision the leader has stamped and not yet applied (its
 * own, and those in its log from earlier leaders), or, with none in flight,
 * the last TSO revision it received (every later stamp comes from the TSO and
 * is above it). Revisions it has received from the TSO but not yet stamped
 * count as in flight: the caller passes them in `inFlightRevisions`.
 *
 * The result is the smaller of the two: a new leader may have entries of its
 * predecessor in flight above the last TSO value it received itself, and a
 * TSO answer it asked for before may still arrive with a revision below them.
 * In steady state every in-flight revision is at most the last TSO value, so
 * this is exactly the ADR's rule.
 */
export function closedRevision(inFlightRevisions: Iterable<number>, lastTsoRevision: number): number {
  assert(
    Number.isSafeInteger(lastTsoRevision) && lastTsoRevision >= 0 && lastTsoRevision < MAX_REVISION,
    () => `closedRevision: last TSO revision ${lastTsoRevision} is not a revision`,
  );
  let closed = lastTsoRevision;
  for (const revision of inFlightRevisions) {
    assert(
      Number.isSafeInteger(revision) && revision >= 1 && revision < MAX_REVISION,
      () => `closedRevision: in-flight revision ${revision} is not a revision`,
    );
    closed = Math.min(closed, revision - 1);
  }
  return closed;
}

function assertBound(bound: number, what: string): void {
  assert(Number.isSafeInteger(bound) && bound >= 0 && bound <= MAX_REVISION, () => `TSO: ${what} ${bound} is not an integer in 0..MAX_REVISION`);
}

function notLeader(): TesseraError {
  return new TesseraError('NOT_LEADER', 'TSO: this node is not the meta range leader; no revision was handed out');
}

function revisionsExhausted(count: number): TesseraError {
  return new TesseraError('RESOURCE_EXHAUSTED', `TSO: ${count} more revisions would reach 2^53 − 1 (MAX_REVISION)`);
}
