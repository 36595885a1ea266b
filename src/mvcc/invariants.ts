import { assert } from '../base/index.js';
import { bytesEqual } from './bytes.js';
import { type Generation, type KeyHistory, changeCount, revisionAt } from './key-index.js';
import { formatRevision } from './revision.js';
import { type MvccState, rebuildIndex } from './state.js';

/**
 * Checks that the index and storage agree (throws AssertionError):
 * - the meta fields are ordered: finished ≤ compacted ≤ current;
 * - the index's own invariants hold;
 * - every revision in the index has its record, with the same key, the
 *   tombstone flag in the right place and the create revision and version
 *   the index computes;
 * - an index rebuilt from storage equals this one (what open() would build);
 * - every change index entry names its stored record;
 * - once physical compaction has finished, storage holds nothing the index
 *   has dropped.
 * It reads the whole history: for tests and diagnostics, not hot paths.
 */
export function checkInvariants(state: MvccState): void {
  state.settle();
  assert(!state.writing, 'checkInvariants during a write transaction');
  assert(state.finishedCompaction <= state.compactedRevision, 'finished compaction ahead of the compacted revision');
  assert(state.compactedRevision <= state.currentRevision, 'compacted revision ahead of the current revision');
  assert((state.compactionCursor === undefined) === (state.finishedCompaction === state.compactedRevision), 'compaction cursor disagrees with progress');
  state.index.checkInvariants();
  for (const [, history] of state.index.entries()) checkHistoryAgainstStorage(state, history);
  const rebuilt = rebuildIndex(state.pending, state.span, state.meta);
  assert(rebuilt.equals(state.index), 'the index rebuilt from storage differs from the live index');
  checkChangeIndex(state);
  if (state.compactionCursor === undefined) checkNothingLeftToCompact(state);
}

function checkHistoryAgainstStorage(state: MvccState, history: KeyHistory): void {
  for (const g of history.generations) {
    for (let i = 0; i < changeCount(g); i++) {
      const rev = revisionAt(g, i);
      assert(rev.main <= state.currentRevision, () => `index revision ${formatRevision(rev)} after the current revision`);
      const record = state.loadRecord(history.key, rev);
      assert(bytesEqual(record.key, history.key), () => `record ${formatRevision(rev)} belongs to another key`);
      const isTomb = g.closed && i === changeCount(g) - 1;
      assert(record.tombstone === isTomb, () => `record ${formatRevision(rev)} tombstone flag disagrees with the index`);
      if (!isTomb) checkLiveRecord(g, i, record.createRevision, record.version, formatRevision(rev));
    }
  }
}

function checkLiveRecord(g: Generation, i: number, created: number, version: number, where: string): void {
  const lastLive = g.closed ? changeCount(g) - 2 : changeCount(g) - 1;
  assert(created === g.created, () => `record ${where} create revision ${created}, index says ${g.created}`);
  assert(version === g.version - (lastLive - i), () => `record ${where} version ${version} disagrees with the index`);
}

/** Every change index entry names a stored record of its key and revision (with the equal counts rebuildIndex checks, a one-to-one match). */
function checkChangeIndex(state: MvccState): void {
  for (const change of state.changes(0, state.currentRevision + 1)) state.loadChange(change);
}

function checkNothingLeftToCompact(state: MvccState): void {
  for (const change of state.changes(0, state.compactedRevision + 1)) {
    assert(state.indexHolds(change.key, change.rev), () => `compacted record ${formatRevision(change.rev)} still stored`);
  }
}
