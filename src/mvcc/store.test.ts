import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError, isTesseraError } from '../base/index.js';
import { compareBytes, utf8 } from './bytes.js';
import { crc32c } from './checksum.js';
import { CHANGE_KEY_BOUNDS, WHOLE_KEY_SPAN, dataKey, dataKeyBounds, decodeMeta, encodeMeta, metaKey, parseDataKey } from './codec.js';
import { MVCC_ERROR_MESSAGES } from './errors.js';
import { INITIAL_REVISION } from './revision.js';
import type { KeyValue } from './range.js';
import { MvccStore } from './store.js';
import { KeyHeadBudget } from './state.js';
import type { TxnRequest } from './txn.js';
import { validateTxnRequest } from './txn-validate.js';
import { LOCATION, PREFIX, codeOf, compactAll, del, get, newEngine, newStore, put, reopenAndCompare, rev, show, storedChanges, write } from './testing.testlib.js';

test('store: an empty store is at revision 1, as etcd is, and reads nothing, at its revision too', () => {
  const { store } = newStore();
  assert.equal(INITIAL_REVISION, 1);
  assert.equal(store.currentRevision, 1);
  assert.equal(store.compactedRevision, 0);
  const all = { key: utf8('a'), rangeEnd: Uint8Array.of(0) };
  assert.deepEqual(store.range(all), { kvs: [], more: false, count: 0, revision: 1 });
  assert.deepEqual(store.range({ ...all, revision: 1 }), { kvs: [], more: false, count: 0, revision: 1 }, 'etcd answers a read at revision 1, not an error');
  assert.equal(codeOf(() => store.range({ ...all, revision: 2 })), 'FUTURE_REVISION');
});

test('store: a meta record of format 2 (revisions from 0) or 4 (records under the range prefix, by revision) is refused, not reinterpreted', () => {
  for (const format of [2, 4]) {
    const { engine, store } = newStore();
    put(engine, store, 'a', '1');
    const older = encodeMeta({ currentRevision: 1, compactedRevision: 0, finishedCompaction: 0, compactionCursor: undefined, writeSeq: 1, recordCount: 0, everCompacted: false, live: undefined });
    older[0] = format;
    new DataView(older.buffer).setUint32(older.length - 4, crc32c(older.subarray(0, older.length - 4)));
    const batch = engine.newBatch();
    batch.put(metaKey(PREFIX), older);
    engine.commit(batch, () => {});
    const message = new RegExp(`format ${format}; this build reads formats 5 and 6`);
    assert.throws(() => MvccStore.open(engine, LOCATION), (error: unknown) => isTesseraError(error, 'CORRUPT_DATA') && message.test(error.message));
  }
});

test('store: the meta record counts the stored changes (records and change index entries alike) through writes, deletes and compaction; a store missing either is refused by verifyHistory (open reads the meta record alone)', () => {
  const { engine, store } = newStore();
  const stored = (): number => {
    const { records, entries } = storedChanges(engine);
    assert.equal(records, entries, 'a change index entry for every record');
    return records;
  };
  const counted = (): number => decodeMeta(engine.get(metaKey(PREFIX)) as Uint8Array).recordCount;
  for (let i = 0; i < 30; i++) put(engine, store, `k${i % 7}`, `v${i}`);
  del(engine, store, 'k1');
  del(engine, store, 'k2', 'k5');
  write(engine, store, (txn) => {
    txn.put(utf8('k9'), utf8('x'));
    txn.deleteRange(utf8('k0'));
  });
  assert.equal(counted(), stored());
  assert.equal(stored(), 30 + 1 + 3 + 2);
  compactAll(engine, store, store.currentRevision - 3);
  assert.ok(stored() < 36, 'compaction deleted records');
  assert.equal(counted(), stored());
  let reopened = reopenAndCompare(engine, store);
  put(engine, reopened, 'k1', 'again');
  assert.equal(counted(), stored());
  reopened = reopenAndCompare(engine, reopened);
  // A record lost behind the store's back, as a damaged LMDB page hides the keys on it from every scan;
  // then, the record back, its change index entry lost instead.
  for (const [bounds, refusal] of [
    [dataKeyBounds(WHOLE_KEY_SPAN), /\d+ change records are stored, but the meta record counts \d+/],
    [CHANGE_KEY_BOUNDS, /\d+ change index entries are stored, but the meta record counts \d+/],
  ] as const) {
    const victim = [...engine.scan(bounds)][2]!;
    const batch = engine.newBatch();
    batch.delete(victim.key);
    engine.commit(batch, () => {});
    const damaged = MvccStore.open(engine, LOCATION);
    assert.throws(() => damaged.verifyHistory(), (error: unknown) => isTesseraError(error, 'CORRUPT_DATA') && refusal.test(error.message));
    assert.throws(() => damaged.checkInvariants(), (error: unknown) => isTesseraError(error, 'CORRUPT_DATA') && refusal.test(error.message));
    const restore = engine.newBatch();
    restore.put(victim.key, victim.value);
    engine.commit(restore, () => {});
    reopenAndCompare(engine, reopened);
  }
});

