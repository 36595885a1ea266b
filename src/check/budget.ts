import { TesseraError } from '../base/index.js';
import type { BudgetReason, CheckOptions } from './types.js';

// Reading the injected clock on every step would cost more than the step;
// once per this many steps keeps the overshoot far below a millisecond.
const CLOCK_CHECK_INTERVAL = 1024;

/**
 * Default bound on the bytes the search's memos may hold at once, summed over
 * the partitions being searched. A refuted history must visit every
 * configuration before its violation, which on 50-client kv histories is
 * millions of entries: without a bound that ends in an out-of-memory crash.
 * See ConfigurationCache for what is counted.
 */
export const MAX_MEMO_BYTES = 256 * 1024 * 1024;

/**
 * Step, wall-clock and memo-memory limits shared by all partitions of one
 * check, so a pathological history ends in `unknown` instead of hanging the
 * caller or exhausting its heap.
 */
export class Budget {
  steps = 0;
  reason: BudgetReason | undefined;
  /** Bytes the live memos hold now (see `reserveMemo`). */
  memoBytes = 0;
  /** The most `memoBytes` ever reached in this check. */
  peakMemoBytes = 0;
  readonly maxMemoBytes: number;
  private readonly maxSteps: number;
  private readonly deadline: number;
  private readonly nowMs: (() => number) | undefined;
  private readonly startMs: number | undefined;
  private nextClockCheck = CLOCK_CHECK_INTERVAL;

  constructor(options: CheckOptions) {
    const { maxSteps, timeBudgetMs, nowMs, maxMemoBytes } = options;
    nonNegative('maxSteps', maxSteps);
    nonNegative('timeBudgetMs', timeBudgetMs);
    nonNegative('maxMemoBytes', maxMemoBytes);
    if (timeBudgetMs !== undefined && nowMs === undefined) {
      // The checker is deterministic code and may not read the clock itself.
      throw new TesseraError('INVALID_ARGUMENT', 'timeBudgetMs needs an injected nowMs clock');
    }
    this.maxSteps = maxSteps ?? Infinity;
    this.maxMemoBytes = maxMemoBytes ?? MAX_MEMO_BYTES;
    this.nowMs = nowMs;
    this.startMs = nowMs?.();
    this.deadline = (this.startMs ?? 0) + (timeBudgetMs ?? Infinity);
  }

  /** Counts one search step; false once the step or time budget is spent. */
  tick(): boolean {
    this.steps++;
    if (this.steps > this.maxSteps) {
      this.reason = 'step-budget';
      return false;
    }
    if (this.steps >= this.nextClockCheck) {
      this.nextClockCheck = this.steps + CLOCK_CHECK_INTERVAL;
      return this.clockOk();
    }
    return true;
  }

  /** Checks the clock now; also called before each partition. */
  clockOk(): boolean {
    if (this.nowMs === undefined || this.deadline === Infinity) return true;
    if (this.nowMs() <= this.deadline) return true;
    this.reason = 'time-budget';
    return false;
  }

  /**
   * Takes `bytes` of memo memory before it is allocated; false (and nothing
   * taken) if that would pass the bound, so the bound is never exceeded.
   */
  reserveMemo(bytes: number): boolean {
    if (this.memoBytes + bytes > this.maxMemoBytes) {
      this.reason = 'memory-budget';
      return false;
    }
    this.memoBytes += bytes;
    if (this.memoBytes > this.peakMemoBytes) this.peakMemoBytes = this.memoBytes;
    return true;
  }

  /** Gives back the memory of a memo that was dropped. */
  releaseMemo(bytes: number): void {
    this.memoBytes -= bytes;
  }

  elapsedMs(): number | undefined {
    if (this.nowMs === undefined || this.startMs === undefined) return undefined;
    return this.nowMs() - this.startMs;
  }
}

function nonNegative(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 0)) {
    throw new TesseraError('INVALID_ARGUMENT', `${name} must be >= 0, got ${value}`);
  }
}
