/**
 * The one conformance suite every StorageEngine passes (memory.test.ts and
 * lmdb/engine.test.ts run it). It is a test library (`*.testlib.ts`): the
 * layering lint lets it import node:test and fast-check like a test, and lets
 * only tests import it, so none of it reaches production code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isTesseraError, type TesseraErrorCode } from '../base/index.js';
import { compareBytes } from './bytes.js';
import { MAX_KEY_BYTES, MAX_VALUE_HEAD_BYTES, type KeyValue, type ReadView, type ScanOptions, type StorageEngine, type VisitOptions, type WriteBatch } from './engine.js';

export interface EngineUnderTest {
  readonly engine: StorageEngine;
  /** Closes the engine if the test did not, and removes what it left behind (files). */
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** Runs of the model-based property (each opens a fresh engine). */
  readonly propertyRuns?: number;
}

const DEFAULT_PROPERTY_RUNS = 60;

export function runEngineConformance(name: string, factory: () => Promise<EngineUnderTest>, options: ConformanceOptions = {}): void {
  const it = (title: string, body: (engine: StorageEngine) => Promise<void>): void => {
    test(`${name} conformance: ${title}`, async () => {
      const under = await factory();
      try {
        await body(under.engine);
      } finally {
        await under.cleanup();
      }
    });
  };
  basicTests(it);
  deleteRangeTests(it);
  scanTests(it);
  batchTests(it);
  durabilityTests(it);
  snapshotTests(it);
  closeTests(it);
  sizeTests(it);
  modelProperty(name, factory, options.propertyRuns ?? DEFAULT_PROPERTY_RUNS);
}

type It = (title: string, body: (engine: StorageEngine) => Promise<void>) => void;

// ---- helpers ---------------------------------------------------------------

const b = (...bytes: number[]): Uint8Array => Uint8Array.from(bytes);
const s = (text: string): Uint8Array => new TextEncoder().encode(text);
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/** Commits and resolves once the batch is durable (rejects with the onDurable error). */
function commitDurable(engine: StorageEngine, fill: (batch: WriteBatch) => void): Promise<void> {
  const batch = engine.newBatch();
  fill(batch);
  return new Promise((resolve, reject) => engine.commit(batch, (error) => (error ? reject(error) : resolve())));
}

function keysOf(view: ReadView, options: ScanOptions): string[] {
  return [...view.scan(options)].map((kv) => hex(kv.key));
}

function pairsOf(entries: Iterable<KeyValue>): [string, string][] {
  return [...entries].map((kv) => [hex(kv.key), hex(kv.value)]);
}

/** What a visit gave: key, value (or head) and full value length of each pair, copied while the visitor ran (heads are borrowed). */
function visited(view: ReadView, options: VisitOptions): [string, string, number][] {
  const out: [string, string, number][] = [];
  view.visit(options, (key, value, valueBytes) => {
    out.push([hex(key), hex(value), valueBytes]);
  });
  return out;
}

/** What visited() must give: the scan's pairs, values cut to `head` bytes. */
function expectedVisit(view: ReadView, options: VisitOptions): [string, string, number][] {
  const head = options.valueHeadBytes;
  return [...view.scan(options)].map((kv) => [hex(kv.key), hex(head === undefined ? kv.value : kv.value.subarray(0, head)), kv.value.length]);
}

function assertCode(fn: () => unknown, code: TesseraErrorCode): void {
  assert.throws(fn, (error: unknown) => isTesseraError(error, code), `expected TesseraError ${code}`);
}

// ---- get / put / delete ------------------------------------------------------