test('store: a change index entry whose record is gone (or names another key) is CORRUPT_DATA where history is read, not a silent hole', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1');
  put(engine, store, 'b', '2');
  const [first] = [...engine.scan(CHANGE_KEY_BOUNDS)];
  const batch = engine.newBatch();
  batch.put(first!.key, utf8('z'));
  engine.commit(batch, () => {});
  const corrupt = (error: unknown): boolean => isTesseraError(error, 'CORRUPT_DATA');
  assert.throws(() => store.hashKV(), corrupt);
  assert.throws(() => store.events({ fromRevision: 1, key: utf8('\0'), rangeEnd: Uint8Array.of(0) }), corrupt);
});

test('store: without watchers that want them, events skip previous values, but a write that asks for prev_kv gets it', () => {
  const engine = newEngine();
  const store = MvccStore.open(engine, LOCATION, { eventsWantPrevKv: () => false });
  put(engine, store, 'a', '1');
  put(engine, store, 'b', '1');
  const plain = write(engine, store, (txn) => txn.put(utf8('a'), utf8('2')));
  assert.equal(plain.events[0]?.prevKv, undefined, 'nobody asked: the previous record is not loaded');
  let asked: KeyValue | undefined;
  const withPrev = write(engine, store, (txn) => (asked = txn.put(utf8('a'), utf8('3'), { prevKv: true }).prevKv));
  const eventPrev = withPrev.events[0]?.prevKv;
  assert.ok(eventPrev !== undefined && asked !== undefined);
  assert.equal(show(eventPrev).value, '2');
  assert.equal(show(asked).value, '2');
  write(engine, store, (txn) => txn.put(utf8('a'), new Uint8Array(0), { ignoreValue: true }));
  assert.equal(get(store, 'a')?.value, '3', 'ignore_value still reads the old value');
  let deleted: { prevKvs: KeyValue[] } = { prevKvs: [] };
  const del1 = write(engine, store, (txn) => (deleted = txn.deleteRange(utf8('a'), undefined, { prevKv: true })));
  assert.equal(deleted.prevKvs.length, 1);
  const deletedPrev = del1.events[0]?.prevKv;
  assert.ok(deletedPrev !== undefined);
  assert.equal(show(deletedPrev).value, '3');
  const del2 = write(engine, store, (txn) => (deleted = txn.deleteRange(utf8('b'))));
  assert.equal(del2.events[0]?.prevKv, undefined);
  assert.deepEqual(deleted.prevKvs, []);
  reopenAndCompare(engine, store);
});

test('store: a put without previous values continues the key from the key-head cache: after a read remembered it, after a delete, after a compaction, after a reopen', () => {
  const engine = newEngine();
  const open = (): MvccStore => MvccStore.open(engine, LOCATION, { eventsWantPrevKv: () => false });
  let store = open();
  put(engine, store, 'a', '1');
  put(engine, store, 'a', '2');
  put(engine, store, 'b', '1');
  store = open();
  // A read remembers the key's newest change without decoding it; the put then reads the record once.
  assert.equal(get(store, 'a')?.version, 2);
  put(engine, store, 'a', '3');
  assert.deepEqual(get(store, 'a'), { key: 'a', value: '3', create: rev(1), mod: rev(4), version: 3, lease: 0 });
  // Several puts of one key in one txn continue each other (sub-revisions), from the cache.
  const twice = write(engine, store, (txn) => {
    txn.put(utf8('b'), utf8('2'));
    txn.put(utf8('b'), utf8('3'));
  });
  assert.deepEqual(twice.events.map((e) => [e.kv.version, e.kv.createRevision]), [[2, rev(3)], [3, rev(3)]]);
  // A delete leaves a tombstone in the cache: the next put starts the key again.
  del(engine, store, 'a');
  put(engine, store, 'a', '4');
  assert.deepEqual(get(store, 'a'), { key: 'a', value: '4', create: rev(7), mod: rev(7), version: 1, lease: 0 });
  // Compaction removes the whole history of a key deleted below the compacted revision, newest change included.
  del(engine, store, 'b');
  put(engine, store, 'c', '1');
  compactAll(engine, store, store.currentRevision);
  put(engine, store, 'b', '4');
  assert.deepEqual(get(store, 'b'), { key: 'b', value: '4', create: rev(10), mod: rev(10), version: 1, lease: 0 });
  reopenAndCompare(engine, store);
});

