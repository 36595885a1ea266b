import { assert } from '../base/index.js';
import type { WriteBatch } from '../storage/engine.js';
import { compactFloor } from './codec.js';
import { mvccError } from './errors.js';
import { toKeyString } from './bytes.js';
import { MAX_SUB_REVISION, type Revision, revisionsEqual } from './revision.js';
import type { ChangeRef, MvccState } from './state.js';

/**
 * Stored changes examined per compaction step (etcd's
 * defaultCompactionBatchLimit is 1000). A step's deletions go into one batch,
 * so this bounds the batch size and the time one step holds the loop.
 */
export const COMPACTION_BATCH_LIMIT = 1000;

/**
 * Compaction at `revision` (etcd's Compact). The logical part happens at
 * once and identically on every replica: reads below `revision` fail from
 * now on, and what compaction keeps (MvccState.holds: the newest change
 * ≤ revision of every key that is still live, and a tombstone at exactly
 * `revision`) is decided from the stored records alone. The physical deletion of the dropped records then proceeds in
 * steps of at most `limit` records; the first step runs here. Returns true
 * when the physical deletion is complete.
 */
export function compact(state: MvccState, revision: number, batch: WriteBatch, limit: number): boolean {
  // Any integer is a valid request, checked as etcd's updateCompactRev does: against -1 until a
  // compaction is applied (so the first Compact(0) is a no-op that succeeds), then against the
  // compacted revision. A store starts at revision 1, so compacting at 1 is allowed at once.
  assert(Number.isSafeInteger(revision), () => `compaction revision must be a safe integer, got ${revision}`);
  assert(!state.writing, 'compact during a write transaction');
  if (revision <= compactFloor(state)) throw mvccError('COMPACTED');
  if (revision > state.currentRevision) throw mvccError('FUTURE_REVISION');
  state.compactedRevision = revision;
  state.everCompacted = true;
  // A newer compaction restarts the physical pass from the beginning: records
  // kept by the older one may be superseded now. Deleting is idempotent.
  state.compactionCursor = { main: 0, sub: 0 };
  state.persistMeta(batch);
  return compactStep(state, batch, limit);
}

/**
 * One bounded step of physical compaction: walks the `e` family from the
 * cursor and deletes the stored changes at or below the compacted revision
 * that compaction does not keep (MvccState.holds, one seek per key the step
 * meets: a key's newest change at or below it is looked up once). Returns true
 * when nothing is left to delete. Progress is in the meta record, so a
 * restart resumes where the last committed step ended.
 */
export function compactStep(state: MvccState, batch: WriteBatch, limit: number): boolean {
  assert(Number.isSafeInteger(limit) && limit > 0, () => `compaction step limit must be positive, got ${limit}`);
  assert(!state.writing, 'compaction step during a write transaction');
  const cursor = state.compactionCursor;
  if (cursor === undefined) return true;
  let examined = 0;
  let last: Revision | undefined;
  let done = true;
  // Per key: the revision compaction keeps of it at or below the compacted revision, or null. The
  // kept change is never deleted, so an answer stays right for the whole step.
  const kept = new Map<string, Revision | null>();
  for (const change of state.changes(0, state.compactedRevision + 1, cursor)) {
    if (examined === limit) {
      done = false;
      break;
    }
    examined++;
    last = change.rev;
    if (!keeps(state, kept, change)) state.deleteRecord(batch, change);
  }
  if (done) {
    state.finishedCompaction = state.compactedRevision;
    state.compactionCursor = undefined;
  } else {
    state.compactionCursor = after(last!);
  }
  state.persistMeta(batch);
  return done;
}

function keeps(state: MvccState, kept: Map<string, Revision | null>, change: ChangeRef): boolean {
  const keyString = toKeyString(change.key);
  let rev = kept.get(keyString);
  if (rev === undefined) {
    rev = state.keptRevision(change.key);
    kept.set(keyString, rev);
  }
  return rev !== null && revisionsEqual(rev, change.rev);
}

function after(rev: Revision): Revision {
  return rev.sub < MAX_SUB_REVISION ? { main: rev.main, sub: rev.sub + 1 } : { main: rev.main + 1, sub: 0 };
}

