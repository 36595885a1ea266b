import { assert, isTesseraError } from '../base/index.js';
import { intervalContains } from '../mvcc/bytes.js';
import { type KeyInterval, type MvccEvent, type MvccStore, keyInterval } from '../mvcc/index.js';

/** Most events one catch-up step reads from history for one watcher (bounds the work per pump). */
export const WATCH_CATCHUP_SCAN_LIMIT = 1_000;
/** Most watchers one hub serves; creating more is refused with RESOURCE_EXHAUSTED by the caller. */
export const MAX_WATCHERS = 100_000;

export interface WatchRequest {
  readonly key: Uint8Array;
  /** etcd's range_end: absent = one key, "\0" = every key ≥ key. */
  readonly rangeEnd?: Uint8Array | undefined;
  /** First revision to deliver; 0 means "from the next change". */
  readonly startRevision: number;
  readonly prevKv: boolean;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly progressNotify: boolean;
}

export type WatchOutput =
  | { readonly kind: 'events'; readonly watchId: number; readonly revision: number; readonly events: readonly MvccEvent[] }
  | { readonly kind: 'progress'; readonly watchId: number; readonly revision: number }
  | { readonly kind: 'canceled'; readonly watchId: number; readonly revision: number; readonly compactRevision: number; readonly reason: string };

/**
 * Where a watcher's output goes (a client's watch stream, a test). `deliver` always
 * takes the output; it returns false when its queue is over its limit, and
 * the hub then stops live delivery to that watcher until `resume`, catching
 * up from history instead, so a client that does not read cannot make the
 * server's memory grow (etcd's unsynced watchers).
 */
export interface WatchSink {
  deliver(output: WatchOutput): boolean;
}

interface Watcher {
  readonly id: number;
  readonly interval: KeyInterval;
  readonly request: WatchRequest;
  readonly sink: WatchSink;
  /** The next revision this watcher must see. Invariant: everything below it was delivered or filtered. */
  nextRevision: number;
  /** Live delivery is off: the sink is full, or the watcher is catching up from history. */
  unsynced: boolean;
  /** The sink is over its limit; wait for `resume`. */
  blocked: boolean;
  /** Something was sent since the last progress notification. */
  sentSinceProgress: boolean;
}

/**
 * Watches over one MVCC key space. Every watcher sees each change in its
 * range exactly once, in revision order, starting at its start revision:
 * live changes as they are applied, and history read from storage while it
 * catches up. A start below the compacted revision cancels the watch with
 * etcd's compacted answer. Pure and synchronous: the node calls `onApplied`
 * after each applied transaction, `pump` after each loop turn, and
 * `progressTick` on its progress interval.
 */
export class WatchHub {
  private readonly watchers = new Map<number, Watcher>();
  private nextId = 1;
  /** Watchers that asked for prev_kv: while there are none, applied writes skip loading previous values. */
  private prevKvWatchers = 0;

  constructor(private readonly mvcc: () => MvccStore) {}

  get size(): number {
    return this.watchers.size;
  }

  /** Whether live events must carry previous values (MvccOpenOptions.eventsWantPrevKv). */
  get wantsPrevKv(): boolean {
    return this.prevKvWatchers > 0;
  }

  /** Registers a watch; catch-up (if it starts in the past) happens in `pump`. */
  create(request: WatchRequest, sink: WatchSink): number {
    assert(this.watchers.size < MAX_WATCHERS, 'watch limit reached; the caller checks MAX_WATCHERS first');
    const current = this.mvcc().currentRevision;
    const start = request.startRevision > 0 ? request.startRevision : current + 1;
    const w: Watcher = {
      id: this.nextId++,
      interval: keyInterval(request.key, request.rangeEnd),
      request,
      sink,
      nextRevision: start,
      unsynced: start <= current,
      blocked: false,
      sentSinceProgress: false,
    };
    this.watchers.set(w.id, w);
    if (request.prevKv) this.prevKvWatchers++;
    return w.id;
  }

  cancel(watchId: number): boolean {
    const w = this.watchers.get(watchId);
    if (w === undefined) return false;
    this.forget(w);
    return true;
  }

  private forget(w: Watcher): void {
    this.watchers.delete(w.id);
    if (w.request.prevKv) this.prevKvWatchers--;
    assert(this.prevKvWatchers >= 0, 'prev_kv watcher count went negative');
  }

