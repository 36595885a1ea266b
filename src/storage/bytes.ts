/** Byte-key helpers shared by every engine. Keys order as unsigned bytes, shorter prefix first. */

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    // Uint8Array elements are already unsigned, so plain subtraction orders them as LMDB's memcmp does.
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0;
}

/** True when `key` lies in [start, end); an undefined `end` is the end of the key space. */
export function inRange(key: Uint8Array, start: Uint8Array, end: Uint8Array | undefined): boolean {
  return compareBytes(key, start) >= 0 && (end === undefined || compareBytes(key, end) < 0);
}

/** Short printable form for error messages; long keys are cut so a message stays one line. */
export function describeKey(key: Uint8Array, maxBytes = 32): string {
  let hex = '';
  for (let i = 0; i < Math.min(key.length, maxBytes); i++) hex += (key[i] as number).toString(16).padStart(2, '0');
  return key.length > maxBytes ? `0x${hex}… (${key.length} bytes)` : `0x${hex}`;
}