function basicTests(it: It): void {
  it('get of a missing key is undefined; put then get; overwrite; delete', async (engine) => {
    assert.equal(engine.get(s('a')), undefined);
    await commitDurable(engine, (w) => w.put(s('a'), s('1')));
    assert.deepEqual(engine.get(s('a')), s('1'));
    await commitDurable(engine, (w) => w.put(s('a'), s('2')));
    assert.deepEqual(engine.get(s('a')), s('2'));
    await commitDurable(engine, (w) => w.delete(s('a')));
    assert.equal(engine.get(s('a')), undefined);
    await commitDurable(engine, (w) => w.delete(s('never-there')));
    assert.equal(engine.get(s('never-there')), undefined);
  });

  it('empty values, large values and keys of the maximum size are stored', async (engine) => {
    const big = new Uint8Array(200_000).map((_, i) => i % 251);
    const longKey = new Uint8Array(MAX_KEY_BYTES).fill(0xab);
    await commitDurable(engine, (w) => {
      w.put(s('empty'), new Uint8Array());
      w.put(s('big'), big);
      w.put(longKey, s('long'));
    });
    assert.deepEqual(engine.get(s('empty')), new Uint8Array());
    assert.deepEqual(engine.get(s('big')), big);
    assert.deepEqual(engine.get(longKey), s('long'));
  });

  it('refuses empty and oversized keys with INVALID_ARGUMENT when they are queued', async (engine) => {
    const batch = engine.newBatch();
    assertCode(() => batch.put(new Uint8Array(), s('x')), 'INVALID_ARGUMENT');
    assertCode(() => batch.delete(new Uint8Array()), 'INVALID_ARGUMENT');
    assertCode(() => batch.put(new Uint8Array(MAX_KEY_BYTES + 1), s('x')), 'INVALID_ARGUMENT');
    assert.equal(batch.count, 0);
  });

  it('the batch copies its inputs: changing a buffer after put changes nothing', async (engine) => {
    const key = s('k');
    const value = s('v1');
    await commitDurable(engine, (w) => {
      w.put(key, value);
      key[0] = 0x7a;
      value[1] = 0x39;
    });
    assert.deepEqual(engine.get(s('k')), s('v1'));
    assert.equal(engine.get(s('z')), undefined);
  });

  it('putOwned stores its arrays like put, with the same checks', async (engine) => {
    await commitDurable(engine, (w) => {
      w.putOwned(s('owned'), s('value'));
      // Views into a larger buffer (slab allocations) are stored as the view, not the buffer.
      w.putOwned(s('xxviewxx').subarray(2, 6), s('..sliced..').subarray(2, 8));
      w.put(s('copied'), s('other'));
      assert.equal(w.count, 3);
      assertCode(() => w.putOwned(new Uint8Array(0), s('x')), 'INVALID_ARGUMENT');
    });
    assert.deepEqual(engine.get(s('owned')), s('value'));
    assert.deepEqual(engine.get(s('view')), s('sliced'));
    assert.deepEqual(keysOf(engine, { start: s('v'), end: s('w') }), [hex(s('view'))]);
    assert.deepEqual(engine.get(s('copied')), s('other'));
  });
}

// ---- deleteRange -------------------------------------------------------------

function deleteRangeTests(it: It): void {
  it('deleteRange removes [start, end) and keeps both neighbours', async (engine) => {
    await commitDurable(engine, (w) => {
      for (const k of ['a', 'b', 'b\0', 'ba', 'c', 'd']) w.put(s(k), s(k));
    });
    await commitDurable(engine, (w) => w.deleteRange(s('b'), s('c')));
    assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), ['a', 'c', 'd'].map((k) => hex(s(k))));
  });

  it('an empty or inverted range deletes nothing', async (engine) => {
    await commitDurable(engine, (w) => ['a', 'b', 'c'].forEach((k) => w.put(s(k), s(k))));
    await commitDurable(engine, (w) => {
      w.deleteRange(s('b'), s('b'));
      w.deleteRange(s('c'), s('a'));
    });
    assert.equal(keysOf(engine, { start: new Uint8Array() }).length, 3);
  });

  it('operations in one batch apply in order around a deleteRange', async (engine) => {
    await commitDurable(engine, (w) => w.put(s('m1'), s('old')));
    await commitDurable(engine, (w) => {
      w.put(s('m2'), s('x'));
      w.deleteRange(s('m'), s('n')); // removes m1 and the m2 queued just before
      w.put(s('m3'), s('after'));
    });
    assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), [hex(s('m3'))]);
    assert.deepEqual(engine.get(s('m3')), s('after'));
  });

  it('deleteRange reaches keys committed but not yet durable', async (engine) => {
    const first = commitDurable(engine, (w) => ['p1', 'p2', 'q'].forEach((k) => w.put(s(k), s(k))));
    const second = commitDurable(engine, (w) => w.deleteRange(s('p'), s('q')));
    assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), [hex(s('q'))]);
    await Promise.all([first, second]);
    assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), [hex(s('q'))]);
  });
}

// ---- scans -----------------------------------------------------------------