test('store: each write txn takes the next revision; keys carry create/mod revision and version', () => {
  const { engine, store } = newStore();
  assert.equal(put(engine, store, 'a', '1').revision, 2, 'the first write gets revision 2, as in etcd');
  assert.equal(put(engine, store, 'b', '1').revision, rev(2));
  assert.equal(put(engine, store, 'a', '2').revision, rev(3));
  assert.deepEqual(get(store, 'a'), { key: 'a', value: '2', create: rev(1), mod: rev(3), version: 2, lease: 0 });
  assert.deepEqual(get(store, 'b'), { key: 'b', value: '1', create: rev(2), mod: rev(2), version: 1, lease: 0 });
  assert.equal(store.currentRevision, rev(3));
});

test('store: delete resets the version; a later put starts a new generation with version 1 and a new create revision', () => {
  const { engine, store } = newStore();
  put(engine, store, 'k', 'v1');
  put(engine, store, 'k', 'v2');
  assert.equal(del(engine, store, 'k').revision, rev(3));
  assert.equal(get(store, 'k'), undefined);
  put(engine, store, 'k', 'v3');
  assert.deepEqual(get(store, 'k'), { key: 'k', value: 'v3', create: rev(4), mod: rev(4), version: 1, lease: 0 });
  // History stays readable.
  assert.deepEqual(get(store, 'k', rev(2)), { key: 'k', value: 'v2', create: rev(1), mod: rev(2), version: 2, lease: 0 });
  assert.equal(get(store, 'k', rev(3)), undefined);
});

test('store: changes in one txn share the main revision with rising sub-revisions, and reads in the txn see them', () => {
  const { engine, store } = newStore();
  put(engine, store, 'x', '0');
  const result = write(engine, store, (txn) => {
    assert.equal(txn.viewRevision, rev(1));
    txn.put(utf8('a'), utf8('1'));
    assert.equal(txn.viewRevision, rev(2));
    txn.put(utf8('a'), utf8('2'));
    txn.deleteRange(utf8('x'));
    const seen = txn.range({ key: utf8('a'), rangeEnd: Uint8Array.of(0) });
    assert.deepEqual(seen.kvs.map(show), [{ key: 'a', value: '2', create: rev(2), mod: rev(2), version: 2, lease: 0 }]);
    assert.equal(seen.revision, rev(2));
  });
  assert.equal(result.revision, rev(2));
  assert.deepEqual(result.events.map((e) => [e.type, show(e.kv)]), [
    ['PUT', { key: 'a', value: '1', create: rev(2), mod: rev(2), version: 1, lease: 0 }],
    ['PUT', { key: 'a', value: '2', create: rev(2), mod: rev(2), version: 2, lease: 0 }],
    ['DELETE', { key: 'x', value: '', create: 0, mod: rev(2), version: 0, lease: 0 }],
  ]);
  assert.deepEqual(result.events.map((e) => e.prevKv && show(e.prevKv).value), [undefined, '1', '0']);
  reopenAndCompare(engine, store);
});

test('store: a txn that changes nothing does not bump the revision and writes nothing', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1');
  const batch = engine.newBatch();
  const txn = store.beginWrite(batch);
  txn.range({ key: utf8('a') });
  const d = txn.deleteRange(utf8('nope'));
  assert.deepEqual(d, { deleted: 0, revision: rev(1), prevKvs: [] });
  assert.deepEqual(txn.end(), { revision: rev(1), events: [] });
  assert.equal(batch.count, 0);
  assert.equal(store.currentRevision, rev(1));
});

