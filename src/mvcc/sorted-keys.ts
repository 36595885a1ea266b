import { assert } from '../base/index.js';

/**
 * Chunk size of SortedKeys. Inserting costs O(log n + chunk), so one chunk of
 * 512 strings keeps inserts cheap without a deep tree.
 */
const SORTED_KEYS_CHUNK_MAX = 512;

/**
 * An ordered set of key strings (see bytes.ts: one code unit per byte) for
 * range scans over the overlay of pending writes (pending.ts): a list of sorted chunks, each at most
 * SORTED_KEYS_CHUNK_MAX long. Simpler than a B-tree, and a new key costs a
 * chunk splice, not a splice of the whole key space.
 */
export class SortedKeys {
  private chunks: string[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  insert(key: string): void {
    if (this.chunks.length === 0) {
      this.chunks.push([key]);
      this.count = 1;
      return;
    }
    const ci = this.chunkFor(key);
    const chunk = this.chunks[ci]!;
    const i = lowerBound(chunk, key);
    assert(chunk[i] !== key, 'SortedKeys.insert: key already present');
    chunk.splice(i, 0, key);
    this.count++;
    if (chunk.length > SORTED_KEYS_CHUNK_MAX) {
      this.chunks.splice(ci + 1, 0, chunk.splice(chunk.length >> 1));
    }
  }

  delete(key: string): void {
    assert(this.chunks.length > 0, 'SortedKeys.delete on an empty set');
    const ci = this.chunkFor(key);
    const chunk = this.chunks[ci]!;
    const i = lowerBound(chunk, key);
    assert(chunk[i] === key, 'SortedKeys.delete: key absent');
    chunk.splice(i, 1);
    this.count--;
    if (chunk.length === 0) this.chunks.splice(ci, 1);
  }

  /** Calls `visit` on keys ≥ start and < end (end undefined or empty: no upper bound), ascending, until it returns false. */
  forEachInRange(start: string, end: string | undefined, visit: (key: string) => boolean | void): void {
    const bounded = end !== undefined && end.length > 0;
    for (let ci = this.chunks.length === 0 ? 0 : this.chunkFor(start); ci < this.chunks.length; ci++) {
      const chunk = this.chunks[ci]!;
      for (let i = ci === 0 || chunk[0]! < start ? lowerBound(chunk, start) : 0; i < chunk.length; i++) {
        const key = chunk[i]!;
        if ((bounded && key >= end) || visit(key) === false) return;
      }
    }
  }

  *[Symbol.iterator](): IterableIterator<string> {
    for (const chunk of this.chunks) yield* chunk;
  }

  /** The chunk that holds `key` or would: the last chunk whose first key is ≤ key, else the first. */
  private chunkFor(key: string): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid]![0]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function lowerBound(sorted: readonly string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