const ORDERED_KEYS: Uint8Array[] = [b(0x00), b(0x00, 0x00), b(0x00, 0xff), b(0x01), b(0x01, 0x00), b(0x01, 0x00, 0x00), b(0x01, 0x01), b(0x7f), b(0x80), b(0xfe, 0xff), b(0xff), b(0xff, 0x00), b(0xff, 0xff, 0xff)];

function scanTests(it: It): void {
  it('keys order as unsigned bytes, a prefix before its extensions', async (engine) => {
    await commitDurable(engine, (w) => [...ORDERED_KEYS].reverse().forEach((k, i) => w.put(k, b(i))));
    assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), ORDERED_KEYS.map(hex));
    assert.deepEqual(keysOf(engine, { start: new Uint8Array(), reverse: true }), ORDERED_KEYS.map(hex).reverse());
  });

  it('start is inclusive, end exclusive, forward and reverse', async (engine) => {
    await commitDurable(engine, (w) => ORDERED_KEYS.forEach((k) => w.put(k, k)));
    const start = b(0x01);
    const end = b(0x80);
    const inside = ORDERED_KEYS.filter((k) => compareBytes(k, start) >= 0 && compareBytes(k, end) < 0).map(hex);
    assert.deepEqual(keysOf(engine, { start, end }), inside);
    assert.deepEqual(keysOf(engine, { start, end, reverse: true }), [...inside].reverse());
    // Bounds that fall between keys.
    assert.deepEqual(keysOf(engine, { start: b(0x00, 0x01), end: b(0x01, 0x00, 0x00, 0x00) }), [b(0x00, 0xff), b(0x01), b(0x01, 0x00), b(0x01, 0x00, 0x00)].map(hex));
    // No end: to the end of the key space.
    assert.deepEqual(keysOf(engine, { start: b(0xff) }), [b(0xff), b(0xff, 0x00), b(0xff, 0xff, 0xff)].map(hex));
    assert.deepEqual(keysOf(engine, { start: b(0xff), reverse: true }), [b(0xff, 0xff, 0xff), b(0xff, 0x00), b(0xff)].map(hex));
  });

  it('limit counts from the scan direction; 0 and undefined mean no limit; negative is refused', async (engine) => {
    await commitDurable(engine, (w) => ORDERED_KEYS.forEach((k) => w.put(k, k)));
    const all = ORDERED_KEYS.map(hex);
    assert.deepEqual(keysOf(engine, { start: new Uint8Array(), limit: 3 }), all.slice(0, 3));
    assert.deepEqual(keysOf(engine, { start: new Uint8Array(), limit: 3, reverse: true }), all.slice(-3).reverse());
    assert.deepEqual(keysOf(engine, { start: new Uint8Array(), limit: 0 }), all);
    assert.deepEqual(keysOf(engine, { start: new Uint8Array(), limit: 1000 }), all);
    assertCode(() => [...engine.scan({ start: new Uint8Array(), limit: -1 })], 'INVALID_ARGUMENT');
    assertCode(() => [...engine.scan({ start: new Uint8Array(), limit: 1.5 })], 'INVALID_ARGUMENT');
  });

  it('empty scans: an empty engine, start at or past end, a gap between keys', async (engine) => {
    assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), []);
    assert.deepEqual(keysOf(engine, { start: new Uint8Array(), reverse: true }), []);
    await commitDurable(engine, (w) => [s('a'), s('c')].forEach((k) => w.put(k, k)));
    assert.deepEqual(keysOf(engine, { start: s('c'), end: s('c') }), []);
    assert.deepEqual(keysOf(engine, { start: s('c'), end: s('a') }), []);
    assert.deepEqual(keysOf(engine, { start: s('c'), end: s('a'), reverse: true }), []);
    assert.deepEqual(keysOf(engine, { start: s('b'), end: s('c'), reverse: true }), []);
    assert.deepEqual(keysOf(engine, { start: s('d') }), []);
  });

  it('visit gives the pairs scan gives, whole or as value heads with full lengths, and stops when the visitor returns false', async (engine) => {
    const long = new Uint8Array(300).map((_, i) => i & 0xff);
    await commitDurable(engine, (w) => {
      w.put(s('a'), long);
      w.put(s('b'), b(9));
      w.put(s('c'), new Uint8Array(0));
      w.put(s('d'), s('dddd'));
    });
    // A staged batch over them: visits merge it in as scans do.
    const staged = engine.newBatch();
    staged.put(s('bb'), s('staged'));
    staged.delete(s('d'));
    for (const view of [engine, engine.snapshotView()]) {
      for (const options of [
        { start: new Uint8Array() },
        { start: s('a'), end: s('c') },
        { start: new Uint8Array(), reverse: true, limit: 2 },
        { start: new Uint8Array(), valueHeadBytes: 2 },
        { start: s('b'), valueHeadBytes: MAX_VALUE_HEAD_BYTES },
        { start: new Uint8Array(), reverse: true, valueHeadBytes: 1 },
        // Ranges the staged batch writes nothing in (LMDB reads them alone), up to and from its keys.
        { start: s('a'), end: s('bb') },
        { start: s('c'), end: s('d'), valueHeadBytes: 1 },
        { start: s('a'), end: s('bb'), reverse: true, limit: 1 },
        { start: s('d') },
        { start: s('bb'), end: s('bc') },
      ]) {
        assert.deepEqual(visited(view, options), expectedVisit(view, options), JSON.stringify(options));
      }
      if (view !== engine) (view as ReadView & { close(): void }).close();
      else engine.stage(staged);
    }
    assert.deepEqual(visited(engine, { start: new Uint8Array(), valueHeadBytes: 3 }), [
      [hex(s('a')), hex(long.subarray(0, 3)), 300],
      [hex(s('b')), hex(b(9)), 1],
      [hex(s('bb')), hex(s('sta')), 6],
      [hex(s('c')), '', 0],
    ]);
    const seen: string[] = [];
    engine.visit({ start: new Uint8Array() }, (key) => {
      seen.push(hex(key));
      return seen.length < 2;
    });
    assert.deepEqual(seen, [hex(s('a')), hex(s('b'))]);
    assertCode(() => engine.visit({ start: new Uint8Array(), valueHeadBytes: 0 }, () => {}), 'INVALID_ARGUMENT');
    assertCode(() => engine.visit({ start: new Uint8Array(), valueHeadBytes: MAX_VALUE_HEAD_BYTES + 1 }, () => {}), 'INVALID_ARGUMENT');
    assertCode(() => engine.visit({ start: new Uint8Array(), limit: -1 }, () => {}), 'INVALID_ARGUMENT');
    // count: as many as the scan yields, staged batches, bounds and limits included.
    for (const options of [{ start: new Uint8Array() }, { start: s('b'), end: s('c') }, { start: s('c'), end: s('b') }, { start: new Uint8Array(), limit: 2 }, { start: new Uint8Array(), reverse: true }]) {
      assert.equal(engine.count(options), [...engine.scan(options)].length, JSON.stringify(options));
    }
    await commitDurable(engine, () => {});
    assert.equal(engine.count({ start: new Uint8Array() }), 4);
    assert.equal(engine.count({ start: s('b'), end: s('bc') }), 2);
    assertCode(() => engine.count({ start: new Uint8Array(), limit: -1 }), 'INVALID_ARGUMENT');
  });

  it('a scan returns values and sees the state of the moment it was called', async (engine) => {
    await commitDurable(engine, (w) => ['a', 'b', 'c'].forEach((k) => w.put(s(k), s(k + k))));
    const iterator = engine.scan({ start: new Uint8Array() })[Symbol.iterator]();
    const first = iterator.next();
    await commitDurable(engine, (w) => {
      w.put(s('bb'), s('new'));
      w.delete(s('c'));
    });
    const rest: KeyValue[] = [];
    for (let r = iterator.next(); !r.done; r = iterator.next()) rest.push(r.value);
    assert.deepEqual(pairsOf([first.value as KeyValue, ...rest]), [['a', 'aa'], ['b', 'bb'], ['c', 'cc']].map(([k, v]) => [hex(s(k as string)), hex(s(v as string))]));
  });
}

