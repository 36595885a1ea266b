import { mix32 } from './hash32.js';

/**
 * The set of linearized operations, with an incrementally maintained
 * Zobrist hash so that the memo cache can be probed in O(1) instead of
 * hashing all words on every step (histories of 20k operations are common).
 */
export class Bitset {
  readonly words: Uint32Array;
  /** XOR of `bitKey(i)` over the set bits; XOR makes set and clear symmetric. */
  hash = 0;

  constructor(size: number) {
    this.words = new Uint32Array(Math.ceil(size / 32));
  }

  set(i: number): void {
    const w = i >>> 5;
    this.words[w] = this.words[w]! | (1 << (i & 31));
    this.hash = (this.hash ^ bitKey(i)) >>> 0;
  }

  clear(i: number): void {
    const w = i >>> 5;
    this.words[w] = this.words[w]! & ~(1 << (i & 31));
    this.hash = (this.hash ^ bitKey(i)) >>> 0;
  }

  has(i: number): boolean {
    return (this.words[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  sameAs(words: Uint32Array): boolean {
    const mine = this.words;
    for (let i = 0; i < mine.length; i++) if (mine[i] !== words[i]) return false;
    return true;
  }
}

/**
 * A well-mixed 32-bit key per bit index. Derived from the index so no random
 * source is needed and runs are reproducible.
 */
export function bitKey(i: number): number {
  return mix32(Math.imul(i + 1, 0x9e3779b1));
}
