import { performance } from 'node:perf_hooks';
import { TesseraError } from '../base/index.js';

/** A pause longer than this many ticks is logged: the node's Raft timers jumped. */
export const TICK_CATCH_UP_WARN_TICKS = 10;

export interface TickerOptions {
  readonly tickMs: number;
  /** Delivers `count` Raft ticks, owed at once (more than one after a late timer or a pause). */
  readonly tick: (count: number) => void;
  /** Told when a catch-up delivered many ticks at once (the process was paused or the event loop blocked). */
  readonly onCatchUp?: (ticks: number) => void;
  /** Monotonic milliseconds; performance.now by default (tests inject their own). */
  readonly now?: () => number;
}

/**
 * Delivers Raft ticks in proportion to elapsed monotonic time, as ADR 0002
 * requires: setInterval only prompts; the number of ticks owed is computed
 * from the clock, so a late timer, a blocked event loop or a stopped
 * process (SIGSTOP) is caught up in full. A leader's lease counts its own
 * ticks, so a leader that missed ticks and did not catch up would hold its
 * lease longer in real time than its followers allow. The node also calls
 * `catchUp()` before it handles input from peers, so that after a pause the
 * time that passed is known before anything queued meanwhile is processed.
 */
export class Ticker {
  private readonly now: () => number;
  private readonly start: number;
  private delivered = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: TickerOptions) {
    if (!(Number.isFinite(o.tickMs) && o.tickMs >= 1)) throw new TesseraError('INVALID_CONFIG', `tickMs must be ≥ 1, got ${o.tickMs}`);
    this.now = o.now ?? (() => performance.now());
    this.start = this.now();
  }

  /** Ticks delivered so far. */
  get ticks(): number {
    return this.delivered;
  }

  startTimer(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.onTimer(), this.o.tickMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Ticks owed but not yet delivered. */
  owed(): number {
    return Math.floor((this.now() - this.start) / this.o.tickMs) - this.delivered;
  }

  /**
   * A timer that finds more than one tick owed fired after the event loop
   * was blocked or the process stopped: peers' messages that arrived
   * meanwhile wait in the socket buffers, and timers run before sockets are
   * read. The catch-up then waits for this loop turn's input (setImmediate
   * runs after the poll phase), so the node's input handler can step peers'
   * acks before the owed ticks (ADR 0002): a leader whose own work blocked it
   * for an election timeout keeps the quorum that answered meanwhile.
   */
  private onTimer(): void {
    if (this.owed() > 1) setImmediate(() => this.catchUp());
    else this.catchUp();
  }

  /** Delivers every tick owed up to now; returns how many. */
  catchUp(): number {
    const owed = this.owed();
    if (owed <= 0) return 0;
    if (owed >= TICK_CATCH_UP_WARN_TICKS) this.o.onCatchUp?.(owed);
    this.delivered += owed;
    this.o.tick(owed);
    return owed;
  }
}
