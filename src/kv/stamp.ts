import { readU64, writeU64 } from './keys.js';
import { MAX_REVISION } from './tso.js';

/**
 * The revision stamp a range leader puts on a command before it proposes it
 * (ADR 0009 §3, option 1): an envelope around the command bytes, so the
 * Store stamps without knowing what the command is, and every replica applies
 * the entry at the revision its log holds.
 *
 *   0x00 rev(8, big-endian) command  stamped by the leader that appended it
 *   0x01 command                     wants no stamp (the TSO's own window proposals)
 *   command                          wants a stamp (a proposal as a client's node makes it)
 *
 * A command is a msgpack map (commands.ts), whose first byte is never 0x00 or
 * 0x01, so the three cannot be confused. Entry data comes off the network
 * (a follower forwards proposals), so `openEntry` checks everything.
 */
const STAMPED_TAG = 0x00;
const UNSTAMPED_TAG = 0x01;
const STAMP_HEADER_BYTES = 9;

/** The lowest revision a stamp may carry: above etcd's initial revision 1, which no write takes. */
export const FIRST_STAMP_REVISION = 2;

/** `data` with `revision` stamped on it; an existing envelope is replaced (a forwarded entry is stamped afresh). */
export function stampEntry(data: Uint8Array, revision: number): Uint8Array {
  const body = bodyOf(data);
  const out = new Uint8Array(STAMP_HEADER_BYTES + body.byteLength);
  out[0] = STAMPED_TAG;
  writeU64(out, 1, revision);
  out.set(body, STAMP_HEADER_BYTES);
  return out;
}

/** `data` marked as wanting no stamp: leaders propose it as it is. */
export function markUnstamped(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + data.byteLength);
  out[0] = UNSTAMPED_TAG;
  out.set(data, 1);
  return out;
}

/** Whether a leader must stamp `data` before it proposes it (empty data is Raft's own no-op: never). */
export function wantsStamp(data: Uint8Array): boolean {
  return data.byteLength > 0 && data[0] !== UNSTAMPED_TAG;
}

/** An entry's command bytes and the revision it was stamped with, if any. */
export interface OpenedEntry {
  readonly revision: number | undefined;
  readonly body: Uint8Array;
}

/** The stamp and command of entry data, or why it holds none (refused alike on every replica). */
export function openEntry(data: Uint8Array): OpenedEntry | string {
  if (data[0] === UNSTAMPED_TAG) return { revision: undefined, body: data.subarray(1) };
  if (data[0] !== STAMPED_TAG || data.byteLength === 0) return { revision: undefined, body: data };
  if (data.byteLength < STAMP_HEADER_BYTES) return 'truncated revision stamp';
  // Above 2^53 readU64 would assert: check the high bytes first, since a peer chose them.
  if ((data[1] as number) !== 0 || (data[2] as number) > 0x1f) return 'revision stamp above 2^53';
  const revision = readU64(data, 1);
  if (revision < FIRST_STAMP_REVISION || revision >= MAX_REVISION) return `revision stamp ${revision} outside ${FIRST_STAMP_REVISION}..2^53-2`;
  return { revision, body: data.subarray(STAMP_HEADER_BYTES) };
}

function bodyOf(data: Uint8Array): Uint8Array {
  if (data[0] === UNSTAMPED_TAG) return data.subarray(1);
  if (data[0] === STAMPED_TAG && data.byteLength >= STAMP_HEADER_BYTES) return data.subarray(STAMP_HEADER_BYTES);
  return data;
}
