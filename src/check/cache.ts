import type { Bitset } from './bitset.js';
import { foldHash, mix32 } from './hash32.js';

const EMPTY = -1;
const FULL = 0xffffffff;

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
 */
export class ConfigurationCache<S> {
  private slots = new Int32Array(2048).fill(EMPTY);
  private chain = new Int32Array(1024);
  private keys = new Int32Array(1024);
  /** Per entry: index of its first stored word, where in the arena, and how many. */
  private firstWord = new Int32Array(1024);
  private offset = new Int32Array(1024);
  private length = new Int32Array(1024);
  private arena = new Uint32Array(4096);
  private arenaUsed = 0;
  /** Canonical state hashes when the model has no `equal`; else the states. */
  private readonly stateHashes: (string | number)[] = [];
  private readonly states: S[] = [];
  private readonly equal: ((a: S, b: S) => boolean) | undefined;
  size = 0;

  constructor(equal: ((a: S, b: S) => boolean) | undefined) {
    this.equal = equal;
  }

  /** Records (bits, state) and returns true, or returns false if already seen. */
  add(bits: Bitset, state: S, stateHash: string | number): boolean {
    const key = mix32(foldHash(stateHash) ^ Math.imul(bits.hash, 0x9e3779b1)) | 0;
    const words = bits.words;
    let lo = 0;
    while (lo < words.length && words[lo] === FULL) lo++;
    let hi = words.length;
    while (hi > lo && words[hi - 1] === 0) hi--;
    for (let e = this.slots[key & (this.slots.length - 1)]!; e !== EMPTY; e = this.chain[e]!) {
      if (this.keys[e] === key && this.sameBits(e, words, lo, hi) && this.sameState(e, state, stateHash)) return false;
    }
    const entry = this.size++;
    if (entry === this.chain.length) this.grow();
    this.store(entry, words, lo, hi);
    this.keys[entry] = key;
    if (this.equal === undefined) this.stateHashes[entry] = stateHash;
    else this.states[entry] = state;
    this.link(entry);
    return true;
  }

  private sameState(entry: number, state: S, stateHash: string | number): boolean {
    return this.equal === undefined ? this.stateHashes[entry] === stateHash : this.equal(this.states[entry]!, state);
  }

  private sameBits(entry: number, words: Uint32Array, lo: number, hi: number): boolean {
    if (this.firstWord[entry] !== lo || this.length[entry] !== hi - lo) return false;
    const base = this.offset[entry]! - lo;
    for (let i = lo; i < hi; i++) if (this.arena[base + i] !== words[i]) return false;
    return true;
  }

  private store(entry: number, words: Uint32Array, lo: number, hi: number): void {
    const need = this.arenaUsed + (hi - lo);
    if (need > this.arena.length) {
      const grown = new Uint32Array(Math.max(need, this.arena.length * 2));
      grown.set(this.arena.subarray(0, this.arenaUsed));
      this.arena = grown;
    }
    for (let i = lo, at = this.arenaUsed; i < hi; i++, at++) this.arena[at] = words[i]!;
    this.firstWord[entry] = lo;
    this.offset[entry] = this.arenaUsed;
    this.length[entry] = hi - lo;
    this.arenaUsed = need;
  }

  private link(entry: number): void {
    const slot = this.keys[entry]! & (this.slots.length - 1);
    this.chain[entry] = this.slots[slot]!;
    this.slots[slot] = entry;
  }

  /** Doubles the per-entry arrays; keeps the table at most half full so chains stay short. */
  private grow(): void {
    const capacity = this.chain.length * 2;
    this.chain = resized(this.chain, capacity);
    this.keys = resized(this.keys, capacity);
    this.firstWord = resized(this.firstWord, capacity);
    this.offset = resized(this.offset, capacity);
    this.length = resized(this.length, capacity);
    this.slots = new Int32Array(capacity * 2).fill(EMPTY);
    for (let e = 0; e < this.size - 1; e++) this.link(e);
  }
}

function resized(a: Int32Array, capacity: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(capacity);
  b.set(a);
  return b;
}
