import type { Timers } from './clock.js';

/**
 * Timers a test drives by hand: `advance` moves time forward and runs what
 * falls due in time order (ties in the order they were set), each at its
 * own moment, so a timer set by a timer that ran is run too if it is due.
 */
export class ManualTimers implements Timers {
  private now = 0;
  private seq = 0;
  private readonly due = new Map<number, { atMs: number; run: () => void }>();

  nowMs(): number {
    return this.now;
  }

  after(delayMs: number, run: () => void): { cancel(): void } {
    const id = this.seq++;
    this.due.set(id, { atMs: this.now + delayMs, run });
    return { cancel: () => void this.due.delete(id) };
  }

  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const next = [...this.due].filter(([, t]) => t.atMs <= until).sort((a, b) => a[1].atMs - b[1].atMs || a[0] - b[0])[0];
      if (next === undefined) break;
      this.due.delete(next[0]);
      this.now = next[1].atMs;
      next[1].run();
    }
    this.now = until;
  }
}
