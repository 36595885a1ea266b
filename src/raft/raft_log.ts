import { assert, isTesseraError, TesseraError } from '../base/index.js';
import type { LogStorage } from './storage.js';
import { UnstableLog } from './log_unstable.js';
import { type Entry, type Snapshot, limitSize } from './types.js';

/**
 * The Raft log: stable storage plus the unstable tail, and the commit and
 * apply cursors. Invariant: applied ≤ committed ≤ lastIndex().
 */
export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: UnstableLog;
  /** Highest index known to be stored on a quorum. */
  committed: number;
  /** Highest index the application has applied. */
  applied: number;
  private readonly maxApplyingBytes: number;

  constructor(storage: LogStorage, maxApplyingBytes: number) {
    this.storage = storage;
    this.maxApplyingBytes = maxApplyingBytes;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new UnstableLog(last + 1);
    // The snapshot position counts as committed and applied: it is the state the application starts from.
    this.committed = first - 1;
    this.applied = first - 1;
  }

  toString(): string {
    return `committed=${this.committed} applied=${this.applied} unstable.offset=${this.unstable.offset} unstable.len=${this.unstable.entries.length}`;
  }

  /**
   * Appends a leader's entries after checking that our entry at `index` has
   * `logTerm` (the Log Matching check, §5.3). Returns the last new index, or
   * undefined if the check failed.
   */
  maybeAppend(index: number, logTerm: number, committed: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, () => `entry ${conflict} conflicts with a committed entry (committed ${this.committed})`);
      this.append(entries.slice(conflict - index - 1));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = (entries[0] as Entry).index - 1;
    assert(after >= this.committed, () => `append after ${after} would overwrite committed ${this.committed}`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /** The first index whose term differs from ours, 0 if none; an index beyond ours counts as a conflict. */
  findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * For fast backtracking (§5.3, "the follower can include the term of the
   * conflicting entry"): the largest index ≤ `index` whose term is ≤ `term`,
   * with that term.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = index; ; i--) {
      const t = this.termOrUndefined(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
  }

  unstableEntries(): readonly Entry[] {
    return this.unstable.entries;
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > this.applied && this.applied + 1 >= this.firstIndex();
  }

  nextCommittedEntries(): readonly Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    return this.slice(this.applied + 1, this.committed + 1, this.maxApplyingBytes);
  }

  /** Entries in (applied, upTo], for the deliberate apply-uncommitted bug only. */
  entriesAfterApplied(upTo: number): readonly Entry[] {
    if (upTo <= this.applied || this.applied + 1 < this.firstIndex()) return [];
    return this.slice(this.applied + 1, upTo + 1, this.maxApplyingBytes);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.termOrUndefined(this.lastIndex());
    assert(t !== undefined, 'term of the last index must be known');
    return t;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return; // never decrease
    assert(index <= this.lastIndex(), () => `commit ${index} is beyond last index ${this.lastIndex()}; the log is corrupt, truncated or lost`);
    this.committed = index;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    assert(index <= this.committed && index >= this.applied, () => `applied ${index} out of range [${this.applied}, ${this.committed}]`);
    this.applied = index;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index);
  }

  /** The term at `index`, or undefined when compacted or not yet written. */
  termOrUndefined(index: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (index < dummy || index > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(index);
    if (t !== undefined) return t;
    try {
      return this.storage.term(index);
    } catch (err) {
      if (isTesseraError(err, 'LOG_COMPACTED') || isTesseraError(err, 'LOG_UNAVAILABLE')) return undefined;
      throw err;
    }
  }

  matchTerm(index: number, term: number): boolean {
    return this.termOrUndefined(index) === term;
  }

  /** Commits `maxIndex` if its term is `term` (§5.4.2: only current-term entries are committed by counting). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOrUndefined(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries from index to the end, limited to maxBytes (at least one). */
  entries(index: number, maxBytes: number): readonly Entry[] {
    if (index > this.lastIndex()) return [];
    return this.slice(index, this.lastIndex() + 1, maxBytes);
  }

  allEntries(): readonly Entry[] {
    return this.entries(this.firstIndex(), Number.MAX_SAFE_INTEGER);
  }

  /** Entries in [lo, hi) from stable storage and the unstable tail. Throws LOG_COMPACTED below firstIndex. */
  slice(lo: number, hi: number, maxBytes: number): readonly Entry[] {
    this.mustCheckOutOfBounds(lo, hi);
    if (lo === hi) return [];
    let result: Entry[] = [];
    if (lo < this.unstable.offset) {
      const stored = this.storage.entries(lo, Math.min(hi, this.unstable.offset), maxBytes);
      const wanted = Math.min(hi, this.unstable.offset) - lo;
      if (stored.length < wanted) return stored; // hit the size limit
      result = [...stored];
    }
    if (hi > this.unstable.offset) {
      const tail = this.unstable.slice(Math.max(lo, this.unstable.offset), hi);
      result = result.length > 0 ? result.concat(tail) : tail;
    }
    return limitSize(result, maxBytes);
  }

  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }

  private mustCheckOutOfBounds(lo: number, hi: number): void {
    assert(lo <= hi, () => `invalid slice [${lo}, ${hi})`);
    const first = this.firstIndex();
    // Callers catch this and fall back to sending a snapshot.
    if (lo < first) throw new TesseraError('LOG_COMPACTED', `index ${lo} is compacted (first is ${first})`);
    assert(hi <= this.lastIndex() + 1, () => `slice [${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
  }
}