test('store: an explicit (oracle) revision must rise; gaps are fine', () => {
  const { engine, store } = newStore();
  assert.equal(write(engine, store, (t) => t.put(utf8('a'), utf8('1')), 100).revision, 100);
  assert.equal(write(engine, store, (t) => t.put(utf8('a'), utf8('2')), 250).revision, 250);
  assert.deepEqual(get(store, 'a', 249), { key: 'a', value: '1', create: 100, mod: 100, version: 1, lease: 0 });
  assert.equal(get(store, 'a', 99), undefined);
  assert.throws(() => store.beginWrite(engine.newBatch(), { revision: 250 }), AssertionError);
  assert.throws(() => store.beginWrite(engine.newBatch(), { revision: 2 ** 53 }), AssertionError);
  reopenAndCompare(engine, store);
});

test('store: put options: lease, prevKv, ignoreValue, ignoreLease and their errors', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', 'v1', { leaseId: 7 });
  write(engine, store, (txn) => {
    const r = txn.put(utf8('a'), new Uint8Array(0), { ignoreValue: true, prevKv: true });
    assert.equal(show(r.prevKv!).lease, 7);
  });
  // ignoreValue kept the value; the lease was not ignored, so it was cleared.
  assert.deepEqual(get(store, 'a'), { key: 'a', value: 'v1', create: rev(1), mod: rev(2), version: 2, lease: 0 });
  put(engine, store, 'a', 'v2', { leaseId: 9 });
  put(engine, store, 'a', 'v3', { ignoreLease: true });
  assert.deepEqual(get(store, 'a'), { key: 'a', value: 'v3', create: rev(1), mod: rev(4), version: 4, lease: 9 });
  const batch = engine.newBatch();
  const txn = store.beginWrite(batch);
  assert.equal(codeOf(() => txn.put(utf8('missing'), new Uint8Array(0), { ignoreValue: true })), 'KEY_NOT_FOUND');
  assert.equal(codeOf(() => txn.put(utf8('a'), utf8('x'), { ignoreValue: true })), 'VALUE_PROVIDED');
  assert.equal(codeOf(() => txn.put(utf8('a'), utf8('x'), { ignoreLease: true, leaseId: 3 })), 'LEASE_PROVIDED');
  assert.equal(codeOf(() => txn.put(new Uint8Array(0), utf8('x'))), 'EMPTY_KEY');
  assert.equal(txn.put(utf8('a'), utf8('y')).prevKv, undefined, 'prevKv only when asked');
  txn.end();
});

test('store: reads at past revisions; future and compacted revisions fail with etcd messages', () => {
  const { engine, store } = newStore();
  for (let i = 1; i <= 5; i++) put(engine, store, 'k', `v${i}`);
  for (let i = 1; i <= 5; i++) assert.equal(get(store, 'k', rev(i))?.value, `v${i}`);
  assert.equal(get(store, 'k', rev(0)), undefined, 'before the first write');
  assert.equal(get(store, 'k', 0)?.value, 'v5');
  assert.equal(get(store, 'k', -3)?.value, 'v5', 'revision ≤ 0 reads the current revision, as in etcd');
  const future = (() => {
    try {
      store.range({ key: utf8('k'), revision: rev(6) });
    } catch (error) {
      return error;
    }
    return undefined;
  })();
  assert.ok(isTesseraError(future, 'FUTURE_REVISION'));
  assert.equal(future.message, 'mvcc: required revision is a future revision');
  assert.equal(MVCC_ERROR_MESSAGES.COMPACTED, 'mvcc: required revision has been compacted');
  assert.equal(MVCC_ERROR_MESSAGES.DUPLICATE_KEY, 'etcdserver: duplicate key given in txn request');
});

test('store: one batch can hold many txns before commit; reads see them, and commit makes them durable state', () => {
  const { engine, store } = newStore();
  const batch = engine.newBatch();
  for (let i = 1; i <= 3; i++) {
    const txn = store.beginWrite(batch);
    txn.put(utf8('k'), utf8(`v${i}`));
    if (i === 2) txn.put(utf8('other'), utf8('o'));
    txn.end();
    assert.equal(get(store, 'k')?.value, `v${i}`);
  }
  assert.equal(get(store, 'k', rev(1))?.value, 'v1');
  store.checkInvariants();
  // Not committed yet: a fresh store over the engine sees nothing.
  assert.equal(MvccStore.open(engine, LOCATION).currentRevision, rev(0));
  engine.commit(batch, () => {});
  assert.equal(get(store, 'k')?.value, 'v3');
  reopenAndCompare(engine, store);
});

