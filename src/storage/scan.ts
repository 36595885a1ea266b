import { TesseraError } from '../base/index.js';
import { MAX_VALUE_HEAD_BYTES, type KeyValue, type ScanOptions, type VisitOptions, type Visitor } from './engine.js';

/** The scan limit as a count, Infinity when there is none; refuses what is not a count. */
export function scanLimit(options: ScanOptions): number {
  const limit = options.limit;
  if (limit === undefined || limit === 0) return Infinity;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new TesseraError('INVALID_ARGUMENT', `scan limit must be a non-negative integer, got ${limit}`);
  }
  return limit;
}

/** The visit's value head length, undefined for whole values; refuses what is out of range. */
export function valueHeadBytes(options: VisitOptions): number | undefined {
  const n = options.valueHeadBytes;
  if (n === undefined) return undefined;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_VALUE_HEAD_BYTES) {
    throw new TesseraError('INVALID_ARGUMENT', `visit valueHeadBytes must be an integer in [1, ${MAX_VALUE_HEAD_BYTES}], got ${n}`);
  }
  return n;
}

/**
 * A visit over a scan's pairs: for paths where the engine has nothing
 * cheaper (the memory engine, and LMDB with staged batches over it). Cutting
 * the value head shares the value's memory; callers treat it as borrowed.
 */
export function visitPairs(pairs: Iterable<KeyValue>, options: VisitOptions, visitor: Visitor): void {
  const head = valueHeadBytes(options);
  for (const { key, value } of pairs) {
    const shown = head === undefined || value.length <= head ? value : value.subarray(0, head);
    if (visitor(key, shown, value.length) === false) return;
  }
}

/** A count by visiting, for engines and paths with nothing cheaper. */
export function countByVisit(view: { visit(options: VisitOptions, visitor: Visitor): void }, options: ScanOptions): number {
  let n = 0;
  view.visit({ ...options, valueHeadBytes: 1 }, () => {
    n++;
  });
  return n;
}
