import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError } from '../base/index.js';
import { RaftLog } from './raft_log.js';
import { MemoryLogStorage } from './storage.js';
import { EMPTY_CONF_STATE, type Entry } from './types.js';

function ents(terms: number[], first = 1, bytes = 0): Entry[] {
  return terms.map((term, i) => ({ term, index: first + i, type: 'normal', data: new Uint8Array(bytes) }));
}

/** A log whose first `stable` entries are in storage and the rest unstable. */
function log(terms: number[], stable = terms.length, maxApplying = Number.MAX_SAFE_INTEGER): RaftLog {
  const s = new MemoryLogStorage();
  s.append(ents(terms.slice(0, stable)));
  const l = new RaftLog(s, maxApplying);
  if (stable < terms.length) l.append(ents(terms.slice(stable), stable + 1));
  return l;
}

const terms = (l: RaftLog): number[] => l.allEntries().map((e) => e.term);

test('RaftLog.maybeAppend: the consistency check, conflicts, and the commit index (etcd TestLogMaybeAppend)', () => {
  const cases: { index: number; logTerm: number; commit: number; entries: Entry[]; lastNew: number | undefined; want: number[]; committed: number }[] = [
    // prev does not match
    { index: 3, logTerm: 2, commit: 3, entries: ents([4], 4), lastNew: undefined, want: [1, 2, 3], committed: 1 },
    { index: 4, logTerm: 3, commit: 3, entries: ents([4], 5), lastNew: undefined, want: [1, 2, 3], committed: 1 },
    // match with the last entry
    { index: 3, logTerm: 3, commit: 3, entries: [], lastNew: 3, want: [1, 2, 3], committed: 3 },
    { index: 3, logTerm: 3, commit: 4, entries: [], lastNew: 3, want: [1, 2, 3], committed: 3 },
    { index: 3, logTerm: 3, commit: 2, entries: [], lastNew: 3, want: [1, 2, 3], committed: 2 },
    { index: 3, logTerm: 3, commit: 5, entries: ents([4, 4], 4), lastNew: 5, want: [1, 2, 3, 4, 4], committed: 5 },
    // match with an earlier entry; the following ones agree
    { index: 1, logTerm: 1, commit: 3, entries: ents([2], 2), lastNew: 2, want: [1, 2, 3], committed: 2 },
    // match, then a conflict at 3: truncated and replaced
    { index: 2, logTerm: 2, commit: 3, entries: ents([4], 3), lastNew: 3, want: [1, 2, 4], committed: 3 },
    { index: 1, logTerm: 1, commit: 2, entries: ents([4, 4], 2), lastNew: 3, want: [1, 4, 4], committed: 2 },
  ];
  for (const [i, c] of cases.entries()) {
    const l = log([1, 2, 3]);
    l.commitTo(1);
    assert.equal(l.maybeAppend(c.index, c.logTerm, c.commit, c.entries), c.lastNew, `case ${i}`);
    assert.deepEqual(terms(l), c.want, `case ${i}`);
    assert.equal(l.committed, c.committed, `case ${i}`);
  }
});

test('RaftLog.maybeAppend: overwriting a committed entry is a bug', () => {
  const l = log([1, 2, 3]);
  l.commitTo(2);
  assert.throws(() => l.maybeAppend(1, 1, 3, ents([4], 2)), AssertionError);
});

test('RaftLog.findConflict: the first index whose term differs, or beyond our log', () => {
  const l = log([1, 2, 3]);
  assert.equal(l.findConflict([]), 0);
  assert.equal(l.findConflict(ents([1, 2, 3])), 0);
  assert.equal(l.findConflict(ents([2, 3], 2)), 0);
  assert.equal(l.findConflict(ents([2, 3, 4], 2)), 4, 'new entries');
  assert.equal(l.findConflict(ents([4, 4], 2)), 2);
  assert.equal(l.findConflict(ents([1, 4], 1)), 2);
});

test('RaftLog.findConflictByTerm: the last index at or below `index` with a term ≤ `term` (fast backtracking)', () => {
  const l = log([1, 1, 1, 4, 4, 5, 5, 6, 6, 6]); // Figure 7, leader
  assert.deepEqual(l.findConflictByTerm(10, 3), { index: 3, term: 1 }, 'skips terms 4-6 at once');
  assert.deepEqual(l.findConflictByTerm(7, 4), { index: 5, term: 4 });
  assert.deepEqual(l.findConflictByTerm(10, 6), { index: 10, term: 6 });
  assert.deepEqual(l.findConflictByTerm(2, 0), { index: 0, term: 0 });
  const s = new MemoryLogStorage();
  s.append(ents([1, 2, 3, 4]));
  s.compact(2);
  const compacted = new RaftLog(s, Infinity);
  assert.deepEqual(compacted.findConflictByTerm(4, 1), { index: 1, term: 0 }, 'below the compaction point the term is unknown');
});

