import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from './bytes.js';
import type { MvccEvent } from './write-txn.js';
import { codeOf, compactAll, del, newStore, put, text, write } from './testing.testlib.js';

const brief = (events: readonly MvccEvent[]): string[] =>
  events.map((e) => `${e.type} ${text(e.kv.key)}@${e.kv.modRevision}${e.type === 'PUT' ? `=${text(e.kv.value)} v${e.kv.version}` : ''}${e.prevKv ? ` prev=${text(e.prevKv.value)}` : ''}`);

function setup() {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1'); // 1
  put(engine, store, 'b', '1'); // 2
  put(engine, store, 'a', '2'); // 3
  del(engine, store, 'a'); // 4
  write(engine, store, (t) => {
    t.put(utf8('c'), utf8('1'));
    t.put(utf8('b'), utf8('2'));
  }); // 5
  put(engine, store, 'a', '3'); // 6
  return { engine, store };
}

test('events: history of one key, of a range, and of all keys, in revision order', () => {
  const { store } = setup();
  assert.deepEqual(brief(store.events({ fromRevision: 1, key: utf8('a') }).events), ['PUT a@1=1 v1', 'PUT a@3=2 v2', 'DELETE a@4', 'PUT a@6=3 v1']);
  assert.deepEqual(brief(store.events({ fromRevision: 3, key: utf8('b'), rangeEnd: utf8('d') }).events), ['PUT c@5=1 v1', 'PUT b@5=2 v2']);
  const all = store.events({ fromRevision: 1, key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) });
  assert.equal(all.events.length, 7);
  assert.equal(all.nextRevision, 7);
  const del4 = all.events[3]!;
  assert.deepEqual([del4.kv.createRevision, del4.kv.version, del4.kv.value.length, del4.kv.lease], [0, 0, 0, 0], 'a DELETE carries the key and mod revision only');
});

test('events: prev_kv shows the value before each change', () => {
  const { store } = setup();
  const events = store.events({ fromRevision: 1, key: utf8('a'), rangeEnd: utf8('c'), prevKv: true }).events;
  assert.deepEqual(brief(events), ['PUT a@1=1 v1', 'PUT b@2=1 v1', 'PUT a@3=2 v2 prev=1', 'DELETE a@4 prev=2', 'PUT b@5=2 v2 prev=1', 'PUT a@6=3 v1']);
});

test('events: the events returned by end() equal those read back from storage', () => {
  const { engine, store } = setup();
  const live = write(engine, store, (t) => {
    t.put(utf8('a'), utf8('4'));
    t.deleteRange(utf8('b'), utf8('d'));
  });
  const stored = store.events({ fromRevision: 7, key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0), prevKv: true });
  assert.deepEqual(stored.events, live.events);
  assert.deepEqual(brief(live.events), ['PUT a@7=4 v2 prev=3', 'DELETE b@7 prev=2', 'DELETE c@7 prev=1']);
});

test('events: below the compacted revision the answer is COMPACTED; from it, history is whole and deterministic', () => {
  const { engine, store } = setup();
  compactAll(engine, store, 4);
  assert.equal(codeOf(() => store.events({ fromRevision: 3, key: utf8('a') })), 'COMPACTED');
  assert.deepEqual(brief(store.events({ fromRevision: 4, key: utf8('a'), prevKv: true }).events), ['DELETE a@4', 'PUT a@6=3 v1']);
  // b@2's previous value is compacted away, b@5 keeps prev=1 because b@2 is the newest b at ≤ 4.
  assert.deepEqual(brief(store.events({ fromRevision: 4, key: utf8('b'), prevKv: true }).events), ['PUT b@5=2 v2 prev=1']);
});

test('events: from a future revision there is nothing yet; a scan limit stops at revision boundaries', () => {
  const { store } = setup();
  assert.deepEqual(store.events({ fromRevision: 9, key: utf8('a') }), { events: [], nextRevision: 9 });
  const everything = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
  let from = 1;
  const pages: string[][] = [];
  while (from <= store.currentRevision) {
    const page = store.events({ ...everything, fromRevision: from, scanLimit: 1 });
    pages.push(brief(page.events));
    assert.ok(page.nextRevision > from);
    from = page.nextRevision;
  }
  assert.deepEqual(pages[4], ['PUT c@5=1 v1', 'PUT b@5=2 v2'], 'both changes of revision 5 come together');
  assert.equal(pages.flat().length, 7);
});