test('store: stores with disjoint key spans share one engine without seeing each other', () => {
  const engine = newEngine();
  // Disjoint spans, and revisions that never collide (the change index is shared, as with the
  // cluster-wide revisions of ADR 0009): a at even revisions, b at odd ones.
  const left = { metaPrefix: utf8('range-a/'), span: { start: new Uint8Array(0), end: utf8('m') } };
  const right = { metaPrefix: utf8('range-b/'), span: { start: utf8('m'), end: undefined } };
  const a = MvccStore.open(engine, left);
  const b = MvccStore.open(engine, right);
  write(engine, a, (t) => t.put(utf8('k'), utf8('from-a')), 2);
  write(engine, b, (t) => t.put(utf8('x'), utf8('from-b')), 3);
  write(engine, b, (t) => t.put(utf8('y'), utf8('from-b')), 5);
  write(engine, a, (t) => t.put(utf8('k'), utf8('from-a, again')), 6);
  assert.equal(get(a, 'k')?.value, 'from-a, again');
  assert.equal(get(a, 'x'), undefined);
  assert.equal(get(b, 'x')?.value, 'from-b');
  assert.equal(get(b, 'k'), undefined);
  assert.deepEqual([a.currentRevision, b.currentRevision], [6, 5]);
  assert.deepEqual(b.events({ fromRevision: 1, key: utf8('\0'), rangeEnd: Uint8Array.of(0) }).events.map((e) => e.kv.modRevision), [3, 5]);
  const outside = a.beginWrite(engine.newBatch(), { revision: 8 });
  assert.throws(() => outside.put(utf8('z'), utf8('outside')), AssertionError, 'a write outside the span');
  outside.end();
  const a2 = reopenAndCompare(engine, a, left);
  reopenAndCompare(engine, b, right);
  compactAll(engine, a2, 6);
  assert.deepEqual(storedChanges(engine), { records: 3, entries: 3 }, 'compacting a deleted its superseded change and left b\'s alone');
  reopenAndCompare(engine, b, right);
});

test('store: a key changed twice in one revision (put, then delete, in one txn) keeps both changes: the sub-revision is part of the record key', () => {
  const { engine, store } = newStore();
  put(engine, store, 'x', '0');
  // etcd's checkIntervals accepts this (a later nested txn's delete is not checked against an earlier one's put), and so does ours.
  const key = utf8('x');
  const request: TxnRequest = {
    compare: [],
    success: [
      { type: 'txn', txn: { compare: [], success: [{ type: 'put', put: { key, value: utf8('1') } }], failure: [] } },
      { type: 'txn', txn: { compare: [], success: [{ type: 'deleteRange', deleteRange: { key } }], failure: [] } },
    ],
    failure: [],
  };
  validateTxnRequest(request);
  const batch = engine.newBatch();
  const { result } = store.txn(batch, request);
  engine.commit(batch, () => {});
  assert.deepEqual(result.events.map((e) => e.type), ['PUT', 'DELETE']);
  assert.equal(storedChanges(engine).records, 3);
  const events = store.events({ fromRevision: rev(2), key: utf8('x'), prevKv: true }).events;
  assert.deepEqual(events.map((e) => [e.type, e.kv.modRevision, e.prevKv?.modRevision]), [['PUT', rev(2), rev(1)], ['DELETE', rev(2), rev(2)]]);
  reopenAndCompare(engine, store);
});

test('store: hashes and events are those of the revision-keyed layout (values from the build before it moved)', () => {
  const { engine, store } = newStore();
  const u = utf8;
  for (let i = 0; i < 40; i++) {
    write(engine, store, (t) => {
      t.put(u(`k${i % 7}`), u(`v${i}`), { leaseId: i % 3 });
      if (i % 5 === 0) t.put(u(`a\0${i % 4}`), u('z'));
    });
  }
  write(engine, store, (t) => t.deleteRange(u('k2'), u('k5')));
  write(engine, store, (t) => {
    t.put(u('x'), u('1'));
    t.deleteRange(u('x'));
  });
  const out: number[] = [store.hashKV(0).hash, store.hashKV(20).hash];
  const batch = engine.newBatch();
  store.compact(30, batch, 3);
  engine.commit(batch, () => {});
  out.push(store.hashKV(0).hash);
  for (let done = false; !done; ) {
    const step = engine.newBatch();
    done = store.compactStep(step, 3);
    engine.commit(step, () => {});
  }
  out.push(store.hashKV(0).hash, store.hashKV(35).hash);
  const events = store.events({ fromRevision: 30, key: u('\0'), rangeEnd: u('\0'), prevKv: true }).events;
  const shown = events.map((e) => [e.type, new TextDecoder().decode(e.kv.key), e.kv.modRevision, e.kv.version, e.prevKv?.modRevision ?? null]);
  out.push(events.length, JSON.stringify(shown).length);
  assert.deepEqual(out, [4084804730, 3248304940, 3817790608, 3817790608, 2872934059, 19, 426]);
  reopenAndCompare(engine, store);
});

