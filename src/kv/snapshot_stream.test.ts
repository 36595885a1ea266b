import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { isTesseraError } from '../base/index.js';
import { MemoryEngine } from '../storage/memory.js';
import type { ReadView } from '../storage/engine.js';
import { keys } from './keys.js';
import { MvccStateMachine } from './mvcc_state_machine.js';
import {
  MAX_OPEN_SNAPSHOT_VIEWS,
  OpenSnapshotReaders,
  SNAPSHOT_VIEW_MAX_HOLD_TICKS,
  type SnapshotDataReader,
  StateSnapshotReader,
  readSnapshotData,
} from './snapshot_stream.js';
import { RANGE } from './testing.testlib.js';
import { CHANGE_KEY_BOUNDS, WHOLE_KEY_SPAN, dataKeyBounds } from '../mvcc/index.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const enc = new TextEncoder();

function engine(): MemoryEngine {
  return new MemoryEngine({ scheduleSync: () => {} });
}

/** Writes `pairs` under the range's state keys (suffix → value) in one staged batch. */
function writeState(e: MemoryEngine, pairs: readonly (readonly [string, Uint8Array])[], deletes: readonly string[] = []): void {
  const batch = e.newBatch();
  for (const [suffix, value] of pairs) batch.put(stateKey(suffix), value);
  for (const suffix of deletes) batch.delete(stateKey(suffix));
  e.stage(batch);
}

function stateKey(suffix: string): Uint8Array {
  const start = keys.stateStart(RANGE);
  const key = new Uint8Array(start.byteLength + suffix.length);
  key.set(start, 0);
  key.set(enc.encode(suffix), start.byteLength);
  return key;
}

/** The range's state pairs a view shows, as hex key → hex value. */
function stateOf(view: ReadView): Map<string, string> {
  const out = new Map<string, string>();
  for (const kv of view.scan({ start: keys.stateStart(RANGE), end: keys.stateEnd(RANGE) })) out.set(Buffer.from(kv.key).toString('hex'), Buffer.from(kv.value).toString('hex'));
  return out;
}

/** Reads every chunk at `chunkBytes`, the sizing pass in slices of `slicePairs`; returns the chunks. */
function chunksOf(reader: SnapshotDataReader, chunkBytes: number, slicePairs: number): Uint8Array[] {
  let steps = 0;
  while (!reader.measure(slicePairs)) steps++;
  const chunks: Uint8Array[] = [];
  for (let c = reader.nextChunk(chunkBytes); c !== undefined; c = reader.nextChunk(chunkBytes)) chunks.push(c.slice());
  void steps;
  return chunks;
}

function restoreInto(data: Uint8Array): MemoryEngine {
  const e = engine();
  const sm = new MvccStateMachine(e, RANGE);
  const batch = e.newBatch();
  sm.restore(batch, data);
  e.stage(batch);
  return e;
}

function sized(n: number, fill: number): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

test('StateSnapshotReader: the chunks are exactly the limit (the last one shorter), records are cut across them, and the data restores the state', () => {
  const e = engine();
  // Values on every msgpack bin size (8, 16 and 32-bit lengths), larger than a chunk too.
  const pairs: [string, Uint8Array][] = [];
  for (let i = 0; i < 300; i++) pairs.push([`k${String(i).padStart(4, '0')}`, sized(i % 7 === 0 ? 300 : 20, i & 0xff)]);
  pairs.push(['big16', sized(70_000 - 1, 1)], ['big32', sized(70_000, 2)], ['empty', new Uint8Array(0)]);
  writeState(e, pairs);
  const reader = new StateSnapshotReader({ view: e.snapshotView(), spans: [{ start: keys.stateStart(RANGE), end: keys.stateEnd(RANGE), stripBytes: keys.stateStart(RANGE).byteLength - 1 }], tail: [] });
  const chunkBytes = 1000;
  const chunks = chunksOf(reader, chunkBytes, 7);
  const total = chunks.reduce((n, c) => n + c.byteLength, 0);
  assert.ok(chunks.length > 100, `many chunks (${chunks.length})`);
  assert.ok(chunks.slice(0, -1).every((c) => c.byteLength === chunkBytes), 'every chunk but the last is exactly the limit');
  assert.ok((chunks.at(-1)?.byteLength ?? 0) <= chunkBytes);
  assert.ok(reader.closed, 'the reader released its view after the last chunk');
  assert.equal(reader.nextChunk(chunkBytes), undefined);
  const data = Buffer.concat(chunks);
  assert.equal(data.byteLength, total);
  // One msgpack list, as the receiver decodes it, and the same state once restored.
  const list = packr.unpack(data) as Uint8Array[];
  assert.equal(list.length, pairs.length * 2);
  assert.deepEqual(stateOf(restoreInto(data)), stateOf(e));
});

