import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError, SeededRng, type Rng } from '../base/index.js';
import { runEngineConformance } from './conformance.testlib.js';
import { MemoryEngine } from './memory.js';

runEngineConformance('memory', async () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  return { engine, cleanup: () => engine.close() };
});

const k = (n: number): Uint8Array => Uint8Array.of(n);

/** An engine whose syncs run only when the test says so. */
function manual(): { engine: MemoryEngine; sync(): void } {
  const flushes: (() => void)[] = [];
  const engine = new MemoryEngine({ scheduleSync: (flush) => flushes.push(flush) });
  return { engine, sync: () => flushes.splice(0).forEach((f) => f()) };
}

function put(engine: MemoryEngine, key: number, onDurable: () => void = () => {}): void {
  const batch = engine.newBatch();
  batch.put(k(key), k(key));
  engine.commit(batch, onDurable);
}

function keys(engine: MemoryEngine): number[] {
  return [...engine.scan({ start: new Uint8Array() })].map((kv) => kv.key[0] as number);
}

/** An Rng whose answers are fixed, to steer crash() into each case. */
function scripted(chance: boolean, below: number): Rng {
  const base = new SeededRng(1);
  return { ...base, fork: () => base.fork(), nextUint32: () => 0, float: () => 0, intBetween: () => 0, chance: () => chance, intBelow: () => below };
}

test('memory: one sync makes every batch committed before it durable (group commit)', () => {
  const { engine, sync } = manual();
  const durable: number[] = [];
  for (let i = 1; i <= 5; i++) put(engine, i, () => durable.push(i));
  assert.deepEqual(durable.slice(), []);
  sync();
  assert.deepEqual(durable.slice(), [1, 2, 3, 4, 5]);
  assert.equal(engine.syncs, 1);
  put(engine, 6, () => durable.push(6));
  sync();
  assert.deepEqual(durable.slice(), [1, 2, 3, 4, 5, 6]);
  assert.equal(engine.syncs, 2);
});

test('memory: crash loses every unsynced batch when none reached the disk', () => {
  const { engine, sync } = manual();
  put(engine, 1);
  sync();
  put(engine, 2);
  put(engine, 3);
  const report = engine.crash(scripted(false, 0));
  assert.deepEqual(report, { pendingBatches: 2, survived: 0, torn: false, partialRecord: false });
  assert.deepEqual(keys(engine), [1]);
});

test('memory: crash keeps a prefix of the unsynced batches; the one after it is torn', () => {
  const { engine, sync } = manual();
  const durable: number[] = [];
  put(engine, 1, () => durable.push(1));
  sync();
  for (let i = 2; i <= 5; i++) put(engine, i, () => durable.push(i));
  const report = engine.crash(scripted(true, 2));
  assert.deepEqual(report, { pendingBatches: 4, survived: 2, torn: true, partialRecord: false });
  assert.deepEqual(keys(engine), [1, 2, 3]);
  // The flush that was asked for before the crash does nothing, and lost batches never report durable.
  sync();
  assert.deepEqual(durable.slice(), [1]);
});

test('memory: crash can keep every unsynced batch, and then nothing is torn', () => {
  const { engine } = manual();
  put(engine, 1);
  put(engine, 2);
  assert.deepEqual(engine.crash(scripted(true, 2)), { pendingBatches: 2, survived: 2, torn: false, partialRecord: false });
  assert.deepEqual(keys(engine), [1, 2]);
});

test('memory: durable data survives any crash, and the engine works on afterwards', () => {
  const rng = new SeededRng(42);
  for (let round = 0; round < 50; round++) {
    const { engine, sync } = manual();
    put(engine, 1);
    const batch = engine.newBatch();
    batch.deleteRange(k(5), k(9));
    batch.put(k(7), k(7));
    engine.commit(batch, () => {});
    sync();
    put(engine, 2);
    put(engine, 3);
    const report = engine.crash(rng);
    assert.equal(report.pendingBatches, 2);
    assert.deepEqual(keys(engine), [1, 7, 2, 3].slice(0, 2 + report.survived).sort((a, b) => a - b));
    assert.equal(engine.hasUnsynced(), false);
    put(engine, 9);
    sync();
    assert.equal(engine.get(k(9))?.[0], 9);
  }
});

test('memory: a sync is asked for once per group, and again after it ran', () => {
  let asked = 0;
  const flushes: (() => void)[] = [];
  const engine = new MemoryEngine({ scheduleSync: (flush) => (asked++, flushes.push(flush)) });
  put(engine, 1);
  put(engine, 2);
  assert.equal(asked, 1);
  flushes.shift()?.();
  put(engine, 3);
  assert.equal(asked, 2);
});

test('memory: a scheduleSync that flushes synchronously is a bug, caught at once', () => {
  const engine = new MemoryEngine({ scheduleSync: (flush) => flush() });
  const batch = engine.newBatch();
  batch.put(k(1), k(1));
  assert.throws(() => engine.commit(batch, () => {}), AssertionError);
});

