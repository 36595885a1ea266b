/**
 * Model-based property test: random write txns (puts, deletes, several
 * changes per txn, oracle-style revision gaps), etcd Txns, compactions in
 * small steps, reads and watches at past revisions, held batches (several
 * txns per batch, as one Raft loop turn), syncs, crashes that keep a prefix
 * of the unsynced batches, and reopens — all checked against Model, a plain
 * list of every revision's state. At the end the same logical history is
 * replayed into a fresh store with one batch per op and complete compactions:
 * its hashes must equal the tested store's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SeededRng } from '../base/index.js';
import { MemoryEngine } from '../storage/memory.js';
import type { WriteBatch } from '../storage/engine.js';
import { utf8 } from './bytes.js';
import { isMvccRefusal } from './errors.js';
import { Model, type ModelChange, type ModelKV, type ModelWrite, inRange } from './model.testlib.js';
import type { KeyValue, RangeOptions, SortOrder, SortTarget } from './range.js';
import { MvccStore } from './store.js';
import { LOCATION, assertSameStore, compactAll, text } from './testing.testlib.js';
import type { Compare, CompareResult, CompareTarget, RequestOp } from './txn.js';
import type { MvccEvent } from './write-txn.js';

type Query = {
  key: string;
  end: string | undefined;
  back: number;
  limit: number;
  sortTarget: SortTarget;
  sortOrder: SortOrder;
  keysOnly: boolean;
  countOnly: boolean;
  minMod: number;
  maxCreate: number;
};
type Op =
  | { kind: 'write'; gap: number; writes: ModelWrite[] }
  | { kind: 'etcdTxn'; gap: number; compare: { key: string; end: string | undefined; target: CompareTarget; result: CompareResult; operand: number; value: string }; success: ModelWrite[]; failure: ModelWrite[] }
  | { kind: 'compact'; back: number; step: number }
  | { kind: 'compactStep'; step: number }
  | { kind: 'read'; query: Query }
  | { kind: 'events'; key: string; end: string | undefined; back: number; prevKv: boolean; scanLimit: number }
  | { kind: 'commit' }
  | { kind: 'sync' }
  | { kind: 'crash'; seed: number }
  | { kind: 'reopen' };

type Logged = { kind: 'write'; rev: number; writes: readonly ModelWrite[] } | { kind: 'compact'; rev: number };

const keyArb = fc.constantFrom('a', 'ab', 'b', 'c', 'd');
const endArb = fc.option(fc.constantFrom('b', 'c', 'e', '\0'), { nil: undefined });
const valueArb = fc.constantFrom('x', 'y', 'zz', '');
const writeArb: fc.Arbitrary<ModelWrite> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ put: keyArb, value: valueArb, lease: fc.constantFrom(0, 0, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ del: keyArb, end: endArb }) },
);
const writesArb = fc.array(writeArb, { minLength: 1, maxLength: 4 });
const queryArb: fc.Arbitrary<Query> = fc.record({
  key: keyArb,
  end: endArb,
  back: fc.integer({ min: -1, max: 8 }),
  limit: fc.constantFrom(0, 0, 1, 2),
  sortTarget: fc.constantFrom(...(['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE'] as const)),
  sortOrder: fc.constantFrom(...(['NONE', 'ASCEND', 'DESCEND'] as const)),
  keysOnly: fc.boolean(),
  countOnly: fc.boolean(),
  minMod: fc.constantFrom(0, 0, 3),
  maxCreate: fc.constantFrom(0, 0, 5),
});
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('write' as const), gap: fc.constantFrom(0, 0, 0, 2), writes: writesArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('etcdTxn' as const),
      gap: fc.constantFrom(0, 1),
      compare: fc.record({
        key: keyArb,
        end: endArb,
        target: fc.constantFrom(...(['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE'] as const)),
        result: fc.constantFrom(...(['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL'] as const)),
        operand: fc.integer({ min: 0, max: 6 }),
        value: valueArb,
      }),
      success: fc.array(writeArb, { maxLength: 3 }),
      failure: fc.array(writeArb, { maxLength: 3 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.integer({ min: -1, max: 6 }), step: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compactStep' as const), step: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('read' as const), query: queryArb }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('events' as const), key: keyArb, end: endArb, back: fc.integer({ min: -1, max: 8 }), prevKv: fc.boolean(), scanLimit: fc.integer({ min: 1, max: 6 }) }),
  },
  { weight: 4, arbitrary: fc.constant({ kind: 'commit' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'sync' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), seed: fc.integer({ min: 0, max: 1000 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

/** Model state and op log as of one committed batch. */
interface Checkpoint {
  readonly model: Model;
  readonly logLength: number;
}