// ---- batches ---------------------------------------------------------------

function batchTests(it: It): void {
  it('a batch reports its count and size, and applies all of its operations at once', async (engine) => {
    const batch = engine.newBatch();
    batch.put(s('k1'), s('vv'));
    batch.delete(s('k2'));
    batch.deleteRange(s('x'), s('y'));
    assert.equal(batch.count, 3);
    assert.equal(batch.sizeBytes, 2 + 2 + 2 + 1 + 1);
    let done = false;
    engine.commit(batch, () => (done = true));
    assert.deepEqual(engine.get(s('k1')), s('vv'));
    assert.equal(done, false);
  });

  it('a committed batch cannot be changed or committed again; a foreign batch is refused', async (engine) => {
    const batch = engine.newBatch();
    batch.put(s('a'), s('1'));
    const durable = new Promise<void>((resolve) => engine.commit(batch, () => resolve()));
    assertCode(() => batch.put(s('b'), s('2')), 'INVALID_ARGUMENT');
    assertCode(() => engine.commit(batch, () => {}), 'INVALID_ARGUMENT');
    const foreign: WriteBatch = { put() {}, putOwned() {}, delete() {}, deleteRange() {}, count: 0, sizeBytes: 0, sealed: false };
    assertCode(() => engine.commit(foreign, () => {}), 'INVALID_ARGUMENT');
    await durable;
    assert.equal(engine.get(s('b')), undefined);
  });

  it('a batch abandoned after a refused operation leaves no trace', async (engine) => {
    const batch = engine.newBatch();
    batch.put(s('a'), s('1'));
    assertCode(() => batch.put(new Uint8Array(), s('x')), 'INVALID_ARGUMENT');
    assert.equal(engine.get(s('a')), undefined);
    await commitDurable(engine, (w) => w.put(s('other'), s('1')));
    assert.equal(engine.get(s('a')), undefined);
  });

  it('an empty batch commits and becomes durable in order', async (engine) => {
    const order: number[] = [];
    const done = new Promise<void>((resolve) => {
      const one = engine.newBatch();
      one.put(s('a'), s('1'));
      engine.commit(one, () => order.push(1));
      engine.commit(engine.newBatch(), () => order.push(2));
      const three = engine.newBatch();
      three.put(s('b'), s('2'));
      engine.commit(three, () => {
        order.push(3);
        resolve();
      });
    });
    await done;
    assert.deepEqual(order, [1, 2, 3]);
  });
}

