import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CRC32, CRC32C, makeCrc32 } from './crc.js';
import { SeededRng } from './rng.js';

/** The bytewise loop the slicing-by-8 tables must agree with. */
function bytewise(poly: number, bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

test('CRC-32 and CRC-32C: the standard check values of "123456789"', () => {
  const check = new TextEncoder().encode('123456789');
  assert.equal(CRC32.of(check), 0xcbf43926);
  assert.equal(CRC32C.of(check), 0xe3069283);
});

test('slicing-by-8 equals the bytewise CRC for every length 0..64 and long random inputs, whole or in pieces', () => {
  const rng = new SeededRng(42);
  for (const [crc, poly] of [[CRC32, 0xedb88320], [CRC32C, 0x82f63b78], [makeCrc32(0xeb31d82e), 0xeb31d82e]] as const) {
    for (let len = 0; len < 65; len++) {
      const bytes = Uint8Array.from({ length: len }, () => rng.intBelow(256));
      assert.equal(crc.of(bytes), bytewise(poly, bytes), `length ${len}`);
    }
    const long = Uint8Array.from({ length: 10_007 }, () => rng.intBelow(256));
    assert.equal(crc.of(long), bytewise(poly, long));
    const split = crc.finish(crc.update(crc.update(crc.init, long.subarray(0, 1234)), long.subarray(1234)));
    assert.equal(split, crc.of(long), 'a running CRC over pieces equals the CRC of the whole');
  }
});
