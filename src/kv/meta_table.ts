import { assert, TesseraError } from '../base/index.js';
import { compareBytes } from '../mvcc/index.js';
import type { StorageEngine, WriteBatch } from '../storage/engine.js';
import { type RangeId, keys } from './keys.js';
import { type RangeDescriptor, decodeDescriptor, encodeDescriptor } from './range_map.js';

/** Most descriptors one meta-update command may carry (a split gives two, a merge one; a repair tiles what it finds). */
export const MAX_META_UPDATE_DESCRIPTORS = 64;

/** Whether descriptor `a`'s epoch is older than `b`'s (version first, then membership). */
export function epochOlder(a: RangeDescriptor, b: RangeDescriptor): boolean {
  return a.epoch.version < b.epoch.version || (a.epoch.version === b.epoch.version && a.epoch.confVersion < b.epoch.confVersion);
}

function overlaps(a: RangeDescriptor, b: RangeDescriptor): boolean {
  const aEndsBeforeB = a.end !== undefined && compareBytes(a.end, b.start) <= 0;
  const bEndsBeforeA = b.end !== undefined && compareBytes(b.end, a.start) <= 0;
  return !aEndsBeforeB && !bEndsBeforeA;
}

/** Whether `n` is `old` cut to a strict part of its keys: same range and epoch, bounds inside and not equal. */
export function isRemainderOf(n: RangeDescriptor, old: RangeDescriptor): boolean {
  if (n.rangeId !== old.rangeId || n.epoch.version !== old.epoch.version || n.epoch.confVersion !== old.epoch.confVersion) return false;
  const startInside = compareBytes(n.start, old.start) >= 0;
  const endInside = old.end === undefined || (n.end !== undefined && compareBytes(n.end, old.end) <= 0);
  const same = compareBytes(n.start, old.start) === 0 && sameEnd(n.end, old.end);
  return startInside && endInside && !same;
}

/** The parts of `e`'s keys before `d`'s and after them, as copies of `e` (remainders, see MetaTable.update). */
export function remaindersAround(e: RangeDescriptor, d: RangeDescriptor): RangeDescriptor[] {
  const out: RangeDescriptor[] = [];
  if (compareBytes(e.start, d.start) < 0) out.push({ ...e, end: e.end === undefined || compareBytes(e.end, d.start) > 0 ? d.start : e.end });
  if (d.end !== undefined && (e.end === undefined || compareBytes(e.end, d.end) > 0)) out.push({ ...e, start: compareBytes(e.start, d.end) > 0 ? e.start : d.end });
  return out;
}

function sameEnd(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return compareBytes(a, b) === 0;
}

/** Why `sorted` (by start) does not cover [start, end) exactly, once, or undefined when it does. */
export function tilingProblem(sorted: readonly RangeDescriptor[], start: Uint8Array, end: Uint8Array | undefined): string | undefined {
  if (sorted.length === 0) return 'no descriptors';
  if (compareBytes((sorted[0] as RangeDescriptor).start, start) !== 0) return `the first starts at another key than ${Buffer.from(start).toString('hex')}`;
  for (let i = 0; i + 1 < sorted.length; i++) {
    const a = sorted[i] as RangeDescriptor;
    const b = sorted[i + 1] as RangeDescriptor;
    if (a.end === undefined || compareBytes(a.end, b.start) !== 0) return `a gap or an overlap between ranges ${a.rangeId} and ${b.rangeId}`;
  }
  return sameEnd((sorted[sorted.length - 1] as RangeDescriptor).end, end) ? undefined : 'the last ends at another key';
}

/**
 * The meta range's descriptor table (issue 13: "descriptors live in the
 * meta range"): a copy of every range's descriptor, keyed by start key in
 * the meta range's own state (`keys.metaDescriptor`), so it is replicated
 * and carried by the meta range's snapshots. It always partitions the key
 * space: an update replaces the descriptors it overlaps only if it covers
 * exactly the same keys and every one it replaces is older (a split
 * replaces the parent by its two halves, a merge two neighbours by one, a
 * membership change one by its next epoch); anything else is refused
 * alike on every replica. Ranges update it after they change (a split,
 * then a meta-update), so it may lag behind them, never contradict itself.
 */
export class MetaTable {
  /** Sorted by start key; loaded on first use, then kept right by `update` (a batch is not readable before it is staged). A new array on every change, never changed in place: callers may cache what they derive from one (see byRangeId). */
  private entries: RangeDescriptor[] | undefined;
  /** byRangeId's answer, and the entries it was made from. */
  private byId: { readonly from: readonly RangeDescriptor[]; readonly map: ReadonlyMap<RangeId, RangeDescriptor> } | undefined;

  constructor(
    private readonly engine: StorageEngine,
    private readonly rangeId: RangeId,
  ) {}

  /** Every descriptor, by start key. */
  all(): readonly RangeDescriptor[] {
    if (this.entries === undefined) {
      const out: RangeDescriptor[] = [];
      for (const { value } of this.engine.scan({ start: keys.metaDescriptorStart(this.rangeId), end: keys.metaDescriptorEnd(this.rangeId) })) out.push(decodeDescriptor(value));
      const whole = out.length === 0 ? undefined : tilingProblem(out, new Uint8Array(0), undefined);
      if (whole !== undefined) throw new TesseraError('CORRUPT_DATA', `range ${this.rangeId}: the stored meta table does not partition the key space: ${whole}`);
      this.entries = out;
    }
    return this.entries;
  }

  /** Every descriptor by range id, made again only when the table changed: replica GC and routing ask every second, and a node may hold 10,000 ranges. */
  byRangeId(): ReadonlyMap<RangeId, RangeDescriptor> {
    const all = this.all();
    if (this.byId?.from !== all) this.byId = { from: all, map: new Map(all.map((d) => [d.rangeId, d])) };
    return this.byId.map;
  }