test('StateSnapshotReader: the data is the state when the view was opened, whatever is written while it is sized and read', () => {
  const e = engine();
  const initial: [string, Uint8Array][] = [];
  for (let i = 0; i < 2000; i++) initial.push([`k${String(i).padStart(5, '0')}`, sized(40, i & 0xff)]);
  writeState(e, initial);
  const expected = stateOf(e);
  const reader = new StateSnapshotReader({ view: e.snapshotView(), spans: [{ start: keys.stateStart(RANGE), end: keys.stateEnd(RANGE), stripBytes: keys.stateStart(RANGE).byteLength - 1 }], tail: [] });
  let round = 0;
  // Between every step: overwrite, delete and insert keys ahead of and behind both passes.
  const churn = (): void => {
    round++;
    const k = (i: number): string => `k${String(i).padStart(5, '0')}`;
    writeState(e, [[k((round * 37) % 2000), sized(10, 0xee)], [`k${round}x`, sized(5, 1)]], [k((round * 53) % 2000)]);
    if (round % 5 === 0) e.commit(e.newBatch(), () => {});
  };
  while (!reader.measure(64)) churn();
  const chunks: Uint8Array[] = [];
  for (;;) {
    const c = reader.nextChunk(512);
    if (c === undefined) break;
    chunks.push(c.slice());
    churn();
  }
  assert.ok(round > 100, `writes went on between the steps (${round})`);
  assert.notDeepEqual(stateOf(e), expected, 'the live state moved on');
  assert.deepEqual(stateOf(restoreInto(Buffer.concat(chunks))), expected);
});

test('MvccStateMachine.openSnapshot: the data restores the state; a reader closed early refuses to go on (CLOSED)', () => {
  const e = engine();
  writeState(e, [['a', sized(3, 1)]]);
  const sm = new MvccStateMachine(e, RANGE);
  sm.attachLog({ firstIndex: () => 1, entries: () => [] });
  const data = readSnapshotData(sm.openSnapshot(0));
  assert.deepEqual(stateOf(restoreInto(data)), stateOf(e));
  const reader = sm.openSnapshot(0);
  while (!reader.measure(1));
  reader.close();
  assert.throws(() => reader.nextChunk(10), (err) => isTesseraError(err, 'CLOSED'));
});

test('OpenSnapshotReaders: at most MAX_OPEN_SNAPSHOT_VIEWS open (then SNAPSHOT_TEMPORARILY_UNAVAILABLE); a reader held SNAPSHOT_VIEW_MAX_HOLD_TICKS is closed', () => {
  const e = engine();
  writeState(e, [['a', sized(3, 1)]]);
  const open = new OpenSnapshotReaders();
  const make = (): StateSnapshotReader => new StateSnapshotReader({ view: e.snapshotView(), spans: [{ start: keys.stateStart(RANGE), end: keys.stateEnd(RANGE), stripBytes: 0 }], tail: [] });
  const readers: StateSnapshotReader[] = [];
  for (let i = 0; i < MAX_OPEN_SNAPSHOT_VIEWS; i++) {
    open.admit();
    readers.push(open.track(make()));
    open.tick(1);
  }
  assert.throws(() => open.admit(), (err) => isTesseraError(err, 'SNAPSHOT_TEMPORARILY_UNAVAILABLE'));
  // The meta range's snapshot may pass the limit by one (data ranges' snapshots must not starve it), not by two.
  open.admit(true);
  const metaReader = open.track(make());
  assert.throws(() => open.admit(true), (err) => isTesseraError(err, 'SNAPSHOT_TEMPORARILY_UNAVAILABLE'));
  metaReader.close();
  // A reader its sender closed makes room at once.
  readers[MAX_OPEN_SNAPSHOT_VIEWS - 1]?.close();
  open.admit();
  // The first was opened MAX_OPEN_SNAPSHOT_VIEWS ticks ago: it goes at the hold limit, the second a tick later.
  open.tick(SNAPSHOT_VIEW_MAX_HOLD_TICKS - MAX_OPEN_SNAPSHOT_VIEWS - 1);
  assert.equal(readers[0]?.closed, false);
  open.tick(1);
  assert.equal(readers[0]?.closed, true);
  assert.equal(readers[1]?.closed, false);
  assert.equal(open.count, MAX_OPEN_SNAPSHOT_VIEWS - 2);
  assert.throws(() => readers[0]?.measure(10), (err) => isTesseraError(err, 'CLOSED'));
  open.closeAll();
  assert.ok(readers.every((r) => r.closed));
  assert.equal(open.count, 0);
});

