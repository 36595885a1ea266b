import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isTesseraError } from '../base/index.js';
import type { Entry, Snapshot } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { encodeEntry } from './codec.js';
import { keys } from './keys.js';
import { ENTRY_CACHE_ENTRIES, EngineLogStorage, EntryCacheBudget, LOG_CACHE_INITIAL_SLOTS, TERM_CACHE_ENTRIES } from './log_storage.js';

const RANGE = 7;
const noSnapshot = (): Snapshot => assert.fail('no snapshot expected');

function entry(index: number, term: number, bytes = 8): Entry {
  return { index, term, type: 'normal', data: new Uint8Array(bytes).fill(index % 251) };
}

function commit(engine: MemoryEngine, write: (batch: ReturnType<MemoryEngine['newBatch']>) => void): void {
  const batch = engine.newBatch();
  write(batch);
  engine.commit(batch, () => {});
}

/** What a storage reads for [lo, hi): from its cache or, for a fresh instance on the same engine, from the engine. */
function both(engine: MemoryEngine, log: EngineLogStorage, lo: number, hi: number, maxBytes = Infinity): [readonly Entry[], readonly Entry[]] {
  const fresh = new EngineLogStorage(engine, RANGE, noSnapshot);
  return [log.entries(lo, hi, maxBytes), fresh.entries(lo, hi, maxBytes)];
}

test('EngineLogStorage: cached reads equal reads from the engine, across appends, a conflicting suffix and compaction', () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  const log = new EngineLogStorage(engine, RANGE, noSnapshot);
  commit(engine, (b) => log.append(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => entry(i, 1))));
  let [cached, stored] = both(engine, log, 1, 11);
  assert.deepEqual(cached, stored);
  assert.equal(cached.length, 10);
  // A new leader's entries replace 6..10 with 6..8 of term 2.
  commit(engine, (b) => log.append(b, [6, 7, 8].map((i) => entry(i, 2))));
  assert.equal(log.lastIndex(), 8);
  [cached, stored] = both(engine, log, 1, 9);
  assert.deepEqual(cached, stored);
  assert.deepEqual(cached.map((e) => e.term), [1, 1, 1, 1, 1, 2, 2, 2]);
  assert.throws(() => log.entries(1, 10, Infinity), (e: unknown) => isTesseraError(e, 'LOG_UNAVAILABLE'));
  // maxBytes cuts alike on both paths, and always returns at least one entry.
  [cached, stored] = both(engine, log, 2, 9, 70);
  assert.deepEqual(cached, stored);
  assert.ok(cached.length >= 1 && cached.length < 7);
  commit(engine, (b) => log.compact(b, 4));
  assert.throws(() => log.entries(4, 6, Infinity), (e: unknown) => isTesseraError(e, 'LOG_COMPACTED'));
  [cached, stored] = both(engine, log, 5, 9);
  assert.deepEqual(cached, stored);
});

test('EngineLogStorage: a quiet log keeps small caches; a busy one grows them to full size and keeps the newest entries and terms in them', () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  const log = new EngineLogStorage(engine, RANGE, noSnapshot);
  commit(engine, (b) => log.append(b, [1, 2, 3, 4, 5].map((i) => entry(i, 1))));
  assert.deepEqual(log.cacheSlots, { terms: LOG_CACHE_INITIAL_SLOTS, entries: LOG_CACHE_INITIAL_SLOTS });
  const total = TERM_CACHE_ENTRIES + 1000;
  for (let i = 6; i <= total; i += 100) commit(engine, (b) => log.append(b, Array.from({ length: Math.min(100, total - i + 1) }, (_, j) => entry(i + j, 2 + Math.floor((i + j) / 700)))));
  assert.deepEqual(log.cacheSlots, { terms: TERM_CACHE_ENTRIES, entries: ENTRY_CACHE_ENTRIES });
  // With the stored entries gone, only the caches can answer: the newest ENTRY_CACHE_ENTRIES entries and TERM_CACHE_ENTRIES terms.
  const fresh = new EngineLogStorage(engine, RANGE, noSnapshot);
  const expectedTerms = Array.from({ length: TERM_CACHE_ENTRIES }, (_, k) => fresh.term(total - k));
  commit(engine, (b) => {
    for (let i = 1; i <= total; i++) b.delete(keys.logEntry(RANGE, i));
  });
  const newest = log.entries(total - ENTRY_CACHE_ENTRIES + 1, total + 1, Infinity);
  assert.equal(newest.length, ENTRY_CACHE_ENTRIES);
  assert.deepEqual(newest.map((e) => e.index), Array.from({ length: ENTRY_CACHE_ENTRIES }, (_, k) => total - ENTRY_CACHE_ENTRIES + 1 + k));
  assert.deepEqual(Array.from({ length: TERM_CACHE_ENTRIES }, (_, k) => log.term(total - k)), expectedTerms);
  assert.throws(() => log.entries(total - ENTRY_CACHE_ENTRIES, total + 1, Infinity));
});