// ---- durability callbacks ------------------------------------------------------

function durabilityTests(it: It): void {
  it('a staged batch is visible at once, ordered before the next commit, and stays through its sync', async (engine) => {
    const staged = engine.newBatch();
    staged.put(s('s1'), s('staged'));
    staged.put(s('s2'), s('staged'));
    staged.put(s('t'), s('staged'));
    engine.stage(staged);
    assert.deepEqual(engine.get(s('s1')), s('staged'));
    assert.deepEqual(keysOf(engine, { start: s('s') }), ['s1', 's2', 't'].map((k) => hex(s(k))));
    const second = engine.newBatch();
    second.put(s('stage-only'), s('x'));
    engine.stage(second);
    // The commit sees the staged keys: its deleteRange removes them, its put overwrites one.
    await commitDurable(engine, (w) => {
      w.deleteRange(s('s1'), s('s3'));
      w.put(s('t'), s('committed'));
    });
    assert.deepEqual(keysOf(engine, { start: s('s') }), ['stage-only', 't'].map((k) => hex(s(k))));
    assert.deepEqual(engine.get(s('t')), s('committed'));
    assert.equal(engine.get(s('s2')), undefined);
    const view = engine.snapshotView();
    try {
      assert.deepEqual(view.get(s('stage-only')), s('x'));
    } finally {
      view.close();
    }
  });

  it('a staged batch refuses reuse like a committed one', async (engine) => {
    const batch = engine.newBatch();
    batch.put(s('a'), s('1'));
    engine.stage(batch);
    assertCode(() => engine.stage(batch), 'INVALID_ARGUMENT');
    assertCode(() => engine.commit(batch, () => {}), 'INVALID_ARGUMENT');
    await engine.close();
    assertCode(() => engine.stage(engine.newBatch()), 'CLOSED');
  });

  it('writes are visible as soon as commit returns, before they are durable', async (engine) => {
    let durable = false;
    const batch = engine.newBatch();
    batch.put(s('v'), s('1'));
    const done = new Promise<void>((resolve) =>
      engine.commit(batch, () => {
        durable = true;
        resolve();
      }),
    );
    assert.equal(durable, false);
    assert.deepEqual(engine.get(s('v')), s('1'));
    assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), [hex(s('v'))]);
    await done;
    assert.deepEqual(engine.get(s('v')), s('1'));
  });

  it('onDurable never runs inside commit, and runs once per batch in commit order', async (engine) => {
    const COMMITS = 50;
    const calls: number[] = [];
    let inCommit = false;
    let ranInside = false;
    const all: Promise<void>[] = [];
    for (let i = 0; i < COMMITS; i++) {
      const batch = engine.newBatch();
      batch.put(b(1, i), b(i));
      all.push(
        new Promise((resolve, reject) => {
          inCommit = true;
          engine.commit(batch, (error) => {
            if (inCommit) ranInside = true;
            calls.push(i);
            if (error) reject(error);
            else resolve();
          });
          inCommit = false;
        }),
      );
      // Let some callbacks come due between commits, so that order is tested across syncs too.
      if (i % 7 === 3) await Promise.resolve();
    }
    await Promise.all(all);
    assert.equal(ranInside, false);
    assert.deepEqual(calls, Array.from({ length: COMMITS }, (_, i) => i));
  });

  it('a commit made from inside onDurable is accepted and becomes durable later', async (engine) => {
    const order: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const first = engine.newBatch();
      first.put(s('a'), s('1'));
      engine.commit(first, () => {
        order.push('first');
        const second = engine.newBatch();
        second.put(s('b'), s('2'));
        engine.commit(second, (error) => {
          order.push('second');
          if (error) reject(error);
          else resolve();
        });
        assert.deepEqual(engine.get(s('b')), s('2'));
      });
    });
    assert.deepEqual(order, ['first', 'second']);
  });
}