  /** The sink drained: deliver again (catching up first). */
  resume(watchId: number): void {
    const w = this.watchers.get(watchId);
    if (w !== undefined) w.blocked = false;
  }

  /** The key space was replaced (a snapshot was installed): every watcher catches up from history. */
  onReset(): void {
    for (const w of this.watchers.values()) w.unsynced = true;
  }

  /** Live delivery of one applied transaction's changes at `revision`. */
  onApplied(revision: number, events: readonly MvccEvent[]): void {
    if (events.length === 0) return;
    for (const w of this.watchers.values()) {
      if (w.unsynced || w.blocked || revision < w.nextRevision) continue;
      assert(revision === w.nextRevision || w.nextRevision <= revision, 'live revisions only move forward');
      const mine = this.filter(w, events);
      w.nextRevision = revision + 1;
      if (mine.length > 0) this.send(w, { kind: 'events', watchId: w.id, revision, events: mine });
    }
  }

  /** Catches up watchers that are behind, a bounded step each. Returns whether any is still behind. */
  pump(): boolean {
    let behind = false;
    for (const w of this.watchers.values()) {
      if (!w.unsynced || w.blocked) continue;
      this.catchUp(w);
      if (w.unsynced) behind = true;
    }
    return behind;
  }

  /** Sends a progress notification (the current revision) to progress_notify watchers that were idle. */
  progressTick(): void {
    const revision = this.mvcc().currentRevision;
    for (const w of this.watchers.values()) {
      if (!w.request.progressNotify || w.unsynced || w.blocked) continue;
      if (!w.sentSinceProgress) this.send(w, { kind: 'progress', watchId: w.id, revision });
      w.sentSinceProgress = false;
    }
  }

  /** An explicit progress request: answered only for synced watchers, whose history is complete up to now. */
  requestProgress(watchId: number): boolean {
    const w = this.watchers.get(watchId);
    if (w === undefined || w.unsynced) return false;
    this.send(w, { kind: 'progress', watchId: w.id, revision: this.mvcc().currentRevision });
    return true;
  }

  private catchUp(w: Watcher): void {
    const store = this.mvcc();
    const current = store.currentRevision;
    if (w.nextRevision > current) {
      w.unsynced = false;
      return;
    }
    if (w.nextRevision < store.compactedRevision) return this.cancelCompacted(w, store.compactedRevision);
    let result;
    try {
      result = store.events({ fromRevision: w.nextRevision, key: w.request.key, rangeEnd: w.request.rangeEnd, prevKv: w.request.prevKv, scanLimit: WATCH_CATCHUP_SCAN_LIMIT });
    } catch (err) {
      if (isTesseraError(err, 'COMPACTED')) return this.cancelCompacted(w, store.compactedRevision);
      throw err;
    }
    const mine = this.filter(w, result.events);
    // Deliver per revision, so no response splits a transaction.
    let i = 0;
    while (i < mine.length && !w.blocked) {
      const rev = (mine[i] as MvccEvent).kv.modRevision;
      let j = i;
      while (j < mine.length && (mine[j] as MvccEvent).kv.modRevision === rev) j++;
      this.send(w, { kind: 'events', watchId: w.id, revision: rev, events: mine.slice(i, j) });
      w.nextRevision = rev + 1;
      i = j;
    }
    if (i === mine.length) w.nextRevision = Math.max(w.nextRevision, result.nextRevision);
    if (w.nextRevision > current) w.unsynced = false;
  }

  private cancelCompacted(w: Watcher, compactRevision: number): void {
    this.forget(w);
    w.sink.deliver({
      kind: 'canceled',
      watchId: w.id,
      revision: this.mvcc().currentRevision,
      compactRevision,
      reason: 'mvcc: required revision has been compacted',
    });
  }

  private filter(w: Watcher, events: readonly MvccEvent[]): MvccEvent[] {
    const out: MvccEvent[] = [];
    for (const e of events) {
      if (!intervalContains(w.interval, e.kv.key)) continue;
      if ((e.type === 'PUT' && w.request.noPut) || (e.type === 'DELETE' && w.request.noDelete)) continue;
      out.push(w.request.prevKv || e.prevKv === undefined ? e : { type: e.type, kv: e.kv });
    }
    return out;
  }

  private send(w: Watcher, output: WatchOutput): void {
    w.sentSinceProgress = true;
    if (!w.sink.deliver(output)) {
      // Over its limit: stop live delivery; `resume` and `pump` catch it up from history.
      w.blocked = true;
      w.unsynced = true;
    }
  }
}
