import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { isTesseraError, type TesseraErrorCode } from '../../base/index.js';
import { runEngineConformance } from '../conformance.testlib.js';
import type { StorageEngine } from '../engine.js';
import { LMDB_FORMAT_VERSION, LmdbEngine } from './engine.js';

/** Small maps keep the many test environments cheap; the default reserves far more address space. */
const TEST_MAP_SIZE_BYTES = 64 * 1024 * 1024;
/** A small write-ahead log: it is zero-filled when made, and some tests fill it to force checkpoints. */
const TEST_WAL_BYTES = 256 * 1024;
/** Fewer runs than the memory engine: every run opens a fresh environment on disk. */
const LMDB_PROPERTY_RUNS = 25;

function tempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'tessera-lmdb-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

// Twice: with a log that holds every commit of a case (writes stay in the overlay until close), and
// with one so small that most commits do not fit and checkpoint into LMDB (ADR 0011), so reads,
// scans and deleteRanges meet data split between LMDB and the overlay at every point.
for (const [name, walBytes] of [['lmdb', TEST_WAL_BYTES], ['lmdb (a 1 KiB log: commits checkpoint)', 1024]] as const) {
  runEngineConformance(
    name,
    async () => {
      const dir = tempDir();
      const engine = await LmdbEngine.open({ path: join(dir.path, 'data'), mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes });
      return {
        engine,
        cleanup: async () => {
          await engine.close();
          dir.remove();
        },
      };
    },
    { propertyRuns: LMDB_PROPERTY_RUNS },
  );
}

const s = (text: string): Uint8Array => new TextEncoder().encode(text);

function commitDurable(engine: StorageEngine, key: string, value: string): Promise<void> {
  const batch = engine.newBatch();
  batch.put(s(key), s(value));
  return new Promise((resolve, reject) => engine.commit(batch, (error) => (error ? reject(error) : resolve())));
}

async function assertRejects(promise: Promise<unknown>, code: TesseraErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isTesseraError(error, code), `expected TesseraError ${code}, got ${String(error)}`);
    assert.match((error as Error).message, message);
    return true;
  });
}

test('lmdb: durable batches are there after close and reopen', async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'data');
    const first = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: TEST_WAL_BYTES });
    await commitDurable(first, 'a', '1');
    const batch = first.newBatch();
    batch.put(s('b'), s('2'));
    batch.deleteRange(s('a'), s('b'));
    first.commit(batch, () => {});
    await first.close();
    const second = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: TEST_WAL_BYTES });
    assert.equal(second.get(s('a')), undefined);
    assert.deepEqual(second.get(s('b')), s('2'));
    await second.close();
  } finally {
    dir.remove();
  }
});

test('lmdb: results are plain Uint8Arrays, not Buffers', async () => {
  const dir = tempDir();
  const engine = await LmdbEngine.open({ path: dir.path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: TEST_WAL_BYTES });
  try {
    await commitDurable(engine, 'k', 'v');
    assert.equal(Object.getPrototypeOf(engine.get(s('k'))), Uint8Array.prototype);
    const [kv] = [...engine.scan({ start: new Uint8Array() })];
    assert.equal(Object.getPrototypeOf(kv?.key), Uint8Array.prototype);
    assert.equal(Object.getPrototypeOf(kv?.value), Uint8Array.prototype);
  } finally {
    await engine.close();
    dir.remove();
  }
});

test('lmdb: refuses a data directory that holds something else', async () => {
  const dir = tempDir();
  try {
    const file = join(dir.path, 'file');
    writeFileSync(file, 'x');
    await assertRejects(LmdbEngine.open({ path: file }), 'INVALID_ARGUMENT', /is not a directory/);
    const other = join(dir.path, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'notes.txt'), 'mine');
    await assertRejects(LmdbEngine.open({ path: other }), 'INVALID_ARGUMENT', /not empty and holds no LMDB environment/);
    const garbage = join(dir.path, 'garbage');
    mkdirSync(garbage);
    writeFileSync(join(garbage, 'data.mdb'), Buffer.alloc(64 * 1024, 0x5a));
    await assertRejects(LmdbEngine.open({ path: garbage }), 'CORRUPT_DATA', /cannot be opened as an LMDB environment/);
    // lmdb-js itself would crash the process on these files; the engine checks them first.
    writeFileSync(join(garbage, 'data.mdb'), 'hi');
    await assertRejects(LmdbEngine.open({ path: garbage }), 'CORRUPT_DATA', /not an LMDB data file/);
    writeFileSync(join(garbage, 'data.mdb'), Buffer.alloc(64 * 1024));
    await assertRejects(LmdbEngine.open({ path: garbage }), 'CORRUPT_DATA', /not an LMDB data file/);
  } finally {
    dir.remove();
  }
});

