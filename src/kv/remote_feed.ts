import { type Timers, assert, isTesseraError } from '../base/index.js';
import { intervalContains } from '../mvcc/bytes.js';
import { type EventsOptions, type EventsResult, type MvccEvent, compareBytes, keyInterval } from '../mvcc/index.js';
import type { NodeId } from '../raft/index.js';
import type { EventsPage, ForwardOp, ForwardValue } from './forward.js';
import type { RangeId } from './keys.js';
import type { KeyBounds } from './state_machine.js';
import type { WatchSource } from './watch_hub.js';

/** How long a feed's long poll waits on the serving node for a change before it answers with none. */
export const FEED_WAIT_MS = 1_000;
/** A long poll that got no answer this long after its wait is given up, and the next holder asked: the holder may be down or cut off. */
export const FEED_CALL_GRACE_MS = 500;
/** After a failed fetch (no answer, a holder that cannot serve), the feed waits this long and asks the next holder. */
export const FEED_RETRY_MS = 100;
/** A feed no watcher read for this long stops fetching and is dropped. */
export const FEED_IDLE_MS = 10_000;
/** Key and value bytes of history one feed keeps; past it the oldest go, and a watcher that still needed them has the feed fetch again from its revision. */
export const FEED_WINDOW_MAX_BYTES = 8 * 1024 * 1024;
/** Feeds (remote ranges watched) one node keeps at once; past it a watcher of another remote range waits (no events) until one is dropped. */
export const MAX_FEEDS = 10_000;

/** A remote range as the router knows it: its bounds and the nodes holding it. */
export interface RemoteRange {
  readonly bounds: KeyBounds;
  readonly holders: readonly NodeId[];
}

export interface RemoteFeedsOptions {
  readonly timers: Timers;
  /** The range's bounds and holders, or undefined when only other nodes no longer hold it (it is here now, or gone). */
  readonly locate: (rangeId: RangeId) => RemoteRange | undefined;
  /** Sends an op to a holder (Forwarder.call). */
  readonly call: (to: NodeId, rangeId: RangeId, op: ForwardOp, timeoutMs: number) => Promise<ForwardValue>;
  /** The deadline of a fetch that closes the range first (the serving node's request timeout and a grace). */
  readonly callTimeoutMs: number;
  /** How long a long poll waits on the serving node (default FEED_WAIT_MS; the simulator's runs are shorter). */
  readonly waitMs?: number;
  /** How long past its wait a long poll may go unanswered (default FEED_CALL_GRACE_MS). */
  readonly callGraceMs?: number;
  /** New history arrived: the watch hub can pump. */
  readonly onData: () => void;
  /** Told what feeds do (the simulator counts it): `page` (with changes), `empty`, `restart`, `drop`, `failed-<code>`. */
  readonly observe?: (event: string) => void;
}

/**
 * The node's feeds of ranges only other nodes hold, for its watches (ADR
 * 0013; CockroachDB's rangefeeds and TiKV's resolved-ts do the same job
 * with pushed streams). A feed keeps a window of one range's history,
 * complete for the range's keys from `low` up to its current revision, and
 * fetches the rest with long polls from any node holding the range: a
 * replica that applied up to revision C holds every change of the range at
 * or below C, so its answer is a prefix of the range's history whichever
 * replica gives it. The watch hub reads a feed as it reads a local range's
 * store (WatchSource), so a watch spanning local and remote ranges waits for
 * the lowest of their current revisions and merges their changes in
 * revision order.
 */
export class RemoteFeeds {
  private readonly feeds = new Map<RangeId, RangeFeed>();

  constructor(private readonly o: RemoteFeedsOptions) {}

  get size(): number {
    return this.feeds.size;
  }