// ---- snapshots -------------------------------------------------------------

function snapshotTests(it: It): void {
  it('a snapshot keeps its state while later commits change the live one', async (engine) => {
    await commitDurable(engine, (w) => ['a', 'b', 'c', 'd'].forEach((k) => w.put(s(k), s('old'))));
    const pending = commitDurable(engine, (w) => w.put(s('e'), s('unsynced')));
    const view = engine.snapshotView();
    try {
      await commitDurable(engine, (w) => {
        w.put(s('a'), s('new'));
        w.delete(s('b'));
        w.deleteRange(s('c'), s('e'));
        w.put(s('z'), s('new'));
      });
      await pending;
      assert.deepEqual(view.get(s('a')), s('old'));
      assert.deepEqual(view.get(s('b')), s('old'));
      assert.deepEqual(view.get(s('e')), s('unsynced'));
      assert.equal(view.get(s('z')), undefined);
      assert.deepEqual(keysOf(view, { start: new Uint8Array() }), ['a', 'b', 'c', 'd', 'e'].map((k) => hex(s(k))));
      assert.deepEqual(keysOf(view, { start: s('b'), end: s('e'), reverse: true, limit: 2 }), ['d', 'c'].map((k) => hex(s(k))));
      assert.deepEqual(keysOf(engine, { start: new Uint8Array() }), ['a', 'e', 'z'].map((k) => hex(s(k))));
    } finally {
      view.close();
    }
  });

  it('a closed snapshot refuses reads; closing twice is harmless', async (engine) => {
    const view = engine.snapshotView();
    view.close();
    view.close();
    assertCode(() => view.get(s('a')), 'CLOSED');
    assertCode(() => view.scan({ start: new Uint8Array() }), 'CLOSED');
  });

  it('a snapshot read a slice at a time, each slice a fresh scan from the last key, keeps its state while commits and staged batches go on', async (engine) => {
    await commitDurable(engine, (w) => {
      for (let i = 0; i < 200; i++) w.put(b(i + 1), b(i));
    });
    const expected = keysOf(engine, { start: new Uint8Array() });
    const view = engine.snapshotView();
    try {
      const seen: string[] = [];
      let from: Uint8Array | undefined;
      for (let round = 0; ; round++) {
        let n = 0;
        for (const kv of view.scan({ start: from ?? new Uint8Array(), limit: 8 })) {
          if (from !== undefined && compareBytes(kv.key, from) === 0) continue;
          seen.push(hex(kv.key));
          from = kv.key.slice();
          n++;
        }
        if (n === 0) break;
        // Between slices: overwrite, delete and insert around where the scan stands, staged and committed.
        const w = engine.newBatch();
        w.put(b(round + 1), s('changed'));
        w.deleteRange(b(round + 2), b(round + 5));
        w.put(Uint8Array.of(0, round), s('new'));
        if (round % 2 === 0) engine.stage(w);
        else await commitDurable(engine, (c) => c.put(b(round + 100), s('also')));
      }
      assert.deepEqual(seen, expected);
      assert.notDeepEqual(keysOf(engine, { start: new Uint8Array() }), expected, 'the live state moved on');
    } finally {
      view.close();
    }
  });

  it('many snapshots at different moments each keep their own state', async (engine) => {
    const views: (ReadView & { close(): void })[] = [];
    for (let i = 0; i < 5; i++) {
      views.push(engine.snapshotView());
      await commitDurable(engine, (w) => w.put(b(i + 1), b(i)));
    }
    views.forEach((view, i) => assert.equal(keysOf(view, { start: new Uint8Array() }).length, i));
    views.forEach((view) => view.close());
  });
}

