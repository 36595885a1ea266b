/**
 * The write-ahead log under crashes (ADR 0011): a child process
 * (wal_child.testlib.ts) commits and stages batches on an LmdbEngine and
 * reports each durable commit on stdout;
 * the test SIGKILLs it, reopens the directory and checks that every batch
 * reported durable is there and that what is there is a prefix of the
 * batches. Then damage to the log: a torn tail is dropped, a damaged record
 * followed by good ones is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTesseraError } from '../../base/index.js';
import { LmdbEngine } from './engine.js';
import { WAL_FILE } from './wal.js';
import { CHILD_MAP_SIZE_BYTES as TEST_MAP_SIZE_BYTES } from './wal_child.testlib.js';


function tempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'tessera-wal-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Runs the child until `until` says so from its output, SIGKILLs it, and returns the last durable batch it reported. */
async function runAndKill(path: string, walBytes: number, stopAfter: number, until: (lastDurable: number, idle: boolean) => boolean): Promise<number> {
  const script = fileURLToPath(new URL('./wal_child.testlib.js', import.meta.url));
  const child = spawn(process.execPath, [script, path, String(walBytes), String(stopAfter)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let last = -1;
  let buffered = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code ?? signal}: ${stderr}`))));
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('durable ')) last = Number(line.slice(8));
        // The kill comes right after the report, while later commits are under way.
        if (until(last, line.startsWith('idle'))) child.kill('SIGKILL');
      }
    });
  });
  return last;
}

const s = (x: string): Uint8Array => new TextEncoder().encode(x);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

/** Every batch up to `durable` is there, and the batches that are there form a prefix, each whole. */
function checkPrefix(engine: LmdbEngine, durable: number): number {
  let present = 0;
  while (engine.get(s(`k${present}`)) !== undefined) present++;
  assert.ok(present > durable, `batch ${durable} was reported durable, but only ${present} batches survived`);
  for (let n = 0; n < present + 50; n++) {
    const there = n < present;
    assert.equal(text(engine.get(s(`k${n}`))), there ? `v${n}` : undefined, `k${n}`);
    // A staged write rides with the commit of its batch, so it survives exactly when that batch does.
    if (n % 3 === 0) assert.equal(text(engine.get(s(`s${n}`))), there ? `v${n}` : undefined, `s${n}`);
    // x<n> was deleted by batch n+1 when n+1 is a multiple of 5 and that batch survived.
    const deleted = (n + 1) % 5 === 0 && n + 1 < present;
    assert.equal(text(engine.get(s(`x${n}`))), there && !deleted ? 'x' : undefined, `x${n}`);
  }
  return present;
}

for (const [name, walBytes] of [
  ['a log large enough to hold every record (recovery replays it all)', 8 * 1024 * 1024],
  ['a small log (commits checkpoint into LMDB now and then, and the log starts again)', 8 * 1024],
] as const) {
  test(`wal: after SIGKILL, every batch reported durable is there and the rest is a prefix: ${name}`, { timeout: 60_000 }, async () => {
    const dir = tempDir();
    try {
      const path = join(dir.path, 'data');
      let expectFrom = 0;
      // Three kills in a row, each at a different point; each run continues where the last left off.
      for (const killAt of [37, 113, 260]) {
        const durable = await runAndKill(path, walBytes, Number.MAX_SAFE_INTEGER, (last) => last >= killAt);
        const engine = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes });
        try {
          // A new run numbers its batches from 0 again and overwrites the same keys with the same values.
          const present = checkPrefix(engine, Math.max(durable, expectFrom - 1));
          expectFrom = present;
          if (walBytes > 1024 * 1024) assert.ok(engine.stats.replayedRecords > 0, 'the reopened engine replayed records from the log');
        } finally {
          await engine.close();
        }
      }
    } finally {
      dir.remove();
    }
  });
}

/** Kills a child that committed `batches` batches and then idled, so the log holds exactly their records. */
async function logOf(path: string, batches: number): Promise<void> {
  const durable = await runAndKill(path, 8 * 1024 * 1024, batches, (_last, idle) => idle);
  assert.equal(durable, batches - 1);
}

/** Offsets of the records the log holds from its start (their headers: length u32 first). */
function recordOffsets(path: string): number[] {
  const fd = openSync(join(path, WAL_FILE), 'r');
  try {
    const offsets: number[] = [];
    const header = new Uint8Array(12);
    let at = 0;
    for (;;) {
      readSync(fd, header, 0, 12, at);
      const length = new DataView(header.buffer).getUint32(0, true);
      if (length === 0) return offsets;
      offsets.push(at);
      at += 12 + length;
    }
  } finally {
    closeSync(fd);
  }
}

function overwrite(path: string, at: number, bytes: Uint8Array): void {
  const fd = openSync(join(path, WAL_FILE), 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, at);
  } finally {
    closeSync(fd);
  }
}

test('wal: a torn last record (a crash during its append, never acknowledged) is dropped, and the records before it replayed', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'data');
    await logOf(path, 20);
    const offsets = recordOffsets(path);
    assert.equal(offsets.length, 20, 'one record per commit');
    // Zero the second half of the last record: as if the write reached the disk only in part.
    const last = offsets[offsets.length - 1] as number;
    overwrite(path, last + 20, new Uint8Array(30));
    const engine = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: 8 * 1024 * 1024 });
    try {
      assert.equal(engine.stats.replayedRecords, 19);
      assert.equal(checkPrefix(engine, 18), 19);
    } finally {
      await engine.close();
    }
  } finally {
    dir.remove();
  }
});

test('wal: a damaged record with good records after it is refused (CORRUPT_DATA), not taken for a torn tail', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'data');
    await logOf(path, 20);
    const offsets = recordOffsets(path);
    overwrite(path, (offsets[7] as number) + 16, s('flipped'));
    await assert.rejects(LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: 8 * 1024 * 1024 }), (error: unknown) => isTesseraError(error, 'CORRUPT_DATA') && /fails its checksum, yet records follow it/.test((error as Error).message));
  } finally {
    dir.remove();
  }
});

test('wal: records of an older generation left in the log are not replayed after a checkpoint', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'data');
    await logOf(path, 20);
    // Open (replays and checkpoints), delete a key, close (checkpoints): the log still holds the old records.
    const first = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: 8 * 1024 * 1024 });
    const b = first.newBatch();
    b.delete(s('k3'));
    first.stage(b);
    await first.close();
    assert.ok(recordOffsets(path).length >= 20, 'the old records are still in the file');
    const second = await LmdbEngine.open({ path, mapSizeBytes: TEST_MAP_SIZE_BYTES, walBytes: 8 * 1024 * 1024 });
    try {
      assert.equal(second.stats.replayedRecords, 0);
      assert.equal(second.get(s('k3')), undefined, 'the delete stands: no old record put k3 back');
      assert.equal(text(second.get(s('k19'))), 'v19');
    } finally {
      await second.close();
    }
  } finally {
    dir.remove();
  }
});
