import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from './bytes.js';
import { CHANGE_KEY_BOUNDS, WHOLE_KEY_SPAN, dataKeyBounds } from './codec.js';
import { MvccStore } from './store.js';
import { LOCATION, assertSameStore, codeOf, compactAll, del, get, newStore, put, reopenAndCompare, rev, storedChanges as stored, write } from './testing.testlib.js';
import type { MemoryEngine } from '../storage/memory.js';

/** Stored changes; a record and its change index entry are written and deleted together. */
const storedChanges = (engine: MemoryEngine): number => {
  const { records, entries } = stored(engine);
  assert.equal(records, entries, 'as many change index entries as records');
  return records;
};

test('compaction: keeps the latest version of every live key, drops superseded ones and dead keys', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1'); // rev(1)
  put(engine, store, 'a', '2'); // rev(2)
  put(engine, store, 'b', '1'); // rev(3)
  del(engine, store, 'b'); // rev(4)
  put(engine, store, 'c', '1'); // rev(5)
  put(engine, store, 'a', '3'); // rev(6)
  compactAll(engine, store, rev(5));
  assert.equal(store.compactedRevision, rev(5));
  assert.equal(store.compactionPending, false);
  // a@rev(2) (newest ≤ rev(5)), a@rev(6), c@rev(5) remain; a@rev(1), b@rev(3) and b's tombstone@rev(4) are gone.
  assert.equal(storedChanges(engine), 3);
  assert.equal(get(store, 'a', rev(5))?.value, '2');
  assert.equal(get(store, 'a')?.value, '3');
  assert.equal(get(store, 'c', rev(5))?.value, '1');
  assert.equal(get(store, 'b', rev(5)), undefined);
  assert.equal(codeOf(() => store.range({ key: utf8('a'), revision: rev(4) })), 'COMPACTED');
  assert.deepEqual(get(store, 'a'), { key: 'a', value: '3', create: rev(1), mod: rev(6), version: 3, lease: 0 }, 'create revision and version survive');
  reopenAndCompare(engine, store);
});

test('compaction: a tombstone at exactly the compaction revision stays until the next compaction', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1');
  del(engine, store, 'a'); // rev(2)
  put(engine, store, 'z', '1'); // rev(3)
  compactAll(engine, store, rev(2));
  assert.equal(storedChanges(engine), 2, 'tombstone@rev(2) and z@rev(3)');
  const events = store.events({ fromRevision: rev(2), key: utf8('a') }).events;
  assert.deepEqual(events.map((e) => [e.type, e.kv.modRevision]), [['DELETE', rev(2)]], 'a watch from the compaction revision still sees the delete');
  compactAll(engine, store, rev(3));
  assert.equal(storedChanges(engine), 1);
  assert.equal(store.range({ key: utf8('a'), rangeEnd: Uint8Array.of(0), revision: rev(3) }).count, 1, 'z alone');
  reopenAndCompare(engine, store);
});

test('compaction: errors as etcd: at or below the compacted revision, or in the future', () => {
  const { engine, store } = newStore();
  for (let i = 0; i < 5; i++) put(engine, store, 'k', `${i}`);
  assert.equal(codeOf(() => store.compact(rev(6), engine.newBatch())), 'FUTURE_REVISION');
  compactAll(engine, store, rev(3));
  assert.equal(codeOf(() => store.compact(rev(3), engine.newBatch())), 'COMPACTED');
  assert.equal(codeOf(() => store.compact(rev(2), engine.newBatch())), 'COMPACTED');
  assert.equal(codeOf(() => store.range({ key: utf8('k'), revision: rev(2) })), 'COMPACTED');
  assert.equal(get(store, 'k', rev(3))?.value, '2', 'the compaction revision itself stays readable');
  compactAll(engine, store, rev(5));
  assert.equal(store.currentRevision, rev(5));
  reopenAndCompare(engine, store);
});

test('compaction: as etcd, a store never compacted holds -1: its first Compact(0) is a no-op that succeeds, and is remembered across a reopen', () => {
  const { engine, store } = newStore();
  put(engine, store, 'k', 'v');
  assert.equal(store.hashKV().compactRevision, -1, "HashKV's compact_revision before any compaction");
  assert.equal(codeOf(() => store.compact(-1, engine.newBatch())), 'COMPACTED', 'at etcd\'s -1 itself');
  compactAll(engine, store, 0);
  assert.equal(store.compactedRevision, 0);
  assert.equal(store.hashKV().compactRevision, 0);
  assert.equal(get(store, 'k')?.value, 'v', 'nothing was dropped');
  assert.equal(codeOf(() => store.compact(0, engine.newBatch())), 'COMPACTED', 'the second Compact(0) is at the compacted revision');
  const reopened = reopenAndCompare(engine, store);
  assert.equal(reopened.hashKV().compactRevision, 0);
  assert.equal(codeOf(() => reopened.compact(0, engine.newBatch())), 'COMPACTED', 'the meta record remembers the compaction at 0');
  compactAll(engine, reopened, rev(1));
  assert.equal(reopened.hashKV().compactRevision, rev(1));
});

