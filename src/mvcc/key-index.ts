import { assert } from '../base/index.js';
import { SortedKeys } from './sorted-keys.js';
import { type Revision, compareRevisions, formatRevision } from './revision.js';

/**
 * One life of a key: from the put that created it to the tombstone that
 * deleted it (if any). Invariants:
 * - `revs` is non-empty and strictly ascending;
 * - if `closed`, the last revision is the tombstone and no other is;
 * - `version` is the version of the newest live (non-tombstone) revision;
 *   the one before it has version - 1, and so on;
 * - `created` is the main revision of the put that began the generation. A
 *   generation that compaction has cut down to its tombstone alone has
 *   `created` and `version` 0 (nothing about it can be read any more).
 */
export interface Generation {
  created: number;
  version: number;
  /**
   * The changes' revisions, ascending, as pairs: change i has main revision
   * revs[2i] and sub revision revs[2i + 1]. Numbers, not Revision objects:
   * the index keeps one per stored change, and an object costs about 40
   * bytes more and is one more thing for the GC to copy, promote and mark.
   */
  revs: number[];
  closed: boolean;
}

/** Changes in a generation. */
export function changeCount(g: Generation): number {
  return g.revs.length >> 1;
}

/** Main revision of change i. */
export function mainAt(g: Generation, i: number): number {
  return g.revs[2 * i]!;
}

/** Change i of a generation as a Revision. */
export function revisionAt(g: Generation, i: number): Revision {
  return { main: g.revs[2 * i]!, sub: g.revs[2 * i + 1]! };
}

function newGeneration(rev: Revision, created: number, version: number, closed: boolean): Generation {
  return { created, version, revs: [rev.main, rev.sub], closed };
}

/** What a key looked like at some revision. */
export interface KeyState {
  readonly modified: Revision;
  readonly created: number;
  readonly version: number;
}

/**
 * All the revisions of one key still in storage, grouped in generations
 * (etcd's keyIndex). Every generation but the last is closed.
 */
export class KeyHistory {
  readonly generations: Generation[] = [];

  constructor(readonly key: Uint8Array) {}

  get isEmpty(): boolean {
    return this.generations.length === 0;
  }

  /** The newest revision of the key, live or tombstone. */
  get newest(): Revision | undefined {
    const g = this.generations[this.generations.length - 1];
    return g === undefined ? undefined : revisionAt(g, changeCount(g) - 1);
  }

  /** The key's current state, or undefined if it is deleted. */
  live(): KeyState | undefined {
    const g = this.generations[this.generations.length - 1];
    if (g === undefined || g.closed) return undefined;
    return { modified: revisionAt(g, changeCount(g) - 1), created: g.created, version: g.version };
  }

  /** Records a put at `rev`; a put after a delete starts a new generation with version 1. */
  put(rev: Revision): KeyState {
    this.assertAfterNewest(rev);
    const last = this.generations[this.generations.length - 1];
    if (last === undefined || last.closed) {
      this.generations.push(newGeneration(rev, rev.main, 1, false));
    } else {
      last.revs.push(rev.main, rev.sub);
      last.version++;
    }
    return this.live()!;
  }

  /** Records a delete at `rev`; the key must be live. */
  tombstone(rev: Revision): void {
    this.assertAfterNewest(rev);
    const last = this.generations[this.generations.length - 1];
    assert(last !== undefined && !last.closed, () => `tombstone at ${formatRevision(rev)} of a key that is not live`);
    last.revs.push(rev.main, rev.sub);
    last.closed = true;
  }

  /** Rebuild from storage: appends a stored change, whose own create revision and version are authoritative. */
  restore(rev: Revision, tombstone: boolean, created: number, version: number): void {
    this.assertAfterNewest(rev);
    const last = this.generations[this.generations.length - 1];
    if (tombstone) {
      if (last !== undefined && !last.closed) this.tombstone(rev);
      else this.generations.push(newGeneration(rev, 0, 0, true));
      return;
    }
    if (last !== undefined && !last.closed) {
      assert(created === last.created && version === last.version + 1, () => `stored change ${formatRevision(rev)} does not continue its generation`);
      last.revs.push(rev.main, rev.sub);
      last.version = version;
    } else {
      this.generations.push(newGeneration(rev, created, version, false));
    }
  }

  /** The key's state at main revision `at`: the newest change ≤ at, unless that is a tombstone. */
  get(at: number): KeyState | undefined {
    for (let gi = this.generations.length - 1; gi >= 0; gi--) {
      const g = this.generations[gi]!;
      if (mainAt(g, 0) > at) continue;
      const n = lastAtOrBefore(g, at);
      const lastLive = g.closed ? changeCount(g) - 2 : changeCount(g) - 1;
      if (n > lastLive) return undefined;
      return { modified: revisionAt(g, n), created: g.created, version: g.version - (lastLive - n) };
    }
    return undefined;
  }

  contains(rev: Revision): boolean {
    for (const g of this.generations) {
      const n = lastAtOrBefore(g, rev.main);
      for (let i = n; i >= 0 && mainAt(g, i) === rev.main; i--) {
        if (g.revs[2 * i + 1] === rev.sub) return true;
      }
    }
    return false;
  }