class Harness {
  private flushes: (() => void)[] = [];
  readonly engine = new MemoryEngine({ scheduleSync: (flush) => this.flushes.push(flush) });
  store: MvccStore;
  model = new Model();
  log: Logged[] = [];
  private batch: WriteBatch | undefined;
  private unsynced: Checkpoint[] = [];
  private durable: Checkpoint = { model: new Model(), logLength: 0 };

  /**
   * `eventsWantPrev`: whether write events carry previous values. Without
   * them a put reads no record of the key (MvccState.liveHead, the key-head
   * cache's summary); both ways must write the same history.
   */
  constructor(private readonly eventsWantPrev: boolean) {
    this.store = this.open();
  }

  private open(): MvccStore {
    return MvccStore.open(this.engine, LOCATION, { eventsWantPrevKv: () => this.eventsWantPrev });
  }

  run(op: Op): void {
    switch (op.kind) {
      case 'write':
        return this.write(op.gap, op.writes);
      case 'etcdTxn':
        return this.etcdTxn(op);
      case 'compact':
        return this.compact(op.back, op.step);
      case 'compactStep':
        this.store.compactStep(this.heldBatch(), op.step);
        return;
      case 'read':
        return this.read(op.query);
      case 'events':
        return this.events(op);
      case 'commit':
        return this.commit();
      case 'sync':
        this.flushes.splice(0).forEach((f) => f());
        this.durable = this.unsynced[this.unsynced.length - 1] ?? this.durable;
        this.unsynced = [];
        return;
      case 'crash':
        return this.crash(op.seed);
      case 'reopen':
        return this.reopen();
    }
  }

  check(): void {
    assert.equal(this.store.currentRevision, this.model.current);
    assert.equal(this.store.compactedRevision, this.model.compacted);
    assert.equal(this.store.hashKV().compactRevision, this.model.compactMainRev);
    this.store.checkInvariants();
  }

  private heldBatch(): WriteBatch {
    this.batch ??= this.engine.newBatch();
    return this.batch;
  }

  private write(gap: number, writes: readonly ModelWrite[]): void {
    const rev = this.model.current + 1 + gap;
    const txn = this.store.beginWrite(this.heldBatch(), { revision: rev });
    for (const w of writes) {
      if ('put' in w) txn.put(utf8(w.put), utf8(w.value), { leaseId: w.lease });
      else txn.deleteRange(utf8(w.del), w.end === undefined ? undefined : utf8(w.end));
    }
    const result = txn.end();
    const expected = this.model.apply(rev, writes);
    this.log.push({ kind: 'write', rev, writes });
    assert.equal(result.revision, this.model.current);
    assert.deepEqual(result.events.map(plainEvent), expected.map((c) => modelEvent(c, this.eventsWantPrev)));
  }

  private etcdTxn(op: Extract<Op, { kind: 'etcdTxn' }>): void {
    const rev = this.model.current + 1 + op.gap;
    const c = op.compare;
    const compare: Compare = { key: utf8(c.key), rangeEnd: c.end === undefined ? undefined : utf8(c.end), target: c.target, result: c.result, operand: c.operand, value: utf8(c.value) };
    const { response } = this.store.txn(this.heldBatch(), { compare: [compare], success: op.success.map(requestOp), failure: op.failure.map(requestOp) }, { revision: rev });
    const succeeded = modelCompare(this.model, c);
    assert.equal(response.succeeded, succeeded);
    const writes = succeeded ? op.success : op.failure;
    this.model.apply(rev, writes);
    this.log.push({ kind: 'write', rev, writes });
    assert.equal(response.revision, this.model.current);
  }

  private compact(back: number, step: number): void {
    const rev = this.model.current - back;
    const expected = rev <= this.model.compactMainRev ? 'COMPACTED' : rev > this.model.current ? 'FUTURE_REVISION' : undefined;
    assert.equal(errorCode(() => this.store.compact(rev, this.heldBatch(), step)), expected);
    if (expected !== undefined) return;
    this.model.compacted = rev;
    this.model.compactMainRev = rev;
    this.log.push({ kind: 'compact', rev });
  }

  private read(q: Query): void {
    const revision = q.back < 0 ? this.model.current + 1 : q.back === 0 ? 0 : this.model.current - q.back + 1;
    const options: RangeOptions = {
      key: utf8(q.key),
      rangeEnd: q.end === undefined ? undefined : utf8(q.end),
      revision,
      limit: q.limit,
      sortTarget: q.sortTarget,
      sortOrder: q.sortOrder,
      keysOnly: q.keysOnly,
      countOnly: q.countOnly,
      minModRevision: q.minMod,
      maxCreateRevision: q.maxCreate,
    };
    const expected = modelRange(this.model, q, revision);
    let actual: unknown;
    try {
      const r = this.store.range(options);
      actual = { ...r, kvs: r.kvs.map(plainKv) };
    } catch (error) {
      if (!isMvccRefusal(error)) throw error;
      actual = error.code;
    }
    assert.deepEqual(actual, expected);
  }

