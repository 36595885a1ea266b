import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prefixEnd, utf8 } from './bytes.js';
import type { RangeOptions, SortOrder, SortTarget } from './range.js';
import type { MvccStore } from './store.js';
import { codeOf, newStore, put, rev, text, write } from './testing.testlib.js';

/**
 * Keys and their (create, mod, version, value) after setup(), where rev(n)
 * is the revision of the n-th write:
 *   a: create rev(1), mod rev(1), v1, "zeta"
 *   b: create rev(2), mod rev(6), v3, "alpha"
 *   c: create rev(3), mod rev(3), v1, "mid"
 *   d: create rev(4), mod rev(5), v2, "beta"
 *   e: create rev(7), mod rev(7), v1, "alpha"   (same value as b)
 */
function setup(): MvccStore {
  const { engine, store } = newStore();
  put(engine, store, 'a', 'zeta');
  put(engine, store, 'b', 'x');
  put(engine, store, 'c', 'mid');
  put(engine, store, 'd', 'x');
  put(engine, store, 'd', 'beta');
  write(engine, store, (t) => {
    t.put(utf8('b'), utf8('y'));
    t.put(utf8('b'), utf8('alpha'));
  });
  put(engine, store, 'e', 'alpha');
  return store;
}

const all = (extra: Partial<RangeOptions> = {}): RangeOptions => ({ key: utf8('a'), rangeEnd: Uint8Array.of(0), ...extra });
const keys = (store: MvccStore, options: RangeOptions): string => store.range(options).kvs.map((kv) => text(kv.key)).join('');

test('range: key forms: one key, [key, end), "\\0" = all keys ≥ key, prefix via prefixEnd', () => {
  const store = setup();
  assert.equal(keys(store, { key: utf8('c') }), 'c');
  assert.equal(keys(store, { key: utf8('c'), rangeEnd: new Uint8Array(0) }), 'c', 'empty range_end is one key');
  assert.equal(keys(store, { key: utf8('b'), rangeEnd: utf8('d') }), 'bc');
  assert.equal(keys(store, { key: utf8('c'), rangeEnd: Uint8Array.of(0) }), 'cde');
  assert.equal(keys(store, { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) }), 'abcde');
  assert.equal(keys(store, { key: utf8('b'), rangeEnd: prefixEnd(utf8('b')) }), 'b');
  assert.equal(keys(store, { key: utf8('d'), rangeEnd: utf8('b') }), '', 'an inverted range is empty');
  assert.equal(codeOf(() => store.range({ key: new Uint8Array(0) })), 'EMPTY_KEY');
});

test('range: limit sets more; count is the total in the range', () => {
  const store = setup();
  const r = store.range(all({ limit: 2 }));
  assert.deepEqual([r.kvs.map((kv) => text(kv.key)).join(''), r.more, r.count, r.revision], ['ab', true, 5, rev(7)]);
  const exact = store.range(all({ limit: 5 }));
  assert.deepEqual([exact.kvs.length, exact.more, exact.count], [5, false, 5]);
  const none = store.range(all({ limit: 0 }));
  assert.deepEqual([none.kvs.length, none.more], [5, false]);
});

test('range: count_only returns the count and no kvs; keys_only drops values', () => {
  const store = setup();
  assert.deepEqual(store.range(all({ countOnly: true })), { kvs: [], more: false, count: 5, revision: rev(7) });
  const ko = store.range(all({ keysOnly: true }));
  assert.equal(ko.kvs.length, 5);
  assert.ok(ko.kvs.every((kv) => kv.value.length === 0));
  assert.deepEqual(
    ko.kvs.map((kv) => [kv.createRevision, kv.modRevision, kv.version]),
    [[rev(1), rev(1), 1], [rev(2), rev(6), 3], [rev(3), rev(3), 1], [rev(4), rev(5), 2], [rev(7), rev(7), 1]],
  );
  // Sorting by value with keys_only still reads values to sort, then drops them.
  const byValue = store.range(all({ keysOnly: true, sortTarget: 'VALUE', sortOrder: 'ASCEND' }));
  assert.equal(byValue.kvs.map((kv) => text(kv.key)).join(''), 'bedca');
  assert.ok(byValue.kvs.every((kv) => kv.value.length === 0));
});