// ---- close -------------------------------------------------------------------

function closeTests(it: It): void {
  it('close runs the pending durability callbacks, is idempotent, and refuses use afterwards', async (engine) => {
    let durable = 0;
    for (let i = 0; i < 3; i++) {
      const batch = engine.newBatch();
      batch.put(b(i + 1), b(i));
      engine.commit(batch, (error) => {
        assert.equal(error, undefined);
        durable++;
      });
    }
    await engine.close();
    assert.equal(durable, 3);
    await engine.close();
    assertCode(() => engine.get(s('a')), 'CLOSED');
    assertCode(() => engine.scan({ start: new Uint8Array() }), 'CLOSED');
    assertCode(() => engine.snapshotView(), 'CLOSED');
    assertCode(() => engine.commit(engine.newBatch(), () => {}), 'CLOSED');
  });

  it('closing concurrently from two callers resolves both', async (engine) => {
    await Promise.all([engine.close(), engine.close()]);
  });
}

// ---- size ----------------------------------------------------------------------

function sizeTests(it: It): void {
  it('sizeBytes grows by at least the bytes durable batches added, is a safe integer after deletes, and is refused after close', async (engine) => {
    // Optional in the interface; both engines (every EngineKind) report it, which is what Status shows.
    assert.equal(typeof engine.sizeBytes, 'function');
    const sizeBytes = (): number => engine.sizeBytes?.() ?? -1;
    const empty = sizeBytes();
    assert.ok(Number.isSafeInteger(empty) && empty >= 0, `size of an empty engine: ${empty}`);
    const value = new Uint8Array(1024).fill(0xab);
    const count = 256;
    await commitDurable(engine, (w) => {
      for (let i = 0; i < count; i++) w.put(b(0x10, i >> 8, i & 0xff), value);
    });
    const full = sizeBytes();
    const payloadBytes = count * (3 + value.length);
    assert.ok(full - empty >= payloadBytes, `grew by ${full - empty} bytes for ${payloadBytes} bytes of keys and values`);
    await commitDurable(engine, (w) => w.deleteRange(b(0x10), b(0x11)));
    // Not necessarily smaller: LMDB's size is a high-water mark, and copy-on-write may even raise it.
    const after = sizeBytes();
    assert.ok(Number.isSafeInteger(after) && after >= 0, `after deleting everything: ${after}`);
    await engine.close();
    assertCode(() => engine.sizeBytes?.(), 'CLOSED');
  });
}

// ---- model-based property ------------------------------------------------------

type Op =
  | { readonly kind: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly kind: 'delete'; readonly key: Uint8Array }
  | { readonly kind: 'delete-range'; readonly start: Uint8Array; readonly end: Uint8Array };

type Step =
  | { readonly kind: 'commit'; readonly ops: readonly Op[]; readonly wait: boolean }
  | { readonly kind: 'get'; readonly key: Uint8Array }
  | { readonly kind: 'scan'; readonly start: Uint8Array; readonly end: Uint8Array | undefined; readonly reverse: boolean; readonly limit: number }
  | { readonly kind: 'snapshot' };

