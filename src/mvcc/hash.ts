import { assert } from '../base/index.js';
import { compactFloor } from './codec.js';
import { mvccError } from './errors.js';
import { REVISION_BYTES, writeRevision } from './revision.js';
import type { MvccState } from './state.js';
import { Crc32c } from './checksum.js';

export { Crc32c } from './checksum.js';

export interface HashKVResult {
  /** CRC-32C over the history up to `revision`, as etcd's HashKV response carries. */
  readonly hash: number;
  /** The revision hashed up to. */
  readonly revision: number;
  /** The compacted revision the hash reflects, -1 before any compaction (etcd's); compare hashes only when these agree (etcd's rule). */
  readonly compactRevision: number;
  /** The store's current revision (the response header). */
  readonly currentRevision: number;
}

/**
 * A digest of the key space's history up to `revision` (0: current), for
 * comparing replicas and for the Maintenance HashKV API. It covers every
 * stored change up to `revision` that compaction keeps (MvccState.holds), as
 * (main, sub, record) — so it depends on the compacted revision but not on
 * how far the physical deletion has got, nor on where the store keeps it.
 */
export function hashKV(state: MvccState, revision: number): HashKVResult {
  assert(Number.isSafeInteger(revision), () => `hash revision must be a safe integer, got ${revision}`);
  // etcd 3.4's HashByRev refuses the compacted revision itself too (rev <= compactRev), unlike Range.
  if (revision > 0 && revision <= state.compactedRevision) throw mvccError('COMPACTED');
  if (revision > state.currentRevision) throw mvccError('FUTURE_REVISION');
  const upTo = revision <= 0 ? state.currentRevision : revision;
  const crc = new Crc32c();
  const revBytes = new Uint8Array(REVISION_BYTES);
  // The `e` index gives the changes in revision order, as today's revision-keyed scan did, and the
  // record bytes hashed are the stored ones: the same hash as before the layout moved.
  for (const change of state.changes(0, upTo + 1)) {
    const { rev } = change;
    if (!state.holdsStored(change)) continue;
    writeRevision(revBytes, 0, rev);
    crc.update(revBytes).update(state.loadChangeBytes(change));
  }
  return { hash: crc.digest(), revision: upTo, compactRevision: compactFloor(state), currentRevision: state.currentRevision };
}