test('EngineLogStorage: entries evicted from the cache are read from the engine', () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  const log = new EngineLogStorage(engine, RANGE, noSnapshot);
  const total = Math.ceil((ENTRY_CACHE_ENTRIES + 100) / 50) * 50;
  for (let i = 1; i <= total; i += 50) commit(engine, (b) => log.append(b, Array.from({ length: 50 }, (_, j) => entry(i + j, 3))));
  assert.equal(log.lastIndex(), total);
  const [cached, stored] = both(engine, log, 1, total + 1);
  assert.equal(cached.length, total);
  assert.deepEqual(cached, stored);
});

test('EngineLogStorage: random appends, conflicting suffixes, compactions and snapshots read alike from the caches and from the engine', () => {
  // Small entries and many operations, so the entry ring (ENTRY_CACHE_ENTRIES) wraps and the term ring
  // is overwritten; every read is checked against a fresh storage on the same engine, which has no cache.
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant('append' as const), back: fc.nat(40), count: fc.integer({ min: 1, max: 1500 }), bytes: fc.nat(64) }),
          fc.record({ kind: fc.constant('compact' as const), keep: fc.nat(3000) }),
          fc.record({ kind: fc.constant('snapshot' as const), ahead: fc.nat(50) }),
          fc.record({ kind: fc.constant('read' as const), from: fc.nat(5000), span: fc.integer({ min: 1, max: 3000 }), maxBytes: fc.integer({ min: 1, max: 100_000 }) }),
        ),
        { minLength: 5, maxLength: 30, size: 'max' },
      ),
      (ops) => {
        const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
        const log = new EngineLogStorage(engine, RANGE, noSnapshot);
        let term = 1;
        for (const op of ops) {
          const first = log.firstIndex();
          const last = log.lastIndex();
          if (op.kind === 'append') {
            // From up to `back` entries before the end (a conflicting suffix under a newer term), never below the first.
            const start = Math.max(first, last + 1 - op.back);
            if (start <= last) term++;
            commit(engine, (b) => log.append(b, Array.from({ length: op.count }, (_, i) => entry(start + i, term, op.bytes))));
          } else if (op.kind === 'compact') {
            const to = last - op.keep;
            if (to >= first) commit(engine, (b) => log.compact(b, to));
          } else if (op.kind === 'snapshot') {
            const index = last + op.ahead;
            const snap: Snapshot = { metadata: { index, term, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array() };
            commit(engine, (b) => log.applySnapshot(b, snap));
          } else {
            const lo = first + (op.from % Math.max(1, last - first + 1));
            const hi = Math.min(last + 1, lo + op.span);
            if (lo > last) continue;
            const [cached, stored] = both(engine, log, lo, hi, op.maxBytes);
            assert.deepEqual(cached, stored);
          }
          // Terms of every index still in the log, the cached ones included, match the engine's.
          const fresh = new EngineLogStorage(engine, RANGE, noSnapshot);
          assert.equal(log.lastIndex(), fresh.lastIndex());
          assert.equal(log.firstIndex(), fresh.firstIndex());
          for (let i = log.firstIndex() - 1; i <= log.lastIndex(); i += 37) assert.equal(log.term(i), fresh.term(i), `term of ${i}`);
          if (log.lastIndex() >= log.firstIndex()) assert.equal(log.term(log.lastIndex()), fresh.term(log.lastIndex()));
          assertStoredExactly(engine, log);
        }
      },
    ),
    { numRuns: 40 },
  );
});

