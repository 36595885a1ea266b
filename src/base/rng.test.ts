import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from './rng.js';
import { Fnv64 } from './hash.js';

test('SeededRng: the same seed gives the same sequence', () => {
  const a = new SeededRng(42);
  const b = new SeededRng(42);
  const seqA = Array.from({ length: 100 }, () => a.nextUint32());
  const seqB = Array.from({ length: 100 }, () => b.nextUint32());
  assert.deepEqual(seqA, seqB);
  assert.notDeepEqual(seqA, Array.from({ length: 100 }, () => new SeededRng(43).nextUint32()));
});

test('SeededRng: intBetween stays in range and covers it', () => {
  const rng = new SeededRng(7);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const v = rng.intBetween(3, 9);
    assert.ok(v >= 3 && v <= 9);
    seen.add(v);
  }
  assert.equal(seen.size, 7);
});

test('Fnv64: distinct inputs hash differently, equal inputs equally', () => {
  assert.equal(new Fnv64().update('abc').digest(), new Fnv64().update('abc').digest());
  assert.notEqual(new Fnv64().update('abc').digest(), new Fnv64().update('abd').digest());
  assert.equal(new Fnv64().update('').digest(), 'cbf29ce484222325');
});
