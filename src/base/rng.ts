import { assert } from './assert.js';

/** A source of randomness. Everything below the server draws from an injected Rng. */
export interface Rng {
  /** A uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number;
  /** An integer in [0, bound). */
  intBelow(bound: number): number;
  /** An integer in [min, max], both ends included. */
  intBetween(min: number, max: number): number;
  /** A float in [0, 1). */
  float(): number;
  /** True with the given probability. */
  chance(probability: number): boolean;
  /** A new, independent generator seeded from this one. */
  fork(): Rng;
}

/**
 * xoshiro128** seeded through splitmix32. Deterministic: the same seed gives
 * the same sequence on every platform, which the simulator's replay needs.
 */
export class SeededRng implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    assert(Number.isSafeInteger(seed), () => `rng seed must be a safe integer, got ${seed}`);
    let x = (seed ^ Math.floor(seed / 0x100000000)) >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  intBelow(bound: number): number {
    assert(Number.isInteger(bound) && bound > 0 && bound <= 0x100000000, () => `intBelow bound out of range: ${bound}`);
    return Math.floor(this.float() * bound);
  }

  intBetween(min: number, max: number): number {
    assert(min <= max, () => `intBetween: min ${min} > max ${max}`);
    return min + this.intBelow(max - min + 1);
  }

  float(): number {
    // 53 random bits, so every double in [0, 1) on the grid is reachable.
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }

  chance(probability: number): boolean {
    return this.float() < probability;
  }

  fork(): Rng {
    return new SeededRng(this.nextUint32() * 0x100000 + (this.nextUint32() & 0xfffff));
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