/** Every pair of the MVCC record and change index families a view shows, as hex key → hex value. */
function mvccOf(view: ReadView): Map<string, string> {
  const out = new Map<string, string>();
  for (const bounds of [dataKeyBounds(WHOLE_KEY_SPAN), CHANGE_KEY_BOUNDS]) {
    for (const kv of view.scan(bounds)) out.set(Buffer.from(kv.key).toString('hex'), Buffer.from(kv.value).toString('hex'));
  }
  return out;
}

/** Writes through the state machine's MVCC store, one txn per call, and stages the batch. */
function mvccWrite(e: MemoryEngine, sm: MvccStateMachine, body: (txn: ReturnType<MvccStateMachine['mvcc']['beginWrite']>) => void): void {
  const batch = e.newBatch();
  const txn = sm.mvcc.beginWrite(batch);
  body(txn);
  txn.end();
  e.stage(batch);
}

test('MvccStateMachine.openSnapshot: the data carries the MVCC records and change index (keyed by user key) and the range state; restore replaces both, whatever the receiver held', () => {
  const e = engine();
  const sm = new MvccStateMachine(e, RANGE);
  sm.attachLog({ firstIndex: () => 1, entries: () => [] });
  for (let i = 0; i < 200; i++) mvccWrite(e, sm, (t) => t.put(enc.encode(`k${i % 37}`), sized(i % 11 === 0 ? 3000 : 30, i & 0xff)));
  mvccWrite(e, sm, (t) => t.deleteRange(enc.encode('k1'), enc.encode('k2')));
  // The receiver holds another history: every key of it must go.
  const r = engine();
  const other = new MvccStateMachine(r, RANGE);
  for (let i = 0; i < 300; i++) mvccWrite(r, other, (t) => t.put(enc.encode(`z${i}`), sized(10, 1)));
  // Small chunks and sizing slices, so both passes cross from one span to the next inside a step.
  const data = Buffer.concat(chunksOf(sm.openSnapshot(0), 700, 13));
  const list = packr.unpack(data) as Uint8Array[];
  const firstBytes = new Set(list.filter((_, i) => i % 2 === 0).map((k) => String.fromCharCode(k[0] as number)));
  assert.deepEqual([...firstBytes].sort(), ['d', 'e', 'm'], 'records, change index entries and the range state (the meta record)');
  const batch = r.newBatch();
  other.restore(batch, data);
  r.stage(batch);
  assert.deepEqual(mvccOf(r), mvccOf(e));
  assert.deepEqual(stateOf(r), stateOf(e));
  assert.equal(other.digest(), sm.digest());
  // Restored arrays are Buffers (msgpack's): compare what they hold.
  const shown = (m: MvccStateMachine): string[] =>
    m.mvcc.range({ key: enc.encode('k'), rangeEnd: enc.encode('l') }).kvs.map((kv) => `${Buffer.from(kv.key).toString('hex')}=${Buffer.from(kv.value).toString('hex')}@${kv.createRevision}/${kv.modRevision}/${kv.version}`);
  assert.equal(shown(other).length, 37 - 11, 'k0…k36 less k1 and k10…k19');
  assert.deepEqual(shown(other), shown(sm));
  assert.equal(other.mvcc.range({ key: enc.encode('z0') }).count, 0);
});
