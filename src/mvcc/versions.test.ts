import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTesseraError } from '../base/index.js';
import { utf8 } from './bytes.js';
import { dataKeyBounds, WHOLE_KEY_SPAN } from './codec.js';
import { MvccStore } from './store.js';
import { LOCATION, compactAll, del, get, newEngine, newStore, put, reopenAndCompare, show, write } from './testing.testlib.js';
import { VERSION_STEPS_BEFORE_SEEK } from './versions.js';

const ALL = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };

test('versions: a range over keys with many versions (more than a walk steps over before it seeks) reads each key once, at any revision', () => {
  const { engine, store } = newStore();
  const versions = VERSION_STEPS_BEFORE_SEEK * 3;
  const revisionAfter: number[] = [];
  for (let v = 0; v < versions; v++) {
    for (const k of ['a', 'b', 'c']) put(engine, store, k, `${k}${v}`);
    revisionAfter.push(store.currentRevision);
  }
  for (let v = 0; v < versions; v++) {
    const { kvs, count } = store.range({ ...ALL, revision: revisionAfter[v] });
    assert.equal(count, 3);
    assert.deepEqual(kvs.map((kv) => show(kv).value), [`a${v}`, `b${v}`, `c${v}`]);
    assert.deepEqual(kvs.map((kv) => kv.version), [v + 1, v + 1, v + 1]);
  }
  assert.equal(get(store, 'b', revisionAfter[2])?.value, 'b2');
  assert.equal(store.range({ ...ALL, limit: 2 }).more, true);
  assert.equal(store.range({ ...ALL, countOnly: true }).count, 3);
  reopenAndCompare(engine, store);
});

test('versions: keys holding 0x00 bytes and keys that prefix one another sort and read apart', () => {
  const { engine, store } = newStore();
  const keys = [Uint8Array.of(0x61), Uint8Array.of(0x61, 0), Uint8Array.of(0x61, 0, 0), Uint8Array.of(0x61, 0, 1), Uint8Array.of(0x61, 1), Uint8Array.of(0x61, 0xff)];
  for (let round = 0; round < 3; round++) {
    write(engine, store, (txn) => {
      for (const [i, k] of keys.entries()) txn.put(k, utf8(`${i}.${round}`));
    });
  }
  write(engine, store, (txn) => txn.deleteRange(Uint8Array.of(0x61, 0, 0)));
  const { kvs, count } = store.range(ALL);
  assert.equal(count, keys.length - 1);
  assert.deepEqual(kvs.map((kv) => [...kv.key]), [keys[0], keys[1], keys[3], keys[4], keys[5]].map((k) => [...k!]));
  for (const [i, k] of keys.entries()) {
    const one = store.range({ key: k }).kvs;
    assert.deepEqual(one.map((kv) => show(kv).value), i === 2 ? [] : [`${i}.2`]);
  }
  // [a\0, a\1) holds a\0, a\0\0 (deleted) and a\0\1.
  assert.equal(store.range({ key: keys[1]!, rangeEnd: keys[4]! }).count, 2);
  reopenAndCompare(engine, store);
});

test('versions: a store on a span reads only its own keys from a shared engine', () => {
  const engine = newEngine();
  const left = MvccStore.open(engine, { metaPrefix: utf8('r1/'), span: { start: new Uint8Array(0), end: utf8('m') } });
  const right = MvccStore.open(engine, { metaPrefix: utf8('r2/'), span: { start: utf8('m'), end: undefined } });
  put(engine, left, 'a', '1');
  put(engine, left, 'l', '1');
  // Revisions must not collide on one engine (the `e` family is shared).
  for (let i = 0; i < 3; i++) put(engine, left, 'filler', `${i}`);
  const batch = engine.newBatch();
  right.txn(batch, { compare: [], success: [{ type: 'put', put: { key: utf8('m'), value: utf8('2') } }, { type: 'put', put: { key: utf8('z'), value: utf8('2') } }], failure: [] }, { revision: 100 });
  engine.commit(batch, () => {});
  assert.deepEqual(left.range(ALL).kvs.map((kv) => show(kv).key), ['a', 'filler', 'l']);
  assert.deepEqual(right.range(ALL).kvs.map((kv) => show(kv).key), ['m', 'z']);
  assert.deepEqual(left.range({ key: utf8('z') }).kvs, []);
  assert.deepEqual(right.range({ key: utf8('k'), rangeEnd: utf8('n') }).kvs.map((kv) => show(kv).key), ['m']);
  left.checkInvariants();
  right.checkInvariants();
});

test('versions: writes in one batch, not yet committed, are read back by later writes and ranges of the same batch', () => {
  const { engine, store } = newStore();
  const batch = engine.newBatch();
  for (let i = 0; i < 5; i++) {
    store.txn(batch, { compare: [], success: [{ type: 'put', put: { key: utf8(`k${i % 2}`), value: utf8(`${i}`) } }], failure: [] });
  }
  const { response } = store.txn(batch, { compare: [], success: [{ type: 'deleteRange', deleteRange: { key: utf8('k0'), prevKv: true } }, { type: 'range', range: ALL }], failure: [] });
  const [deleted, range] = response.responses;
  assert.ok(deleted?.type === 'deleteRange' && range?.type === 'range');
  assert.deepEqual(deleted.deleteRange.prevKvs.map((kv) => [show(kv).value, kv.version]), [['4', 3]]);
  assert.deepEqual(range.range.kvs.map((kv) => [show(kv).key, show(kv).value, kv.version]), [['k1', '3', 2]]);
  engine.commit(batch, () => {});
  reopenAndCompare(engine, store);
});

test('versions: compaction keeps each live key\'s newest change at or below the revision, and the reads above it see the same', () => {
  const { engine, store } = newStore();
  for (let i = 0; i < 20; i++) put(engine, store, `k${i % 4}`, `${i}`);
  del(engine, store, 'k1');
  const at = store.currentRevision;
  put(engine, store, 'k2', 'after');
  const before = store.range({ ...ALL, revision: at });
  compactAll(engine, store, at);
  assert.deepEqual(store.range({ ...ALL, revision: at }), { ...before, revision: store.currentRevision });
  // k0, k2, k3 at `at`, k1's tombstone at exactly `at`, and k2's later put.
  assert.equal([...engine.scan(dataKeyBounds(WHOLE_KEY_SPAN))].length, 5);
  reopenAndCompare(engine, store);
});

test('versions: a damaged record read by a range is CORRUPT_DATA, not a crash', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', 'value');
  const [record] = [...engine.scan(dataKeyBounds(WHOLE_KEY_SPAN))];
  const damaged = record!.value.slice();
  damaged[damaged.length - 6]! ^= 0xff;
  const batch = engine.newBatch();
  batch.put(record!.key, damaged);
  engine.commit(batch, () => {});
  const reopened = MvccStore.open(engine, LOCATION);
  assert.throws(() => reopened.range(ALL), (e: unknown) => isTesseraError(e, 'CORRUPT_DATA'));
  assert.throws(() => reopened.range({ key: utf8('a') }), (e: unknown) => isTesseraError(e, 'CORRUPT_DATA'));
});
