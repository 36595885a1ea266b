import { assert, TesseraError } from '../base/index.js';
import { EMPTY_CONF_STATE, EMPTY_HARD_STATE, limitSize } from '../raft/index.js';
import type { ConfState, Entry, HardState, LogStorage, Snapshot } from '../raft/index.js';
import type { StorageEngine, WriteBatch } from '../storage/engine.js';
import { bytesEqual } from '../storage/bytes.js';
import { type ApplyState, type TruncatedState, decodeEntry, decodeHardState, isPartialEntryRecord, decodeJson, encodeEntry, encodeHardState, encodeJson } from './codec.js';
import { type RangeId, keys, readU64 } from './keys.js';

/** Terms cached per range, in a ring of slots by index (16 bytes each); a power of two. */
export const TERM_CACHE_ENTRIES = 4096;
/**
 * The newest entries kept decoded per range, so that applying them (and
 * sending them to a follower) does not read back and decode what was just
 * written: by count and by payload bytes, whichever bound is reached first.
 */
export const ENTRY_CACHE_ENTRIES = 2048; // a power of two: the cache is a ring of slots by index
export const ENTRY_CACHE_BYTES = 8 * 1024 * 1024;
/**
 * The payload bytes the entry caches of all of a node's ranges hold
 * together (EntryCacheBudget): without it a node whose many ranges all take
 * large entries (a bulk load's Txns) holds ENTRY_CACHE_BYTES per range.
 */
export const ENTRY_CACHE_NODE_BYTES = 64 * 1024 * 1024;
/**
 * Slots each ring starts with; a ring doubles, up to TERM_CACHE_ENTRIES or
 * ENTRY_CACHE_ENTRIES, only when it would otherwise evict what it may keep.
 * Full-size rings cost 82 KiB per range (measured), 800 MiB per node at
 * 10,000 ranges, nearly all of them quiet with a few entries in their log.
 */
export const LOG_CACHE_INITIAL_SLOTS = 8;

/** Makes a snapshot of the range's applied state: metadata at the applied index and the data. */
export type SnapshotSource = () => Snapshot;

/**
 * A range's Raft log on the node's storage engine. Reads come from the engine
 * (which sees committed, not yet durable writes: the ready loop reads back
 * what it just wrote). Writes go into the loop turn's WriteBatch, so every
 * range's log, hard state and applied state land in one synced commit.
 * first/last index are cached and moved by the write methods.
 */
export class EngineLogStorage implements LogStorage {
  private truncated: TruncatedState;
  private last: number;
  /**
   * Terms of recent entries, so term() need not decode entries (Raft asks
   * often): slot `index & mask` holds the term of `index` if termIndexes says
   * so. Rings, not Maps: the hot path (an append per entry) then allocates
   * nothing and evicts by overwriting.
   */
  private termIndexes = new Float64Array(LOG_CACHE_INITIAL_SLOTS).fill(-1);
  private terms = new Float64Array(LOG_CACHE_INITIAL_SLOTS);
  private termMask = LOG_CACHE_INITIAL_SLOTS - 1;
  /** Recent entries: the contiguous run [cacheFirst, cacheLast], slot `index & entryMask` (see ENTRY_CACHE_ENTRIES). */
  private entryRing: (Entry | undefined)[] = new Array<Entry | undefined>(LOG_CACHE_INITIAL_SLOTS).fill(undefined);
  private entryMask = LOG_CACHE_INITIAL_SLOTS - 1;
  private cacheFirst = 1;
  private cacheLast = 0;
  private entryCacheBytes = 0;
  /** The index of a partial entry record dropped from the log's tail when it was opened (see repairTornTail). */
  readonly droppedTornEntry: number | undefined;
  /** Sizes of the entries appended since the log was opened (see bytesCompactionIndex). */
  private readonly sizes = new EntrySizes();

  constructor(
    private readonly engine: StorageEngine,
    readonly rangeId: RangeId,
    private readonly snapshotSource: SnapshotSource,
    /** Shared by the node's ranges (absent: this log's own, of ENTRY_CACHE_NODE_BYTES). */
    private readonly cacheBudget: EntryCacheBudget = new EntryCacheBudget(),
  ) {
    const t = engine.get(keys.truncated(rangeId));
    this.truncated = t === undefined ? { index: 0, term: 0 } : decodeJson<TruncatedState>(t, 'truncated state');
    this.last = this.truncated.index;
    for (const kv of engine.scan({ start: keys.logStart(rangeId), end: keys.logEnd(rangeId), reverse: true, limit: 1 })) {
      this.last = readU64(kv.key, 10);
    }
    this.droppedTornEntry = this.repairTornTail();
  }

