import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BYTE_SLAB_BYTES, BYTE_SLAB_MAX_ALLOC, allocBytes, sharesBuffer } from './bytes.js';

test('allocBytes: zero-filled views that never overlap; large requests get their own array', () => {
  const seen: Uint8Array[] = [];
  for (let i = 0; i < 2000; i++) {
    const a = allocBytes(1 + (i % 300));
    assert.ok(a.every((b) => b === 0), 'fresh memory');
    assert.equal(a.byteOffset % 8, 0, 'aligned');
    a.fill(0xff);
    seen.push(a);
  }
  // Filling each view touched no other: every earlier view is still all 0xff, and no two overlap.
  for (const a of seen) assert.ok(a.every((b) => b === 0xff));
  const byBuffer = new Map<ArrayBufferLike, [number, number][]>();
  for (const a of seen) {
    const spans = byBuffer.get(a.buffer) ?? [];
    spans.push([a.byteOffset, a.byteOffset + a.byteLength]);
    byBuffer.set(a.buffer, spans);
  }
  for (const spans of byBuffer.values()) {
    spans.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < spans.length; i++) assert.ok((spans[i - 1] as [number, number])[1] <= (spans[i] as [number, number])[0]);
  }
  assert.ok(byBuffer.size > 1, 'slabs roll over');
  const big = allocBytes(BYTE_SLAB_MAX_ALLOC + 1);
  assert.equal(big.buffer.byteLength, BYTE_SLAB_MAX_ALLOC + 1);
  assert.equal(sharesBuffer(big), false);
  assert.equal(sharesBuffer(allocBytes(10)), true);
  assert.ok(BYTE_SLAB_BYTES >= BYTE_SLAB_MAX_ALLOC);
});
