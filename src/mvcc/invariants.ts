import { assert } from '../base/index.js';
import { bytesEqual } from './bytes.js';
import { type StoredRecord, dataKeyBounds, parseDataKey } from './codec.js';
import { MAX_REVISION, type Revision, formatRevision, revisionsEqual } from './revision.js';
import { type MvccState, verifyStoredCounts } from './state.js';

/**
 * Checks that storage is a consistent history (throws AssertionError, or
 * CORRUPT_DATA for what a damaged data file would show):
 * - the meta fields are ordered: finished ≤ compacted ≤ current;
 * - both families hold the meta's count of changes (verifyStoredCounts);
 * - every record passes its CRC, names its own key and revision, and is not
 *   after the current revision;
 * - each key's changes, oldest first, form generations as etcd's keyIndex
 *   would: a put continues the live generation (same create revision,
 *   version + 1, prev naming the change before) or, after a delete, starts
 *   one at version 1; a tombstone ends a live generation;
 * - every change index entry names its stored record;
 * - once physical compaction has finished, storage holds nothing the
 *   compaction drops.
 * It reads the whole history: for tests and diagnostics, not hot paths.
 */
export function checkInvariants(state: MvccState): void {
  state.settle();
  assert(!state.writing, 'checkInvariants during a write transaction');
  assert(state.finishedCompaction <= state.compactedRevision, 'finished compaction ahead of the compacted revision');
  assert(state.compactedRevision <= state.currentRevision, 'compacted revision ahead of the current revision');
  assert((state.compactionCursor === undefined) === (state.finishedCompaction === state.compactedRevision), 'compaction cursor disagrees with progress');
  verifyStoredCounts(state.pending, state.span, state.meta);
  checkKeyHistories(state);
  checkChangeIndex(state);
  if (state.compactionCursor === undefined) checkNothingLeftToCompact(state);
}

/** Walks every `d` record of the span; a key's changes come newest first, so each key's are collected and checked oldest first. */
function checkKeyHistories(state: MvccState): void {
  let key: Uint8Array | undefined;
  let newestFirst: { rev: Revision; record: StoredRecord }[] = [];
  const live = { keys: 0, bytes: 0 };
  const flush = (): void => {
    const newest = newestFirst[0];
    if (newest !== undefined && !newest.record.tombstone) {
      live.keys++;
      live.bytes += newest.record.key.byteLength + newest.record.value.byteLength;
    }
    checkKeyHistory(newestFirst.reverse());
    newestFirst = [];
  };
  for (const { key: stored, value } of state.pending.scan(dataKeyBounds(state.span))) {
    const record = state.recordOf({ dataKey: stored, raw: value, rawBytes: value.length, prefixBytes: 0 });
    const { rev } = parseDataKey(stored)!;
    assert(rev.main <= state.currentRevision, () => `stored change ${formatRevision(rev)} is after the current revision ${state.currentRevision}`);
    if (key !== undefined && !bytesEqual(key, record.key)) flush();
    key = record.key;
    newestFirst.push({ rev, record });
  }
  if (newestFirst.length > 0) flush();
  const kept = state.live;
  if (kept !== undefined) {
    assert(kept.keys === live.keys && kept.bytes === live.bytes, () => `live stats say ${kept.keys} keys of ${kept.bytes} bytes; the store holds ${live.keys} of ${live.bytes}`);
  }
}

function checkKeyHistory(oldestFirst: readonly { rev: Revision; record: StoredRecord }[]): void {
  let previous: { rev: Revision; record: StoredRecord } | undefined;
  for (const change of oldestFirst) {
    const { rev, record } = change;
    const where = formatRevision(rev);
    if (record.tombstone) {
      assert(record.createRevision === 0 && record.version === 0 && record.lease === 0, () => `tombstone ${where} carries a create revision, version or lease`);
      assert(previous === undefined || !previous.record.tombstone, () => `tombstone ${where} follows a tombstone`);
    } else if (previous === undefined) {
      assert(record.version >= 1 && record.createRevision >= 1 && record.createRevision <= rev.main, () => `record ${where} create revision ${record.createRevision} or version ${record.version} impossible`);
    } else if (previous.record.tombstone) {
      assert(record.version === 1 && record.createRevision === rev.main && record.prev === undefined, () => `record ${where} after a delete does not start a generation`);
    } else {
      assert(record.createRevision === previous.record.createRevision, () => `record ${where} create revision ${record.createRevision}, the generation's is ${previous!.record.createRevision}`);
      assert(record.version === previous.record.version + 1, () => `record ${where} version ${record.version} does not follow ${previous!.record.version}`);
    }
    if (previous !== undefined && !previous.record.tombstone) {
      assert(record.prev !== undefined && revisionsEqual(record.prev, previous.rev), () => `record ${where} names another previous change than the stored one`);
    }
    previous = change;
  }
}

/** Every change index entry names a stored record of its key and revision (with the equal counts verifyStoredCounts checks, a one-to-one match). */
function checkChangeIndex(state: MvccState): void {
  for (const change of state.changes(0, MAX_REVISION)) {
    assert(change.rev.main <= state.currentRevision, () => `change index entry ${formatRevision(change.rev)} is after the current revision`);
    state.loadChange(change);
  }
}

function checkNothingLeftToCompact(state: MvccState): void {
  for (const change of state.changes(0, state.compactedRevision + 1)) {
    assert(state.holds(change.key, change.rev), () => `compacted record ${formatRevision(change.rev)} still stored`);
  }
}
