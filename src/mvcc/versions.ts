import { TesseraError } from '../base/index.js';
import type { VisitOptions, Visitor } from '../storage/engine.js';
import { type KeyInterval, compareBytes } from './bytes.js';
import {
  type KeySpan,
  dataKeyAtMain,
  dataKeyAtMainOf,
  dataKeyBounds,
  dataKeyMain,
  dataKeyPrefix,
  dataKeyPrefixBytes,
  dataKeyVersionsEnd,
  RECORD_HEAD_BYTES,
  spanContains,
  versionsEndOfDataKey,
} from './codec.js';

/**
 * Steps over one user key's older changes before a walk seeks past them
 * instead (RocksDB's max_sequential_skip_in_iterations is 8 as well): a key
 * with a few versions costs a few steps, one with thousands costs a seek.
 */
export const VERSION_STEPS_BEFORE_SEEK = 8;

/** What the walks read: the engine with the store's pending writes laid over it (PendingWrites). */
export interface VersionView {
  visit(options: VisitOptions, visitor: Visitor): void;
}

/** One stored change a walk found: its `d` key and raw record, and where the key's revision starts. */
export interface VersionHead {
  readonly dataKey: Uint8Array;
  /**
   * The stored record; in a heads-only walk only its first RECORD_HEAD_BYTES
   * bytes (enough for isTombstoneRecord), borrowed: valid during the visit only.
   */
  readonly raw: Uint8Array;
  /** The stored record's length, whether `raw` is all of it or its head. */
  readonly rawBytes: number;
  /** Bytes of the escaped user key and terminator at the start of `dataKey` (dataKeyPrefixBytes). */
  readonly prefixBytes: number;
}

/** How a walk reads. */
export interface WalkOptions {
  /**
   * Each record's head only (VersionHead.raw): for walks that need only the
   * tombstone flag, such as counting. The engine then copies no values.
   */
  readonly headsOnly?: boolean | undefined;
  /** Starts after this user key's changes instead of at the interval's start (a walk that resumes). */
  readonly afterKey?: Uint8Array | undefined;
}

/**
 * The `d` keys a walk over `interval` in a store owning `span` reads: both
 * intersected, so a store never reads another range's keys on a shared
 * engine. Undefined when they do not meet.
 */
function walkBounds(span: KeySpan, interval: KeyInterval, atMain: number, afterKey: Uint8Array | undefined): { start: Uint8Array; end: Uint8Array } | undefined {
  if (interval.end === undefined) {
    // One key: seek straight to its newest change ≤ atMain.
    if (!spanContains(span, interval.start) || afterKey !== undefined) return undefined;
    return { start: dataKeyAtMain(interval.start, atMain), end: dataKeyVersionsEnd(interval.start) };
  }
  const spanBounds = dataKeyBounds(span);
  let lo = dataKeyPrefix(interval.start);
  if (afterKey !== undefined) {
    const resume = dataKeyVersionsEnd(afterKey);
    if (compareBytes(resume, lo) > 0) lo = resume;
  }
  const start = compareBytes(lo, spanBounds.start) > 0 ? lo : spanBounds.start;
  let end = spanBounds.end;
  if (interval.end.length > 0) {
    const hi = dataKeyPrefix(interval.end);
    if (compareBytes(hi, end) < 0) end = hi;
  }
  return compareBytes(start, end) < 0 ? { start, end } : undefined;
}

/**
 * Calls `visit` with the newest change at or below main revision `atMain`
 * of each user key in `interval` (KeyInterval's forms) that `span` holds, in
 * key order, tombstones included, until it returns false. Keys whose every
 * change is above `atMain` are skipped. This is the engine as the key
 * index: a key's changes sort newest first (codec.ts), so the first change
 * at or after "key ~atMain" is the one wanted, and the rest of the key's
 * changes are stepped over, or sought past when there are many.
 */
export function forEachKeyAt(
  view: VersionView,
  span: KeySpan,
  interval: KeyInterval,
  atMain: number,
  visit: (head: VersionHead) => boolean | void,
  options: WalkOptions = {},
): void {
  const bounds = walkBounds(span, interval, atMain, options.afterKey);
  if (bounds === undefined) return;
  const headBytes = options.headsOnly === true ? RECORD_HEAD_BYTES : undefined;
  let seek: Uint8Array | undefined = bounds.start;
  while (seek !== undefined) seek = walkFrom(view, seek, bounds.end, atMain, headBytes, visit);
}

/**
 * One engine visit of forEachKeyAt: returns where to seek next, or undefined
 * when the walk is over. A visit with a callback, not a for-of over a scan:
 * a count visits every key of its range, and generator layers cost several
 * times what the callback does.
 */
function walkFrom(
  view: VersionView,
  start: Uint8Array,
  end: Uint8Array,
  atMain: number,
  valueHeadBytes: number | undefined,
  visit: (head: VersionHead) => boolean | void,
): Uint8Array | undefined {
  let current: Uint8Array | undefined;
  let currentBytes = 0;
  let resolved = false;
  let steps = 0;
  let next: Uint8Array | undefined;
  // Returning false ends the engine's visit (and releases LMDB's cursor).
  view.visit({ start, end, valueHeadBytes }, (key, value, valueBytes) => {
    const prefixBytes = dataKeyPrefixBytes(key);
    if (prefixBytes < 0) throw new TesseraError('CORRUPT_DATA', 'mvcc history: a stored key in the data family is malformed; the data file is damaged');
    if (current !== undefined && prefixBytes === currentBytes && samePrefix(key, current, prefixBytes)) {
      if (++steps >= VERSION_STEPS_BEFORE_SEEK) {
        next = resolved ? versionsEndOfDataKey(key, prefixBytes) : dataKeyAtMainOf(key, prefixBytes, atMain);
        return false;
      }
      if (resolved) return true;
    } else {
      current = key;
      currentBytes = prefixBytes;
      resolved = false;
      steps = 0;
    }
    if (dataKeyMain(key, prefixBytes) > atMain) return true;
    resolved = true;
    return visit({ dataKey: key, raw: value, rawBytes: valueBytes, prefixBytes }) !== false;
  });
  return next;
}

function samePrefix(a: Uint8Array, b: Uint8Array, n: number): boolean {
  for (let i = n - 1; i >= 0; i--) if (a[i] !== b[i]) return false;
  return true;
}

/** The newest change of `key` at or below `atMain`, tombstone or not; undefined if it has none (or `span` does not hold it). One seek, one step. */
export function newestAt(view: VersionView, span: KeySpan, key: Uint8Array, atMain: number): VersionHead | undefined {
  if (!spanContains(span, key)) return undefined;
  let found: VersionHead | undefined;
  view.visit({ start: dataKeyAtMain(key, atMain), end: dataKeyVersionsEnd(key), limit: 1 }, (stored, value) => {
    const prefixBytes = dataKeyPrefixBytes(stored);
    if (prefixBytes < 0) throw new TesseraError('CORRUPT_DATA', 'mvcc history: a stored key in the data family is malformed; the data file is damaged');
    found = { dataKey: stored, raw: value, rawBytes: value.length, prefixBytes };
  });
  return found;
}
