import { assert, isTesseraError } from '../base/index.js';
import { intervalContains } from '../mvcc/bytes.js';
import { type EventsOptions, type EventsResult, type KeyInterval, type MvccEvent, type MvccStore, compareBytes, keyInterval } from '../mvcc/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import type { RangeId } from './keys.js';

/** Most events one catch-up step reads from history for one watcher (bounds the work per pump). */
export const WATCH_CATCHUP_SCAN_LIMIT = 1_000;
/** Most watchers one hub serves; creating more is refused with RESOURCE_EXHAUSTED by the caller. */
export const MAX_WATCHERS = 100_000;
/**
 * Most key and value bytes of applied changes the hub keeps for live
 * delivery. Past it the oldest go, and watchers that still needed them catch
 * up from storage: a range that stops closing (a lagging replica) cannot make
 * the buffer grow without bound.
 */
export const WATCH_BUFFER_MAX_BYTES = 64 * 1024 * 1024;

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

/**
 * What the hub reads of a range: its MVCC store when this node holds a
 * replica, else the node's remote feed of it (ADR 0013), whose current
 * revision is the revision up to which it holds the range's complete history.
 */
export type WatchSource = Pick<MvccStore, 'currentRevision' | 'compactedRevision'> & {
  /** The revision at or below which the history is final (MvccStore.closedRevision: held below pending intents); absent: the current one. */
  readonly closedRevision?: number;
  events(options: EventsOptions): EventsResult;
  /** A feed: a watcher needs the history from `fromRevision` (fetched meanwhile if the feed lacks it). */
  want?(fromRevision: number, prevKv: boolean): void;
  /** A feed: the revision of the newest change it has seen (a close is no change), 0 if none. */
  readonly latestChangeRevision?: number;
};

/**
 * The ranges of the node, as the hub sees them. Each range's current
 * revision is its closed revision here (ADR 0009 §4): revision stamps rise
 * along a range's log and a write stamped at or below the current revision
 * is refused, so once a range has applied up to revision C, every change it
 * will ever make at or below C has been applied on this node.
 */
export interface WatchRanges {
  /** The ranges holding the keys of `interval`, here or elsewhere, or undefined while some part has no range known. */
  cover(interval: KeyInterval): readonly RangeId[] | undefined;
  /** A range's history: its MVCC store, or the node's feed of a range other nodes hold (see isRemote). */
  store(rangeId: RangeId): WatchSource;
  /**
   * Whether only other nodes hold the range: its changes never pass through
   * `onApplied` here, so a watcher covering it is always served by reading
   * history (its feed), never from the buffer. Absent: no range is remote.
   */
  isRemote?(rangeId: RangeId): boolean;
  /** Changes whenever `cover` may answer differently (a split, a snapshot, a new range). */
  generation(): number;
  /** The highest revision any range on this node has applied: "now", for a watch that starts at the next change. */
  newestRevision(): number;
  /** Asks a range to close at a fresh revision, at least `revision`: a watcher waits for it to pass changes other ranges applied. */
  requestClose?(rangeId: RangeId, revision: number): void;
}

/** One range's view for a hub over a single MVCC store (tests, a store without ranges). */
export function singleStoreRanges(store: () => MvccStore): WatchRanges {
  return { cover: () => [0], store, generation: () => 0, newestRevision: () => store().currentRevision };
}

interface Watcher {
  readonly id: number;
  readonly interval: KeyInterval;
  readonly request: WatchRequest;
  readonly sink: WatchSink;
  /** The next revision this watcher must see. Invariant: everything below it was delivered or filtered. */
  nextRevision: number;
  /** Served from storage, not from the buffer: the sink was full, or it starts below the buffer's floor. */
  unsynced: boolean;
  /** The sink is over its limit; wait for `resume`. */
  blocked: boolean;
  /** Something was sent since the last progress notification. */
  sentSinceProgress: boolean;
  /** The ranges its keys lie in, as of `coverGeneration` (undefined: some part has no range here yet). */
  cover: readonly RangeId[] | undefined;
  coverGeneration: number;
  /** Some range of `cover` is held only by other nodes: the watcher reads history (feeds) for good. */
  remote: boolean;
}

