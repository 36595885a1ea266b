import { TesseraError, type TimerHandle, type Timers } from '../base/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import type { RangeId } from './keys.js';
import type { ProposalOutcome, Store } from './store.js';

/** How long a proposal dropped for want of a leader waits before it is proposed again. */
export const PROPOSAL_RETRY_MS = 25;

export interface RequestRunnerOptions {
  readonly store: Store;
  /** The range a request goes to unless the caller names one (the metadata range). */
  readonly rangeId: RangeId;
  /** How long a proposal or a read barrier may wait before its outcome is unknown (TIMEOUT). */
  readonly requestTimeoutMs: number;
  /** Unique across restarts of this node: request ids must never repeat. */
  readonly requestIdPrefix: string;
  readonly timers: Timers;
  /** Told of each retry and each deadline reached (the simulator counts them). */
  readonly observe?: (event: RequestEvent) => void;
  /** Deliberate bugs, for the simulator only (sabotage.ts). */
  readonly sabotage?: Sabotage;
}

/** `retry`: proposed again after a drop for want of a leader. `timeout-unknown` / `timeout-not-leader`: the deadline ended it, with the outcome unknown or certainly not done. */
export type RequestEvent = 'retry' | 'timeout-unknown' | 'timeout-not-leader' | 'read-timeout';

/**
 * How a request ended. `applied`: the command applied and this is its state
 * machine result (which may itself be a refusal). `failed`: a TesseraError,
 * either NOT_LEADER (it certainly did not happen) or TIMEOUT (its outcome is
 * unknown: it may still commit).
 */
export type RequestOutcome = { readonly kind: 'applied'; readonly result: unknown } | { readonly kind: 'failed'; readonly error: TesseraError };

/**
 * The part of serving a request that sits between a client API and the
 * store: request ids, deadlines, retries while no leader is known, and the
 * line between "certainly not done" and "unknown". It lives here, not in the
 * server, so that the simulator drives the same code a real node runs
 * (issue 12). Callback-based: the simulator runs without an event loop.
 */
export class RequestRunner {
  private seq = 0;

  constructor(private readonly o: RequestRunnerOptions) {}

  get requestTimeoutMs(): number {
    return this.o.requestTimeoutMs;
  }

  /** A fresh request id: the prefix is unique per boot, the counter per request. */
  nextRequestId(): string {
    return `${this.o.requestIdPrefix}:${++this.seq}`;
  }

  /**
   * Proposes a command and reports once how it ended. A proposal dropped
   * because no leader is known (an election is under way) or leadership is
   * being handed over certainly did not happen, so it is proposed again every
   * PROPOSAL_RETRY_MS until the deadline, as etcd's server waits out an
   * election; if the deadline ends with every attempt dropped, the answer is a
   * definite NOT_LEADER, and only a proposal still in flight then has an
   * unknown outcome (TIMEOUT).
   */
  propose(encode: (requestId: string) => Uint8Array, done: (outcome: RequestOutcome) => void, rangeId: RangeId = this.o.rangeId): void {
    const { store, timers, requestTimeoutMs } = this.o;
    const requestId = this.nextRequestId();
    const data = encode(requestId);
    const deadlineMs = timers.nowMs() + requestTimeoutMs;
    let settled = false;
    let inFlight = false;
    let retry: TimerHandle | undefined;
    let lastDrop: TesseraError | undefined;
    const settle = (outcome: RequestOutcome): void => {
      if (settled) return;
      settled = true;
      deadline.cancel();
      retry?.cancel();
      done(outcome);
    };
    const attempt = (): void => {
      if (settled) return;
      inFlight = true;
      store.propose(rangeId, requestId, data, (outcome: ProposalOutcome) => {
        inFlight = false;
        if (outcome.kind === 'applied') return settle({ kind: 'applied', result: outcome.result });
        // The range was merged away (Store.closeRetired): certainly not done; the caller routes again.
        if (outcome.error.code === 'RANGE_MISMATCH') return settle({ kind: 'failed', error: outcome.error });
        // The replica moved off this node with the proposal in Raft (Store.removeReplica): it may still commit.
        if (outcome.error.code === 'TIMEOUT') return settle({ kind: 'failed', error: outcome.error });
        lastDrop = new TesseraError('NOT_LEADER', outcome.error.message, { cause: outcome.error });
        const transient = outcome.reason === 'no-leader' || outcome.reason === 'leader-transfer-in-progress';
        if (transient && timers.nowMs() + PROPOSAL_RETRY_MS < deadlineMs) {
          this.o.observe?.('retry');
          retry = timers.after(PROPOSAL_RETRY_MS, attempt);
        }
        else settle({ kind: 'failed', error: lastDrop });
      });
    };
    const deadline = timers.after(requestTimeoutMs, () => {
      if (settled) return;
      // An attempt that had not reached Raft yet (a loop turn late under load) certainly did not happen.
      if (inFlight && store.abandon(requestId) === true) {
        inFlight = false;
        lastDrop ??= new TesseraError('NOT_LEADER', 'proposal timed out before it reached Raft');
      }
      // The outcome is unknown, not failed, if an attempt may still commit.
      // Under the deliberate bug 'timeout-as-failure', an attempt in flight counts as certainly not done.
      const buggy = inFlight && this.o.sabotage?.has('timeout-as-failure') === true;
      const unknown = !buggy && (inFlight || lastDrop === undefined);
      this.o.observe?.(unknown ? 'timeout-unknown' : 'timeout-not-leader');
      const error = buggy
        ? new TesseraError('NOT_LEADER', 'proposal timed out [sabotage: reported as not done]')
        : unknown || lastDrop === undefined
          ? new TesseraError('TIMEOUT', `proposal timed out after ${requestTimeoutMs} ms; its outcome is unknown`)
          : lastDrop;
      settle({ kind: 'failed', error });
    });
    attempt();
  }

  /**
   * Reports once this node may serve a linearizable read (ReadIndex or
   * lease), or why not. A read refused because no leader is known (an
   * election, or a range a split has just made) is asked again every
   * PROPOSAL_RETRY_MS until the deadline, as a proposal is.
   */
  readBarrier(done: (error: TesseraError | undefined) => void, rangeId: RangeId = this.o.rangeId): void {
    const { store, timers, requestTimeoutMs } = this.o;
    const deadlineMs = timers.nowMs() + requestTimeoutMs;
    let settled = false;
    let retry: TimerHandle | undefined;
    let refused: TesseraError | undefined;
    const settle = (error: TesseraError | undefined): void => {
      if (settled) return;
      settled = true;
      deadline.cancel();
      retry?.cancel();
      done(error);
    };
    const deadline = timers.after(requestTimeoutMs, () => {
      if (settled) return;
      this.o.observe?.('read-timeout');
      // Between attempts nothing is in flight: the read was refused, not lost.
      settle(refused ?? new TesseraError('TIMEOUT', `read timed out after ${requestTimeoutMs} ms; its outcome is unknown`));
    });
    const attempt = (): void => {
      refused = undefined;
      store.linearizableRead(rangeId, (error) => {
        if (error?.code === 'NOT_LEADER' && timers.nowMs() + PROPOSAL_RETRY_MS < deadlineMs) {
          refused = error;
          retry = timers.after(PROPOSAL_RETRY_MS, attempt);
          return;
        }
        settle(error);
      });
    };
    attempt();
  }
}
