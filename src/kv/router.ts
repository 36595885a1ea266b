import { TesseraError } from '../base/index.js';
import { type KeyInterval, compareBytes } from '../mvcc/index.js';
import type { RangeId } from './keys.js';
import type { KeyBounds } from './state_machine.js';

/** A part of a request's keys that one range holds: the request's interval clipped to the range's bounds. */
export interface RoutedSpan {
  readonly rangeId: RangeId;
  readonly start: Uint8Array;
  /** Exclusive; undefined is the end of the key space. */
  readonly end: Uint8Array | undefined;
}

/** A range this node holds, as the router sees it. */
export interface RoutableRange {
  readonly rangeId: RangeId;
  readonly bounds: KeyBounds;
}

/**
 * Finds the range that holds a key, from the bounds of the ranges this node
 * has replicas of (every node holds every range until placement moves them,
 * issue 13). The sorted list is rebuilt when a split or a snapshot changes
 * the bounds (`invalidate`). A key no replica here holds (the right half of
 * a split this node learned of from a snapshot, not set up yet) is
 * RANGE_UNAVAILABLE, which is transient.
 */
export class Router {
  private sorted: RoutableRange[] | undefined;
  private gen = 0;

  constructor(private readonly ranges: () => Iterable<RoutableRange>) {}

  invalidate(): void {
    this.sorted = undefined;
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
      out.push({ rangeId: r.rangeId, start: at, end: partEnd });
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
