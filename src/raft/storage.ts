import { assert, TesseraError } from '../base/index.js';
import {
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  limitSize,
} from './types.js';

/**
 * The stable log as Raft reads it. The application owns writes: it persists
 * what Ready hands it, then Raft reads it back from here. Errors:
 * 'LOG_COMPACTED' for an index below firstIndex(), 'LOG_UNAVAILABLE' above
 * lastIndex(), 'SNAPSHOT_TEMPORARILY_UNAVAILABLE' when a snapshot is being made.
 */
export interface LogStorage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at most maxBytes of them but at least one. */
  entries(lo: number, hi: number, maxBytes: number): readonly Entry[];
  /** Term of entry i, for i in [firstIndex()-1, lastIndex()]. */
  term(index: number): number;
  lastIndex(): number;
  /** Index of the first entry still held; entries below are in the snapshot. */
  firstIndex(): number;
  snapshot(): Snapshot;
}

/**
 * An in-memory LogStorage. The simulator layers durability on top of it;
 * tests use it directly. Invariant: entries[0] is a dummy holding the
 * snapshot's index and term, so entries[i].index === offset + i.
 */
export class MemoryLogStorage implements LogStorage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private currentSnapshot: Snapshot = { metadata: { index: 0, term: 0, confState: EMPTY_CONF_STATE }, data: new Uint8Array() };
  private log: Entry[] = [{ term: 0, index: 0, type: 'normal', data: new Uint8Array() }];

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.currentSnapshot.metadata.confState };
  }

  setHardState(hardState: HardState): void {
    this.hardState = hardState;
  }

  /** Sets the membership a fresh node boots with (before any snapshot). */
  setConfState(confState: ConfState): void {
    this.currentSnapshot = { ...this.currentSnapshot, metadata: { ...this.currentSnapshot.metadata, confState } };
  }

  entries(lo: number, hi: number, maxBytes: number): readonly Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new TesseraError('LOG_COMPACTED', `requested index ${lo} is compacted (first is ${offset + 1})`);
    if (hi > this.lastIndex() + 1) {
      throw new TesseraError('LOG_UNAVAILABLE', `entries [${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
    }
    if (this.log.length === 1) throw new TesseraError('LOG_UNAVAILABLE', 'log has only the dummy entry');
    return limitSize(this.log.slice(lo - offset, hi - offset), maxBytes);
  }

  term(index: number): number {
    const offset = this.offset();
    if (index < offset) throw new TesseraError('LOG_COMPACTED', `term of ${index} is compacted (offset ${offset})`);
    const entry = this.log[index - offset];
    if (entry === undefined) throw new TesseraError('LOG_UNAVAILABLE', `term of ${index} beyond last index`);
    return entry.term;
  }

  lastIndex(): number {
    return this.offset() + this.log.length - 1;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  snapshot(): Snapshot {
    return this.currentSnapshot;
  }

  /** Replaces the log with a snapshot (a follower installing one from the leader). */
  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.metadata.index <= this.currentSnapshot.metadata.index) {
      throw new TesseraError('SNAPSHOT_OUT_OF_DATE', `snapshot ${snapshot.metadata.index} is not newer than ${this.currentSnapshot.metadata.index}`);
    }
    this.currentSnapshot = snapshot;
    this.log = [{ term: snapshot.metadata.term, index: snapshot.metadata.index, type: 'normal', data: new Uint8Array() }];
  }

  /** Records a snapshot of the application state at `index` (≤ applied). */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.currentSnapshot.metadata.index) {
      throw new TesseraError('SNAPSHOT_OUT_OF_DATE', `snapshot ${index} is not newer than ${this.currentSnapshot.metadata.index}`);
    }
    assert(index <= this.lastIndex(), () => `snapshot index ${index} beyond last index ${this.lastIndex()}`);
    this.currentSnapshot = { metadata: { index, term: this.term(index), confState }, data };
    return this.currentSnapshot;
  }

  /** Discards entries up to and including `compactIndex`; they must be covered by a snapshot. */
  compact(compactIndex: number): void {
    const offset = this.offset();
    if (compactIndex <= offset) throw new TesseraError('LOG_COMPACTED', `index ${compactIndex} already compacted`);
    assert(compactIndex <= this.lastIndex(), () => `compact ${compactIndex} beyond last index ${this.lastIndex()}`);
    const dummy = this.log[compactIndex - offset] as Entry;
    this.log = [{ term: dummy.term, index: dummy.index, type: 'normal', data: new Uint8Array() }, ...this.log.slice(compactIndex - offset + 1)];
  }

  /** Appends entries, truncating any conflicting suffix. Entries must be contiguous. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const lastNew = (entries[entries.length - 1] as Entry).index;
    if (lastNew < first) return; // entirely compacted already
    const from = (entries[0] as Entry).index < first ? entries.slice(first - (entries[0] as Entry).index) : entries;
    const start = (from[0] as Entry).index;
    assert(start <= this.lastIndex() + 1, () => `append leaves a gap: last ${this.lastIndex()}, new first ${start}`);
    this.log.length = start - this.offset();
    for (const entry of from) this.log.push(entry);
  }

  /** An independent copy (entries are immutable, so they are shared). */
  clone(): MemoryLogStorage {
    const copy = new MemoryLogStorage();
    copy.hardState = this.hardState;
    copy.currentSnapshot = this.currentSnapshot;
    copy.log = [...this.log];
    return copy;
  }

  private offset(): number {
    return (this.log[0] as Entry).index;
  }
}