/** The changes one range applied at one revision. */
interface Applied {
  readonly revision: number;
  readonly events: readonly MvccEvent[];
  readonly bytes: number;
  /** Part of a transaction across ranges (ADR 0017): other ranges' parts at this revision join it. */
  readonly shared: boolean;
}

/**
 * Watches over the node's ranges. Every watcher sees each change in its key
 * range exactly once, in revision order, starting at its start revision,
 * across splits and however many ranges its keys span (issue 13).
 *
 * Ranges apply independently, so a change at revision 120 in one range may
 * be applied here before one at 119 in another. A watcher is therefore only
 * ever given changes up to its **watermark**, the lowest current revision of
 * the ranges it covers: everything at or below it has been applied (see
 * WatchRanges). Applied changes wait in a buffer, in revision order, until
 * the watermarks of the watchers that want them pass them. A range that
 * sees no writes is moved on by close commands (KvNode.closeIdleRanges).
 *
 * The buffer holds every change applied here at or above its `floor`.
 * Watchers below the floor (a late start, a full sink, a snapshot that
 * replaced a range's history) read storage, a bounded step per `pump`, up
 * to their watermark, and join the buffer once they reach the floor. A start
 * below a range's compacted revision cancels the watch with etcd's compacted
 * answer. Pure and synchronous: the node calls `onApplied` for each applied
 * change (and each close), `flush` once the turn's changes are all told,
 * `pump` on its ticks, and `progressTick` on its progress interval.
 */
export class WatchHub {
  private readonly watchers = new Map<number, Watcher>();
  private nextId = 1;
  /** Watchers that asked for prev_kv: while there are none, applied writes skip loading previous values. */
  private prevKvWatchers = 0;
  /** Applied changes at or above `floor`, in revision order. */
  private buffer: Applied[] = [];
  private bufferBytes = 0;
  private floor = 1;
  /**
   * The highest revision of a change applied here (at a reset: the newest
   * revision). A progress notification that is behind it asks the quiet
   * ranges to close; closes themselves change nothing, so comparing with
   * the newest revision instead would have each close ask for the next.
   */
  private latestChange = 0;
  /**
   * Some range's history was not told through `onApplied`: a snapshot replaced
   * it since the last flush, or (at first) it was on disk before the hub.
   */
  private resetPending = true;

  constructor(
    private readonly ranges: WatchRanges,
    /** Deliberate bugs, for the simulator only. */
    private readonly sabotage?: Sabotage,
  ) {}

  get size(): number {
    return this.watchers.size;
  }

  /** Whether live events must carry previous values (MvccOpenOptions.eventsWantPrevKv). */
  get wantsPrevKv(): boolean {
    return this.prevKvWatchers > 0;
  }

  /** The bytes of applied changes held for live delivery (bounded by WATCH_BUFFER_MAX_BYTES). */
  get bufferedBytes(): number {
    return this.bufferBytes;
  }

