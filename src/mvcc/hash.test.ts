import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from './bytes.js';
import { Crc32c } from './hash.js';
import { WHOLE_KEY_SPAN } from './codec.js';
import { codeOf, compactAll, del, newEngine, newStore, put, rev } from './testing.testlib.js';

test('hash: CRC-32C matches the standard check value', () => {
  assert.equal(new Crc32c().update(utf8('123456789')).digest(), 0xe3069283);
  assert.equal(new Crc32c().digest(), 0);
});

test('hash: replicas that applied the same writes agree, whatever their meta prefix; a different history differs', () => {
  // Two engines: stores of the same keys cannot share one (their records are keyed by user key).
  const { engine: ea, store: a } = newStore(newEngine(), { metaPrefix: utf8('ra/'), span: WHOLE_KEY_SPAN });
  const { engine: eb, store: b } = newStore(newEngine(), { metaPrefix: utf8('range-b/'), span: WHOLE_KEY_SPAN });
  for (const [engine, s] of [[ea, a], [eb, b]] as const) {
    put(engine, s, 'x', '1');
    put(engine, s, 'y', '2');
    del(engine, s, 'x');
  }
  assert.deepEqual(a.hashKV(), b.hashKV());
  assert.equal(a.hashKV(rev(2)).revision, rev(2));
  assert.equal(a.hashKV(rev(2)).hash, b.hashKV(rev(2)).hash);
  assert.notEqual(a.hashKV(rev(2)).hash, a.hashKV(rev(3)).hash);
  put(eb, b, 'y', '2');
  assert.notEqual(a.hashKV().hash, b.hashKV().hash);
  assert.equal(a.hashKV(rev(3)).hash, b.hashKV(rev(3)).hash, 'the common past still agrees');
});

test('hash: depends on the compacted revision, not on how far physical compaction got', () => {
  const one = newStore();
  const two = newStore();
  for (const { engine, store } of [one, two]) for (let i = 0; i < 30; i++) put(engine, store, `k${i % 3}`, `${i}`);
  const before = one.store.hashKV();
  const batch = one.engine.newBatch();
  assert.equal(one.store.compact(rev(20), batch, 4), false);
  one.engine.commit(batch, () => {});
  compactAll(two.engine, two.store, rev(20));
  const partial = one.store.hashKV();
  assert.deepEqual(partial, two.store.hashKV());
  assert.equal(partial.compactRevision, rev(20));
  assert.notEqual(partial.hash, before.hash);
});

test('hash: revision errors as etcd 3.4 (HashByRev refuses the compacted revision itself)', () => {
  const { engine, store } = newStore();
  assert.deepEqual([store.hashKV(1).revision, store.hashKV(0).revision], [1, 1], 'a fresh store hashes at its revision 1');
  for (let i = 0; i < 5; i++) put(engine, store, 'k', `${i}`);
  assert.equal(codeOf(() => store.hashKV(rev(6))), 'FUTURE_REVISION');
  compactAll(engine, store, rev(3));
  assert.equal(codeOf(() => store.hashKV(rev(2))), 'COMPACTED');
  assert.equal(codeOf(() => store.hashKV(rev(3))), 'COMPACTED');
  assert.equal(store.hashKV(rev(4)).revision, rev(4));
  assert.equal(store.hashKV(0).revision, rev(5));
});