test('store: one write txn at a time; store reads are refused while one is open', () => {
  const { engine, store } = newStore();
  const txn = store.beginWrite(engine.newBatch());
  assert.throws(() => store.beginWrite(engine.newBatch()), AssertionError);
  assert.throws(() => store.range({ key: utf8('a') }), AssertionError);
  txn.end();
  assert.throws(() => txn.end(), AssertionError);
  assert.throws(() => txn.put(utf8('a'), utf8('b')), AssertionError);
});

test('store: reopen rebuilds an equal index after puts, deletes and re-creations of many keys', () => {
  const { engine, store } = newStore();
  for (let i = 0; i < 200; i++) {
    const key = `key-${(i * 37) % 50}`;
    if (i % 7 === 3) del(engine, store, key);
    else put(engine, store, key, `v${i}`, { leaseId: i % 3 });
  }
  const reopened = reopenAndCompare(engine, store);
  const all = { key: utf8('\0'), rangeEnd: Uint8Array.of(0) };
  assert.deepEqual(reopened.range(all), store.range(all));
});

test('store: binary keys and values (0x00 and 0xff bytes) round-trip and sort as unsigned bytes', () => {
  const { engine, store } = newStore();
  const keys = [Uint8Array.of(0xff), Uint8Array.of(0x00, 0x01), Uint8Array.of(0x7f), Uint8Array.of(0x80, 0x00)];
  write(engine, store, (txn) => keys.forEach((k, i) => txn.put(k, Uint8Array.of(i, 0, 255))));
  const r = store.range({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) });
  assert.deepEqual(
    r.kvs.map((kv) => [...kv.key]),
    [[0x00, 0x01], [0x7f], [0x80, 0x00], [0xff]],
  );
  assert.deepEqual([...r.kvs[3]!.value], [0, 0, 255]);
  reopenAndCompare(engine, store);
});

test('store: a batch that refuses a record leaves index and storage in step', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1');
  const inner = engine.newBatch();
  const refusing = {
    put(key: Uint8Array, value: Uint8Array): void {
      if (value.length > 1000) throw new Error('value too large for this batch');
      inner.put(key, value);
    },
    putOwned(key: Uint8Array, value: Uint8Array) {
      if (value.length > 1000) throw new Error('value too large for this batch');
      inner.putOwned(key, value);
    },
    delete: (key: Uint8Array) => inner.delete(key),
    deleteRange: (start: Uint8Array, end: Uint8Array) => inner.deleteRange(start, end),
    get count() {
      return inner.count;
    },
    get sizeBytes() {
      return inner.sizeBytes;
    },
    get sealed() {
      return inner.sealed;
    },
  };
  const txn = store.beginWrite(refusing);
  assert.throws(() => txn.put(utf8('a'), new Uint8Array(5000)), /too large/);
  assert.equal(txn.changeCount, 0);
  txn.put(utf8('b'), utf8('2'));
  txn.end();
  engine.commit(inner, () => {});
  assert.equal(get(store, 'a')?.value, '1');
  assert.equal(get(store, 'b')?.version, 1);
  reopenAndCompare(engine, store);
});

