import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AssertionError } from '../base/index.js';
import { KeyHistory, changeCount, mainAt } from './key-index.js';
import { SortedKeys } from './sorted-keys.js';

const r = (main: number, sub = 0) => ({ main, sub });
const revsOf = (h: KeyHistory): string[] =>
  h.generations.map((g) => Array.from({ length: changeCount(g) }, (_, i) => `${mainAt(g, i)}${g.closed && i === changeCount(g) - 1 ? 't' : ''}`).join(','));

/** etcd key_index.go's worked example: put(1);put(2);tombstone(3);put(4);tombstone(5). */
function example(): KeyHistory {
  const h = new KeyHistory(Uint8Array.of(1));
  h.put(r(1));
  h.put(r(2));
  h.tombstone(r(3));
  h.put(r(4));
  h.tombstone(r(5));
  return h;
}

test('key index: get follows generations; deleted in the gaps; versions count within a generation', () => {
  const h = example();
  assert.equal(h.get(0), undefined);
  assert.deepEqual(h.get(1), { modified: r(1), created: 1, version: 1 });
  assert.deepEqual(h.get(2), { modified: r(2), created: 1, version: 2 });
  assert.equal(h.get(3), undefined);
  assert.deepEqual(h.get(4), { modified: r(4), created: 4, version: 1 });
  assert.equal(h.get(5), undefined);
  assert.equal(h.get(99), undefined);
  assert.equal(h.live(), undefined);
  h.checkInvariants();
});

test('key index: compaction follows etcd\'s example', () => {
  const h = example();
  h.compact(2);
  assert.deepEqual(revsOf(h), ['2,3t', '4,5t']);
  h.compact(4);
  assert.deepEqual(revsOf(h), ['4,5t']);
  h.compact(5);
  assert.deepEqual(revsOf(h), ['5t'], 'a tombstone at exactly the compaction revision stays');
  assert.deepEqual([h.generations[0]!.created, h.generations[0]!.version], [0, 0]);
  h.compact(6);
  assert.ok(h.isEmpty);
});

test('key index: compaction keeps the newest change ≤ rev of a live key and everything after', () => {
  const h = new KeyHistory(Uint8Array.of(1));
  for (let i = 1; i <= 5; i++) h.put(r(i * 10));
  h.compact(35);
  assert.deepEqual(revsOf(h), ['30,40,50']);
  assert.deepEqual(h.get(35), { modified: r(30), created: 10, version: 3 });
  assert.deepEqual(h.get(50), { modified: r(50), created: 10, version: 5 });
  h.compact(100);
  assert.deepEqual(revsOf(h), ['50'], 'a live key always keeps its latest version');
  assert.ok(h.contains(r(50)) && !h.contains(r(40)) && !h.contains(r(50, 1)));
  h.checkInvariants();
});

test('key index: sub-revisions: several changes in one main revision; reads see the last', () => {
  const h = new KeyHistory(Uint8Array.of(1));
  h.put(r(7, 0));
  h.put(r(7, 1));
  h.tombstone(r(7, 2));
  h.put(r(7, 3));
  assert.deepEqual(h.get(7), { modified: r(7, 3), created: 7, version: 1 });
  assert.equal(h.get(6), undefined);
  assert.throws(() => h.put(r(7, 3)), AssertionError, 'revisions must rise');
  assert.throws(() => h.put(r(6, 9)), AssertionError);
});

test('key index: compaction when one txn deletes and re-creates a key at exactly the compaction revision', () => {
  const h = new KeyHistory(Uint8Array.of(1));
  h.put(r(1));
  h.tombstone(r(5, 0));
  h.put(r(5, 1));
  h.put(r(5, 2));
  h.compact(5);
  // Only the newest change ≤ 5 stays: the old generation and the superseded sub-revision go.
  assert.deepEqual(revsOf(h), ['5']);
  assert.deepEqual(h.get(5), { modified: r(5, 2), created: 5, version: 2 });
  h.checkInvariants();
});

test('key index: tombstone of a deleted key is a bug', () => {
  const h = new KeyHistory(Uint8Array.of(1));
  assert.throws(() => h.tombstone(r(1)), AssertionError);
  h.put(r(1));
  h.tombstone(r(2));
  assert.throws(() => h.tombstone(r(3)), AssertionError);
});

test('sorted keys: random inserts, deletes and range scans agree with a sorted array', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.string({ maxLength: 3 })), { maxLength: 3000 }), fc.string({ maxLength: 2 }), fc.string({ maxLength: 2 }), (ops, lo, hi) => {
      const set = new SortedKeys();
      const model = new Set<string>();
      for (const [add, k] of ops) {
        if (add && !model.has(k)) {
          set.insert(k);
          model.add(k);
        } else if (!add && model.has(k)) {
          set.delete(k);
          model.delete(k);
        }
      }
      const sorted = [...model].sort();
      assert.deepEqual([...set], sorted);
      assert.equal(set.size, sorted.length);
      const inRange = sorted.filter((k) => k >= lo && (hi === '' || k < hi));
      const all: string[] = [];
      set.forEachInRange(lo, hi, (k) => {
        all.push(k);
      });
      assert.deepEqual(all, inRange);
      const visited: string[] = [];
      set.forEachInRange(lo, hi, (k) => {
        visited.push(k);
        return visited.length < 3;
      });
      assert.deepEqual(visited, inRange.slice(0, 3), 'forEachInRange stops when told');
    }),
    { numRuns: 60 },
  );
});

test('sorted keys: fromSorted then inserts across chunk splits', () => {
  const initial = Array.from({ length: 2000 }, (_, i) => String(i).padStart(5, '0'));
  const set = SortedKeys.fromSorted(initial);
  for (let i = 0; i < 2000; i++) set.insert(`${String(i).padStart(5, '0')}x`);
  const all = [...set];
  assert.equal(all.length, 4000);
  assert.deepEqual(all, [...all].sort());
  const seen: string[] = [];
  set.forEachInRange('01000', '01002', (k) => {
    seen.push(k);
  });
  assert.deepEqual(seen, ['01000', '01000x', '01001', '01001x']);
});
