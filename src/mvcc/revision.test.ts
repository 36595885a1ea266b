import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readRevision, readUint53, writeRevision, writeUint53 } from './revision.js';

test('revision encoding: 53-bit integers and sub-revisions round-trip as big-endian bytes', () => {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  for (const value of [0, 1, 255, 256, 0xffff_ffff, 0x1_0000_0000, 2 ** 52 + 12345, Number.MAX_SAFE_INTEGER, 1_234_567_890_123]) {
    writeUint53(bytes, 2, value);
    assert.equal(view.getBigUint64(2), BigInt(value));
    assert.equal(readUint53(bytes, 2), value);
  }
  for (const sub of [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff]) {
    writeRevision(bytes, 1, { main: 77, sub });
    assert.deepEqual(readRevision(bytes, 1), { main: 77, sub });
    assert.equal(view.getUint32(9), sub);
  }
});

test('revision encoding: out-of-range values are refused, and a stored integer of 2^53 or more is corruption', () => {
  const bytes = new Uint8Array(16);
  for (const bad of [-1, 2 ** 53, 1.5, Number.NaN]) assert.throws(() => writeUint53(bytes, 0, bad), /must be an integer/);
  assert.throws(() => writeRevision(bytes, 0, { main: 1, sub: 2 ** 32 }), /sub out of range/);
  new DataView(bytes.buffer).setUint32(0, 0x20_0000);
  assert.throws(() => readUint53(bytes, 0), /≥ 2\^53/);
  assert.throws(() => readRevision(bytes, 8), /truncated/);
});