test('layout: a key\'s records sort newest first, before every record of any greater key ("a" before "a\\0" before "a\\0\\0" before "b"), and parse back', () => {
  const keys = [utf8('a'), Uint8Array.of(0x61, 0), Uint8Array.of(0x61, 0, 0), Uint8Array.of(0x61, 0, 0xff), Uint8Array.of(0x61, 1), utf8('b')];
  const revs = [{ main: 2 ** 53 - 1, sub: 0 }, { main: 300, sub: 7 }, { main: 300, sub: 2 }, { main: 5, sub: 0 }];
  const stored: Uint8Array[] = [];
  for (const k of keys) for (const r of revs) stored.push(dataKey(k, r));
  const sorted = [...stored].sort(compareBytes);
  assert.deepEqual(sorted, stored, 'key order, then revisions newest first');
  for (const [i, key] of stored.entries()) {
    const parsed = parseDataKey(key);
    assert.deepEqual(parsed && { userKey: [...parsed.userKey], rev: parsed.rev }, { userKey: [...keys[Math.floor(i / revs.length)]!], rev: revs[i % revs.length] });
  }
  const span = dataKeyBounds({ start: Uint8Array.of(0x61, 0), end: Uint8Array.of(0x61, 1) });
  const inside = stored.filter((k) => compareBytes(k, span.start) >= 0 && compareBytes(k, span.end) < 0);
  assert.equal(inside.length, 3 * revs.length, 'a span holds every record of its keys and no other');
});

test('store: liveKeysAndBytes counts the live keys and their key and value bytes from record heads, as a full read does, through overwrites, deletes and compaction', () => {
  const { engine, store } = newStore();
  const fromRange = (): { keys: number; bytes: number } => {
    const r = store.range({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) });
    return { keys: r.kvs.length, bytes: r.kvs.reduce((n, kv) => n + kv.key.length + kv.value.length, 0) };
  };
  assert.deepEqual(store.liveKeysAndBytes(), { keys: 0, bytes: 0 });
  for (let i = 0; i < 50; i++) put(engine, store, `k${i % 17}`, 'v'.repeat(i));
  del(engine, store, 'k3');
  del(engine, store, 'k1', 'k12');
  put(engine, store, 'k10', 'back');
  assert.deepEqual(store.liveKeysAndBytes(), fromRange());
  compactAll(engine, store, store.currentRevision);
  assert.deepEqual(store.liveKeysAndBytes(), fromRange());
  assert.ok(fromRange().keys > 3, 'the check covers some live keys');
});

test('store: the live stats in the meta record follow every write (puts with and without prev_kv, deletes, a put and a delete of one key in one txn), a split, a merge, compaction and reopens, and agree with a count of the stored heads', () => {
  const { engine, store: first } = newStore();
  let store = first;
  const RIGHT = Uint8Array.of(0x72, 0x09, 0x6d);
  const allOf = (s: MvccStore): { keys: number; bytes: number } => {
    const r = s.range({ key: s.span.start.byteLength === 0 ? Uint8Array.of(0) : s.span.start, rangeEnd: s.span.end ?? Uint8Array.of(0) });
    return { keys: r.kvs.length, bytes: r.kvs.reduce((n, kv) => n + kv.key.length + kv.value.length, 0) };
  };
  const agree = (s: MvccStore, why: string): void => {
    const kept = s.liveKeysAndBytes();
    assert.deepEqual(kept, s.countLiveKeysAndBytes(), `${why}: kept stats against a count of the heads`);
    assert.deepEqual(kept, allOf(s), `${why}: kept stats against a read of everything`);
    s.checkInvariants();
  };
  let seed = 7;
  const next = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let round = 0; round < 300; round++) {
    const key = `k${String(next(40)).padStart(2, '0')}`;
    const op = next(10);
    if (op < 5) put(engine, store, key, 'v'.repeat(next(30)), { prevKv: op === 0 });
    else if (op < 7) del(engine, store, key, next(2) === 0 ? undefined : `k${String(next(40)).padStart(2, '0')}`);
    else if (op === 7) write(engine, store, (txn) => { txn.put(utf8(key), utf8('x')); txn.deleteRange(utf8(key)); });
    else if (op === 8) {
      const at = Math.max(store.compactedRevision + 1, store.currentRevision - next(5));
      if (at <= store.currentRevision) compactAll(engine, store, at);
    }
    else store = MvccStore.open(engine, LOCATION);
    if (round % 25 === 0) agree(store, `round ${round}`);
  }
  agree(store, 'after the writes');
  assert.ok(store.liveKeysAndBytes().keys > 5, 'some keys are live');
  let batch = engine.newBatch();
  store.splitOff(batch, utf8('k20'), RIGHT);
  engine.commit(batch, () => {});
  const right = MvccStore.open(engine, { metaPrefix: RIGHT, span: { start: utf8('k20'), end: undefined } });
  agree(store, 'the left side of the split');
  agree(right, 'the right side of the split');
  assert.ok(right.liveKeysAndBytes().keys > 0 && store.liveKeysAndBytes().keys > 0, 'both sides hold live keys');
  // Revisions are cluster-wide (one oracle): the two sides never write at the same one.
  const r = store.currentRevision;
  write(engine, right, (txn) => txn.put(utf8('k30'), utf8('after the split')), r + 1);
  write(engine, right, (txn) => txn.deleteRange(utf8('k25'), utf8('k28')), r + 2);
  write(engine, store, (txn) => txn.put(utf8('k05'), utf8('after the split')), r + 3);
  batch = engine.newBatch();
  store.absorb(batch, undefined, RIGHT);
  engine.commit(batch, () => {});
  agree(store, 'after the merge');
  agree(MvccStore.open(engine, LOCATION), 'reopened after the merge');
  assert.deepEqual(decodeMeta(engine.get(metaKey(PREFIX)) as Uint8Array).live, store.liveKeysAndBytes(), 'the meta record holds them');
});