test('EngineLogStorage: bytesCompactionIndex keeps at most the byte bound behind the applied index, in steps, across conflicts, compactions and snapshots', () => {
  // The model: the encoded size of every entry appended since open, by index.
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant('append' as const), back: fc.nat(20), count: fc.integer({ min: 1, max: 200 }), bytes: fc.nat(3000) }),
          fc.record({ kind: fc.constant('compact' as const), keep: fc.nat(300) }),
          fc.record({ kind: fc.constant('snapshot' as const), ahead: fc.nat(20) }),
          fc.record({ kind: fc.constant('reopen' as const) }),
        ),
        { minLength: 3, maxLength: 25 },
      ),
      fc.integer({ min: 1, max: 200_000 }),
      fc.nat(400),
      (ops, maxBytes, behind) => {
        const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
        let log = new EngineLogStorage(engine, RANGE, noSnapshot);
        // The model: entries appended since the storage was opened, by index (a restart forgets the older ones' sizes).
        const sizes = new Map<number, number>();
        let term = 1;
        for (const op of ops) {
          const first = log.firstIndex();
          const last = log.lastIndex();
          if (op.kind === 'append') {
            const start = Math.max(first, last + 1 - op.back);
            if (start <= last) term++;
            for (const i of [...sizes.keys()]) if (i >= start) sizes.delete(i);
            const es = Array.from({ length: op.count }, (_, i) => entry(start + i, term, op.bytes));
            for (const e of es) sizes.set(e.index, encodeEntry(e).length);
            commit(engine, (b) => log.append(b, es));
          } else if (op.kind === 'compact') {
            const to = last - op.keep;
            if (to >= first) commit(engine, (b) => log.compact(b, to));
          } else if (op.kind === 'reopen') {
            log = new EngineLogStorage(engine, RANGE, noSnapshot);
            sizes.clear();
          } else {
            const snap: Snapshot = { metadata: { index: last + op.ahead, term, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array() };
            commit(engine, (b) => log.applySnapshot(b, snap));
          }
          const applied = Math.max(log.firstIndex() - 1, log.lastIndex() - behind);
          const cut = log.bytesCompactionIndex(applied, maxBytes);
          const held = (from: number): number => {
            let n = 0;
            for (let i = from; i <= applied; i++) n += sizes.get(i) ?? 0;
            return n;
          };
          assert.ok(cut >= log.firstIndex() - 1 && cut <= Math.max(applied, log.firstIndex() - 1), `cut ${cut} within [${log.firstIndex() - 1}, ${applied}]`);
          if (cut === log.firstIndex() - 1) {
            assert.ok(held(log.firstIndex()) <= maxBytes + Math.ceil(maxBytes / 10), `nothing cut while ${held(log.firstIndex())} bytes are held`);
          } else {
            assert.ok(held(cut + 1) <= maxBytes, `${held(cut + 1)} bytes kept after the cut at ${cut}`);
            assert.ok(held(cut) > maxBytes, `the cut at ${cut} drops no more than it must`);
          }
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('EngineLogStorage: logs sharing an EntryCacheBudget hold at most its bytes (plus each log\'s newest entry), and read alike from cache and engine', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ log: fc.nat(2), back: fc.nat(5), count: fc.integer({ min: 1, max: 40 }), bytes: fc.nat(2000), compactKeep: fc.option(fc.nat(30)) }), { minLength: 5, maxLength: 40 }),
      fc.integer({ min: 1000, max: 60_000 }),
      (ops, limit) => {
        const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
        const budget = new EntryCacheBudget(limit);
        const logs = [0, 1, 2].map((i) => new EngineLogStorage(engine, RANGE + i, noSnapshot, budget));
        const terms = [1, 1, 1];
        for (const op of ops) {
          const log = logs[op.log]!;
          const first = log.firstIndex();
          const last = log.lastIndex();
          const start = Math.max(first, last + 1 - op.back);
          if (start <= last) terms[op.log]!++;
          commit(engine, (b) => log.append(b, Array.from({ length: op.count }, (_, i) => entry(start + i, terms[op.log]!, op.bytes))));
          if (op.compactKeep !== null && log.lastIndex() - op.compactKeep >= log.firstIndex()) commit(engine, (b) => log.compact(b, log.lastIndex() - op.compactKeep!));
          assert.ok(budget.bytes <= limit + 3 * (2000 + 96), `${budget.bytes} bytes cached with a budget of ${limit}`);
          assert.ok(budget.bytes >= 0);
          for (const [i, l] of logs.entries()) {
            if (l.lastIndex() < l.firstIndex()) continue;
            const fresh = new EngineLogStorage(engine, RANGE + i, noSnapshot);
            assert.deepEqual(l.entries(l.firstIndex(), l.lastIndex() + 1, Infinity), fresh.entries(l.firstIndex(), l.lastIndex() + 1, Infinity));
          }
        }
      },
    ),
    { numRuns: 60 },
  );
});