  /**
   * A power cut during a log append can leave the last entry record partly
   * written. It was never synced, so never acknowledged: recovery drops it,
   * as etcd's WAL repair truncates a torn tail. Only a record shorter than
   * its lengths say counts; any other damage is refused (CORRUPT_DATA) when
   * the record is read. The hard state written with the torn entry may
   * count it as committed: its commit index is clamped to the shortened log
   * in the same batch, so that the repair and the clamp land together.
   */
  private repairTornTail(): number | undefined {
    if (this.last <= this.truncated.index) return undefined;
    const key = keys.logEntry(this.rangeId, this.last);
    const raw = this.engine.get(key);
    if (raw === undefined || !isPartialEntryRecord(raw)) return undefined;
    // A bit flipped in a length field as the record was read would pass for a torn record, and the repair
    // would delete a good, perhaps acknowledged entry: the record must read the same twice to be dropped.
    const again = this.engine.get(key);
    if (again === undefined || !bytesEqual(raw, again)) {
      throw new TesseraError('CORRUPT_DATA', `range ${this.rangeId}: log entry ${this.last} read differently twice; refusing to start`);
    }
    const batch = this.engine.newBatch();
    batch.delete(key);
    const hs = this.engine.get(keys.hardState(this.rangeId));
    const hardState = hs === undefined ? undefined : decodeHardState(hs);
    if (hardState !== undefined && hardState.commit >= this.last) this.setHardState(batch, { ...hardState, commit: this.last - 1 });
    // Durable or not, the repair is the same at the next start.
    this.engine.commit(batch, () => {});
    return this.last--;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    const hs = this.engine.get(keys.hardState(this.rangeId));
    const apply = this.applyState();
    return { hardState: hs === undefined ? EMPTY_HARD_STATE : decodeHardState(hs), confState: apply.confState };
  }

  applyState(): ApplyState {
    const raw = this.engine.get(keys.applyState(this.rangeId));
    return raw === undefined ? { appliedIndex: this.truncated.index, confState: EMPTY_CONF_STATE } : decodeJson<ApplyState>(raw, 'apply state');
  }

