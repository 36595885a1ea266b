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
  assertRevision(rev, 'revision');
  writeUint53(out, offset, rev.main);
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(offset + 8, rev.sub);
}

export function readRevision(bytes: Uint8Array, offset: number): Revision {
  assert(bytes.length >= offset + REVISION_BYTES, `revision bytes truncated at ${offset}`);
  const main = readUint53(bytes, offset);
  const sub = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset + 8);
  return { main, sub };
}

/** Writes a safe non-negative integer as 8 big-endian bytes. */
export function writeUint53(out: Uint8Array, offset: number, value: number): void {
  assertRevisionNumber(value, 'encoded integer');
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(offset, Math.floor(value / 0x1_0000_0000));
  view.setUint32(offset + 4, value >>> 0);
}

export function readUint53(bytes: Uint8Array, offset: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const high = view.getUint32(offset);
  // A high word above 2^21 - 1 would be ≥ 2^53: storage is corrupt or not ours.
  assert(high < 0x20_0000, () => `stored integer ≥ 2^53 at offset ${offset}`);
  return high * 0x1_0000_0000 + view.getUint32(offset + 4);
}
