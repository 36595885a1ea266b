import { assert } from '../base/index.js';
import type { Entry, Snapshot } from './types.js';

/**
 * Entries and a snapshot not yet on stable storage. Invariant: when present,
 * entries[i].index === offset + i, and a snapshot sits right below offset.
 */
export class UnstableLog {
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  /** The first index if only a snapshot is held. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    if (this.snapshot !== undefined) return this.snapshot.metadata.index;
    return undefined;
  }

  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === index) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || index > last) return undefined;
    return (this.entries[index - this.offset] as Entry).term;
  }

  /** Entries up to (index, term) reached stable storage; drop them if still current. */
  stableTo(index: number, term: number): void {
    const t = this.maybeTerm(index);
    if (t === undefined || t !== term || index < this.offset) return; // NB: superseded by a newer append
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  stableSnapTo(index: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === index) this.snapshot = undefined;
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  truncateAndAppend(entries: readonly Entry[]): void {
    const first = (entries[0] as Entry).index;
    if (first === this.offset + this.entries.length) {
      for (const e of entries) this.entries.push(e);
    } else if (first <= this.offset) {
      // The new entries replace everything unstable; stable storage is truncated when they are persisted.
      this.offset = first;
      this.entries = [...entries];
    } else {
      this.entries = [...this.slice(this.offset, first), ...entries];
    }
  }

  slice(lo: number, hi: number): Entry[] {
    this.mustCheckOutOfBounds(lo, hi);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }

  private mustCheckOutOfBounds(lo: number, hi: number): void {
    assert(lo <= hi, () => `unstable slice: invalid range [${lo}, ${hi})`);
    const upper = this.offset + this.entries.length;
    assert(lo >= this.offset && hi <= upper, () => `unstable slice [${lo}, ${hi}) out of bounds [${this.offset}, ${upper})`);
  }
}
