import { TesseraError } from '../base/index.js';
import type { KeyValue as EngineKeyValue, ScanOptions } from '../storage/engine.js';
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
  scan(options: ScanOptions): Iterable<EngineKeyValue>;
}

/** One stored change a walk found: its `d` key and raw record, and where the key's revision starts. */
export interface VersionHead {
  readonly dataKey: Uint8Array;
  readonly raw: Uint8Array;
  /** Bytes of the escaped user key and terminator at the start of `dataKey` (dataKeyPrefixBytes). */
  readonly prefixBytes: number;
}

/**
 * The `d` keys a walk over `interval` in a store owning `span` reads: both
 * intersected, so a store never reads another range's keys on a shared
 * engine. Undefined when they do not meet.
 */
function walkBounds(span: KeySpan, interval: KeyInterval, atMain: number): { start: Uint8Array; end: Uint8Array } | undefined {
  if (interval.end === undefined) {
    // One key: seek straight to its newest change ≤ atMain.
    if (!spanContains(span, interval.start)) return undefined;
    return { start: dataKeyAtMain(interval.start, atMain), end: dataKeyVersionsEnd(interval.start) };
  }
  const spanBounds = dataKeyBounds(span);
  const lo = dataKeyPrefix(interval.start);
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
export function forEachKeyAt(view: VersionView, span: KeySpan, interval: KeyInterval, atMain: number, visit: (head: VersionHead) => boolean | void): void {
  const bounds = walkBounds(span, interval, atMain);
  if (bounds === undefined) return;
  let seek: Uint8Array | undefined = bounds.start;
  while (seek !== undefined) seek = walkFrom(view, seek, bounds.end, atMain, visit);
}

/** One scan of forEachKeyAt: returns where to seek next, or undefined when the walk is over. */
function walkFrom(view: VersionView, start: Uint8Array, end: Uint8Array, atMain: number, visit: (head: VersionHead) => boolean | void): Uint8Array | undefined {
  let current: Uint8Array | undefined;
  let currentBytes = 0;
  let resolved = false;
  let steps = 0;
  for (const { key, value } of view.scan({ start, end })) {
    const prefixBytes = dataKeyPrefixBytes(key);
    if (prefixBytes < 0) throw new TesseraError('CORRUPT_DATA', 'mvcc history: a stored key in the data family is malformed; the data file is damaged');
    if (current !== undefined && prefixBytes === currentBytes && samePrefix(key, current, prefixBytes)) {
      if (++steps >= VERSION_STEPS_BEFORE_SEEK) {
        // Leaving the for-of ends the engine's scan (and releases LMDB's cursor).
        return resolved ? versionsEndOfDataKey(key, prefixBytes) : dataKeyAtMainOf(key, prefixBytes, atMain);
      }
      if (resolved) continue;
    } else {
      current = key;
      currentBytes = prefixBytes;
      resolved = false;
      steps = 0;
    }
    if (dataKeyMain(key, prefixBytes) > atMain) continue;
    resolved = true;
    if (visit({ dataKey: key, raw: value, prefixBytes }) === false) return undefined;
  }
  return undefined;
}

function samePrefix(a: Uint8Array, b: Uint8Array, n: number): boolean {
  for (let i = n - 1; i >= 0; i--) if (a[i] !== b[i]) return false;
  return true;
}

/** The newest change of `key` at or below `atMain`, tombstone or not; undefined if it has none (or `span` does not hold it). One seek, one step. */
export function newestAt(view: VersionView, span: KeySpan, key: Uint8Array, atMain: number): VersionHead | undefined {
  if (!spanContains(span, key)) return undefined;
  for (const { key: stored, value } of view.scan({ start: dataKeyAtMain(key, atMain), end: dataKeyVersionsEnd(key), limit: 1 })) {
    const prefixBytes = dataKeyPrefixBytes(stored);
    if (prefixBytes < 0) throw new TesseraError('CORRUPT_DATA', 'mvcc history: a stored key in the data family is malformed; the data file is damaged');
    return { dataKey: stored, raw: value, prefixBytes };
  }
  return undefined;
}