  private events(op: Extract<Op, { kind: 'events' }>): void {
    const from = Math.max(1, op.back < 0 ? this.model.current + 1 : this.model.current - op.back);
    const expected = modelEvents(this.model, from, op.key, op.end, op.prevKv);
    const base = { key: utf8(op.key), rangeEnd: op.end === undefined ? undefined : utf8(op.end), prevKv: op.prevKv, scanLimit: op.scanLimit };
    if (typeof expected === 'string') {
      assert.equal(errorCode(() => this.store.events({ ...base, fromRevision: from })), expected);
      return;
    }
    const got: MvccEvent[] = [];
    let next = from;
    do {
      const page = this.store.events({ ...base, fromRevision: next });
      assert.ok(page.events.every((e) => e.kv.modRevision >= next && e.kv.modRevision < page.nextRevision), 'a page stays within its revisions');
      got.push(...page.events);
      assert.ok(page.nextRevision > next || next > this.model.current);
      next = page.nextRevision;
    } while (next <= this.model.current);
    assert.deepEqual(got.map(plainEvent), expected);
  }

  commit(): void {
    if (this.batch === undefined) return;
    this.engine.commit(this.batch, () => {});
    this.batch = undefined;
    this.unsynced.push({ model: this.model.clone(), logLength: this.log.length });
  }

  private crash(seed: number): void {
    this.batch = undefined; // never committed: lost with the process
    const report = this.engine.crash(new SeededRng(seed));
    const kept = this.unsynced.slice(0, report.survived);
    this.durable = kept[kept.length - 1] ?? this.durable;
    this.unsynced = [];
    this.flushes = [];
    this.model = this.durable.model.clone();
    this.log.length = this.durable.logLength;
    this.store = this.open();
  }

  private reopen(): void {
    this.commit();
    const reopened = this.open();
    assertSameStore(reopened, this.store);
    this.store = reopened;
  }
}

function requestOp(w: ModelWrite): RequestOp {
  if ('put' in w) return { type: 'put', put: { key: utf8(w.put), value: utf8(w.value), lease: w.lease } };
  return { type: 'deleteRange', deleteRange: { key: utf8(w.del), rangeEnd: w.end === undefined ? undefined : utf8(w.end) } };
}

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (isMvccRefusal(error)) return error.code;
    throw error;
  }
  return undefined;
}

const plainKv = (kv: KeyValue): ModelKV & { key: string } => ({ key: text(kv.key), value: text(kv.value), create: kv.createRevision, mod: kv.modRevision, version: kv.version, lease: kv.lease });
const plainEvent = (e: MvccEvent) => ({ type: e.type, kv: plainKv(e.kv), prev: e.prevKv === undefined ? undefined : plainKv(e.prevKv) });

function modelEvent(c: ModelChange, withPrev: boolean) {
  const kv = c.kv === undefined ? { key: c.key, value: '', create: 0, mod: c.main, version: 0, lease: 0 } : { key: c.key, ...c.kv };
  return { type: c.kv === undefined ? 'DELETE' : 'PUT', kv, prev: withPrev && c.prev !== undefined ? { key: c.key, ...c.prev } : undefined };
}

function modelEvents(m: Model, from: number, key: string, end: string | undefined, withPrev: boolean) {
  if (from < m.compacted) return 'COMPACTED';
  return m.changes
    .filter((c) => c.main >= from && inRange(c.key, key, end) && m.keeps(c.key, c.main, c.sub))
    .map((c) => modelEvent(c, withPrev && c.prevRev !== undefined && m.keeps(c.key, c.prevRev.main, c.prevRev.sub)));
}

function modelCompare(m: Model, c: Extract<Op, { kind: 'etcdTxn' }>['compare']): boolean {
  const state = m.stateAt(m.current);
  const kvs = [...state.entries()].filter(([k]) => inRange(k, c.key, c.end)).map(([, kv]) => kv);
  if (kvs.length === 0 && c.target === 'VALUE') return false;
  const zero: ModelKV = { value: '', create: 0, mod: 0, version: 0, lease: 0 };
  return (kvs.length === 0 ? [zero] : kvs).every((kv) => {
    const d = c.target === 'VALUE' ? compareStrings(kv.value, c.value) : fieldOf(kv, c.target) - c.operand;
    return c.result === 'EQUAL' ? d === 0 : c.result === 'NOT_EQUAL' ? d !== 0 : c.result === 'GREATER' ? d > 0 : d < 0;
  });
}

