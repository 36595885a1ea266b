import { compareBytes } from '../bytes.js';
import type { KeyValue } from '../engine.js';
import type { SortedMap } from '../sorted_map.js';

/**
 * The LMDB engine's overlay: every write of a batch that is committed (to
 * tessera) but not yet durable in LMDB. lmdb-js commits asynchronously, and
 * only that path shares one disk flush among many transactions; so reads
 * consult the overlay first, then LMDB. An entry leaves the overlay once its
 * batch is durable, by which time LMDB's own read transaction shows it.
 *
 * Reading the overlay over any LMDB state that already holds some of the
 * overlay's batches gives the same answer as over one that holds none: the
 * newest write to a key wins either way. That is why snapshots may pair a
 * captured overlay with whatever LMDB read transaction is current.
 */
export interface OverlayEntry {
  /** Commit sequence number of the batch that wrote it. */
  readonly seq: number;
  /** The value, or undefined for a deletion. */
  readonly value: Uint8Array | undefined;
}

export type Overlay = SortedMap<OverlayEntry>;

/**
 * Merges the overlay's entries with LMDB's, both in scan order (ascending, or
 * descending when `reverse`): the overlay wins on equal keys and its
 * deletions hide LMDB's entries. Stops after `limit` results.
 */
export function* mergeScan(
  overlay: Iterable<[Uint8Array, OverlayEntry]>,
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
        const [key, entry] = o.value as [Uint8Array, OverlayEntry];
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