test('lmdb: refuses an LMDB environment that is not tessera', async () => {
  const dir = tempDir();
  try {
    const foreign = open({ path: dir.path, keyEncoding: 'binary', encoding: 'binary' });
    await foreign.put(Buffer.from('someone-else'), Buffer.from('data'));
    await foreign.close();
    await assertRejects(LmdbEngine.open({ path: dir.path }), 'CORRUPT_DATA', /not tessera's/);
  } finally {
    dir.remove();
  }
});

test('lmdb: refuses an environment written in another format version', async () => {
  const dir = tempDir();
  try {
    const engine = await LmdbEngine.open({ path: dir.path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: TEST_WAL_BYTES });
    await engine.close();
    // Rewrite the header's version field (the last 4 bytes, big-endian) as a future build would.
    const root = open({ path: dir.path, keyEncoding: 'binary', encoding: 'binary' });
    const meta = root.openDB({ name: 'tessera.meta', keyEncoding: 'binary', encoding: 'binary' });
    const header = Buffer.from(meta.get(Buffer.from('header')) as Buffer);
    header.writeUInt32BE(LMDB_FORMAT_VERSION + 1, header.length - 4);
    await meta.put(Buffer.from('header'), header);
    await root.close();
    await assertRejects(LmdbEngine.open({ path: dir.path }), 'CORRUPT_DATA', new RegExp(`format version ${LMDB_FORMAT_VERSION + 1}; this build reads only version ${LMDB_FORMAT_VERSION}`));
  } finally {
    dir.remove();
  }
});

test('lmdb: refuses map sizes and reader counts outside their limits', async () => {
  const dir = tempDir();
  try {
    await assertRejects(LmdbEngine.open({ path: dir.path, mapSizeBytes: 1000 }), 'INVALID_ARGUMENT', /mapSizeBytes/);
    await assertRejects(LmdbEngine.open({ path: dir.path, maxReaders: 0 }), 'INVALID_ARGUMENT', /maxReaders/);
  } finally {
    dir.remove();
  }
});

test('lmdb: many commits in one turn share one flush, and all report durable in order', async () => {
  const dir = tempDir();
  const engine = await LmdbEngine.open({ path: dir.path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: TEST_WAL_BYTES });
  try {
    const COMMITS = 200;
    const order: number[] = [];
    const all: Promise<void>[] = [];
    for (let i = 0; i < COMMITS; i++) {
      const batch = engine.newBatch();
      batch.put(s(`k${i}`), s(`v${i}`));
      all.push(new Promise((resolve) => engine.commit(batch, () => (order.push(i), resolve()))));
    }
    await Promise.all(all);
    assert.deepEqual(order, Array.from({ length: COMMITS }, (_, i) => i));
    assert.equal([...engine.scan({ start: new Uint8Array() })].length, COMMITS);
  } finally {
    await engine.close();
    dir.remove();
  }
});

test('lmdb: a staged batch is written with the next commit, or at close, and is there after reopen', async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'data');
    const first = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: TEST_WAL_BYTES });
    const stage = (engine: StorageEngine, key: string): void => {
      const batch = engine.newBatch();
      batch.put(s(key), s('staged'));
      engine.stage(batch);
    };
    stage(first, 'a');
    await commitDurable(first, 'b', 'committed');
    stage(first, 'c');
    await first.close();
    const second = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: TEST_WAL_BYTES });
    try {
      assert.deepEqual(second.get(s('a')), s('staged'));
      assert.deepEqual(second.get(s('b')), s('committed'));
      assert.deepEqual(second.get(s('c')), s('staged'));
    } finally {
      await second.close();
    }
  } finally {
    dir.remove();
  }
});