  /** The feed of remote range `rangeId`, made on first use; undefined past MAX_FEEDS. */
  feed(rangeId: RangeId): RangeFeed | undefined {
    let f = this.feeds.get(rangeId);
    if (f === undefined) {
      if (this.feeds.size >= MAX_FEEDS) return undefined;
      f = new RangeFeed(rangeId, this.o, () => this.feeds.delete(rangeId));
      this.feeds.set(rangeId, f);
    }
    f.touch();
    return f;
  }

  /** The highest revision any feed has complete history up to: every change at or below it was applied somewhere before now. */
  newestRevision(): number {
    let newest = 0;
    for (const f of this.feeds.values()) newest = Math.max(newest, f.currentRevision);
    return newest;
  }

  /** Stops every feed (the node is closing); in-flight answers are dropped. */
  close(): void {
    for (const f of [...this.feeds.values()]) f.drop();
  }
}

/**
 * One remote range's history on this node: `events` holds every change of
 * the range's keys in [low, next), in revision order. Fetching runs while
 * some watcher read the feed within FEED_IDLE_MS.
 */
export class RangeFeed implements WatchSource {
  private low = 0;
  private next = 0;
  private window: MvccEvent[] = [];
  private windowBytes = 0;
  private bounds: KeyBounds | undefined;
  /** The lowest revision a watcher needs that the window does not hold: the next fetch starts there. */
  private wantFrom: number | undefined;
  private prevKv = false;
  private closeTo = 0;
  private compacted = 0;
  private latestChange = 0;
  /** Changes whenever the window starts again; an answer to a fetch made before is dropped. */
  private epoch = 0;
  private lastUsedMs: number;
  private running = false;
  private kicking = false;
  private dropped = false;
  private holderAt = 0;

  constructor(
    readonly rangeId: RangeId,
    private readonly o: RemoteFeedsOptions,
    private readonly onDrop: () => void,
  ) {
    this.lastUsedMs = o.timers.nowMs();
  }

  /** Every change of the range at or below this revision is in the window (or below `low`, never asked for). */
  get currentRevision(): number {
    return this.next === 0 ? 0 : this.next - 1;
  }

  get compactedRevision(): number {
    return this.compacted;
  }

  /** The revision of the newest change any page brought (kept through restarts and trims). */
  get latestChangeRevision(): number {
    return this.latestChange;
  }

  touch(): void {
    this.lastUsedMs = this.o.timers.nowMs();
  }

  /**
   * A watcher needs the history from `fromRevision` (with previous values if
   * `prevKv`): a feed that has not started starts there, and one whose
   * window begins later (or lacks previous values) starts again there.
   */
  want(fromRevision: number, prevKv: boolean): void {
    assert(Number.isSafeInteger(fromRevision) && fromRevision >= 1, () => `a feed asked for history from ${fromRevision}`);
    this.touch();
    if (this.dropped) return;
    const restart = this.next === 0 || fromRevision < this.low || (prevKv && !this.prevKv);
    if (restart) this.wantFrom = Math.min(this.wantFrom ?? fromRevision, fromRevision, this.next === 0 ? fromRevision : this.low);
    if (prevKv) this.prevKv = true;
    if (restart) {
      this.restart();
      // The long poll in flight asked for other revisions: fetch these now.
      if (this.running) this.kick();
    }
    this.run();
  }

  /** A watcher waits for this range to pass `revision` (a change another range made): ask the serving node to close it there. */
  requestClose(revision: number): void {
    if (revision <= this.currentRevision || this.dropped) return;
    this.closeTo = Math.max(this.closeTo, revision);
    this.kick();
  }