test('compaction: a fresh store can be compacted at its revision 1, as etcd can; 2 is in the future', () => {
  const { engine, store } = newStore();
  assert.equal(codeOf(() => store.compact(2, engine.newBatch())), 'FUTURE_REVISION');
  compactAll(engine, store, 1);
  assert.equal(store.compactedRevision, 1);
  assert.equal(store.range({ key: utf8('k'), revision: 1 }).kvs.length, 0, 'the compaction revision stays readable');
  assert.equal(codeOf(() => store.compact(1, engine.newBatch())), 'COMPACTED');
  put(engine, store, 'k', 'v');
  assert.equal(get(store, 'k')?.mod, 2);
  reopenAndCompare(engine, store);
});

test('compaction: large compactions run in bounded steps; each step is one batch; reads are right throughout', () => {
  const { engine, store } = newStore();
  for (let i = 0; i < 100; i++) put(engine, store, `k${i % 10}`, `${i}`);
  assert.equal(storedChanges(engine), 100);
  let batch = engine.newBatch();
  let done = store.compact(rev(95), batch, 7);
  engine.commit(batch, () => {});
  let steps = 1;
  while (!done) {
    assert.equal(store.compactionPending, true);
    assert.equal(get(store, 'k3', rev(95))?.value, '93');
    store.checkInvariants();
    batch = engine.newBatch();
    done = store.compactStep(batch, 7);
    assert.ok(batch.count <= 2 * 7 + 1, 'at most `limit` changes deleted (a record and its change index entry each) plus the meta record');
    engine.commit(batch, () => {});
    steps++;
  }
  assert.ok(steps >= 95 / 7, `took ${steps} steps`);
  assert.equal(storedChanges(engine), 15, 'one per key at ≤ 95, plus the 5 later changes');
  assert.equal(store.compactStep(engine.newBatch()), true, 'nothing pending: a no-op');
  reopenAndCompare(engine, store);
});

test('compaction: a restart mid-compaction resumes from the stored cursor; the index is the same either way', () => {
  const { engine, store } = newStore();
  for (let i = 0; i < 60; i++) put(engine, store, `k${i % 6}`, `${i}`);
  const batch = engine.newBatch();
  assert.equal(store.compact(rev(50), batch, 10), false);
  engine.commit(batch, () => {});
  const reopened = reopenAndCompare(engine, store);
  assert.equal(reopened.compactionPending, true);
  assert.equal(reopened.hashKV().hash, store.hashKV().hash);
  compactAll(engine, reopened, rev(55));
  assert.equal(reopened.compactionPending, false);
  reopenAndCompare(engine, reopened);
});

test('compaction: a newer compaction while one is in progress restarts the physical pass and finishes both', () => {
  const { engine, store } = newStore();
  for (let i = 0; i < 40; i++) put(engine, store, `k${i % 4}`, `${i}`);
  const b1 = engine.newBatch();
  store.compact(rev(20), b1, 5);
  engine.commit(b1, () => {});
  compactAll(engine, store, rev(30));
  assert.equal(storedChanges(engine), 4 + 10);
  store.checkInvariants();
});

test('compaction: writes and compaction in one uncommitted batch (one loop turn) agree with the same done in separate batches', () => {
  const a = newStore();
  const b = newStore();
  const batch = a.engine.newBatch();
  for (let i = 0; i < 10; i++) {
    const txn = a.store.beginWrite(batch);
    txn.put(utf8(`k${i % 3}`), utf8(`${i}`));
    txn.end();
    put(b.engine, b.store, `k${i % 3}`, `${i}`);
  }
  a.store.compact(rev(8), batch, 1000);
  a.store.checkInvariants();
  a.engine.commit(batch, () => {});
  compactAll(b.engine, b.store, rev(8));
  assert.equal(a.store.hashKV().hash, b.store.hashKV().hash);
  for (const bounds of [dataKeyBounds(WHOLE_KEY_SPAN), CHANGE_KEY_BOUNDS]) assert.deepEqual([...a.engine.scan(bounds)], [...b.engine.scan(bounds)]);
  reopenAndCompare(a.engine, a.store);
});

test('compaction: keys with leases and many generations survive reopen after compaction', () => {
  const { engine, store } = newStore();
  for (let round = 0; round < 5; round++) {
    write(engine, store, (t) => {
      for (let k = 0; k < 5; k++) t.put(utf8(`g${k}`), utf8(`${round}`), { leaseId: round + 1 });
    });
    if (round % 2 === 1) del(engine, store, 'g', 'h');
  }
  compactAll(engine, store, store.currentRevision - 1);
  const reopened = MvccStore.open(engine, LOCATION);
  assertSameStore(reopened, store);
  assert.deepEqual(get(reopened, 'g3'), get(store, 'g3'));
  assert.equal(get(reopened, 'g3')?.lease, 5);
});
