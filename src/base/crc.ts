/**
 * Table-driven CRC-32 in the slicing-by-8 form: eight tables let the loop
 * fold eight bytes per step instead of one, which made checksumming the
 * biggest single cost of a write (records and log entries are checksummed
 * on every write and read). Same results as the bytewise loop, for any
 * reflected polynomial.
 */
export interface Crc32 {
  /** Continues a running CRC (start from `init`) over `bytes`; returns the new running value. */
  update(crc: number, bytes: Uint8Array): number;
  /** The running value before any byte. */
  readonly init: number;
  /** The final CRC from a running value. */
  finish(crc: number): number;
  /** The CRC of `bytes`. */
  of(bytes: Uint8Array): number;
}

export function makeCrc32(reflectedPolynomial: number): Crc32 {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  const t0 = tables[0] as Uint32Array;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? reflectedPolynomial ^ (c >>> 1) : c >>> 1;
    t0[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t0[n] as number;
    for (let s = 1; s < 8; s++) {
      c = (t0[c & 0xff] as number) ^ (c >>> 8);
      (tables[s] as Uint32Array)[n] = c >>> 0;
    }
  }
  const [a, b, c2, d, e, f, g, h] = tables as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  const update = (crc: number, bytes: Uint8Array): number => {
    let c = crc;
    let i = 0;
    const n = bytes.length;
    const end8 = n - (n % 8);
    for (; i < end8; i += 8) {
      const lo = (c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))) >>> 0;
      c =
        h[lo & 0xff]! ^
        g[(lo >>> 8) & 0xff]! ^
        f[(lo >>> 16) & 0xff]! ^
        e[lo >>> 24]! ^
        d[bytes[i + 4]!]! ^
        c2[bytes[i + 5]!]! ^
        b[bytes[i + 6]!]! ^
        a[bytes[i + 7]!]!;
    }
    for (; i < n; i++) c = a[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
    return c >>> 0;
  };
  return {
    update,
    init: 0xffffffff,
    finish: (crc) => (crc ^ 0xffffffff) >>> 0,
    of: (bytes) => (update(0xffffffff, bytes) ^ 0xffffffff) >>> 0,
  };
}

/** CRC-32 (IEEE, zlib's). */
export const CRC32 = makeCrc32(0xedb88320);
/** CRC-32C (Castagnoli), the checksum etcd's HashKV uses. */
export const CRC32C = makeCrc32(0x82f63b78);