  entries(lo: number, hi: number, maxBytes: number): readonly Entry[] {
    if (lo <= this.truncated.index) throw new TesseraError('LOG_COMPACTED', `range ${this.rangeId}: index ${lo} is compacted`);
    if (hi > this.last + 1) throw new TesseraError('LOG_UNAVAILABLE', `range ${this.rangeId}: entries [${lo}, ${hi}) beyond last index ${this.last}`);
    const cached = this.cachedEntries(lo, hi, maxBytes);
    if (cached !== undefined) return cached;
    const out: Entry[] = [];
    let size = 0;
    for (const kv of this.engine.scan({ start: keys.logEntry(this.rangeId, lo), end: keys.logEntry(this.rangeId, hi) })) {
      const e = decodeEntry(kv.value);
      assert(e.index === lo + out.length, () => `range ${this.rangeId}: log gap at ${lo + out.length} (found ${e.index})`);
      size += e.data.byteLength + 24;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    assert(out.length > 0 || lo === hi, () => `range ${this.rangeId}: no entries in [${lo}, ${hi})`);
    return limitSize(out, maxBytes);
  }

  /** [lo, hi) from the entry cache, cut at maxBytes as a scan would be; undefined unless all of it is cached. */
  private cachedEntries(lo: number, hi: number, maxBytes: number): readonly Entry[] | undefined {
    if (hi <= lo || lo < this.cacheFirst || hi - 1 > this.cacheLast) return undefined;
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.entryRing[i & this.entryMask];
      // The cache is contiguous, so with both ends present every index between is too.
      assert(e !== undefined && e.index === i, () => `range ${this.rangeId}: entry cache gap at ${i}`);
      size += e.data.byteLength + 24;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return limitSize(out, maxBytes);
  }

  /** Extends the cached run by `e`, which must follow it (an empty run starts at `e`); evicts from the oldest end. */
  private cacheEntry(e: Entry): void {
    if (this.cacheLast < this.cacheFirst) {
      this.cacheFirst = e.index;
      this.cacheLast = e.index - 1;
    }
    assert(e.index === this.cacheLast + 1, () => `range ${this.rangeId}: entry ${e.index} cached after ${this.cacheLast}`);
    // The ring is full: it grows while below ENTRY_CACHE_ENTRIES; at that size the slot holds the entry that many older, evicted first.
    if (e.index - this.cacheFirst > this.entryMask) {
      if (this.entryRing.length < ENTRY_CACHE_ENTRIES) this.growEntryRing();
      else this.evictOldestEntry();
    }
    this.entryRing[e.index & this.entryMask] = e;
    this.cacheLast = e.index;
    this.entryCacheBytes += e.data.byteLength;
    while (this.entryCacheBytes > ENTRY_CACHE_BYTES && this.cacheFirst < this.cacheLast) this.evictOldestEntry();
    this.cacheBudget.admitted(this, e);
  }

  private growEntryRing(): void {
    const ring = new Array<Entry | undefined>(this.entryRing.length * 2).fill(undefined);
    const mask = ring.length - 1;
    for (let i = this.cacheFirst; i <= this.cacheLast; i++) ring[i & mask] = this.entryRing[i & this.entryMask];
    this.entryRing = ring;
    this.entryMask = mask;
  }

  private evictOldestEntry(): void {
    const slot = this.cacheFirst & this.entryMask;
    const e = this.entryRing[slot] as Entry;
    this.entryRing[slot] = undefined;
    this.entryCacheBytes -= e.data.byteLength;
    this.cacheBudget.released(e);
    this.cacheFirst++;
  }

  /** Whether `e` is still in this log's cache (EntryCacheBudget: its admission record is not stale). */
  holdsCached(e: Entry): boolean {
    return e.index >= this.cacheFirst && e.index <= this.cacheLast && this.entryRing[e.index & this.entryMask] === e;
  }

  /** Evicts cached entries up to and including `index`, oldest first (EntryCacheBudget: the node's oldest). */
  evictCachedUpTo(index: number): void {
    while (this.cacheFirst <= this.cacheLast && this.cacheFirst <= index) this.evictOldestEntry();
  }

  /** Drops cached entries from `index` on (a conflicting suffix). */
  private uncacheFrom(index: number): void {
    while (this.cacheLast >= this.cacheFirst && this.cacheLast >= index) {
      const slot = this.cacheLast & this.entryMask;
      const e = this.entryRing[slot] as Entry;
      this.entryCacheBytes -= e.data.byteLength;
      this.cacheBudget.released(e);
      this.entryRing[slot] = undefined;
      this.cacheLast--;
    }
  }

  /** Drops cached entries up to and including `index` (compacted). */
  private uncacheUpTo(index: number): void {
    while (this.cacheFirst <= this.cacheLast && this.cacheFirst <= index) this.evictOldestEntry();
  }

  private clearEntryCache(): void {
    for (let i = this.cacheFirst; i <= this.cacheLast; i++) this.cacheBudget.released(this.entryRing[i & this.entryMask] as Entry);
    this.entryRing = new Array<Entry | undefined>(LOG_CACHE_INITIAL_SLOTS).fill(undefined);
    this.entryMask = LOG_CACHE_INITIAL_SLOTS - 1;
    this.cacheFirst = 1;
    this.cacheLast = 0;
    this.entryCacheBytes = 0;
  }

  term(index: number): number {
    if (index === this.truncated.index) return this.truncated.term;
    if (index < this.truncated.index) throw new TesseraError('LOG_COMPACTED', `range ${this.rangeId}: term of ${index} is compacted`);
    if (index > this.last) throw new TesseraError('LOG_UNAVAILABLE', `range ${this.rangeId}: term of ${index} beyond last index ${this.last}`);
    const slot = index & this.termMask;
    if (this.termIndexes[slot] === index) return this.terms[slot] as number;
    const raw = this.engine.get(keys.logEntry(this.rangeId, index));
    assert(raw !== undefined, () => `range ${this.rangeId}: log entry ${index} missing below last index ${this.last}`);
    const term = decodeEntry(raw).term;
    this.cacheTerm(index, term);
    return term;
  }

  lastIndex(): number {
    return this.last;
  }

  firstIndex(): number {
    return this.truncated.index + 1;
  }

  snapshot(): Snapshot {
    return this.snapshotSource();
  }

  private cacheTerm(index: number, term: number): void {
    // Grow rather than overwrite a term the full-size ring would still hold.
    for (;;) {
      const held = this.termIndexes[index & this.termMask] as number;
      if (held === -1 || held === index || this.terms.length >= TERM_CACHE_ENTRIES || Math.abs(index - held) >= TERM_CACHE_ENTRIES) break;
      this.growTermRing();
    }
    const slot = index & this.termMask;
    this.termIndexes[slot] = index;
    this.terms[slot] = term;
  }

  private growTermRing(): void {
    const size = this.terms.length * 2;
    const indexes = new Float64Array(size).fill(-1);
    const terms = new Float64Array(size);
    for (let slot = 0; slot < this.terms.length; slot++) {
      const index = this.termIndexes[slot] as number;
      if (index === -1) continue;
      indexes[index & (size - 1)] = index;
      terms[index & (size - 1)] = this.terms[slot] as number;
    }
    this.termIndexes = indexes;
    this.terms = terms;
    this.termMask = size - 1;
  }

  /** Slots the term and entry rings have now (tests: quiet ranges keep them small). */
  get cacheSlots(): { readonly terms: number; readonly entries: number } {
    return { terms: this.terms.length, entries: this.entryRing.length };
  }

  private uncacheTerm(index: number): void {
    const slot = index & this.termMask;
    if (this.termIndexes[slot] === index) this.termIndexes[slot] = -1;
  }

  // ---- writes, into the loop turn's batch ------------------------------------

  /** Appends entries, deleting any conflicting suffix beyond them. */
  append(batch: WriteBatch, entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    assert(first.index > this.truncated.index, () => `range ${this.rangeId}: append at ${first.index} below the truncated index ${this.truncated.index}`);
    assert(first.index <= this.last + 1, () => `range ${this.rangeId}: append at ${first.index} leaves a gap after ${this.last}`);
    const newLast = (entries[entries.length - 1] as Entry).index;
    // Entries past the new ones are gone (a conflicting suffix); so are their cached terms.
    // The cached run, when there is one, ends at `last`, so after this it ends right before the new entries.
    for (let i = first.index; i <= this.last; i++) this.uncacheTerm(i);
    this.uncacheFrom(first.index);
    this.sizes.truncateFrom(first.index);
    for (const e of entries) {
      const encoded = encodeEntry(e);
      this.sizes.push(e.index, encoded.length);
      batch.putOwned(keys.logEntry(this.rangeId, e.index), encoded);
      this.cacheTerm(e.index, e.term);
      this.cacheEntry(e);
    }
    if (newLast < this.last) batch.deleteRange(keys.logEntry(this.rangeId, newLast + 1), keys.logEnd(this.rangeId));
    this.last = newLast;
  }

  setHardState(batch: WriteBatch, hs: HardState): void {
    batch.put(keys.hardState(this.rangeId), encodeHardState(hs));
  }

  setApplyState(batch: WriteBatch, state: ApplyState): void {
    batch.put(keys.applyState(this.rangeId), encodeJson(state));
  }

  /** Drops entries up to and including `index` (they are covered by the applied state). */
  compact(batch: WriteBatch, index: number): void {
    if (index <= this.truncated.index) return;
    assert(index <= this.last, () => `range ${this.rangeId}: compact ${index} beyond last index ${this.last}`);
    const term = this.term(index);
    // The stored log is exactly [firstIndex, last], so its entries up to `index` are deleted by key. A
    // deleteRange would make the engine find them by a scan that reads every entry's value first.
    for (let i = this.truncated.index + 1; i <= index; i++) batch.delete(keys.logEntry(this.rangeId, i));
    // Cached terms at or below `index` may stay: term() answers for those from the truncated state or refuses.
    this.uncacheUpTo(index);
    this.sizes.dropUpTo(index);
    this.truncated = { index, term };
    batch.put(keys.truncated(this.rangeId), encodeJson(this.truncated));
  }

  /**
   * Where to compact so that the entries after it, up to `applied`, hold at
   * most `maxBytes`: an index in [firstIndex − 1, applied], firstIndex − 1
   * meaning nothing to drop. Only entries appended since the log was opened
   * are counted (older ones count as empty, so a restart keeps more, never
   * less), and nothing is dropped until they exceed `maxBytes` by a tenth,
   * so compactions come in steps rather than one entry per apply.
   */
  bytesCompactionIndex(applied: number, maxBytes: number): number {
    return Math.max(this.truncated.index, this.sizes.cutFor(applied, maxBytes, maxBytes + Math.ceil(maxBytes / 10)));
  }

  /** Replaces the whole log with a snapshot's position. */
  applySnapshot(batch: WriteBatch, snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    batch.deleteRange(keys.logStart(this.rangeId), keys.logEnd(this.rangeId));
    this.termIndexes.fill(-1);
    this.clearEntryCache();
    this.sizes.dropUpTo(Number.MAX_SAFE_INTEGER);
    this.truncated = { index, term };
    this.last = index;
    batch.put(keys.truncated(this.rangeId), encodeJson(this.truncated));
  }
}

/**
 * The encoded sizes of a contiguous run of log entries [first, first + n),
 * with their sum: what a byte bound on the retained log needs, without
 * reading entries back. A deque over an array (`head` skips dropped slots).
 */
class EntrySizes {
  private first = 0;
  private readonly bytes: number[] = [];
  private head = 0;
  private total = 0;