  events(options: EventsOptions): EventsResult {
    this.touch();
    // The range's keys as the router knows them now, as the hub's cover does: the window may hold
    // changes of keys a split took to another range (whose own source gives them), and a merge
    // that added keys starts the window again.
    const bounds = this.locate()?.bounds;
    if (bounds === undefined || this.next === 0 || options.fromRevision < this.low) return { events: [], nextRevision: options.fromRevision };
    const to = Math.min(options.toRevision ?? this.currentRevision, this.currentRevision);
    const interval = keyInterval(options.key, options.rangeEnd);
    const out: MvccEvent[] = [];
    let examined = 0;
    let i = this.firstAtOrAfter(options.fromRevision);
    let nextRevision = to + 1;
    for (; i < this.window.length; i++) {
      const e = this.window[i] as MvccEvent;
      if (e.kv.modRevision > to) break;
      // Stop at a revision boundary once past the scan limit, as storage does.
      if (options.scanLimit !== undefined && examined >= options.scanLimit && e.kv.modRevision !== (this.window[i - 1] as MvccEvent).kv.modRevision) {
        nextRevision = e.kv.modRevision;
        break;
      }
      examined++;
      if (!inBounds(bounds, e.kv.key) || !intervalContains(interval, e.kv.key)) continue;
      out.push(options.prevKv === true || e.prevKv === undefined ? e : { type: e.type, kv: e.kv });
    }
    return { events: out, nextRevision: Math.max(nextRevision, options.fromRevision) };
  }

  /** Stops fetching; answers still in flight are dropped. */
  drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    this.o.observe?.('drop');
    this.window = [];
    this.windowBytes = 0;
    this.onDrop();
  }


  private restart(): void {
    const from = this.wantFrom as number;
    this.wantFrom = undefined;
    if (this.next !== 0) this.o.observe?.('restart');
    this.epoch++;
    this.low = from;
    this.next = from;
    this.window = [];
    this.windowBytes = 0;
  }

  /** The fetch loop: one long poll after another while a watcher reads the feed. */
  private run(): void {
    if (this.running || this.dropped) return;
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
    });
  }

  private async loop(): Promise<void> {
    while (!this.dropped) {
      if (this.o.timers.nowMs() - this.lastUsedMs > FEED_IDLE_MS) return this.drop();
      const target = this.locate();
      if (target === undefined) return this.drop();
      const ok = await this.fetch(target, this.o.waitMs ?? FEED_WAIT_MS, 0);
      if (!ok && !this.dropped) await this.sleep(FEED_RETRY_MS);
    }
  }

  /**
   * A short fetch alongside the long poll (one at a time): after the window
   * started again, or to have the serving node close the range at `closeTo`
   * first.
   */
  private kick(): void {
    if (this.kicking || this.dropped || this.next === 0) return;
    this.kicking = true;
    void this.shortFetch().finally(() => {
      this.kicking = false;
    });
  }

  private async shortFetch(): Promise<void> {
    const target = this.locate();
    if (target !== undefined) await this.fetch(target, 0, this.closeTo > this.currentRevision ? this.closeTo : 0);
  }

  /** The range's current bounds and holders; bounds that grew (a merge) start the window again, since it lacks the new keys' history. */
  private locate(): RemoteRange | undefined {
    const target = this.o.locate(this.rangeId);
    if (target === undefined) return undefined;
    const b = this.bounds;
    const grew = b !== undefined && (compareBytes(target.bounds.start, b.start) < 0 || endAfter(target.bounds.end, b.end));
    this.bounds = target.bounds;
    if (grew && this.next !== 0) {
      this.wantFrom = this.low;
      this.restart();
    }
    return target;
  }

  /** One call to a holder; true if it answered (whatever it said). */
  private async fetch(target: RemoteRange, waitMs: number, closeTo: number): Promise<boolean> {
    const holders = target.holders;
    if (holders.length === 0) return false;
    const at = this.holderAt % holders.length;
    const epoch = this.epoch;
    const from = this.next;
    const { start, end } = target.bounds;
    const op: ForwardOp = { op: 'events', key: start, rangeEnd: end ?? ALL_AFTER, fromRevision: from, prevKv: this.prevKv, waitMs, closeTo };
    let page: EventsPage;
    try {
      const timeoutMs = closeTo > 0 ? this.o.callTimeoutMs : waitMs + (this.o.callGraceMs ?? FEED_CALL_GRACE_MS);
      page = (await this.o.call(holders[at] as NodeId, this.rangeId, op, timeoutMs)) as EventsPage;
    } catch (error) {
      this.holderAt = at + 1;
      this.o.observe?.(`failed-${isTesseraError(error) ? error.code : 'UNKNOWN'}`);
      return false;
    }
    // The window moved on meanwhile, or started again (the range grew: the page lacks the new keys).
    if (this.dropped || epoch !== this.epoch || from !== this.next) return true;
    this.accept(from, page, target.bounds);
    return true;
  }

  /** Adds a page that continues the window at `from`; a page that breaks the checks is dropped as the peer's fault. */
  private accept(from: number, page: EventsPage, bounds: KeyBounds): void {
    this.compacted = Math.max(this.compacted, page.compactedRevision);
    if (from < page.compactedRevision) {
      // Its watchers are cancelled as compacted (the hub compares); the rest go on from there.
      this.wantFrom = page.compactedRevision;
      this.restart();
      this.o.onData();
      return;
    }
    if (page.nextRevision <= from) return this.o.observe?.('empty'); // nothing at or past `from` yet
    const problem = pageProblem(from, page, bounds);
    if (problem !== undefined) {
      this.o.observe?.('failed-MALFORMED');
      this.holderAt++;
      return;
    }
    for (const e of page.events) {
      this.latestChange = Math.max(this.latestChange, e.kv.modRevision);
      this.window.push(e);
      this.windowBytes += eventBytes(e);
    }
    this.next = page.nextRevision;
    this.o.observe?.(page.events.length > 0 ? 'page' : 'empty');
    this.trim();
    this.o.onData();
  }

  /** Drops the oldest changes, a revision at a time, while the window is over its byte budget. */
  private trim(): void {
    let drop = 0;
    while (this.windowBytes > FEED_WINDOW_MAX_BYTES && drop < this.window.length) {
      const rev = (this.window[drop] as MvccEvent).kv.modRevision;
      while (drop < this.window.length && (this.window[drop] as MvccEvent).kv.modRevision === rev) this.windowBytes -= eventBytes(this.window[drop++] as MvccEvent);
      this.low = rev + 1;
    }
    if (drop > 0) this.window = this.window.slice(drop);
  }

  private firstAtOrAfter(revision: number): number {
    let lo = 0;
    let hi = this.window.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.window[mid] as MvccEvent).kv.modRevision < revision) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => this.o.timers.after(ms, resolve));
  }
}

