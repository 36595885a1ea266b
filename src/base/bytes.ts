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
