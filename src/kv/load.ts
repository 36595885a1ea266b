import { assert, type Clock } from '../base/index.js';

/** The window a range's request rate is averaged over. */
export const LOAD_WINDOW_SECONDS = 10;

/**
 * Requests per second over the last LOAD_WINDOW_SECONDS, in one-second
 * buckets on an injected clock: what `/ranges` reports as a range's qps, and
 * what load-based splitting will compare with `--range-split-qps`.
 */
export class LoadMeter {
  private readonly buckets = new Float64Array(LOAD_WINDOW_SECONDS);
  /** The second (clock ms / 1000, floored) the newest bucket counts. */
  private newestSecond: number;

  constructor(private readonly clock: Clock) {
    this.newestSecond = Math.floor(clock.nowMs() / 1000);
  }

  record(requests = 1): void {
    assert(requests >= 0, () => `negative request count ${requests}`);
    this.advance();
    const i = this.newestSecond % LOAD_WINDOW_SECONDS;
    this.buckets[i] = (this.buckets[i] ?? 0) + requests;
  }

  /** The mean rate over the window, requests per second. */
  qps(): number {
    this.advance();
    let sum = 0;
    for (const n of this.buckets) sum += n;
    return sum / LOAD_WINDOW_SECONDS;
  }

  /** Empties the buckets of the seconds that passed since the newest one. */
  private advance(): void {
    const now = Math.floor(this.clock.nowMs() / 1000);
    if (now <= this.newestSecond) return;
    const passed = Math.min(now - this.newestSecond, LOAD_WINDOW_SECONDS);
    for (let s = 1; s <= passed; s++) this.buckets[(this.newestSecond + s) % LOAD_WINDOW_SECONDS] = 0;
    this.newestSecond = now;
  }
}