  private get end(): number {
    return this.first + this.bytes.length - this.head;
  }

  /** Forgets entries at and past `index` (a conflicting suffix is being replaced). */
  truncateFrom(index: number): void {
    if (index < this.first) return this.dropUpTo(Number.MAX_SAFE_INTEGER);
    while (this.end > index) this.total -= this.bytes.pop() as number;
  }

  /** Records the size of the entry at `index`, which follows the run (or starts a new one). */
  push(index: number, size: number): void {
    if (this.bytes.length === this.head || index !== this.end) {
      this.dropUpTo(Number.MAX_SAFE_INTEGER);
      this.first = index;
    }
    this.bytes.push(size);
    this.total += size;
  }

  /** Forgets entries at and below `index` (compacted). */
  dropUpTo(index: number): void {
    while (this.head < this.bytes.length && this.first <= index) {
      this.total -= this.bytes[this.head++] as number;
      this.first++;
    }
    if (this.head === this.bytes.length) {
      this.bytes.length = 0;
      this.head = 0;
      this.total = 0;
    } else if (this.head > 1024 && this.head * 2 > this.bytes.length) {
      this.bytes.splice(0, this.head);
      this.head = 0;
    }
  }

  /**
   * The highest index after which the counted entries up to `upTo` hold at
   * most `keepBytes`, once they hold more than `triggerBytes`; otherwise
   * (or with nothing counted) -1: entries before the run, not counted, may
   * lie above `upTo`, so the run's start says nothing about where to cut.
   */
  cutFor(upTo: number, keepBytes: number, triggerBytes: number): number {
    const last = Math.min(upTo, this.end - 1);
    if (last < this.first) return -1;
    let held = this.total;
    for (let i = this.end - 1; i > last; i--) held -= this.bytes[this.head + i - this.first] as number;
    if (held <= triggerBytes) return -1;
    let cut = this.first - 1;
    while (held > keepBytes && cut < last) {
      cut++;
      held -= this.bytes[this.head + cut - this.first] as number;
    }
    return cut;
  }
}

/**
 * The payload bytes of the entry caches of a node's ranges, with the order
 * entries were cached in: past `limitBytes`, the node's oldest cached entry
 * goes first, whichever range holds it (each range's cache is a run of its
 * newest entries, so that is the oldest of its range too). A log that is
 * dropped without a word (its replica removed) keeps its entries counted
 * until they are the oldest, and then they go like any.
 */
export class EntryCacheBudget {
  private usedBytes = 0;
  private cached = 0;
  private order: CachedRecord[] = [];
  private head = 0;