test('RaftLog.isUpToDate: a later last term wins, then a longer log (§5.4.1)', () => {
  const l = log([1, 2, 2]);
  assert.equal(l.isUpToDate(3, 2), true);
  assert.equal(l.isUpToDate(4, 2), true);
  assert.equal(l.isUpToDate(2, 2), false);
  assert.equal(l.isUpToDate(1, 3), true);
  assert.equal(l.isUpToDate(10, 1), false);
});

test('RaftLog.maybeCommit: only an entry of the given (current) term is committed by counting (§5.4.2)', () => {
  const l = log([1, 1, 2]);
  assert.equal(l.maybeCommit(2, 2), false, 'entry 2 has term 1');
  assert.equal(l.committed, 0);
  assert.equal(l.maybeCommit(3, 2), true);
  assert.equal(l.committed, 3);
  assert.equal(l.maybeCommit(2, 1), false, 'never backwards');
});

test('RaftLog.commitTo / appliedTo: never backwards, never beyond, applied ≤ committed', () => {
  const l = log([1, 1, 1]);
  l.commitTo(2);
  l.commitTo(1);
  assert.equal(l.committed, 2);
  assert.throws(() => l.commitTo(4), AssertionError);
  l.appliedTo(2);
  assert.equal(l.applied, 2);
  assert.throws(() => l.appliedTo(3), AssertionError, 'beyond committed');
  assert.throws(() => l.appliedTo(1), AssertionError, 'backwards');
});

test('RaftLog: stable and unstable entries read as one log; stableTo moves the boundary', () => {
  const l = log([1, 1, 2, 2, 3], 3);
  assert.deepEqual(terms(l), [1, 1, 2, 2, 3]);
  assert.equal(l.unstableEntries().length, 2);
  assert.deepEqual(l.slice(2, 5, Infinity).map((e) => e.index), [2, 3, 4]);
  assert.equal(l.termOrUndefined(5), 3);
  assert.equal(l.termOrUndefined(6), undefined);
  (l.storage as MemoryLogStorage).append(l.unstableEntries()); // the application persists them
  l.stableTo(5, 3);
  assert.equal(l.unstableEntries().length, 0);
  l.stableTo(5, 9); // a stale acknowledgement with the wrong term changes nothing
  assert.equal(l.lastIndex(), 5);
});

test('RaftLog.append: a conflicting tail replaces unstable entries, and may reach into stable ones', () => {
  const l = log([1, 1, 2, 2, 2], 3);
  l.append(ents([3, 3], 5));
  assert.deepEqual(terms(l), [1, 1, 2, 2, 3, 3]);
  l.append(ents([4], 3));
  assert.deepEqual(terms(l), [1, 1, 4], 'truncated below the unstable offset; storage is fixed when persisted');
  l.commitTo(2);
  assert.throws(() => l.append(ents([5], 2)), AssertionError, 'rewriting a committed entry');
});

test('RaftLog.nextCommittedEntries: committed but unapplied entries, limited in bytes (at least one)', () => {
  const s = new MemoryLogStorage();
  s.append(ents([1, 1, 1, 1], 1, 100)); // 124 bytes each
  const l = new RaftLog(s, 200);
  assert.deepEqual(l.nextCommittedEntries(), []);
  l.commitTo(4);
  assert.deepEqual(l.nextCommittedEntries().map((e) => e.index), [1], 'one entry fits the limit');
  l.appliedTo(1);
  assert.deepEqual(l.nextCommittedEntries().map((e) => e.index), [2]);
  l.appliedTo(4);
  assert.equal(l.hasNextCommittedEntries(), false);
});

test('RaftLog.restore: a snapshot becomes the log; compacted indexes have no term', () => {
  const l = log([1, 1, 1]);
  l.restore({ metadata: { index: 10, term: 4, confState: EMPTY_CONF_STATE }, data: new Uint8Array() });
  assert.equal(l.committed, 10);
  assert.equal(l.firstIndex(), 11);
  assert.equal(l.lastIndex(), 10);
  assert.equal(l.lastTerm(), 4);
  assert.equal(l.termOrUndefined(10), 4);
  assert.equal(l.termOrUndefined(3), undefined);
  assert.equal(l.matchTerm(10, 4), true);
  assert.equal(l.nextCommittedEntries().length, 0, 'applying a snapshot is not done entry by entry');
});

test('RaftLog: a storage that starts from a snapshot counts it as committed and applied', () => {
  const s = new MemoryLogStorage();
  s.applySnapshot({ metadata: { index: 5, term: 2, confState: EMPTY_CONF_STATE }, data: new Uint8Array() });
  const l = new RaftLog(s, Infinity);
  assert.equal(l.committed, 5);
  assert.equal(l.applied, 5);
  assert.equal(l.lastTerm(), 2);
  assert.deepEqual(l.allEntries(), []);
});
