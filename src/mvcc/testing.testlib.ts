/**
 * Test helpers for src/mvcc: an in-memory engine, a store over it, and
 * one-call writes that commit their batch.
 */
import assert from 'node:assert/strict';
import { MemoryEngine } from '../storage/memory.js';
import type { WriteBatch } from '../storage/engine.js';
import { utf8 } from './bytes.js';
import type { KeyValue } from './range.js';
import { INITIAL_REVISION } from './revision.js';
import { WHOLE_KEY_SPAN, dataKeyBounds, CHANGE_KEY_BOUNDS } from './codec.js';
import type { MvccLocation } from './state.js';
import { MvccStore } from './store.js';
import type { PutOptions, WriteResult, WriteTxn } from './write-txn.js';

export const PREFIX = utf8('r1/');
/** A store of the whole key space with its meta record under PREFIX: the single range's. */
export const LOCATION: MvccLocation = { metaPrefix: PREFIX, span: WHOLE_KEY_SPAN };

/** Every stored `d` record and `e` entry of the engine, in key order: what a store keeps. */
export function storedChanges(engine: MemoryEngine): { records: number; entries: number } {
  return { records: [...engine.scan(dataKeyBounds(WHOLE_KEY_SPAN))].length, entries: [...engine.scan(CHANGE_KEY_BOUNDS)].length };
}

/**
 * The revision of the n-th write transaction that changes something on a
 * fresh store (n ≥ 1; rev(0) is the empty store's): revisions start at
 * INITIAL_REVISION, as in etcd, so the first write is INITIAL_REVISION + 1.
 */
export function rev(n: number): number {
  assert.ok(Number.isSafeInteger(n) && n >= 0, `rev(n) needs a write count, got ${n}`);
  return INITIAL_REVISION + n;
}

export function newEngine(): MemoryEngine {
  // Syncs never run: these tests read only what commits made visible.
  return new MemoryEngine({ scheduleSync: () => {} });
}

export function newStore(engine: MemoryEngine = newEngine(), location: MvccLocation = LOCATION): { engine: MemoryEngine; store: MvccStore } {
  return { engine, store: MvccStore.open(engine, location) };
}

/** Runs `body` in one write transaction and commits its batch. */
export function write(engine: MemoryEngine, store: MvccStore, body: (txn: WriteTxn) => void, revision?: number): WriteResult {
  const batch = engine.newBatch();
  const txn = store.beginWrite(batch, { revision });
  body(txn);
  const result = txn.end();
  engine.commit(batch, () => {});
  return result;
}

export function put(engine: MemoryEngine, store: MvccStore, key: string, value: string, options?: PutOptions): WriteResult {
  return write(engine, store, (txn) => txn.put(utf8(key), utf8(value), options));
}

export function del(engine: MemoryEngine, store: MvccStore, key: string, rangeEnd?: string): WriteResult {
  return write(engine, store, (txn) => txn.deleteRange(utf8(key), rangeEnd === undefined ? undefined : utf8(rangeEnd)));
}

export function compactAll(engine: MemoryEngine, store: MvccStore, revision: number): void {
  let batch: WriteBatch = engine.newBatch();
  let done = store.compact(revision, batch);
  engine.commit(batch, () => {});
  while (!done) {
    batch = engine.newBatch();
    done = store.compactStep(batch);
    engine.commit(batch, () => {});
  }
}

export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** A KeyValue as a compact, comparable object. */
export function show(kv: KeyValue): { key: string; value: string; create: number; mod: number; version: number; lease: number } {
  return { key: text(kv.key), value: text(kv.value), create: kv.createRevision, mod: kv.modRevision, version: kv.version, lease: kv.lease };
}

export function get(store: MvccStore, key: string, revision?: number): ReturnType<typeof show> | undefined {
  const kvs = store.range({ key: utf8(key), revision }).kvs;
  assert.ok(kvs.length <= 1);
  return kvs[0] === undefined ? undefined : show(kvs[0]);
}

/**
 * Asserts that two stores over the same data answer alike: revisions, the
 * hash of the history (etcd's HashKV) and every key at the current revision.
 */
export function assertSameStore(a: MvccStore, b: MvccStore): void {
  assert.equal(a.currentRevision, b.currentRevision);
  assert.equal(a.compactedRevision, b.compactedRevision);
  assert.equal(a.compactionPending, b.compactionPending);
  assert.deepEqual(a.hashKV(), b.hashKV());
  const all = { key: Uint8Array.of(0), rangeEnd: Uint8Array.of(0) };
  assert.deepEqual(a.range(all), b.range(all));
}

/** Reopens from the engine and asserts the reopened store answers as the live one. */
export function reopenAndCompare(engine: MemoryEngine, store: MvccStore, location: MvccLocation = LOCATION): MvccStore {
  store.checkInvariants();
  const reopened = MvccStore.open(engine, location);
  assertSameStore(reopened, store);
  reopened.checkInvariants();
  return reopened;
}

export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
  return 'no error';
}