// Small alphabets make collisions, prefixes and edge bytes common.
const keyArb = fc.uint8Array({ minLength: 1, maxLength: 3 }).map((k) => k.map((x) => [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff][x % 6] as number));
const boundArb = fc.uint8Array({ minLength: 0, maxLength: 3 }).map((k) => k.map((x) => [0x00, 0x01, 0x7f, 0x80, 0xff][x % 5] as number));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('put' as const), key: keyArb, value: fc.uint8Array({ maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete-range' as const), start: boundArb, end: boundArb }) },
);
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('commit' as const), ops: fc.array(opArb, { maxLength: 6 }), wait: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('get' as const), key: keyArb }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('scan' as const), start: boundArb, end: fc.option(boundArb, { nil: undefined }), reverse: fc.boolean(), limit: fc.nat(5) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const) }) },
);

/** The reference: a Map from hex key to value, scanned by sorting. */
class Model {
  readonly entries = new Map<string, Uint8Array>();

  apply(op: Op): void {
    if (op.kind === 'put') this.entries.set(hex(op.key), op.value);
    else if (op.kind === 'delete') this.entries.delete(hex(op.key));
    else for (const key of [...this.entries.keys()]) if (inside(Buffer.from(key, 'hex'), op.start, op.end)) this.entries.delete(key);
  }

  scan(start: Uint8Array, end: Uint8Array | undefined, reverse: boolean, limit: number): [string, string][] {
    const keys = [...this.entries.keys()].map((k) => Buffer.from(k, 'hex')).filter((k) => inside(k, start, end));
    keys.sort(compareBytes);
    if (reverse) keys.reverse();
    const cut = limit === 0 ? keys : keys.slice(0, limit);
    return cut.map((k) => [hex(k), hex(this.entries.get(hex(k)) as Uint8Array)]);
  }

  copy(): Model {
    const m = new Model();
    for (const [k, v] of this.entries) m.entries.set(k, v);
    return m;
  }
}

function inside(key: Uint8Array, start: Uint8Array, end: Uint8Array | undefined): boolean {
  return compareBytes(key, start) >= 0 && (end === undefined || compareBytes(key, end) < 0);
}

function modelProperty(name: string, factory: () => Promise<EngineUnderTest>, runs: number): void {
  test(`${name} conformance: random operations agree with a Map model (fast-check)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { maxLength: 40 }), async (steps) => {
        const under = await factory();
        try {
          await runSteps(under.engine, steps);
        } finally {
          await under.cleanup();
        }
      }),
      { numRuns: runs },
    );
  });
}

async function runSteps(engine: StorageEngine, steps: readonly Step[]): Promise<void> {
  const model = new Model();
  const snapshots: { view: ReadView & { close(): void }; model: Model }[] = [];
  const durable: Promise<void>[] = [];
  try {
    for (const step of steps) {
      if (step.kind === 'commit') {
        const done = commitDurable(engine, (w) => step.ops.forEach((op) => applyToBatch(w, op)));
        step.ops.forEach((op) => model.apply(op));
        durable.push(done);
        if (step.wait) await done;
      } else if (step.kind === 'get') {
        assert.deepEqual(engine.get(step.key), model.entries.get(hex(step.key)));
      } else if (step.kind === 'scan') {
        const options: ScanOptions = { start: step.start, end: step.end, reverse: step.reverse, limit: step.limit };
        assert.deepEqual(pairsOf(engine.scan(options)), model.scan(step.start, step.end, step.reverse, step.limit));
        assert.deepEqual(visited(engine, options), expectedVisit(engine, options));
        assert.deepEqual(visited(engine, { ...options, valueHeadBytes: 1 }), expectedVisit(engine, { ...options, valueHeadBytes: 1 }));
        assert.equal(engine.count(options), model.scan(step.start, step.end, step.reverse, step.limit).length);
      } else {
        snapshots.push({ view: engine.snapshotView(), model: model.copy() });
      }
    }
    await Promise.all(durable);
    for (const { view, model: then } of snapshots) {
      assert.deepEqual(pairsOf(view.scan({ start: new Uint8Array() })), then.scan(new Uint8Array(), undefined, false, 0));
    }
    assert.deepEqual(pairsOf(engine.scan({ start: new Uint8Array() })), model.scan(new Uint8Array(), undefined, false, 0));
  } finally {
    for (const { view } of snapshots) view.close();
  }
}

function applyToBatch(batch: WriteBatch, op: Op): void {
  if (op.kind === 'put') batch.put(op.key, op.value);
  else if (op.kind === 'delete') batch.delete(op.key);
  else batch.deleteRange(op.start, op.end);
}
