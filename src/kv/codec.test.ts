import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTesseraError } from '../base/index.js';
import type { Entry } from '../raft/index.js';
import { crc32, decodeEntry, decodeHardState, encodeEntry, encodeHardState } from './codec.js';
import { readU64, writeU64 } from './keys.js';

test('codec: entries round-trip, with and without a conf change', () => {
  const normal: Entry = { term: 7, index: 2 ** 40 + 3, type: 'normal', data: new Uint8Array([1, 2, 3]) };
  const cc: Entry = { term: 2, index: 9, type: 'conf-change', data: new Uint8Array(), confChange: { transition: 'explicit', changes: [{ type: 'add-learner', nodeId: 4 }] } };
  assert.deepEqual(decodeEntry(encodeEntry(normal)), normal);
  assert.deepEqual(decodeEntry(encodeEntry(cc)), cc);
  assert.deepEqual(decodeHardState(encodeHardState({ term: 3, vote: 2, commit: 10 })), { term: 3, vote: 2, commit: 10 });
});

test('codec: a flipped bit or a torn record is refused, never decoded', () => {
  const bytes = encodeEntry({ term: 1, index: 1, type: 'normal', data: new Uint8Array([9, 9, 9]) });
  for (const at of [0, 5, bytes.length - 6, bytes.length - 1]) {
    const bad = bytes.slice();
    bad[at] = (bad[at] as number) ^ 0x10;
    assert.throws(() => decodeEntry(bad), (e) => isTesseraError(e, 'CORRUPT_DATA'));
  }
  assert.throws(() => decodeEntry(bytes.subarray(0, bytes.length - 3)), (e) => isTesseraError(e, 'CORRUPT_DATA'));
});

test('codec: crc32 matches the IEEE check value', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('keys: u64 big-endian round-trips and sorts in numeric order', () => {
  const values = [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
  const encoded = values.map((v) => {
    const b = new Uint8Array(8);
    writeU64(b, 0, v);
    assert.equal(readU64(b, 0), v);
    return Buffer.from(b).toString('hex');
  });
  assert.deepEqual([...encoded].sort(), encoded);
});
