/**
 * Byte-string helpers for user keys. Keys are compared as unsigned bytes, as
 * in etcd and the storage engine. In memory a key is also held as a "key
 * string": one UTF-16 code unit per byte (0..255), so JavaScript's string
 * order equals unsigned byte order and the string can key a Map.
 */

import { latin1String } from '../base/index.js';

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0;
}

export function toKeyString(bytes: Uint8Array): string {
  return latin1String(bytes);
}

export function fromKeyString(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** UTF-8 bytes of a string (tests and callers with text keys). */
export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/**
 * A half-open key interval in etcd's request form, already normalised:
 * `end` undefined means the single key `start`; `end` of length 0 means every
 * key ≥ `start` (etcd's range_end "\0").
 */
export interface KeyInterval {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
}

/**
 * Turns etcd's (key, range_end) into a KeyInterval: an absent or empty
 * range_end names one key, range_end "\0" means "to the end of the key space".
 */
export function keyInterval(key: Uint8Array, rangeEnd?: Uint8Array): KeyInterval {
  if (rangeEnd === undefined || rangeEnd.length === 0) return { start: key, end: undefined };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: new Uint8Array(0) };
  return { start: key, end: rangeEnd };
}

export function intervalContains(interval: KeyInterval, key: Uint8Array): boolean {
  if (interval.end === undefined) return bytesEqual(interval.start, key);
  if (compareBytes(key, interval.start) < 0) return false;
  return interval.end.length === 0 || compareBytes(key, interval.end) < 0;
}

/** The same test on key strings (see toKeyString). */
export function intervalContainsString(start: string, end: string | undefined, key: string): boolean {
  if (end === undefined) return key === start;
  return key >= start && (end.length === 0 || key < end);
}

/** The smallest key greater than every key with this prefix, or empty (unbounded) if none exists. */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const out = prefix.slice(0, i + 1);
      out[i] = prefix[i]! + 1;
      return out;
    }
  }
  return new Uint8Array(0);
}
