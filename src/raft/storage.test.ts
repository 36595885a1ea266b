import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError, isTesseraError } from '../base/index.js';
import { MemoryLogStorage } from './storage.js';
import { EMPTY_CONF_STATE, type Entry, limitSize } from './types.js';

function ents(terms: number[], first = 1, bytes = 0): Entry[] {
  return terms.map((term, i) => ({ term, index: first + i, type: 'normal', data: new Uint8Array(bytes) }));
}

function withLog(terms: number[]): MemoryLogStorage {
  const s = new MemoryLogStorage();
  s.append(ents(terms));
  return s;
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isTesseraError(err)) return err.code;
    throw err;
  }
  return 'ok';
}

test('MemoryLogStorage: a new storage is empty at index 0, term 0, with empty state', () => {
  const s = new MemoryLogStorage();
  assert.equal(s.firstIndex(), 1);
  assert.equal(s.lastIndex(), 0);
  assert.equal(s.term(0), 0);
  assert.deepEqual(s.initialState(), { hardState: { term: 0, vote: 0, commit: 0 }, confState: EMPTY_CONF_STATE });
  assert.equal(code(() => s.entries(1, 1, 100)), 'LOG_UNAVAILABLE', 'only the dummy entry');
});

test('MemoryLogStorage.append: appends, and replaces a conflicting suffix', () => {
  const s = withLog([1, 1, 2]);
  assert.equal(s.lastIndex(), 3);
  s.append(ents([3, 3], 3));
  assert.deepEqual(s.entries(1, 5, Infinity).map((e) => e.term), [1, 1, 3, 3]);
  s.append(ents([4], 2));
  assert.equal(s.lastIndex(), 2, 'everything after a rewritten index is dropped');
  assert.equal(s.term(2), 4);
  assert.throws(() => s.append(ents([4], 5)), AssertionError, 'a gap is a bug');
});

test('MemoryLogStorage.entries and term: bounds give typed errors', () => {
  const s = withLog([1, 2, 3, 4]);
  assert.deepEqual(s.entries(2, 4, Infinity).map((e) => e.index), [2, 3]);
  assert.equal(code(() => s.entries(2, 6, Infinity)), 'LOG_UNAVAILABLE');
  assert.equal(code(() => s.term(5)), 'LOG_UNAVAILABLE');
  s.compact(2);
  assert.equal(s.firstIndex(), 3);
  assert.equal(s.term(2), 2, 'the compaction point keeps its term');
  assert.equal(code(() => s.term(1)), 'LOG_COMPACTED');
  assert.equal(code(() => s.entries(2, 4, Infinity)), 'LOG_COMPACTED');
  assert.equal(code(() => s.compact(2)), 'LOG_COMPACTED', 'compacting again');
  assert.throws(() => s.compact(9), AssertionError, 'beyond the last index is a bug');
});

test('MemoryLogStorage.entries: at most maxBytes, but always at least one entry', () => {
  const s = new MemoryLogStorage();
  s.append(ents([1, 1, 1, 1], 1, 100)); // 124 bytes each, with the header estimate
  assert.equal(s.entries(1, 5, 1).length, 1);
  assert.equal(s.entries(1, 5, 250).length, 2);
  assert.equal(s.entries(1, 5, 10_000).length, 4);
  assert.equal(limitSize([], 1).length, 0);
});

test('MemoryLogStorage.append: entries that are all below the first index are ignored; overlapping ones are trimmed', () => {
  const s = withLog([1, 1, 1, 2]);
  s.compact(3);
  s.append(ents([1, 1], 1));
  assert.equal(s.lastIndex(), 4);
  s.append(ents([1, 5], 3)); // 3 is compacted, 4 is replaced
  assert.equal(s.firstIndex(), 4);
  assert.equal(s.term(4), 5);
});

test('MemoryLogStorage snapshots: createSnapshot records a point, applySnapshot replaces the log, older ones are refused', () => {
  const s = withLog([1, 1, 2, 2]);
  const cs = { ...EMPTY_CONF_STATE, voters: [1, 2, 3] };
  const snap = s.createSnapshot(3, cs, new Uint8Array([7]));
  assert.deepEqual(snap.metadata, { index: 3, term: 2, confState: cs });
  assert.equal(s.lastIndex(), 4, 'creating a snapshot does not compact');
  assert.equal(code(() => s.createSnapshot(2, cs, new Uint8Array())), 'SNAPSHOT_OUT_OF_DATE');
  assert.deepEqual(s.initialState().confState, cs);
  const other = new MemoryLogStorage();
  other.append(ents([1, 1]));
  other.applySnapshot({ metadata: { index: 10, term: 3, confState: cs }, data: new Uint8Array() });
  assert.equal(other.firstIndex(), 11);
  assert.equal(other.lastIndex(), 10);
  assert.equal(other.term(10), 3);
  assert.equal(code(() => other.applySnapshot({ metadata: { index: 10, term: 3, confState: cs }, data: new Uint8Array() })), 'SNAPSHOT_OUT_OF_DATE');
});

test('MemoryLogStorage.clone is independent of the original', () => {
  const s = withLog([1, 2]);
  s.setHardState({ term: 2, vote: 1, commit: 1 });
  const c = s.clone();
  s.append(ents([3], 3));
  s.setHardState({ term: 3, vote: 0, commit: 2 });
  assert.equal(c.lastIndex(), 2);
  assert.deepEqual(c.initialState().hardState, { term: 2, vote: 1, commit: 1 });
});