test('memory: a throwing onDurable does not stop the callbacks after it', () => {
  const { engine, sync } = manual();
  const ran: number[] = [];
  put(engine, 1, () => {
    throw new Error('boom');
  });
  put(engine, 2, () => ran.push(2));
  assert.throws(sync, /boom/);
  assert.deepEqual(ran, [2]);
});

test('memory: scans of many keys stay ordered and bounded (sequential and random inserts)', () => {
  const { engine } = manual();
  const rng = new SeededRng(7);
  const COUNT = 5000;
  const batch = engine.newBatch();
  const be = (n: number): Uint8Array => Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  for (let i = 0; i < COUNT; i++) batch.put(be(i), be(i));
  for (let i = 0; i < COUNT; i++) batch.put(be(COUNT + rng.intBelow(1_000_000)), new Uint8Array());
  engine.commit(batch, () => {});
  const got = [...engine.scan({ start: be(100), end: be(200) })].map((kv) => kv.key[3]! + 256 * kv.key[2]!);
  assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => 100 + i));
  const last = [...engine.scan({ start: be(0), end: be(COUNT), reverse: true, limit: 2 })].map((kv) => kv.key[3]! + 256 * kv.key[2]!);
  assert.deepEqual(last, [COUNT - 1, COUNT - 2]);
});

test('memory: a staged batch asks for no sync, is lost with a crash before one, and is durable with the next commit', () => {
  const { engine, sync } = manual();
  const stage = (key: number): void => {
    const batch = engine.newBatch();
    batch.put(Uint8Array.of(key), Uint8Array.of(key));
    engine.stage(batch);
  };
  put(engine, 1);
  sync();
  stage(2);
  assert.deepEqual(keys(engine), [1, 2]);
  assert.equal(engine.hasUnsynced(), true);
  assert.deepEqual(engine.crash(scripted(false, 0)), { pendingBatches: 1, survived: 0, torn: false, partialRecord: false });
  assert.deepEqual(keys(engine), [1]);
  stage(3);
  const durable: number[] = [];
  put(engine, 4, () => durable.push(4));
  sync();
  assert.deepEqual(durable.slice(), [4]);
  assert.equal(engine.hasUnsynced(), false);
  engine.crash(scripted(false, 0));
  assert.deepEqual(keys(engine), [1, 3, 4]);
});

test('memory: a failed sync reports the error, and its batches never reach the disk even after a later good sync', () => {
  const { engine, sync } = manual();
  put(engine, 1);
  sync();
  const results: (string | undefined)[] = [];
  engine.failSyncs(1);
  const batch = engine.newBatch();
  batch.put(k(2), k(2));
  engine.commit(batch, (error) => results.push(error === undefined ? 'ok' : (error as { code?: string }).code));
  sync();
  assert.deepEqual(results, ['IO_ERROR']);
  // The page cache still shows the write, and the next sync succeeds, but it carries only its own batch.
  assert.deepEqual(keys(engine), [1, 2]);
  put(engine, 3, () => results.push('ok'));
  sync();
  assert.deepEqual(results, ['IO_ERROR', 'ok']);
  engine.crash(scripted(false, 0));
  assert.deepEqual(keys(engine), [1, 3]);
});

test('memory: a torn batch may reach the disk with its last tail record cut short', () => {
  const { engine, sync } = manual();
  put(engine, 1);
  sync();
  const batch = engine.newBatch();
  batch.put(k(10), Uint8Array.of(1, 2, 3, 4));
  batch.put(k(11), Uint8Array.of(5, 6, 7, 8));
  batch.put(k(20), Uint8Array.of(9));
  engine.commit(batch, () => assert.fail('a torn batch is never durable'));
  // chance() true: some batches pass and the tail is cut; intBelow 0: none survives whole, and the record is cut to 0 bytes.
  const report = engine.crash(scripted(true, 0), { tailRecord: (key) => key[0] !== undefined && key[0] >= 10 && key[0] < 20 });
  assert.deepEqual(report, { pendingBatches: 1, survived: 0, torn: true, partialRecord: true });
  assert.deepEqual(engine.get(k(10)), Uint8Array.of(1, 2, 3, 4));
  assert.deepEqual(engine.get(k(11)), new Uint8Array(0));
  assert.deepEqual(engine.get(k(20)), Uint8Array.of(9));
});

test('memory: a read fault sees every value read, by get and by scan', () => {
  const { engine, sync } = manual();
  put(engine, 1);
  put(engine, 2);
  sync();
  engine.readFault = (_key, value) => Uint8Array.of((value[0] as number) + 100);
  assert.deepEqual(engine.get(k(1)), Uint8Array.of(101));
  assert.deepEqual([...engine.scan({ start: new Uint8Array() })].map((kv) => kv.value[0]), [101, 102]);
  engine.crash(scripted(false, 0));
  assert.deepEqual(engine.get(k(1)), k(1), 'a crash ends the fault');
});
