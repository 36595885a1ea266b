/**
 * 32-bit hashing helpers for the search's hot path. Deterministic and
 * seed-free, so runs are reproducible without a random source.
 */

/** murmur3's finalizer: every input bit affects every output bit. */
export function mix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Polynomial hash continued over `text` (Horner form, mod 2^32), so appends extend it. */
export function extendHash(h: number, base: number, text: string): number {
  let x = h;
  for (let i = 0; i < text.length; i++) x = (Math.imul(x, base) + text.charCodeAt(i)) | 0;
  return x;
}

/** A 32-bit digest of a model's state hash; a collision only costs a comparison. */
export function foldHash(h: string | number): number {
  if (typeof h === 'number') return (h | 0) ^ Math.imul((h / 4294967296) | 0, 0x85ebca6b);
  return extendHash(0x811c9dc5, 0x01000193, h);
}