  /** Registers a watch; nothing is delivered until the next `onApplied` or `pump`. */
  create(request: WatchRequest, sink: WatchSink): number {
    assert(this.watchers.size < MAX_WATCHERS, 'watch limit reached; the caller checks MAX_WATCHERS first');
    if (this.resetPending) this.flush();
    const start = request.startRevision > 0 ? request.startRevision : this.ranges.newestRevision() + 1;
    const w: Watcher = {
      id: this.nextId++,
      interval: keyInterval(request.key, request.rangeEnd),
      request,
      sink,
      nextRevision: start,
      unsynced: start < this.floor,
      blocked: false,
      sentSinceProgress: false,
      cover: undefined,
      coverGeneration: -1,
      remote: false,
    };
    this.watchers.set(w.id, w);
    if (request.prevKv) this.prevKvWatchers++;
    // Its ranges now, so a watcher over ranges held elsewhere reads history from the start.
    this.watermark(w);
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

  /**
   * A range's key space was replaced (a snapshot was installed): its history
   * up to the snapshot never passed through `onApplied`. At the next flush
   * the buffer starts over above every revision applied here, and every
   * watcher reads storage until it gets there.
   */
  onReset(): void {
    this.resetPending = true;
  }

  /**
   * A range applied changes at `revision`. Buffered; delivered at the next
   * `flush`, when every range's state has caught up with what it was told
   * (a close changes nothing, and raises watermarks by the range's revision alone).
   */
  onApplied(revision: number, events: readonly MvccEvent[], shared = false): void {
    if (events.length === 0) return;
    this.latestChange = Math.max(this.latestChange, revision);
    if (revision >= this.floor) this.insert(revision, events, shared);
  }

  /** After a turn's changes: every watcher gets what its watermark now lets it see. */
  flush(): void {
    if (this.resetPending) {
      this.resetPending = false;
      this.buffer = [];
      this.bufferBytes = 0;
      const newest = this.ranges.newestRevision();
      this.floor = Math.max(this.floor, newest + 1);
      this.latestChange = Math.max(this.latestChange, newest);
      for (const w of this.watchers.values()) w.unsynced = true;
    }
    for (const w of this.watchers.values()) if (!w.unsynced && !w.blocked) this.release(w);
    this.trim();
  }

  private insert(revision: number, events: readonly MvccEvent[], shared: boolean): void {
    let bytes = 0;
    for (const e of events) bytes += e.kv.key.byteLength + e.kv.value.byteLength + (e.prevKv?.value.byteLength ?? 0);
    // Mostly in order: ranges apply in revision order, and interleave only a little.
    let i = this.buffer.length;
    while (i > 0 && (this.buffer[i - 1] as Applied).revision > revision) i--;
    const same = i > 0 ? (this.buffer[i - 1] as Applied) : undefined;
    if (same !== undefined && same.revision === revision) {
      // Only a transaction across ranges changes several ranges at one revision (ADR 0017): its parts are one revision's
      // changes, in key order, which is the order of their sub-revisions (the coordinator numbers its writes by key).
      assert(shared && same.shared === true, () => `two ranges applied changes at revision ${revision}`);
      const merged = [...same.events, ...events].sort((a, b) => compareBytes(a.kv.key, b.kv.key));
      this.buffer[i - 1] = { revision, events: merged, bytes: same.bytes + bytes, shared: true };
      this.bufferBytes += bytes;
      return;
    }
    this.buffer.splice(i, 0, { revision, events, bytes, shared });
    this.bufferBytes += bytes;
  }

  /** Drops what every buffered watcher has passed, and the oldest past the byte budget (their watchers read storage). */
  private trim(): void {
    let keepFrom = Number.MAX_SAFE_INTEGER;
    for (const w of this.watchers.values()) if (!w.unsynced) keepFrom = Math.min(keepFrom, w.nextRevision);
    let drop = 0;
    let bytes = this.bufferBytes;
    while (drop < this.buffer.length) {
      const e = this.buffer[drop] as Applied;
      if (e.revision >= keepFrom && bytes <= WATCH_BUFFER_MAX_BYTES) break;
      bytes -= e.bytes;
      drop++;
    }
    if (drop === 0) return;
    this.floor = Math.max(this.floor, (this.buffer[drop - 1] as Applied).revision + 1);
    this.buffer = this.buffer.slice(drop);
    this.bufferBytes = bytes;
    for (const w of this.watchers.values()) if (w.nextRevision < this.floor) w.unsynced = true;
  }

  /** Catches up watchers that read storage, a bounded step each, and serves buffered ones. Returns whether any can read more now. */
  pump(): boolean {
    if (this.resetPending) this.flush();
    let behind = false;
    for (const w of this.watchers.values()) {
      if (w.blocked) continue;
      if (!w.unsynced) {
        this.release(w);
        continue;
      }
      const before = w.nextRevision;
      this.catchUp(w);
      // A feed that lacks the history asked for fetches it meanwhile (no use pumping again at once).
      const moved = !w.remote || w.nextRevision > before;
      if (moved && w.unsynced && !w.blocked && this.watchers.has(w.id) && w.nextRevision <= this.watermark(w)) behind = true;
    }
    this.trim();
    return behind;
  }

  /** Sends a progress notification (all changes up to it delivered) to progress_notify watchers that were idle. */
  progressTick(): void {
    for (const w of this.watchers.values()) {
      if (!w.request.progressNotify || w.blocked || !this.current(w)) continue;
      // A quiet range holds the watermark back: closing it lets the next notification pass the latest change.
      const latest = this.latestFor(w);
      if (this.watermark(w) < latest) this.closeBelow(w, latest);
      if (!w.sentSinceProgress) this.send(w, { kind: 'progress', watchId: w.id, revision: w.nextRevision - 1 });
      w.sentSinceProgress = false;
    }
  }

  /** An explicit progress request: answered only for watchers whose history is complete up to their next revision. */
  requestProgress(watchId: number): boolean {
    const w = this.watchers.get(watchId);
    if (w === undefined || !this.current(w)) return false;
    const latest = this.latestFor(w);
    if (this.watermark(w) < latest) this.closeBelow(w, latest);
    this.send(w, { kind: 'progress', watchId: w.id, revision: w.nextRevision - 1 });
    return true;
  }

  /**
   * Whether a watcher was given everything up to its next revision that it
   * can be: a buffered one always; one reading feeds once it reached its
   * watermark (its history is complete below its next revision either way).
   */
  private current(w: Watcher): boolean {
    if (!w.unsynced) return true;
    return w.remote && this.watchers.has(w.id) && w.nextRevision > this.watermark(w);
  }

  /**
   * The newest change a watcher may have to wait for: applied here, or seen
   * by a feed of a range it covers. Changes, not current revisions: a close
   * stamps a fresh revision, so waiting for the others' current revisions
   * would have each close ask for another, for as long as the watcher waits
   * (simulator seed 86 under --replicas 3).
   */
  private latestFor(w: Watcher): number {
    if (!w.remote || w.cover === undefined) return this.latestChange;
    let latest = this.latestChange;
    for (const id of w.cover) latest = Math.max(latest, this.ranges.store(id).latestChangeRevision ?? 0);
    return latest;
  }

  /** The lowest closed revision of the ranges a watcher covers: every change at or below it has been applied here (pending intents hold it back, ADR 0017 §4). */
  private watermark(w: Watcher): number {
    const generation = this.ranges.generation();
    if (w.coverGeneration !== generation) {
      w.cover = this.ranges.cover(w.interval);
      w.coverGeneration = generation;
      w.remote = w.cover !== undefined && this.ranges.isRemote !== undefined && w.cover.some((id) => this.ranges.isRemote?.(id) === true);
      // Its ranges' changes are not all applied here: off the buffer, onto history.
      if (w.remote) w.unsynced = true;
    }
    if (w.cover === undefined) return 0;
    let low = Number.MAX_SAFE_INTEGER;
    for (const id of w.cover) {
      const store = this.ranges.store(id);
      low = Math.min(low, store.closedRevision ?? store.currentRevision);
    }
    return low;
  }

  /** Gives a buffered watcher the changes from its next revision up to its watermark. */
  private release(w: Watcher): void {
    const upTo = this.sabotage?.has('watch-ignores-watermark') === true ? Math.max(this.watermark(w), this.ranges.newestRevision()) : this.watermark(w);
    // Its cover now holds a range only other nodes hold (seen just now): the buffer lacks that
    // range's changes, so delivering from it would skip them (simulator seed 7145 under placement).
    if (w.unsynced) return;
    const newest = this.buffer.length === 0 ? 0 : (this.buffer[this.buffer.length - 1] as Applied).revision;
    if (newest > upTo) this.closeBelow(w, newest);
    if (upTo < w.nextRevision) return;
    assert(w.nextRevision >= this.floor, () => `watcher ${w.id} at ${w.nextRevision} is served from a buffer that starts at ${this.floor}`);
    for (let i = this.firstAtOrAfter(w.nextRevision); i < this.buffer.length && !w.blocked; i++) {
      const { revision, events } = this.buffer[i] as Applied;
      if (revision > upTo) break;
      const mine = this.filter(w, events);
      w.nextRevision = revision + 1;
      if (mine.length > 0) this.send(w, { kind: 'events', watchId: w.id, revision, events: mine });
    }
    if (!w.blocked) w.nextRevision = upTo + 1;
  }

  private firstAtOrAfter(revision: number): number {
    let lo = 0;
    let hi = this.buffer.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.buffer[mid] as Applied).revision < revision) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Asks the ranges a watcher covers that are below `revision` to close (only one range needs it when the others are busy). */
  private closeBelow(w: Watcher, revision: number): void {
    const ask = this.ranges.requestClose;
    if (ask === undefined || w.cover === undefined) return;
    for (const id of w.cover) if (this.ranges.store(id).currentRevision < revision) ask.call(this.ranges, id, revision);
  }

