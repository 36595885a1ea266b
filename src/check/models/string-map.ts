import { extendHash, mix32 } from '../hash32.js';

/**
 * An immutable string map with an incrementally maintained hash.
 *
 * Model states are hashed on every search step. Re-encoding a whole map of
 * ever-growing appended values each time dominated the no-partition kv
 * check, so each value carries two polynomial hashes that extend in
 * O(|suffix|) on append, and the map's hash is the XOR of per-entry mixes
 * (order independent, O(1) per changed key). The hash is not canonical;
 * `equals` settles collisions. Entries sit in key-sorted arrays: copying a
 * short array per step is cheaper than copying a Map.
 */
interface Entry {
  readonly key: string;
  readonly value: string;
  readonly h1: number;
  readonly h2: number;
}

export class HashedStringMap {
  static readonly EMPTY = new HashedStringMap([], 0, 0, 0);

  private constructor(
    private readonly entries: readonly Entry[],
    private readonly d1: number,
    private readonly d2: number,
    /**
     * Estimated bytes this map holds beyond what it shares with the map it
     * was made from: itself, its entry array, and the changed entry with its
     * value (counted flat: comparing an appended string flattens it).
     */
    readonly ownBytes: number,
  ) {}

  get size(): number {
    return this.entries.length;
  }

  get(key: string): string | undefined {
    const i = this.find(key);
    return i >= 0 ? this.entries[i]!.value : undefined;
  }

  set(key: string, value: string): HashedStringMap {
    return this.replace(key, { key, value, h1: extendHash(SEED1, B1, value), h2: extendHash(SEED2, B2, value) });
  }

  append(key: string, suffix: string): HashedStringMap {
    const i = this.find(key);
    if (i < 0) return this.set(key, suffix);
    const old = this.entries[i]!;
    const h1 = extendHash(old.h1, B1, suffix);
    return this.replace(key, { key, value: old.value + suffix, h1, h2: extendHash(old.h2, B2, suffix) });
  }

  delete(key: string): HashedStringMap {
    return this.find(key) >= 0 ? this.replace(key, undefined) : this;
  }

  /** 52 bits of the two digests: a safe integer, so the memo can use it directly. */
  hash(): number {
    return this.d1 * 0x100000 + (this.d2 >>> 12);
  }

  equals(other: HashedStringMap): boolean {
    if (this === other) return true;
    const a = this.entries;
    const b = other.entries;
    if (this.d1 !== other.d1 || this.d2 !== other.d2 || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (x === y) continue;
      if (x.h1 !== y.h1 || x.h2 !== y.h2 || x.key !== y.key || x.value !== y.value) return false;
    }
    return true;
  }

  /** Canonical text, for messages. */
  encode(): string {
    return JSON.stringify(Object.fromEntries(this.entries.map((e) => [e.key, e.value])));
  }

  /** Index of `key`, or -(insertion point) - 1. */
  private find(key: string): number {
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const k = this.entries[mid]!.key;
      if (k === key) return mid;
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return -lo - 1;
  }

  private replace(key: string, entry: Entry | undefined): HashedStringMap {
    const i = this.find(key);
    const next = this.entries.slice();
    let d1 = this.d1;
    let d2 = this.d2;
    if (i >= 0) {
      [d1, d2] = toggle(d1, d2, this.entries[i]!);
      if (entry === undefined) next.splice(i, 1);
      else next[i] = entry;
    } else if (entry !== undefined) {
      next.splice(-i - 1, 0, entry);
    }
    if (entry !== undefined) [d1, d2] = toggle(d1, d2, entry);
    const own = MAP_BYTES + ARRAY_HEADER_BYTES + 8 * next.length + (entry === undefined ? 0 : ENTRY_BYTES + STRING_HEADER_BYTES + entry.value.length);
    return new HashedStringMap(next, d1, d2, own);
  }
}

// V8 object sizes on 64-bit with pointer compression, rounded up.
const MAP_BYTES = 32;
const ARRAY_HEADER_BYTES = 16;
const ENTRY_BYTES = 32;
const STRING_HEADER_BYTES = 32;

const SEED1 = 0x811c9dc5;
const SEED2 = 0x01000193;
const B1 = 0x01000193;
const B2 = 0x9e3779b1;

/** XORs an entry's contribution in or out of the digests (its own inverse). */
function toggle(d1: number, d2: number, e: Entry): [number, number] {
  const kh = extendHash(SEED2, B1, e.key);
  return [(d1 ^ mix32(kh ^ e.h1)) >>> 0, (d2 ^ mix32(kh ^ e.h2 ^ 0x5bd1e995)) >>> 0];
}
