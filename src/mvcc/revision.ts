import { assert } from '../base/index.js';

/**
 * A revision names one change: `main` is the revision of the write
 * transaction (a commit timestamp, DESIGN.md decision 3), `sub` orders the
 * changes inside it. Both are plain numbers; `main` stays below 2^53 so that
 * it survives JSON, msgpack and JavaScript arithmetic unchanged.
 */
export interface Revision {
  readonly main: number;
  readonly sub: number;
}

/**
 * The revision of a store that has never been written. etcd's mvcc starts its
 * counter at 1 (the backend's initial state counts as a revision), so a fresh
 * etcd answers revision 1 and its first write gets 2; starting here too keeps
 * every header, mod revision and watch start an etcd client sees the same.
 */
export const INITIAL_REVISION = 1;

/** The largest main revision: 2^53 - 1. */
export const MAX_REVISION = Number.MAX_SAFE_INTEGER;

/** Sub-revisions are stored in 4 bytes, which also caps the changes of one write transaction. */
export const MAX_SUB_REVISION = 0xffff_ffff;

export function assertRevisionNumber(value: number, what: string): void {
  assert(Number.isSafeInteger(value) && value >= 0, () => `${what} must be an integer in [0, 2^53), got ${value}`);
}

export function assertRevision(rev: Revision, what: string): void {
  assertRevisionNumber(rev.main, `${what}.main`);
  assert(Number.isInteger(rev.sub) && rev.sub >= 0 && rev.sub <= MAX_SUB_REVISION, () => `${what}.sub out of range: ${rev.sub}`);
}

export function compareRevisions(a: Revision, b: Revision): number {
  return a.main !== b.main ? a.main - b.main : a.sub - b.sub;
}

export function revisionsEqual(a: Revision, b: Revision): boolean {
  return a.main === b.main && a.sub === b.sub;
}

export function formatRevision(rev: Revision): string {
  return `${rev.main}.${rev.sub}`;
}

/** Length of an encoded revision: 8 bytes of main and 4 of sub, big-endian so byte order is revision order. */
export const REVISION_BYTES = 12;

export function writeRevision(out: Uint8Array, offset: number, rev: Revision): void {
  const { sub } = rev;
  if (!(Number.isInteger(sub) && sub >= 0 && sub <= MAX_SUB_REVISION)) assertRevision(rev, 'revision');
  writeUint53(out, offset, rev.main);
  out[offset + 8] = sub >>> 24;
  out[offset + 9] = (sub >>> 16) & 0xff;
  out[offset + 10] = (sub >>> 8) & 0xff;
  out[offset + 11] = sub & 0xff;
}

export function readRevision(bytes: Uint8Array, offset: number): Revision {
  if (bytes.length < offset + REVISION_BYTES) assert(false, () => `revision bytes truncated at ${offset}`);
  const main = readUint53(bytes, offset);
  const sub = (bytes[offset + 8] as number) * 0x100_0000 + ((((bytes[offset + 9] as number) << 16) | ((bytes[offset + 10] as number) << 8) | (bytes[offset + 11] as number)) >>> 0);
  return { main, sub };
}

// writeUint53 and readUint53 run for every record and key written or read, so they test before
// asserting (no closure is made on the common path) and move bytes directly (no DataView per call).

/** Writes a safe non-negative integer as 8 big-endian bytes. */
export function writeUint53(out: Uint8Array, offset: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) assertRevisionNumber(value, 'encoded integer');
  const high = Math.floor(value / 0x1_0000_0000);
  const low = value >>> 0;
  out[offset] = high >>> 24;
  out[offset + 1] = (high >>> 16) & 0xff;
  out[offset + 2] = (high >>> 8) & 0xff;
  out[offset + 3] = high & 0xff;
  out[offset + 4] = low >>> 24;
  out[offset + 5] = (low >>> 16) & 0xff;
  out[offset + 6] = (low >>> 8) & 0xff;
  out[offset + 7] = low & 0xff;
}

export function readUint53(bytes: Uint8Array, offset: number): number {
  const high = ((bytes[offset] as number) * 0x100_0000 + ((bytes[offset + 1] as number) << 16)) + (((bytes[offset + 2] as number) << 8) | (bytes[offset + 3] as number));
  // A high word above 2^21 - 1 would be ≥ 2^53: storage is corrupt or not ours.
  if (!(high < 0x20_0000)) assert(false, () => `stored integer ≥ 2^53 at offset ${offset}`);
  const low = (bytes[offset + 4] as number) * 0x100_0000 + ((((bytes[offset + 5] as number) << 16) | ((bytes[offset + 6] as number) << 8) | (bytes[offset + 7] as number)) >>> 0);
  return high * 0x1_0000_0000 + low;
}