  /** One bounded step of reading storage: each covered range's history up to the watermark, merged in revision order. */
  private catchUp(w: Watcher): void {
    const upTo = this.watermark(w);
    if (w.remote && w.cover !== undefined) for (const id of w.cover) this.ranges.store(id).want?.(w.nextRevision, w.request.prevKv);
    if (w.nextRevision > upTo || w.cover === undefined) {
      if (w.remote) this.closeBelow(w, this.latestFor(w));
      else if (w.nextRevision >= this.floor) w.unsynced = false;
      else this.closeBelow(w, this.floor - 1);
      return;
    }
    const parts: MvccEvent[][] = [];
    let next = upTo + 1;
    for (const id of w.cover) {
      const store = this.ranges.store(id);
      if (w.nextRevision < store.compactedRevision) return this.cancelCompacted(w, store.compactedRevision);
      try {
        const r = store.events({ fromRevision: w.nextRevision, key: w.request.key, rangeEnd: w.request.rangeEnd, prevKv: w.request.prevKv, scanLimit: WATCH_CATCHUP_SCAN_LIMIT, toRevision: upTo });
        parts.push(r.events);
        next = Math.min(next, r.nextRevision);
      } catch (err) {
        if (isTesseraError(err, 'COMPACTED')) return this.cancelCompacted(w, store.compactedRevision);
        throw err;
      }
    }
    // Only below every part's stopping point is the merged history complete.
    const mine = this.filter(w, mergeByRevision(parts, next));
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
    if (i === mine.length) w.nextRevision = Math.max(w.nextRevision, next);
    if (!w.blocked && !w.remote && w.nextRevision >= this.floor) w.unsynced = false;
  }

  private cancelCompacted(w: Watcher, compactRevision: number): void {
    this.forget(w);
    w.sink.deliver({
      kind: 'canceled',
      watchId: w.id,
      revision: this.ranges.newestRevision(),
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

/** The events of every part below revision `before`, in revision order (each part is in order; revisions never repeat across ranges). */
function mergeByRevision(parts: readonly MvccEvent[][], before: number): MvccEvent[] {
  const out: MvccEvent[] = [];
  for (const p of parts) for (const e of p) if (e.kv.modRevision < before) out.push(e);
  if (parts.length > 1) out.sort((a, b) => a.kv.modRevision - b.kv.modRevision);
  return out;
}