  /**
   * Compaction at main revision `at`. Let L be the key's newest change with
   * main ≤ at. Every change after `at` stays; L stays unless it is a
   * tombstone below `at` (the key was dead at `at`); every other change ≤ at
   * goes. This is etcd's rule: a live key keeps its value at `at`, and a
   * tombstone at exactly `at` stays so that a watch from `at` still sees the
   * delete. (etcd differs only when one transaction deletes and re-creates a
   * key at exactly `at`, where etcd's own index and keep set disagree.)
   */
  compact(at: number): void {
    let gi = this.generations.length - 1;
    while (gi >= 0 && mainAt(this.generations[gi]!, 0) > at) gi--;
    if (gi < 0) return;
    const g = this.generations[gi]!;
    const n = lastAtOrBefore(g, at);
    const newestIsTombstone = g.closed && n === changeCount(g) - 1;
    if (newestIsTombstone && mainAt(g, n) < at) {
      this.generations.splice(0, gi + 1);
      return;
    }
    this.generations.splice(0, gi);
    if (n > 0) g.revs = g.revs.slice(2 * n);
    if (g.closed && changeCount(g) === 1) {
      g.created = 0;
      g.version = 0;
    }
  }

  equals(other: KeyHistory): boolean {
    if (this.generations.length !== other.generations.length) return false;
    return this.generations.every((g, i) => {
      const o = other.generations[i]!;
      return (
        g.created === o.created &&
        g.version === o.version &&
        g.closed === o.closed &&
        g.revs.length === o.revs.length &&
        g.revs.every((v, j) => v === o.revs[j])
      );
    });
  }

  /** Checks the invariants on Generation; throws AssertionError. */
  checkInvariants(): void {
    let previous: Revision | undefined;
    this.generations.forEach((g, gi) => {
      assert(changeCount(g) > 0, 'empty generation');
      assert(g.revs.length % 2 === 0, 'a generation holds a main revision without its sub revision');
      assert(g.closed || gi === this.generations.length - 1, 'an open generation before the last');
      for (let i = 0; i < changeCount(g); i++) {
        const r = revisionAt(g, i);
        assert(previous === undefined || compareRevisions(r, previous) > 0, 'revisions not ascending');
        previous = r;
      }
      const tombOnly = g.closed && changeCount(g) === 1;
      assert(tombOnly ? g.created === 0 && g.version === 0 : g.version >= 1 && g.created >= 1, 'generation created/version inconsistent');
      assert(tombOnly || g.created <= mainAt(g, 0), 'generation created after its first revision');
    });
  }

  private assertAfterNewest(rev: Revision): void {
    const newest = this.newest;
    assert(newest === undefined || compareRevisions(rev, newest) > 0, () => `change at ${formatRevision(rev)} not after ${formatRevision(newest!)}`);
  }
}

/** Index of the last change of `g` with main ≤ at, or -1. */
function lastAtOrBefore(g: Generation, at: number): number {
  let lo = 0;
  let hi = changeCount(g);
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (mainAt(g, mid) <= at) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * The in-memory index: user key → KeyHistory, ordered for range scans.
 * It is rebuilt from storage at open and must always agree with storage.
 */
export class KeyIndex {
  private readonly histories = new Map<string, KeyHistory>();
  private readonly order: SortedKeys;

  constructor(sortedHistories?: ReadonlyMap<string, KeyHistory>) {
    if (sortedHistories === undefined) {
      this.order = new SortedKeys();
      return;
    }
    const keys = [...sortedHistories.keys()].sort();
    for (const k of keys) this.histories.set(k, sortedHistories.get(k)!);
    this.order = SortedKeys.fromSorted(keys);
  }

  get size(): number {
    return this.histories.size;
  }

  get(keyString: string): KeyHistory | undefined {
    return this.histories.get(keyString);
  }

  /** The history of a key, created (empty) if absent. */
  getOrCreate(keyString: string, key: Uint8Array): KeyHistory {
    let history = this.histories.get(keyString);
    if (history === undefined) {
      // A copy: `key` is often a view of a larger buffer (a decoded command, a peer frame), which the
      // index would otherwise keep alive for as long as the key exists.
      history = new KeyHistory(new Uint8Array(key));
      this.histories.set(keyString, history);
      this.order.insert(keyString);
    }
    return history;
  }

  /**
   * Calls `visit` on the histories of keys in [start, end), in key order, until
   * it returns false. `end` undefined: the single key `start`; empty: no upper
   * bound. A callback rather than a generator: long scans (etcd counts every
   * key of a limited range) cost a sixth as much.
   */
  forEachInRange(start: string, end: string | undefined, visit: (history: KeyHistory) => boolean | void): void {
    if (end === undefined) {
      const h = this.histories.get(start);
      if (h !== undefined) visit(h);
      return;
    }
    this.order.forEachInRange(start, end, (k) => visit(this.histories.get(k)!));
  }

  *entries(): IterableIterator<[string, KeyHistory]> {
    for (const k of this.order) yield [k, this.histories.get(k)!];
  }

  /** Forgets every key from `start` on (a split hands them to another store). */
  dropFrom(start: string): void {
    const gone: string[] = [];
    this.order.forEachInRange(start, '', (k) => void gone.push(k));
    for (const k of gone) {
      this.histories.delete(k);
      this.order.delete(k);
    }
  }

  /** Compacts every key at `at` and drops keys with nothing left. */
  compact(at: number): void {
    const gone: string[] = [];
    for (const [k, h] of this.histories) {
      h.compact(at);
      if (h.isEmpty) gone.push(k);
    }
    for (const k of gone) {
      this.histories.delete(k);
      this.order.delete(k);
    }
  }

  equals(other: KeyIndex): boolean {
    if (this.size !== other.size) return false;
    for (const [k, h] of this.histories) {
      const o = other.get(k);
      if (o === undefined || !h.equals(o)) return false;
    }
    return true;
  }

  checkInvariants(): void {
    assert(this.order.size === this.histories.size, 'key order and key map differ in size');
    let previous: string | undefined;
    for (const k of this.order) {
      assert(previous === undefined || previous < k, 'key order not ascending');
      previous = k;
      const h = this.histories.get(k);
      assert(h !== undefined && !h.isEmpty, 'ordered key without a history');
      h.checkInvariants();
    }
  }
}