/** etcd's range_end for "every key from the start on". */
const ALL_AFTER = new Uint8Array([0]);

function inBounds(b: KeyBounds, key: Uint8Array): boolean {
  return compareBytes(key, b.start) >= 0 && (b.end === undefined || compareBytes(key, b.end) < 0);
}

function endAfter(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined) return b !== undefined;
  return b !== undefined && compareBytes(a, b) > 0;
}

function eventBytes(e: MvccEvent): number {
  return e.kv.key.byteLength + e.kv.value.byteLength + (e.prevKv === undefined ? 0 : e.prevKv.key.byteLength + e.prevKv.value.byteLength);
}

/** Why a page cannot continue a window at `from`, if it cannot: its events must lie in [from, nextRevision) in revision order, on the range's keys. */
export function pageProblem(from: number, page: EventsPage, bounds: KeyBounds): string | undefined {
  if (page.nextRevision > page.currentRevision + 1) return `next revision ${page.nextRevision} past the current revision ${page.currentRevision}`;
  let last = from;
  for (const e of page.events) {
    const rev = e.kv.modRevision;
    if (rev < last || rev >= page.nextRevision) return `change at revision ${rev} outside [${from}, ${page.nextRevision}) or out of order`;
    if (!inBounds(bounds, e.kv.key)) return 'a change to a key outside the range';
    last = rev;
  }
  return undefined;
}
