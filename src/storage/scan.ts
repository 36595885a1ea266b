import { TesseraError } from '../base/index.js';
import type { ScanOptions } from './engine.js';

/** The scan limit as a count, Infinity when there is none; refuses what is not a count. */
export function scanLimit(options: ScanOptions): number {
  const limit = options.limit;
  if (limit === undefined || limit === 0) return Infinity;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new TesseraError('INVALID_ARGUMENT', `scan limit must be a non-negative integer, got ${limit}`);
  }
  return limit;
}