function fieldOf(kv: ModelKV, target: CompareTarget | SortTarget): number {
  return target === 'CREATE' ? kv.create : target === 'MOD' ? kv.mod : target === 'VERSION' ? kv.version : kv.lease;
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function modelRange(m: Model, q: Query, revision: number) {
  if (revision > m.current) return 'FUTURE_REVISION';
  const at = revision <= 0 ? m.current : revision;
  if (at < m.compacted) return 'COMPACTED';
  let kvs = [...m.stateAt(at).entries()]
    .filter(([k]) => inRange(k, q.key, q.end))
    .sort(([a], [b]) => compareStrings(a, b))
    .map(([key, kv]) => ({ key, value: kv.value, create: kv.create, mod: kv.mod, version: kv.version, lease: kv.lease }));
  const count = kvs.length;
  if (q.countOnly) return { kvs: [], more: false, count, revision: m.current };
  kvs = kvs.filter((kv) => (q.minMod === 0 || kv.mod >= q.minMod) && (q.maxCreate === 0 || kv.create <= q.maxCreate));
  const order = q.sortTarget !== 'KEY' && q.sortOrder === 'NONE' ? 'ASCEND' : q.sortOrder;
  if (order !== 'NONE') {
    const by = (a: (typeof kvs)[number], b: (typeof kvs)[number]) =>
      q.sortTarget === 'KEY' ? compareStrings(a.key, b.key) : q.sortTarget === 'VALUE' ? compareStrings(a.value, b.value) : fieldOf(a, q.sortTarget) - fieldOf(b, q.sortTarget);
    kvs.sort((a, b) => (order === 'ASCEND' ? by(a, b) : by(b, a)));
  }
  const more = q.limit > 0 && kvs.length > q.limit;
  if (more) kvs = kvs.slice(0, q.limit);
  // keys_only drops values; without a VALUE sort it is served from the index, which has no lease (as etcd).
  if (q.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: '', lease: q.sortTarget === 'VALUE' ? kv.lease : 0 }));
  return { kvs, more, count, revision: m.current };
}

/** Replays the logical history into a fresh store, one committed batch per op, compactions completed at once. */
function replay(log: readonly Logged[]): MvccStore {
  const engine = new MemoryEngine({ scheduleSync: () => {} });
  const store = MvccStore.open(engine, LOCATION);
  for (const entry of log) {
    if (entry.kind === 'compact') {
      compactAll(engine, store, entry.rev);
      continue;
    }
    const batch = engine.newBatch();
    const txn = store.beginWrite(batch, { revision: entry.rev });
    for (const w of entry.writes) {
      if ('put' in w) txn.put(utf8(w.put), utf8(w.value), { leaseId: w.lease });
      else txn.deleteRange(utf8(w.del), w.end === undefined ? undefined : utf8(w.end));
    }
    txn.end();
    engine.commit(batch, () => {});
  }
  return store;
}

const WHOLE_KEY_SPACE: Query = { key: '\0', end: '\0', back: 0, limit: 0, sortTarget: 'KEY', sortOrder: 'NONE', keysOnly: false, countOnly: false, minMod: 0, maxCreate: 0 };

function finalChecks(h: Harness): void {
  h.commit();
  h.check();
  const reference = replay(h.log);
  assert.equal(reference.currentRevision, h.model.current);
  for (let rev = Math.max(1, h.model.compacted); rev <= h.model.current; rev++) {
    // etcd 3.4's HashKV refuses the compacted revision itself; Range reads it.
    if (rev > h.model.compacted) assert.equal(h.store.hashKV(rev).hash, reference.hashKV(rev).hash, `hash at ${rev}`);
    else assert.equal(errorCode(() => h.store.hashKV(rev)), 'COMPACTED');
    const r = h.store.range({ key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0), revision: rev });
    assert.deepEqual({ ...r, kvs: r.kvs.map(plainKv) }, modelRange(h.model, WHOLE_KEY_SPACE, rev));
  }
}

function reportCause(run: () => void): void {
  try {
    run();
  } catch (error) {
    // fast-check's report holds the failing value; the assertion that failed is its cause.
    const cause = (error as { cause?: unknown }).cause;
    if (cause !== undefined) console.error('cause:', cause);
    throw error;
  }
}

test('model: random histories agree with the model across batches, compactions, crashes and reopens', () => {
  reportCause(() => fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), fc.boolean(), (ops, eventsWantPrev) => {
      const h = new Harness(eventsWantPrev);
      for (const op of ops) {
        h.run(op);
        h.check();
      }
      finalChecks(h);
    }),
    // MVCC_MODEL_RUNS soaks longer; MVCC_MODEL_SEED replays a reported failure.
    { numRuns: Number(process.env['MVCC_MODEL_RUNS'] ?? 300), ...(process.env['MVCC_MODEL_SEED'] === undefined ? {} : { seed: Number(process.env['MVCC_MODEL_SEED']) }) },
  ));
});
