import { latin1String } from '../../base/index.js';
import { compareBytes } from '../bytes.js';
import type { KeyValue } from '../engine.js';

/**
 * The LMDB engine's overlay: the writes of staged batches (StorageEngine.stage),
 * visible to reads but not yet in LMDB; the next commit writes them, ahead of
 * its own batch and in the same transaction, and the overlay empties. Reads
 * consult the overlay first, then LMDB.
 */
export interface OverlayEntry {
  /** The value, or undefined for a deletion. */
  readonly value: Uint8Array | undefined;
}

type Pair = readonly [Uint8Array, OverlayEntry];

/** A write as it goes to LMDB. */
export interface OverlayWrite {
  readonly key: Uint8Array;
  readonly value: Uint8Array | undefined;
}

/** A byte key as a Map key. */
export function keyString(key: Uint8Array): string {
  return latin1String(key);
}

/**
 * One batch's writes, keyed for O(1) lookup. A layer is filled while its
 * batch is resolved and never changes after; its sorted form is made on the
 * first scan that needs it.
 */
export class OverlayLayer {
  private readonly writes = new Map<string, Pair>();
  private sorted: readonly Pair[] | undefined;

  get size(): number {
    return this.writes.size;
  }

  set(key: Uint8Array, value: Uint8Array | undefined): void {
    this.writes.set(keyString(key), [key, { value }]);
    this.sorted = undefined;
  }

  /** The layer's final write to each key: what its batch leaves in LMDB, whatever order the writes go in. */
  *finalWrites(): IterableIterator<OverlayWrite> {
    for (const [key, entry] of this.writes.values()) yield { key, value: entry.value };
  }

  /** A new layer holding `below`'s writes overwritten by `above`'s. */
  static merged(below: OverlayLayer, above: OverlayLayer): OverlayLayer {
    const layer = new OverlayLayer();
    for (const [k, pair] of below.writes) layer.writes.set(k, pair);
    for (const [k, pair] of above.writes) layer.writes.set(k, pair);
    return layer;
  }

  getByString(key: string): OverlayEntry | undefined {
    return this.writes.get(key)?.[1];
  }

  /** Whether the layer writes a key in [start, end). */
  touches(start: Uint8Array, end: Uint8Array | undefined): boolean {
    this.sorted ??= [...this.writes.values()].sort((a, b) => compareBytes(a[0], b[0]));
    const lo = lowerBound(this.sorted, start);
    return lo < this.sorted.length && (end === undefined || compareBytes((this.sorted[lo] as Pair)[0], end) < 0);
  }

  /** Entries with keys in [start, end), ascending. */
  range(start: Uint8Array, end: Uint8Array | undefined): readonly Pair[] {
    this.sorted ??= [...this.writes.values()].sort((a, b) => compareBytes(a[0], b[0]));
    const sorted = this.sorted;
    const lo = lowerBound(sorted, start);
    const hi = end === undefined ? sorted.length : lowerBound(sorted, end);
    return lo === 0 && hi === sorted.length ? sorted : sorted.slice(lo, hi);
  }
}

/**
 * The overlay: the layers of the staged batches, oldest first. It is
 * immutable (staging makes a new one with one more layer, a commit starts
 * from the empty one), so a snapshot or a scan keeps the overlay it started
 * with at no cost.
 */
export class Overlay {
  static readonly empty = new Overlay([]);

  private constructor(private readonly layers: readonly OverlayLayer[]) {}

  get isEmpty(): boolean {
    return this.layers.length === 0;
  }

  /** Every layer's writes, oldest layer first: what the next commit writes ahead of its own batch. */
  *writes(): IterableIterator<OverlayWrite> {
    for (const layer of this.layers) yield* layer.finalWrites();
  }

  /** The newest write to `key`, if a layer holds one. */
  get(key: Uint8Array): OverlayEntry | undefined {
    if (this.layers.length === 0) return undefined;
    const k = keyString(key);
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const entry = (this.layers[i] as OverlayLayer).getByString(k);
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  /**
   * Whether any layer writes a key in [start, end): a read of a range none
   * touches is LMDB's alone. A binary search per layer (its sorted form is
   * made once), instead of a merge's generator layers per read.
   */
  touches(start: Uint8Array, end: Uint8Array | undefined): boolean {
    for (const layer of this.layers) if (layer.touches(start, end)) return true;
    return false;
  }

  /** The number of writes the layers hold (a key written in two layers counts twice). */
  get size(): number {
    let n = 0;
    for (const layer of this.layers) n += layer.size;
    return n;
  }

  /**
   * The overlay with `layer` on top. Staged batches stay until a checkpoint
   * (engine.ts), hundreds of them, and a read looks into every layer, so
   * layers are merged as a binary counter merges carries: while the newest
   * is at least as large as the one below, the two become one. Layers then
   * shrink going up, there are O(log n) of them, and each write is copied
   * O(log n) times. Merging makes new layers; the old ones, which snapshots
   * may hold, never change.
   */
  with(layer: OverlayLayer): Overlay {
    const layers = [...this.layers, layer];
    while (layers.length >= 2 && (layers[layers.length - 1] as OverlayLayer).size >= (layers[layers.length - 2] as OverlayLayer).size) {
      const top = layers.pop() as OverlayLayer;
      const below = layers.pop() as OverlayLayer;
      layers.push(OverlayLayer.merged(below, top));
    }
    return new Overlay(layers);
  }

  /** The newest write to each key in [start, end), in scan order. */
  entries(range: { readonly start: Uint8Array; readonly end?: Uint8Array | undefined; readonly reverse?: boolean | undefined }): Pair[] {
    const { start, end } = range;
    let out: Pair[];
    if (this.layers.length === 1) {
      out = [...(this.layers[0] as OverlayLayer).range(start, end)];
    } else {
      const newest = new Map<string, Pair>();
      for (const layer of this.layers) for (const pair of layer.range(start, end)) newest.set(keyString(pair[0]), pair);
      out = [...newest.values()].sort((a, b) => compareBytes(a[0], b[0]));
    }
    return range.reverse === true ? out.reverse() : out;
  }
}

function lowerBound(sorted: readonly Pair[], key: Uint8Array): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareBytes((sorted[mid] as Pair)[0], key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Merges the overlay's entries with LMDB's, both in scan order (ascending, or
 * descending when `reverse`): the overlay wins on equal keys and its
 * deletions hide LMDB's entries. Stops after `limit` results.
 */
export function* mergeScan(
  overlay: Iterable<Pair>,
  base: Iterable<KeyValue>,
  reverse: boolean,
  limit: number,
): Generator<KeyValue> {
  const direction = reverse ? -1 : 1;
  const over = overlay[Symbol.iterator]();
  const under = base[Symbol.iterator]();
  let o = over.next();
  let u = under.next();
  let emitted = 0;
  try {
    while (emitted < limit && !(o.done && u.done)) {
      const c = o.done ? 1 : u.done ? -1 : direction * compareBytes(o.value[0], u.value.key);
      if (c <= 0) {
        const [key, entry] = o.value as Pair;
        if (c === 0) u = under.next();
        o = over.next();
        if (entry.value === undefined) continue;
        yield { key, value: entry.value };
      } else {
        yield u.value as KeyValue;
        u = under.next();
      }
      emitted++;
    }
  } finally {
    // Ending early must release LMDB's cursor (and its read transaction) at once.
    under.return?.();
  }
}
