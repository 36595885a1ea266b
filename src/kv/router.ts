import { TesseraError } from '../base/index.js';
import { type KeyInterval, compareBytes } from '../mvcc/index.js';
import type { NodeId } from '../raft/index.js';
import type { RangeId } from './keys.js';
import type { KeyBounds } from './state_machine.js';

/** A part of a request's keys that one range holds: the request's interval clipped to the range's bounds. */
export interface RoutedSpan {
  readonly rangeId: RangeId;
  readonly start: Uint8Array;
  /** Exclusive; undefined is the end of the key space. */
  readonly end: Uint8Array | undefined;
  /** The nodes holding the range, when this node holds no replica of it (requests are forwarded to them); undefined: held here. */
  readonly remote?: readonly NodeId[] | undefined;
}

/** A range as the router sees it: one this node holds, or one only other nodes hold (`remote`, from the meta table). */
export interface RoutableRange {
  readonly rangeId: RangeId;
  readonly bounds: KeyBounds;
  readonly remote?: readonly NodeId[] | undefined;
}

/**
 * Finds the range that holds a key: the ranges this node has replicas of,
 * and where none of them holds a key, the ranges of the meta table that
 * only other nodes hold (`remote`: their replicas' nodes). The sorted list
 * is rebuilt when a split, a merge, a snapshot or a meta-table update
 * changes the bounds (`invalidate`). A key no range here and no table entry
 * holds (a gap while the table lags behind a split) is RANGE_UNAVAILABLE,
 * which is transient.
 */
export class Router {
  private sorted: RoutableRange[] | undefined;
  private held: RoutableRange[] | undefined;
  private gen = 0;

  constructor(private readonly ranges: () => Iterable<RoutableRange>) {}

  invalidate(): void {
    this.sorted = undefined;
    this.held = undefined;
    this.gen++;
  }

  /** Changes with every `invalidate`: an answer of `over` from an older generation may be out of date. */
  get generation(): number {
    return this.gen;
  }

  /** The ranges in key order. */
  list(): readonly RoutableRange[] {
    this.sorted ??= [...this.ranges()].sort((a, b) => compareBytes(a.bounds.start, b.bounds.start));
    return this.sorted;
  }

  /** The ranges this node holds a replica of, in key order. */
  local(): readonly RoutableRange[] {
    this.held ??= this.list().filter((r) => r.remote === undefined);
    return this.held;
  }

  /** The range holding `key`. */
  rangeOf(key: Uint8Array): RangeId {
    const spans = this.over({ start: key, end: undefined });
    return (spans[0] as RoutedSpan).rangeId;
  }

  /**
   * The ranges holding the keys of `interval` (etcd's form: `end` undefined
   * is the single key `start`, empty is every key from `start` on), in key
   * order, each with the part it holds. An empty interval (end ≤ start)
   * maps to the range of `start` alone, which answers it as empty.
   */
  over(interval: KeyInterval): RoutedSpan[] {
    const list = this.list();
    const start = interval.start;
    const single = interval.end === undefined;
    const end = single ? undefined : interval.end.length === 0 ? undefined : interval.end;
    const out: RoutedSpan[] = [];
    let i = lastStartingAtOrBefore(list, start);
    let at = start;
    for (; i < list.length; i++) {
      const r = list[i] as RoutableRange;
      if (compareBytes(r.bounds.start, at) > 0) break; // a gap: no range here holds `at`
      if (r.bounds.end !== undefined && compareBytes(r.bounds.end, at) <= 0) continue;
      const partEnd = single ? undefined : minEnd(end, r.bounds.end);
      out.push(r.remote === undefined ? { rangeId: r.rangeId, start: at, end: partEnd } : { rangeId: r.rangeId, start: at, end: partEnd, remote: r.remote });
      if (single || r.bounds.end === undefined || (end !== undefined && compareBytes(end, r.bounds.end) <= 0)) return out;
      at = r.bounds.end;
    }
    // Every way of reaching the end of the interval returned above: this is a gap.
    throw new TesseraError('RANGE_UNAVAILABLE', 'no range on this node holds the requested keys yet; retry');
  }
}

function lastStartingAtOrBefore(list: readonly RoutableRange[], key: Uint8Array): number {
  let lo = 0;
  let hi = list.length - 1;
  let found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (compareBytes((list[mid] as RoutableRange).bounds.start, key) <= 0) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

function minEnd(a: Uint8Array | undefined, b: Uint8Array | undefined): Uint8Array | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return compareBytes(a, b) <= 0 ? a : b;
}
