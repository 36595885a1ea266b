import { assert } from '../base/index.js';

interface Event {
  readonly atMs: number;
  readonly seq: number;
  readonly run: () => void;
}

/**
 * Virtual time: a binary heap of events ordered by (time, insertion order).
 * Nothing runs concurrently; the simulation is a single deterministic thread.
 */
export class Scheduler {
  private heap: Event[] = [];
  private seq = 0;
  nowMs = 0;
  eventsRun = 0;
  /**
   * Whether promise-based work is in flight (the client API, KvApi, and the
   * forwarded requests it serves): its continuations run as microtasks,
   * which must run after the event that resolved them, before the next
   * event. While it says so, each event is followed by a macrotask turn,
   * which runs every microtask first; the order stays deterministic.
   */
  asyncWork: () => boolean = () => false;

  at(atMs: number, run: () => void): void {
    assert(atMs >= this.nowMs, `cannot schedule in the past: ${atMs} < ${this.nowMs}`);
    this.push({ atMs, seq: this.seq++, run });
  }

  after(delayMs: number, run: () => void): void {
    this.at(this.nowMs + Math.max(0, delayMs), run);
  }

  /** Runs events until the queue is empty, `untilMs` is reached, or `stop()` returns true. */
  async runUntil(untilMs: number, stop?: () => boolean): Promise<void> {
    while (this.heap.length > 0) {
      const top = this.heap[0] as Event;
      if (top.atMs > untilMs) break;
      this.pop();
      this.nowMs = top.atMs;
      this.eventsRun++;
      // Work in flight before the event counts too: the event may settle the last of it (a
      // forwarded call's reply), and its continuation must still run now, not at some later
      // event that happens to leave work in flight (seed 12051 under --replicas 3: a remote
      // feed's fetch never went on, and its watch stalled).
      const busyBefore = this.asyncWork();
      top.run();
      if (busyBefore || this.asyncWork()) await new Promise<void>((resolve) => setImmediate(resolve));
      if (stop !== undefined && stop()) return;
    }
    if (this.nowMs < untilMs) this.nowMs = untilMs;
  }

  private push(e: Event): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(e, h[parent] as Event)) break;
      h[i] = h[parent] as Event;
      i = parent;
    }
    h[i] = e;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as Event;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && less(h[r] as Event, h[l] as Event) ? r : l;
      if (!less(h[c] as Event, last)) break;
      h[i] = h[c] as Event;
      i = c;
    }
    h[i] = last;
  }
}

function less(a: Event, b: Event): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
