import { assert } from '../base/index.js';
import { intervalContains, keyInterval } from './bytes.js';
import type { StoredRecord } from './codec.js';
import { mvccError } from './errors.js';
import { recordKeyValue } from './range.js';
import type { MvccState } from './state.js';
import { type MvccEvent, tombstoneKeyValue } from './write-txn.js';

/**
 * Stored changes one events() call examines before it stops at the next
 * revision boundary. It bounds the work of one call for a watcher catching
 * up; the watcher calls again from `nextRevision`.
 */
export const EVENTS_SCAN_LIMIT = 10_000;

export interface EventsOptions {
  /** First revision to return, inclusive. Must not be below the compacted revision. */
  readonly fromRevision: number;
  /** etcd's (key, range_end): absent/empty range_end = one key, "\0" = every key ≥ key. */
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array | undefined;
  /** Attach each change's previous value, as a watch with prev_kv does. */
  readonly prevKv?: boolean | undefined;
  /** Stop after examining about this many stored changes (always at a revision boundary). */
  readonly scanLimit?: number | undefined;
  /** Last revision to return, inclusive (default the current revision): a watch over many ranges reads each up to their common closed revision. */
  readonly toRevision?: number | undefined;
}

export interface EventsResult {
  /** The changes in [fromRevision, nextRevision) to keys in the range, in revision order. */
  readonly events: MvccEvent[];
  /** Where to continue: the last revision read (toRevision, or currentRevision) + 1 once the history is exhausted. */
  readonly nextRevision: number;
}

/**
 * The history of a key range from storage, for watchers that start in the
 * past (etcd's rangeEvents). Never splits a revision between calls, so a
 * watcher never sees half a transaction.
 */
export function readEvents(state: MvccState, options: EventsOptions): EventsResult {
  const from = options.fromRevision;
  assert(Number.isSafeInteger(from) && from >= 1, () => `events: fromRevision must be a positive safe integer, got ${from}`);
  if (from < state.compactedRevision) throw mvccError('COMPACTED');
  const interval = keyInterval(options.key, options.rangeEnd);
  const scanLimit = options.scanLimit ?? EVENTS_SCAN_LIMIT;
  const upTo = Math.min(state.currentRevision, options.toRevision ?? Number.MAX_SAFE_INTEGER);
  if (from > upTo) return { events: [], nextRevision: from };
  const events: MvccEvent[] = [];
  let examined = 0;
  let lastMain = 0;
  for (const change of state.changes(from, upTo + 1)) {
    const { rev } = change;
    if (examined >= scanLimit && rev.main !== lastMain) return { events, nextRevision: rev.main };
    examined++;
    lastMain = rev.main;
    // The change index names the key, so a change outside the interval costs no record read.
    if (!intervalContains(interval, change.key)) continue;
    // At the compacted revision itself, storage may still hold changes the
    // compaction dropped (physical compaction lags); skip them so every
    // replica answers alike.
    if (!state.holdsStored(change)) continue;
    events.push(toEvent(state, state.loadChange(change), rev.main, options.prevKv === true));
  }
  return { events, nextRevision: upTo + 1 };
}

function toEvent(state: MvccState, record: StoredRecord, main: number, withPrev: boolean): MvccEvent {
  const kv = record.tombstone ? tombstoneKeyValue(record.key, main) : recordKeyValue(record);
  const type = record.tombstone ? 'DELETE' : 'PUT';
  // The previous value is shown only while compaction keeps it, which is
  // the same on every replica however far physical compaction has got.
  if (!withPrev || record.prev === undefined || !state.holds(record.key, record.prev)) return { type, kv };
  return { type, kv, prevKv: recordKeyValue(state.loadRecord(record.key, record.prev)) };
}