  constructor(readonly limitBytes: number = ENTRY_CACHE_NODE_BYTES) {}

  /** The entries' payload bytes, plus ENTRY_CACHE_OVERHEAD_BYTES each. */
  get bytes(): number {
    return this.usedBytes;
  }

  /** `log` cached `entry`: counted, and the node's oldest entries evicted past the limit (never the one just cached). */
  admitted(log: EngineLogStorage, entry: Entry): void {
    this.usedBytes += entry.data.byteLength + ENTRY_CACHE_OVERHEAD_BYTES;
    this.cached++;
    this.order.push({ log, entry });
    while (this.usedBytes > this.limitBytes && this.head < this.order.length - 1) {
      const oldest = this.order[this.head] as CachedRecord;
      this.order[this.head] = undefined as unknown as CachedRecord;
      this.head++;
      if (oldest.log.holdsCached(oldest.entry)) oldest.log.evictCachedUpTo(oldest.entry.index);
    }
    // Records of entries evicted by their own log (its own bound, a conflict, a compaction) go stale.
    if (this.order.length - this.head > 2 * this.cached + 1024) this.compact();
    else if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }

  /** A log evicted `entry` from its cache. */
  released(entry: Entry): void {
    this.usedBytes -= entry.data.byteLength + ENTRY_CACHE_OVERHEAD_BYTES;
    this.cached--;
  }

  private compact(): void {
    this.order = this.order.slice(this.head).filter((r) => r.log.holdsCached(r.entry));
    this.head = 0;
  }
}

interface CachedRecord {
  readonly log: EngineLogStorage;
  readonly entry: Entry;
}

/** What a cached entry costs the node's budget beyond its payload (the Entry object, its ring slot, its record). */
const ENTRY_CACHE_OVERHEAD_BYTES = 96;