test('store: a format-5 meta record (no live stats) is read, its stats counted once when asked for and kept from then on', () => {
  const { engine, store } = newStore();
  for (let i = 0; i < 12; i++) put(engine, store, `k${i % 5}`, `value ${i}`);
  const meta = decodeMeta(engine.get(metaKey(PREFIX)) as Uint8Array);
  const older = encodeMeta({ ...meta, live: undefined });
  older[0] = 5;
  const withoutLive = older.subarray(0, older.length - 17 - 4);
  const v5 = new Uint8Array(withoutLive.length + 4);
  v5.set(withoutLive);
  new DataView(v5.buffer).setUint32(v5.length - 4, crc32c(v5.subarray(0, v5.length - 4)));
  const batch = engine.newBatch();
  batch.put(metaKey(PREFIX), v5);
  engine.commit(batch, () => {});
  assert.equal(decodeMeta(v5).live, undefined);
  assert.equal(decodeMeta(v5).recordCount, meta.recordCount, 'the other fields read as before');
  const reopened = MvccStore.open(engine, LOCATION);
  assert.deepEqual(reopened.liveKeysAndBytes(), meta.live);
  put(engine, reopened, 'k9', 'new');
  assert.deepEqual(decodeMeta(engine.get(metaKey(PREFIX)) as Uint8Array).live, { keys: 6, bytes: meta.live!.bytes + 2 + 3 }, 'counted, then kept and written with the next meta record');
});

test('store: stores sharing a KeyHeadBudget hold at most its bytes together, oldest entries out first, a dropped store\'s too; reads are unchanged', () => {
  const engine = newEngine();
  const budget = new KeyHeadBudget(20_000);
  const left = MvccStore.open(engine, { metaPrefix: utf8('r1/'), span: { start: new Uint8Array(0), end: utf8('m') } }, { headBudget: budget });
  let right = MvccStore.open(engine, { metaPrefix: utf8('r2/'), span: { start: utf8('m'), end: undefined } }, { headBudget: budget });
  for (let i = 0; i < 300; i++) {
    put(engine, left, `a${i}`, `v${i}`);
    put(engine, right, `z${i}`, `w${i}`);
    assert.ok(budget.bytes <= budget.limitBytes, `${budget.bytes} bytes cached with a budget of ${budget.limitBytes}`);
  }
  assert.ok(budget.bytes > budget.limitBytes / 2, 'the caches fill the budget');
  // The right store is dropped (a snapshot reopened it): its entries go once they are the oldest.
  right = MvccStore.open(engine, { metaPrefix: utf8('r2/'), span: { start: utf8('m'), end: undefined } }, { headBudget: budget });
  for (let i = 0; i < 300; i++) put(engine, left, `a${i}`, `x${i}`);
  assert.ok(budget.bytes <= budget.limitBytes);
  for (let i = 0; i < 300; i += 37) {
    assert.equal(Buffer.from(left.range({ key: utf8(`a${i}`) }).kvs[0]!.value).toString(), `x${i}`);
    assert.equal(Buffer.from(right.range({ key: utf8(`z${i}`) }).kvs[0]!.value).toString(), `w${i}`);
  }
  assert.equal(right.range({ key: utf8('z0'), rangeEnd: Uint8Array.of(0), countOnly: true }).count, 300);
});
