/**
 * Small byte arrays carved from shared slabs. `new Uint8Array(n)` for n over
 * 64 bytes gets its own off-heap backing store: a malloc, zeroing, external
 * memory accounting and a sweep when it dies, about 1 us of CPU each on this
 * machine, against about 55 ns for a view into a slab. The hot encoders (log
 * entries, MVCC records: a few per write per node) use this.
 *
 * A slab is freed only when every view into it is unreachable, so these
 * arrays suit short-lived encodings that are copied elsewhere (into LMDB);
 * a holder that keeps them for long should copy them (MemoryEngine does).
 * Slabs are never reused, so a fresh view is zero-filled like a new array.
 * The arrays are plain Uint8Arrays with a byteOffset: use it (and byteLength)
 * with `.buffer`.
 */
export const BYTE_SLAB_BYTES = 64 * 1024;
/** Larger requests get an array of their own. */
export const BYTE_SLAB_MAX_ALLOC = 4 * 1024;

let slab = new ArrayBuffer(BYTE_SLAB_BYTES);
let slabOffset = 0;

export function allocBytes(length: number): Uint8Array {
  if (length > BYTE_SLAB_MAX_ALLOC) return new Uint8Array(length);
  if (slabOffset + length > BYTE_SLAB_BYTES) {
    slab = new ArrayBuffer(BYTE_SLAB_BYTES);
    slabOffset = 0;
  }
  const out = new Uint8Array(slab, slabOffset, length);
  // Keep views 8-byte aligned, as a fresh array's data would be.
  slabOffset += (length + 7) & ~7;
  return out;
}

/** Whether `bytes` is a view into a larger buffer (a slab, a frame) that holding it would keep alive. */
export function sharesBuffer(bytes: Uint8Array): boolean {
  return bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength;
}

/**
 * Node's Buffer has a native Latin-1 decoder (one code unit per byte, so the
 * string orders as the bytes do); it is many times faster than fromCharCode
 * on long keys (55 ns against 660 ns for 277 bytes). Elsewhere fromCharCode does.
 */
const latin1Slice = (globalThis as { Buffer?: { prototype: { latin1Slice?: (this: Uint8Array, start: number, end: number) => string } } }).Buffer?.prototype.latin1Slice;
/** fromCharCode takes its bytes as arguments: chunks keep far below the engines' argument limits. */
const LATIN1_CHUNK_BYTES = 8192;

/** The string with one code unit per byte (Latin-1): a Map key for bytes, ordered as the bytes. */
export function latin1String(bytes: Uint8Array): string {
  if (latin1Slice !== undefined) return latin1Slice.call(bytes, 0, bytes.length);
  let out = '';
  for (let i = 0; i < bytes.length; i += LATIN1_CHUNK_BYTES) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + LATIN1_CHUNK_BYTES) as unknown as number[]);
  }
  return out;
}
