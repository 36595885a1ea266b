import type { Bitset } from './bitset.js';
import { foldHash, mix32 } from './hash32.js';

const EMPTY = -1;
const FULL = 0xffffffff;
/** Entries a new cache has room for; small, as most partitions are. */
const INITIAL_ENTRIES = 64;
/** Bytes of the typed arrays per entry slot: chain, keys, firstWord, offset, length, and two hash slots. */
const TABLE_BYTES_PER_ENTRY = 7 * 4;
/**
 * Per entry, the pointer in `states`/`stateHashes` with the slack of a
 * growing JS array (about 1.5 x 8 bytes).
 */
export const STATE_SLOT_BYTES = 12;

/** Where the memo takes memory from (the check's Budget). */
export interface MemoMeter {
  reserveMemo(bytes: number): boolean;
  releaseMemo(bytes: number): void;
}

/** Results of `ConfigurationCache.add`; `NoMemory`: the bound would be passed, nothing was stored. */
export const AddResult = { Seen: 0, Added: 1, NoMemory: 2 } as const;
export type AddResult = (typeof AddResult)[keyof typeof AddResult];

export interface CacheOptions<S> {
  readonly equal: ((a: S, b: S) => boolean) | undefined;
  /** Bytes retained by keeping `state` (or its hash, without `equal`) in the memo. */
  readonly valueBytes: (state: S, stateHash: string | number) => number;
  readonly meter: MemoMeter;
}

/**
 * Lowe's memo: the configurations (linearized set, model state) already
 * explored. Reaching one again cannot lead anywhere new, which prunes the
 * search from factorial to (usually) near-linear on real histories.
 *
 * Hot path: histories with 10+ concurrent clients visit millions of
 * configurations, so this is a chained hash table in typed arrays and
 * entries are numbers, not objects (an object and a typed array per entry
 * kept the garbage collector busy; a string-keyed Map cost more than the
 * search itself).
 *
 * Memory: operations are numbered in call order, so a linearized set is a
 * run of all-ones words, a short mixed stretch around the frontier, then
 * zeros. Only the mixed stretch is stored, so an entry costs the width of
 * the concurrency window rather than n/32 words (20,000 operations would
 * otherwise take 2.5 KB per entry).
 *
 * Every byte the memo holds is reserved from a MemoMeter before it is
 * allocated: the typed arrays at their capacity (old and new while one
 * grows), a slot per entry, and the model's estimate of each kept state.
 * When a reservation is refused, `add` stores nothing and says so.
 */
export class ConfigurationCache<S> {
  private slots = new Int32Array(2 * INITIAL_ENTRIES).fill(EMPTY);
  private chain = new Int32Array(INITIAL_ENTRIES);
  private keys = new Int32Array(INITIAL_ENTRIES);
  /** Per entry: index of its first stored word, where in the arena, and how many. */
  private firstWord = new Int32Array(INITIAL_ENTRIES);
  private offset = new Int32Array(INITIAL_ENTRIES);
  private length = new Int32Array(INITIAL_ENTRIES);
  private arena = new Uint32Array(INITIAL_ENTRIES);
  private arenaUsed = 0;
  /** Canonical state hashes when the model has no `equal`; else the states. */
  private readonly stateHashes: (string | number)[] = [];
  private readonly states: S[] = [];
  private readonly options: CacheOptions<S>;
  /** Bytes reserved from the meter and not yet released. */
  bytes = 0;
  size = 0;

  /** Creating a cache reserves its initial tables; check `ok` before use. */
  readonly ok: boolean;

  constructor(options: CacheOptions<S>) {
    this.options = options;
    this.ok = this.reserve(INITIAL_ENTRIES * TABLE_BYTES_PER_ENTRY + this.arena.byteLength);
  }