test('range: every sort target in both orders; ties keep key order; NONE with a non-KEY target sorts ascending', () => {
  const store = setup();
  const cases: [SortTarget, SortOrder, string][] = [
    ['KEY', 'ASCEND', 'abcde'],
    ['KEY', 'DESCEND', 'edcba'],
    ['KEY', 'NONE', 'abcde'],
    ['VERSION', 'ASCEND', 'acedb'],
    ['VERSION', 'DESCEND', 'bdace'],
    ['CREATE', 'ASCEND', 'abcde'],
    ['CREATE', 'DESCEND', 'edcba'],
    ['MOD', 'ASCEND', 'acdbe'],
    ['MOD', 'DESCEND', 'ebdca'],
    ['VALUE', 'ASCEND', 'bedca'],
    ['VALUE', 'DESCEND', 'acdbe'],
    ['VALUE', 'NONE', 'bedca'],
  ];
  for (const [sortTarget, sortOrder, expected] of cases) {
    assert.equal(keys(store, all({ sortTarget, sortOrder })), expected, `${sortTarget} ${sortOrder}`);
  }
  // Sorting happens before the limit.
  const top = store.range(all({ sortTarget: 'MOD', sortOrder: 'DESCEND', limit: 2 }));
  assert.deepEqual([top.kvs.map((kv) => text(kv.key)).join(''), top.more, top.count], ['eb', true, 5]);
  // A target without an order sorts the whole range ascending before the limit (etcd would sort only the first limit + 1 keys).
  const byValue = store.range({ key: utf8('c'), rangeEnd: Uint8Array.of(0), sortTarget: 'VALUE', limit: 1 });
  assert.deepEqual([byValue.kvs.map((kv) => text(kv.key)).join(''), byValue.more], ['e', true], 'etcd would answer d (it sorts c and d only)');
  assert.equal(codeOf(() => store.range(all({ sortOrder: 'SIDEWAYS' as SortOrder }))), 'INVALID_SORT_OPTION');
  assert.equal(codeOf(() => store.range(all({ sortTarget: 'COLOUR' as SortTarget }))), 'INVALID_SORT_OPTION');
});

test('range: min/max mod and create revision filters; count ignores them, more counts after them', () => {
  const store = setup();
  assert.equal(keys(store, all({ minModRevision: rev(5) })), 'bde');
  assert.equal(keys(store, all({ maxModRevision: rev(3) })), 'ac');
  assert.equal(keys(store, all({ minCreateRevision: rev(3) })), 'cde');
  assert.equal(keys(store, all({ maxCreateRevision: rev(2) })), 'ab');
  assert.equal(keys(store, all({ minModRevision: rev(3), maxModRevision: rev(6), minCreateRevision: rev(2) })), 'bcd');
  const r = store.range(all({ minModRevision: rev(3), limit: 2 }));
  assert.deepEqual([r.kvs.map((kv) => text(kv.key)).join(''), r.more, r.count], ['bc', true, 5]);
});

test('range: at a past revision, with options', () => {
  const store = setup();
  const r = store.range(all({ revision: rev(4), sortTarget: 'VALUE', sortOrder: 'DESCEND' }));
  assert.deepEqual(
    r.kvs.map((kv) => `${text(kv.key)}=${text(kv.value)}`),
    ['a=zeta', 'b=x', 'd=x', 'c=mid'],
  );
  assert.equal(r.revision, rev(7), 'the header carries the current revision');
  assert.equal(store.range(all({ revision: rev(4), countOnly: true })).count, 4);
});