  /** The descriptor holding `key`, if the table has one. */
  lookup(key: Uint8Array): RangeDescriptor | undefined {
    // Binary search for the last entry starting at or before `key`: repairMetaTable asks this of
    // every range a node leads every second, and a linear scan over 10,000 entries made that the
    // largest cost of an idle node (ADR 0010's benchmark).
    const all = this.all();
    let lo = 0;
    let hi = all.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareBytes((all[mid] as RangeDescriptor).start, key) > 0) hi = mid;
      else lo = mid + 1;
    }
    const found = all[lo - 1];
    return found !== undefined && (found.end === undefined || compareBytes(key, found.end) < 0) ? found : undefined;
  }

  /** The descriptors whose keys overlap `d`'s, by start key. */
  overlapping(d: RangeDescriptor): RangeDescriptor[] {
    const all = this.all();
    return all.slice(...this.overlapBounds(all, d.start, d.end));
  }

  /**
   * The slice [lo, hi) of `all` overlapping [start, end), found by binary
   * search: the table tiles the key space, so ends rise with starts. A
   * split of one range among 10,000 walked and sorted the whole table on
   * every replica (4 ms an update at 10,000 ranges), which made setting up
   * many ranges quadratic.
   */
  private overlapBounds(all: readonly RangeDescriptor[], start: Uint8Array, end: Uint8Array | undefined): [number, number] {
    const firstAtOrAfter = (pred: (d: RangeDescriptor) => boolean): number => {
      let lo = 0;
      let hi = all.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (pred(all[mid] as RangeDescriptor)) hi = mid;
        else lo = mid + 1;
      }
      return lo;
    };
    const lo = firstAtOrAfter((d) => d.end === undefined || compareBytes(d.end, start) > 0);
    const hi = end === undefined ? all.length : firstAtOrAfter((d) => compareBytes(d.start, end) >= 0);
    return [lo, Math.max(lo, hi)];
  }

  /** The first range's entry at a founder's bootstrap. */
  seed(batch: WriteBatch, d: RangeDescriptor): void {
    assert(this.all().length === 0, 'the meta table is seeded once');
    this.put(batch, d);
  }

  /**
   * Replaces the descriptors `incoming` overlaps by `incoming`, if it tiles
   * exactly their keys and is newer than each; returns 'stale' when some
   * stored descriptor is as new (an update already applied, or overtaken),
   * or why the update is refused. One exception to "newer": a remainder, a
   * copy of a replaced descriptor (same range, same epoch) cut to part of
   * its keys, beside a newer descriptor that took the rest. A node that
   * holds one half of a split whose update was lost, and not the other
   * (placement moved it), repairs the table with its half and the stale
   * entry's remainder; the other half's leader replaces the remainder
   * later (ADR 0012). At most one remainder per replaced descriptor, so a
   * range is never listed twice.
   */
  update(batch: WriteBatch, incoming: readonly RangeDescriptor[]): 'applied' | 'stale' | string {
    const sorted = [...incoming].sort((a, b) => compareBytes(a.start, b.start));
    const first = sorted[0];
    if (first === undefined) return 'no descriptors';
    const last = sorted[sorted.length - 1] as RangeDescriptor;
    const own = tilingProblem(sorted, first.start, last.end);
    if (own !== undefined) return `the update does not tile its keys: ${own}`;
    const all = this.all();
    const [lo, hi] = this.overlapBounds(all, first.start, last.end);
    const replaced = all.slice(lo, hi);
    const staleAgainst = (old: RangeDescriptor): boolean => {
      const over = sorted.filter((n) => overlaps(old, n));
      const remainders = over.filter((n) => isRemainderOf(n, old));
      if (remainders.length > 1 || (remainders.length > 0 && remainders.length === over.length)) return true;
      return over.some((n) => !remainders.includes(n) && !epochOlder(old, n));
    };
    if (replaced.some(staleAgainst)) return 'stale';
    const theirs = tilingProblem(replaced, first.start, last.end);
    if (theirs !== undefined) return `the update covers other keys than the descriptors it replaces: ${theirs}`;
    for (const old of replaced) batch.delete(keys.metaDescriptor(this.rangeId, old.start));
    for (const d of sorted) batch.put(keys.metaDescriptor(this.rangeId, d.start), encodeDescriptor(d));
    const next = [...all.slice(0, lo), ...sorted, ...all.slice(hi)];
    this.entries = next;
    // Issue 13's oracle, kept on in production: the table partitions the key space after every update.
    // It did before (checked at load, below), and the update tiles exactly what it replaced, so the
    // seams with the neighbours on either side are all that can break.
    const window = next.slice(Math.max(0, lo - 1), Math.min(next.length, lo + sorted.length + 1));
    const windowEnd = lo + sorted.length < next.length ? (window[window.length - 1] as RangeDescriptor).end : undefined;
    const seams = tilingProblem(window, lo > 0 ? (window[0] as RangeDescriptor).start : new Uint8Array(0), windowEnd);
    assert(seams === undefined, () => `the meta table no longer partitions the key space: ${seams}`);
    return 'applied';
  }

  /** A snapshot replaced the meta range's state: read the table again. */
  forget(): void {
    this.entries = undefined;
  }

  private put(batch: WriteBatch, d: RangeDescriptor): void {
    batch.put(keys.metaDescriptor(this.rangeId, d.start), encodeDescriptor(d));
    this.entries = [...this.all(), d].sort((a, b) => compareBytes(a.start, b.start));
  }
}