  /** Records (bits, state), or reports it seen before, or that memory ran out. */
  add(bits: Bitset, state: S, stateHash: string | number): AddResult {
    const key = mix32(foldHash(stateHash) ^ Math.imul(bits.hash, 0x9e3779b1)) | 0;
    const words = bits.words;
    let lo = 0;
    while (lo < words.length && words[lo] === FULL) lo++;
    let hi = words.length;
    while (hi > lo && words[hi - 1] === 0) hi--;
    for (let e = this.slots[key & (this.slots.length - 1)]!; e !== EMPTY; e = this.chain[e]!) {
      if (this.keys[e] === key && this.sameBits(e, words, lo, hi) && this.sameState(e, state, stateHash)) return AddResult.Seen;
    }
    if (!this.makeRoom(hi - lo, STATE_SLOT_BYTES + this.options.valueBytes(state, stateHash))) return AddResult.NoMemory;
    const entry = this.size++;
    this.store(entry, words, lo, hi);
    this.keys[entry] = key;
    if (this.options.equal === undefined) this.stateHashes[entry] = stateHash;
    else this.states[entry] = state;
    this.link(entry);
    return AddResult.Added;
  }

  /** Returns everything reserved to the meter; the cache must not be used after. */
  release(): void {
    this.options.meter.releaseMemo(this.bytes);
    this.bytes = 0;
  }

  private reserve(bytes: number): boolean {
    if (!this.options.meter.reserveMemo(bytes)) return false;
    this.bytes += bytes;
    return true;
  }

  private unreserve(bytes: number): void {
    this.options.meter.releaseMemo(bytes);
    this.bytes -= bytes;
  }

  /** Reserves one more entry (growing the tables if full) and its words. */
  private makeRoom(words: number, entryBytes: number): boolean {
    if (!this.reserve(entryBytes)) return false;
    if (this.size === this.chain.length && !this.grow()) {
      this.unreserve(entryBytes);
      return false;
    }
    if (this.arenaUsed + words > this.arena.length && !this.growArena(this.arenaUsed + words)) {
      this.unreserve(entryBytes);
      return false;
    }
    return true;
  }

  private sameState(entry: number, state: S, stateHash: string | number): boolean {
    const { equal } = this.options;
    return equal === undefined ? this.stateHashes[entry] === stateHash : equal(this.states[entry]!, state);
  }

  private sameBits(entry: number, words: Uint32Array, lo: number, hi: number): boolean {
    if (this.firstWord[entry] !== lo || this.length[entry] !== hi - lo) return false;
    const base = this.offset[entry]! - lo;
    for (let i = lo; i < hi; i++) if (this.arena[base + i] !== words[i]) return false;
    return true;
  }

  private store(entry: number, words: Uint32Array, lo: number, hi: number): void {
    for (let i = lo, at = this.arenaUsed; i < hi; i++, at++) this.arena[at] = words[i]!;
    this.firstWord[entry] = lo;
    this.offset[entry] = this.arenaUsed;
    this.length[entry] = hi - lo;
    this.arenaUsed += hi - lo;
  }

  private growArena(need: number): boolean {
    const grown = Math.max(need, this.arena.length * 2);
    // Old and new arenas coexist while copying: reserve the new one whole.
    if (!this.reserve(grown * 4)) return false;
    const arena = new Uint32Array(grown);
    arena.set(this.arena.subarray(0, this.arenaUsed));
    this.unreserve(this.arena.byteLength);
    this.arena = arena;
    return true;
  }

  private link(entry: number): void {
    const slot = this.keys[entry]! & (this.slots.length - 1);
    this.chain[entry] = this.slots[slot]!;
    this.slots[slot] = entry;
  }

  /** Doubles the per-entry arrays; keeps the table at most half full so chains stay short. */
  private grow(): boolean {
    const capacity = this.chain.length * 2;
    if (!this.reserve(capacity * TABLE_BYTES_PER_ENTRY)) return false;
    this.chain = resized(this.chain, capacity);
    this.keys = resized(this.keys, capacity);
    this.firstWord = resized(this.firstWord, capacity);
    this.offset = resized(this.offset, capacity);
    this.length = resized(this.length, capacity);
    this.slots = new Int32Array(capacity * 2).fill(EMPTY);
    for (let e = 0; e < this.size; e++) this.link(e);
    this.unreserve((capacity / 2) * TABLE_BYTES_PER_ENTRY);
    return true;
  }
}

function resized(a: Int32Array, capacity: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(capacity);
  b.set(a);
  return b;
}
