import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryEngine } from '../storage/memory.js';
import type { WriteBatch } from '../storage/engine.js';
import { DEDUPE_EXPIRE_PER_APPLY, DEDUPE_WINDOW_ENTRIES, DedupeWindow } from './dedupe.js';
import { keys } from './keys.js';

const RANGE = 7;

function engine(): MemoryEngine {
  return new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
}

/** Applies ids 'id<i>' at the given indexes, `perBatch` commands to a batch, as a replica would. */
function applyAll(e: MemoryEngine, indexes: readonly number[], perBatch: number): DedupeWindow {
  let w = DedupeWindow.load(e, RANGE);
  for (let i = 0; i < indexes.length; i += perBatch) {
    const batch: WriteBatch = e.newBatch();
    for (const index of indexes.slice(i, i + perBatch)) w.remember(batch, `id${index}`, index);
    e.stage(batch);
    // A restarted replica reloads the window from the engine; it must find what the running one holds.
    if (i % (perBatch * 7) === 0) w = DedupeWindow.load(e, RANGE);
  }
  return w;
}

function stored(e: MemoryEngine): string[] {
  const records = [...e.scan({ start: keys.requestByIndexStart(RANGE), end: keys.requestByIndex(RANGE, Number.MAX_SAFE_INTEGER) })];
  return records.map((kv) => new TextDecoder().decode(kv.value)).sort();
}

test('DedupeWindow: the ids kept depend on the applied indexes only, not on batching or restarts', () => {
  // Gaps (entries that are not commands) and a burst far past the window.
  const indexes: number[] = [];
  for (let i = 1; i <= DEDUPE_WINDOW_ENTRIES * 2 + 500; i += i % 3 === 0 ? 2 : 1) indexes.push(i);
  const results = [1, 5, 64].map((perBatch) => {
    const e = engine();
    const w = applyAll(e, indexes, perBatch);
    return { ids: stored(e), size: w.size };
  });
  const [first, ...rest] = results;
  for (const r of rest) assert.deepEqual(r.ids, first?.ids);
  assert.equal(first?.size, first?.ids.length);
  // Expiry keeps up with one command per index: nothing older than the window is left.
  const last = indexes[indexes.length - 1] as number;
  const oldest = Math.min(...(first?.ids ?? []).map((id) => Number(id.slice(2))));
  assert.ok(oldest >= last - DEDUPE_WINDOW_ENTRIES - DEDUPE_EXPIRE_PER_APPLY, `oldest kept ${oldest}, last ${last}`);
});

test('DedupeWindow: an id is a duplicate at once, within its own batch, and after a reload', () => {
  const e = engine();
  const w = DedupeWindow.load(e, RANGE);
  const batch = e.newBatch();
  w.remember(batch, 'a', 10);
  assert.equal(w.has('a'), true);
  assert.equal(w.has('b'), false);
  assert.throws(() => w.remember(batch, 'a', 11), /remembered twice/);
  assert.throws(() => w.remember(batch, 'b', 10), /request index 10 after 10/);
  e.stage(batch);
  const reloaded = DedupeWindow.load(e, RANGE);
  assert.equal(reloaded.has('a'), true);
  assert.equal(reloaded.size, 1);
});
