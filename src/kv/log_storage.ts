import { assert, TesseraError } from '../base/index.js';
import { EMPTY_CONF_STATE, EMPTY_HARD_STATE, limitSize } from '../raft/index.js';
import type { ConfState, Entry, HardState, LogStorage, Snapshot } from '../raft/index.js';
import type { StorageEngine, WriteBatch } from '../storage/engine.js';
import { type ApplyState, type TruncatedState, decodeEntry, decodeHardState, decodeJson, encodeEntry, encodeHardState, encodeJson } from './codec.js';
import { type RangeId, keys, readU64 } from './keys.js';

/** Terms cached per range; each costs a map slot (about 50 bytes). */
export const TERM_CACHE_ENTRIES = 4096;
/**
 * The newest entries kept decoded per range, so that applying them (and
 * sending them to a follower) does not read back and decode what was just
 * written: by count and by payload bytes, whichever bound is reached first.
 */
export const ENTRY_CACHE_ENTRIES = 2048;
export const ENTRY_CACHE_BYTES = 8 * 1024 * 1024;

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
  /** Terms of recent entries by index, so term() need not decode entries (Raft asks often). */
  private readonly termCache = new Map<number, number>();
  /** Recent entries by index, always a contiguous run ending at `last` (see ENTRY_CACHE_ENTRIES). */
  private readonly entryCache = new Map<number, Entry>();
  private entryCacheBytes = 0;

  constructor(
    private readonly engine: StorageEngine,
    readonly rangeId: RangeId,
    private readonly snapshotSource: SnapshotSource,
  ) {
    const t = engine.get(keys.truncated(rangeId));
    this.truncated = t === undefined ? { index: 0, term: 0 } : decodeJson<TruncatedState>(t, 'truncated state');
    this.last = this.truncated.index;
    for (const kv of engine.scan({ start: keys.logStart(rangeId), end: keys.logEnd(rangeId), reverse: true, limit: 1 })) {
      this.last = readU64(kv.key, 10);
    }
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
      assert(e.index === lo + out.length, `range ${this.rangeId}: log gap at ${lo + out.length} (found ${e.index})`);
      size += e.data.byteLength + 24;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    assert(out.length > 0 || lo === hi, `range ${this.rangeId}: no entries in [${lo}, ${hi})`);
    return limitSize(out, maxBytes);
  }

  /** [lo, hi) from the entry cache, cut at maxBytes as a scan would be; undefined unless all of it is cached. */
  private cachedEntries(lo: number, hi: number, maxBytes: number): readonly Entry[] | undefined {
    if (hi <= lo || !this.entryCache.has(lo) || !this.entryCache.has(hi - 1)) return undefined;
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.entryCache.get(i);
      // The cache is contiguous, so with both ends present every index between is too.
      assert(e !== undefined && e.index === i, `range ${this.rangeId}: entry cache gap at ${i}`);
      size += e.data.byteLength + 24;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return limitSize(out, maxBytes);
  }

  private cacheEntry(e: Entry): void {
    this.entryCache.set(e.index, e);
    this.entryCacheBytes += e.data.byteLength;
    // Evict from the oldest index: insertion order is index order, as appends only extend or replace the tail.
    while (this.entryCache.size > ENTRY_CACHE_ENTRIES || (this.entryCacheBytes > ENTRY_CACHE_BYTES && this.entryCache.size > 1)) {
      const oldest = this.entryCache.keys().next().value as number;
      this.uncacheEntry(oldest);
    }
  }

  private uncacheEntry(index: number): void {
    const e = this.entryCache.get(index);
    if (e === undefined) return;
    this.entryCache.delete(index);
    this.entryCacheBytes -= e.data.byteLength;
  }

  term(index: number): number {
    if (index === this.truncated.index) return this.truncated.term;
    if (index < this.truncated.index) throw new TesseraError('LOG_COMPACTED', `range ${this.rangeId}: term of ${index} is compacted`);
    if (index > this.last) throw new TesseraError('LOG_UNAVAILABLE', `range ${this.rangeId}: term of ${index} beyond last index ${this.last}`);
    const cached = this.termCache.get(index);
    if (cached !== undefined) return cached;
    const raw = this.engine.get(keys.logEntry(this.rangeId, index));
    assert(raw !== undefined, `range ${this.rangeId}: log entry ${index} missing below last index ${this.last}`);
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
    if (this.termCache.size >= TERM_CACHE_ENTRIES) this.termCache.delete(this.termCache.keys().next().value as number);
    this.termCache.set(index, term);
  }

  // ---- writes, into the loop turn's batch ------------------------------------

  /** Appends entries, deleting any conflicting suffix beyond them. */
  append(batch: WriteBatch, entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    assert(first.index > this.truncated.index, `range ${this.rangeId}: append at ${first.index} below the truncated index ${this.truncated.index}`);
    assert(first.index <= this.last + 1, `range ${this.rangeId}: append at ${first.index} leaves a gap after ${this.last}`);
    const newLast = (entries[entries.length - 1] as Entry).index;
    // Entries past the new ones are gone (a conflicting suffix); so are their cached terms.
    for (let i = first.index; i <= this.last; i++) {
      this.termCache.delete(i);
      this.uncacheEntry(i);
    }
    // A cache that does not reach up to the first new entry would not stay contiguous: start afresh.
    if (this.entryCache.size > 0 && !this.entryCache.has(first.index - 1)) {
      this.entryCache.clear();
      this.entryCacheBytes = 0;
    }
    for (const e of entries) {
      batch.putOwned(keys.logEntry(this.rangeId, e.index), encodeEntry(e));
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
    assert(index <= this.last, `range ${this.rangeId}: compact ${index} beyond last index ${this.last}`);
    const term = this.term(index);
    batch.deleteRange(keys.logStart(this.rangeId), keys.logEntry(this.rangeId, index + 1));
    for (const i of [...this.termCache.keys()]) if (i <= index) this.termCache.delete(i);
    for (const i of [...this.entryCache.keys()]) if (i <= index) this.uncacheEntry(i);
    this.truncated = { index, term };
    batch.put(keys.truncated(this.rangeId), encodeJson(this.truncated));
  }

  /** Replaces the whole log with a snapshot's position. */
  applySnapshot(batch: WriteBatch, snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    batch.deleteRange(keys.logStart(this.rangeId), keys.logEnd(this.rangeId));
    this.termCache.clear();
    this.entryCache.clear();
    this.entryCacheBytes = 0;
    this.truncated = { index, term };
    this.last = index;
    batch.put(keys.truncated(this.rangeId), encodeJson(this.truncated));
  }
}
