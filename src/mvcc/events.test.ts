import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from './bytes.js';
import type { MvccEvent } from './write-txn.js';
import { codeOf, compactAll, del, newStore, put, rev, text, write } from './testing.testlib.js';

/** Events as text; `@wN` is the mod revision of the N-th write, rev(N). */
const brief = (events: readonly MvccEvent[]): string[] =>
  events.map((e) => `${e.type} ${text(e.kv.key)}@w${e.kv.modRevision - rev(0)}${e.type === 'PUT' ? `=${text(e.kv.value)} v${e.kv.version}` : ''}${e.prevKv ? ` prev=${text(e.prevKv.value)}` : ''}`);

function setup() {
  const { engine, store } = newStore();
  put(engine, store, 'a', '1'); // w1
  put(engine, store, 'b', '1'); // w2
  put(engine, store, 'a', '2'); // w3
  del(engine, store, 'a'); // w4
  write(engine, store, (t) => {
    t.put(utf8('c'), utf8('1'));
    t.put(utf8('b'), utf8('2'));
  }); // w5
  put(engine, store, 'a', '3'); // w6
  return { engine, store };
}

test('events: history of one key, of a range, and of all keys, in revision order', () => {
  const { store } = setup();
  assert.deepEqual(brief(store.events({ fromRevision: rev(1), key: utf8('a') }).events), ['PUT a@w1=1 v1', 'PUT a@w3=2 v2', 'DELETE a@w4', 'PUT a@w6=3 v1']);
  assert.deepEqual(brief(store.events({ fromRevision: 1, key: utf8('a') }).events).length, 4, 'from the empty store\'s revision 1: the same');
  assert.deepEqual(brief(store.events({ fromRevision: rev(3), key: utf8('b'), rangeEnd: utf8('d') }).events), ['PUT c@w5=1 v1', 'PUT b@w5=2 v2']);
  const all = store.events({ fromRevision: rev(1), key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) });
  assert.equal(all.events.length, 7);
  assert.equal(all.nextRevision, rev(7));
  const del4 = all.events[3]!;
  assert.deepEqual([del4.kv.createRevision, del4.kv.version, del4.kv.value.length, del4.kv.lease], [0, 0, 0, 0], 'a DELETE carries the key and mod revision only');
});

test('events: prev_kv shows the value before each change', () => {
  const { store } = setup();
  const events = store.events({ fromRevision: rev(1), key: utf8('a'), rangeEnd: utf8('c'), prevKv: true }).events;
  assert.deepEqual(brief(events), ['PUT a@w1=1 v1', 'PUT b@w2=1 v1', 'PUT a@w3=2 v2 prev=1', 'DELETE a@w4 prev=2', 'PUT b@w5=2 v2 prev=1', 'PUT a@w6=3 v1']);
});

test('events: the events returned by end() equal those read back from storage', () => {
  const { engine, store } = setup();
  const live = write(engine, store, (t) => {
    t.put(utf8('a'), utf8('4'));
    t.deleteRange(utf8('b'), utf8('d'));
  });
  const stored = store.events({ fromRevision: rev(7), key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0), prevKv: true });
  assert.deepEqual(stored.events, live.events);
  assert.deepEqual(brief(live.events), ['PUT a@w7=4 v2 prev=3', 'DELETE b@w7 prev=2', 'DELETE c@w7 prev=1']);
});

test('events: below the compacted revision the answer is COMPACTED; from it, history is whole and deterministic', () => {
  const { engine, store } = setup();
  compactAll(engine, store, rev(4));
  assert.equal(codeOf(() => store.events({ fromRevision: rev(3), key: utf8('a') })), 'COMPACTED');
  assert.deepEqual(brief(store.events({ fromRevision: rev(4), key: utf8('a'), prevKv: true }).events), ['DELETE a@w4', 'PUT a@w6=3 v1']);
  // b@w2's previous value is compacted away, b@w5 keeps prev=1 because b@w2 is the newest b at ≤ w4.
  assert.deepEqual(brief(store.events({ fromRevision: rev(4), key: utf8('b'), prevKv: true }).events), ['PUT b@w5=2 v2 prev=1']);
});

test('events: from a future revision there is nothing yet; a scan limit stops at revision boundaries', () => {
  const { store } = setup();
  assert.deepEqual(store.events({ fromRevision: rev(9), key: utf8('a') }), { events: [], nextRevision: rev(9) });
  const everything = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
  let from = rev(1);
  const pages: string[][] = [];
  while (from <= store.currentRevision) {
    const page = store.events({ ...everything, fromRevision: from, scanLimit: 1 });
    pages.push(brief(page.events));
    assert.ok(page.nextRevision > from);
    from = page.nextRevision;
  }
  assert.deepEqual(pages[4], ['PUT c@w5=1 v1', 'PUT b@w5=2 v2'], 'both changes of the fifth write come together');
  assert.equal(pages.flat().length, 7);
});
