import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Entry } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { DEDUPE_WINDOW_ENTRIES, DedupeWindow } from './dedupe.js';
import { keys } from './keys.js';
import type { RecentLog } from './state_machine.js';

const RANGE = 7;
const N = DEDUPE_WINDOW_ENTRIES;

function engine(): MemoryEngine {
  return new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
}

/** A log whose entries carry request ids in their data ('' for a no-op), compacted from the front. */
class FakeLog implements RecentLog {
  first = 1;
  readonly entriesByIndex: Entry[] = [];

  append(id: string): Entry {
    const e: Entry = { term: 1, index: this.entriesByIndex.length + 1, type: 'normal', data: new TextEncoder().encode(id) };
    this.entriesByIndex.push(e);
    return e;
  }

  firstIndex(): number {
    return this.first;
  }

  entries(lo: number, hi: number): readonly Entry[] {
    assert.ok(lo >= this.first, `read of ${lo} below the first index ${this.first}`);
    return this.entriesByIndex.slice(lo - 1, hi - 1);
  }
}

const requestIdOf = (e: Entry): string | undefined => (e.data.byteLength === 0 ? undefined : new TextDecoder().decode(e.data));

function load(e: MemoryEngine, log: FakeLog, appliedIndex: number): DedupeWindow {
  return DedupeWindow.load({ view: e, rangeId: RANGE, log, appliedIndex, requestIdOf });
}

function storedRecords(e: MemoryEngine): number {
  return [...e.scan({ start: keys.requestByIndexStart(RANGE), end: keys.stateEnd(RANGE) })].length;
}

/** A small deterministic generator, so a failure names its seed. */
function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.floor((s / 2 ** 32) * n); // the high bits: an LCG's low bits cycle quickly
  };
}

/**
 * Runs one replica's life over a random log: batches of applies, log
 * compactions that keep between 50 and 15k entries, restarts (the window is
 * rebuilt from records and log) and snapshot installs (the window moves to a
 * fresh engine as records, the log starts after it). Every decision must be
 * the definition's: the id is in one of the N entries before.
 */
function runLife(seed: number, entryCount: number): { duplicates: number; reloads: number; snapshots: number; maxRecords: number } {
  const rand = lcg(seed);
  let e = engine();
  const log = new FakeLog();
  const lastSeen = new Map<string, number>();
  let w = load(e, log, 0);
  let applied = 0;
  const stats = { duplicates: 0, reloads: 0, snapshots: 0, maxRecords: 0 };
  while (applied < entryCount) {
    const batch = e.newBatch();
    const size = 1 + rand(rand(10) === 0 ? 3000 : 40);
    for (let k = 0; k < size && applied < entryCount; k++) {
      // Ids repeat at every distance, inside the window and far beyond it.
      const id = rand(8) === 0 ? '' : `id${rand(N * 3)}`;
      const entry = log.append(id);
      applied = entry.index;
      if (id === '') continue;
      const seen = lastSeen.get(id);
      const expected = seen !== undefined && seen >= entry.index - N;
      assert.equal(w.has(id, entry.index), expected, `seed ${seed}: entry ${entry.index} id ${id} last seen at ${seen}`);
      if (expected) stats.duplicates++;
      w.note(id, entry.index);
      lastSeen.set(id, entry.index);
    }
    const retain = rand(4) === 0 ? 50 + rand(500) : 8000 + rand(7000);
    const target = applied - retain;
    if (target >= log.first) {
      w.persistBelow(batch, { oldFirst: log.first, newFirst: target + 1, appliedIndex: applied });
      log.first = target + 1;
    }
    e.stage(batch);
    w.settle(applied);
    stats.maxRecords = Math.max(stats.maxRecords, storedRecords(e));
    const event = rand(20);
    if (event === 0) {
      w = load(e, log, applied);
      stats.reloads++;
    } else if (event === 1) {
      const fresh = engine();
      const b = fresh.newBatch();
      for (const [index, id] of w.windowOf(applied)) b.put(keys.requestByIndex(RANGE, index), new TextEncoder().encode(id));
      fresh.stage(b);
      e = fresh;
      log.first = applied + 1;
      w = load(e, log, applied);
      stats.snapshots++;
    }
    if (event <= 1) {
      // The rebuilt window holds exactly the ids the next entry is checked against.
      for (const [id, seen] of lastSeen) assert.equal(w.has(id, applied + 1), seen >= applied + 1 - N, `seed ${seed}: ${id} (last seen ${seen}) after a rebuild at ${applied}`);
    }
  }
  return stats;
}

test('DedupeWindow: decisions follow the log alone, through batching, compaction, restarts and snapshots', () => {
  for (const seed of [1, 2, 3]) {
    const s = runLife(seed, 4 * N);
    assert.ok(s.duplicates > 100 && s.reloads > 0 && s.snapshots > 0, `seed ${seed}: the run exercised too little: ${JSON.stringify(s)}`);
    // Records are only what compaction and snapshots moved out of the log, never more than the window.
    assert.ok(s.maxRecords <= N, `seed ${seed}: ${s.maxRecords} records stored`);
  }
});

test('DedupeWindow: an id is a duplicate at once, within its own batch, and after a reload', () => {
  const e = engine();
  const log = new FakeLog();
  const w = load(e, log, 0);
  for (const id of ['a', 'b', 'a']) {
    const entry = log.append(id);
    if (id === 'a' && entry.index === 3) assert.equal(w.has('a', 3), true);
    w.note(id, entry.index);
  }
  assert.equal(w.has('c', 4), false);
  assert.throws(() => w.note('c', 3), /request index 3 after 3/);
  const reloaded = load(e, log, 3);
  assert.equal(reloaded.has('a', 4), true);
  assert.equal(reloaded.has('b', 4), true);
  assert.equal(reloaded.has('a', 3 + N + 1), false);
  assert.equal(reloaded.size, 2);
});

test('DedupeWindow: a normal apply writes no records; a log that keeps the window needs none', () => {
  const e = engine();
  const log = new FakeLog();
  const w = load(e, log, 0);
  for (let i = 0; i < 3 * N; i++) {
    const batch = e.newBatch();
    const entry = log.append(`r${i}`);
    w.note(`r${i}`, entry.index);
    if (entry.index - N >= log.first + 1000) {
      w.persistBelow(batch, { oldFirst: log.first, newFirst: entry.index - N + 1, appliedIndex: entry.index });
      log.first = entry.index - N + 1;
    }
    e.stage(batch);
    w.settle(entry.index);
  }
  assert.equal(storedRecords(e), 0);
  assert.equal(w.size, N);
});

test('DedupeWindow: a load refuses a log that ends before the applied index', () => {
  const log = new FakeLog();
  log.append('x');
  assert.throws(() => load(engine(), log, 2), /the log ends at 1, before the applied index 2/);
});