/** The engine holds the log's entries [firstIndex, lastIndex] and nothing else of the range's log (compaction deletes by key). */
function assertStoredExactly(engine: MemoryEngine, log: EngineLogStorage): void {
  const stored = [...engine.scan({ start: keys.logStart(RANGE), end: keys.logEnd(RANGE) })].map((kv) => Buffer.from(kv.key).toString('hex'));
  const first = log.firstIndex();
  const last = log.lastIndex();
  assert.equal(stored.length, Math.max(0, last - first + 1), `stored log entries for [${first}, ${last}]`);
  if (last < first) return;
  assert.equal(stored[0], Buffer.from(keys.logEntry(RANGE, first)).toString('hex'));
  assert.equal(stored[stored.length - 1], Buffer.from(keys.logEntry(RANGE, last)).toString('hex'));
}

test('EngineLogStorage: a partial entry record at the log tail (a torn append) is dropped at open, and the commit index clamped', () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  const log = new EngineLogStorage(engine, RANGE, noSnapshot);
  commit(engine, (b) => {
    log.append(b, [1, 2, 3].map((i) => entry(i, 1)));
    log.setHardState(b, { term: 1, vote: 1, commit: 3 });
  });
  const whole = engine.get(keys.logEntry(RANGE, 3)) as Uint8Array;
  for (const cut of [0, 1, 10, 25, whole.length - 1]) {
    commit(engine, (b) => b.put(keys.logEntry(RANGE, 3), whole.subarray(0, cut)));
    const reopened = new EngineLogStorage(engine, RANGE, noSnapshot);
    assert.equal(reopened.droppedTornEntry, 3, `cut at ${cut}`);
    assert.equal(reopened.lastIndex(), 2);
    assert.equal(reopened.initialState().hardState.commit, 2);
    assert.equal(engine.get(keys.logEntry(RANGE, 3)), undefined, 'the partial record is deleted');
    assert.deepEqual(reopened.entries(1, 3, Infinity), [entry(1, 1), entry(2, 1)]);
    // The clamp is stored with the repair: a later start, with no partial record left, finds a consistent state.
    const again = new EngineLogStorage(engine, RANGE, noSnapshot);
    assert.equal(again.droppedTornEntry, undefined);
    assert.equal(again.initialState().hardState.commit, 2);
    commit(engine, (b) => {
      b.put(keys.logEntry(RANGE, 3), whole);
      log.setHardState(b, { term: 1, vote: 1, commit: 3 });
    });
  }
});

test('EngineLogStorage: a full-length entry record with a flipped bit is not taken for a torn tail: reading it is refused (CORRUPT_DATA)', () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  const log = new EngineLogStorage(engine, RANGE, noSnapshot);
  commit(engine, (b) => log.append(b, [1, 2, 3].map((i) => entry(i, 1))));
  const flipped = (engine.get(keys.logEntry(RANGE, 3)) as Uint8Array).slice();
  flipped[24] = (flipped[24] as number) ^ 0x10; // in the data (bytes 22..29), not a length
  commit(engine, (b) => b.put(keys.logEntry(RANGE, 3), flipped));
  const reopened = new EngineLogStorage(engine, RANGE, noSnapshot);
  assert.equal(reopened.droppedTornEntry, undefined);
  assert.equal(reopened.lastIndex(), 3);
  assert.throws(() => reopened.entries(3, 4, Infinity), (e: unknown) => isTesseraError(e, 'CORRUPT_DATA'));
});

test('EngineLogStorage: a tail record that looks partial only once (a flip in a length field as it was read) is not dropped: the open is refused', () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  const log = new EngineLogStorage(engine, RANGE, noSnapshot);
  commit(engine, (b) => log.append(b, [1, 2, 3].map((i) => entry(i, 1))));
  const last = keys.logEntry(RANGE, 3);
  let reads = 0;
  engine.readFault = (key, value) => {
    if (key.length !== last.length || !key.every((b, i) => b === last[i]) || ++reads !== 2) return value;
    const copy = value.slice();
    copy[21] = (copy[21] as number) ^ 0x40; // the data length grows past the record: it looks cut short
    return copy;
  };
  // Read 1 is the open's scan for the last index; read 2 is the torn-tail check, flipped.
  assert.throws(() => new EngineLogStorage(engine, RANGE, noSnapshot), (e: unknown) => isTesseraError(e, 'CORRUPT_DATA'));
  engine.readFault = undefined;
  const reopened = new EngineLogStorage(engine, RANGE, noSnapshot);
  assert.equal(reopened.lastIndex(), 3, 'the good entry was deleted');
  assert.deepEqual(reopened.entries(3, 4, Infinity), [entry(3, 1)]);
});
