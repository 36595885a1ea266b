import { TesseraError } from '../base/index.js';
import { type BudgetReason, type CheckOptions, MAX_MEMO_ENTRIES } from './types.js';

// Reading the injected clock on every step would cost more than the step;
// once per this many steps keeps the overshoot far below a millisecond.
const CLOCK_CHECK_INTERVAL = 1024;

/**
 * Step and wall-clock limits shared by all partitions of one check, so a
 * pathological history ends in `unknown` instead of hanging the caller.
 */
export class Budget {
  steps = 0;
  reason: BudgetReason | undefined;
  private readonly maxSteps: number;
  private readonly deadline: number;
  private readonly nowMs: (() => number) | undefined;
  private readonly startMs: number | undefined;
  private nextClockCheck = CLOCK_CHECK_INTERVAL;
  /** Memo entries of the partition being searched (its memo is dropped when it ends). */
  memoEntries = 0;
  private readonly maxMemoEntries: number;

  constructor(options: CheckOptions) {
    const { maxSteps, timeBudgetMs, nowMs } = options;
    if (maxSteps !== undefined && !(maxSteps >= 0)) {
      throw new TesseraError('INVALID_ARGUMENT', `maxSteps must be >= 0, got ${maxSteps}`);
    }
    if (timeBudgetMs !== undefined && nowMs === undefined) {
      // The checker is deterministic code and may not read the clock itself.
      throw new TesseraError('INVALID_ARGUMENT', 'timeBudgetMs needs an injected nowMs clock');
    }
    if (timeBudgetMs !== undefined && !(timeBudgetMs >= 0)) {
      throw new TesseraError('INVALID_ARGUMENT', `timeBudgetMs must be >= 0, got ${timeBudgetMs}`);
    }
    const maxMemo = options.maxMemoEntries ?? MAX_MEMO_ENTRIES;
    if (!(maxMemo >= 0)) throw new TesseraError('INVALID_ARGUMENT', `maxMemoEntries must be >= 0, got ${maxMemo}`);
    this.maxMemoEntries = maxMemo;
    this.maxSteps = maxSteps ?? Infinity;
    this.nowMs = nowMs;
    this.startMs = nowMs?.();
    this.deadline = (this.startMs ?? 0) + (timeBudgetMs ?? Infinity);
  }

  /** Counts one search step; false once either budget is spent. */
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

  /** Counts one memo entry; false once the memory budget is spent. */
  memo(): boolean {
    if (++this.memoEntries <= this.maxMemoEntries) return true;
    this.reason = 'memory-budget';
    return false;
  }

  /** Checks the clock now; also called before each partition. */
  clockOk(): boolean {
    if (this.nowMs === undefined || this.deadline === Infinity) return true;
    if (this.nowMs() <= this.deadline) return true;
    this.reason = 'time-budget';
    return false;
  }

  elapsedMs(): number | undefined {
    if (this.nowMs === undefined || this.startMs === undefined) return undefined;
    return this.nowMs() - this.startMs;
  }
}
