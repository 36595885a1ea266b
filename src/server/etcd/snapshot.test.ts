/**
 * Maintenance.Snapshot: the dump format (point in time, chunk boundaries,
 * trailer), `etcdctl snapshot save` against a real node, and the bounds: a
 * client that stops reading stalls the stream instead of growing memory,
 * streams past the limit are refused, and a stalled stream is ended.
 */
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isTesseraError } from '../../base/index.js';
import type { KeyValue } from '../../storage/engine.js';
import { MemoryEngine } from '../../storage/memory.js';
import { type NodeContext, type NodeHandle, startNode } from '../node.js';
import type { EtcdLimits } from './limits.js';
import { type EtcdServerHandle, startEtcdServer } from './server.js';
import { DumpWriter, SNAPSHOT_ALIGN_BYTES, SNAPSHOT_TRAILER_BYTES, type SnapshotMeta, decodeSnapshot, measureDump } from './snapshot_format.js';
import { ETCDCTL_PATH, etcdctl, etcdctlMissing, rawClient, startTestEtcd } from './testing.testlib.js';

const META: SnapshotMeta = {
  format: 'tessera-engine-dump',
  nodeId: 1,
  clusterId: 'abc',
  engine: 'memory',
  revision: 7,
  compactRevision: 0,
  raftAppliedIndex: 9,
  raftTerm: 2,
  createdAtMs: 0,
};
const enc = new TextEncoder();
const MiB = 1024 * 1024;

function memoryEngine(): MemoryEngine {
  return new MemoryEngine({ scheduleSync: (flush) => setImmediate(flush) });
}

function commit(engine: MemoryEngine, pairs: readonly KeyValue[]): Promise<void> {
  const batch = engine.newBatch();
  for (const p of pairs) batch.put(p.key, p.value);
  return new Promise((resolve, reject) => engine.commit(batch, (error) => (error === undefined ? resolve() : reject(error))));
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (check()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('snapshot format', () => {
  test('a dump is the view as it was when taken, across chunks smaller than a record, and ends with its sha256', async () => {
    const engine = memoryEngine();
    const big = new Uint8Array(10_000).fill(7);
    await commit(engine, [
      { key: enc.encode('a'), value: enc.encode('1') },
      { key: enc.encode('b'), value: big },
      { key: enc.encode('c'), value: new Uint8Array(0) },
    ]);
    const view = engine.snapshotView();
    const size = await measureDump(view, META, () => false);
    // Writes after the view, and between chunks, must not show.
    await commit(engine, [{ key: enc.encode('a'), value: enc.encode('changed') }, { key: enc.encode('d'), value: enc.encode('new') }]);
    const writer = new DumpWriter(view, META, size, 1_000);
    const chunks: Buffer[] = [];
    for (let chunk = writer.nextChunk(); chunk !== undefined; chunk = writer.nextChunk()) {
      assert.ok(chunk.length === 1_000 || writer.remainingBytes === 0, 'every chunk but the last is full');
      chunks.push(chunk);
      await commit(engine, [{ key: enc.encode(`later${chunks.length}`), value: enc.encode('x') }]);
    }
    view.close();
    const body = Buffer.concat(chunks);
    assert.equal(body.length, size.bodyBytes);
    assert.equal(body.length % SNAPSHOT_ALIGN_BYTES, 0);
    const file = Buffer.concat([body, writer.trailer()]);
    assert.deepEqual(file.subarray(-SNAPSHOT_TRAILER_BYTES), createHash('sha256').update(body).digest());
    const decoded = decodeSnapshot(file);
    assert.deepEqual(decoded.meta, META);
    assert.deepEqual(
      decoded.pairs.map((p) => [Buffer.from(p.key).toString(), hex(p.value)]),
      [
        ['a', hex(enc.encode('1'))],
        ['b', hex(big)],
        ['c', ''],
      ],
    );
  });

  test('a flipped byte or a truncated file is refused as CORRUPT_DATA', async () => {
    const engine = memoryEngine();
    await commit(engine, [{ key: enc.encode('k'), value: enc.encode('v') }]);
    const view = engine.snapshotView();
    const writer = new DumpWriter(view, META, await measureDump(view, META, () => false), 64 * 1024);
    const body = writer.nextChunk() as Buffer;
    assert.equal(writer.nextChunk(), undefined);
    const file = Buffer.concat([body, writer.trailer()]);
    const flipped = Buffer.from(file);
    flipped[40] = (flipped[40] as number) ^ 1;
    const corrupt = (f: Buffer): boolean => {
      assert.throws(() => decodeSnapshot(f), (e: unknown) => isTesseraError(e) && e.code === 'CORRUPT_DATA');
      return true;
    };
    corrupt(flipped);
    corrupt(file.subarray(0, file.length - 1));
    corrupt(Buffer.from('not a snapshot at all, not even close to one'.repeat(3)));
  });
});

interface SnapshotNode {
  readonly node: NodeHandle;
  readonly context: NodeContext;
  readonly server: EtcdServerHandle;
  close(): Promise<void>;
}

/** A real node (memory engine) whose etcd server gets `limits`; resolves once it leads. */
async function startSnapshotNode(limits: Partial<EtcdLimits> = {}): Promise<SnapshotNode> {
  const dataDir = await mkdtemp(join(tmpdir(), 'tessera-snapshot-'));
  let context: NodeContext | undefined;
  let server: EtcdServerHandle | undefined;
  const node = await startNode({
    name: 'snap',
    engine: 'memory',
    dataDir,
    listenClient: '127.0.0.1:0',
    listenPeer: '127.0.0.1:0',
    logLevel: 'silent',
    tickMs: 10,
    clientServer: async (kv, ctx) => {
      context = ctx;
      server = await startEtcdServer(kv, ctx, ctx.listenClient, { limits });
      return server;
    },
  });
  await waitFor('the node to lead', () => node.status().leader === node.nodeId);
  assert.ok(context !== undefined && server !== undefined);
  return {
    node,
    context,
    server,
    close: async () => {
      await node.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Puts `count` values of `valueBytes` straight into the engine, outside every range ('z' sorts after 'r'): bulk for the dump, invisible to the API. */
async function loadBulk(context: NodeContext, count: number, valueBytes: number): Promise<void> {
  const engine = context.engine as MemoryEngine;
  for (let i = 0; i < count; i++) {
    await commit(engine, [{ key: enc.encode(`zbulk/${String(i).padStart(6, '0')}`), value: new Uint8Array(valueBytes).fill(i & 0xff) }]);
  }
}

function bytesInUse(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const skip = etcdctlMissing();

describe('Maintenance.Snapshot with etcdctl 3.4', { skip }, () => {
  let s: SnapshotNode;
  let dir: string;
  before(async () => {
    s = await startSnapshotNode();
    dir = await mkdtemp(join(tmpdir(), 'tessera-snapshot-files-'));
  });
  after(async () => {
    await s?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('etcdctl snapshot save writes the node\'s state with a sha256 trailer; snapshot status refuses it (not bolt)', async () => {
    const address = s.server.address;
    for (let i = 0; i < 20; i++) assert.equal((await etcdctl(address, ['put', `snap/key${i}`, `value-${i}`])).code, 0);
    const file = join(dir, 'backup.db');
    const started = Date.now();
    const saved = await etcdctl(address, ['snapshot', 'save', file]);
    const tookMs = Date.now() - started;
    assert.equal(saved.code, 0, saved.stderr);
    assert.equal(saved.stdout, `Snapshot saved at ${file}\n`);
    const bytes = await readFile(file);
    console.log(`# snapshot of ${bytes.length} bytes saved by etcdctl in ${tookMs} ms`);
    assert.equal(bytes.length % SNAPSHOT_ALIGN_BYTES, SNAPSHOT_TRAILER_BYTES, 'etcd reads "size % 512 == 32" as "ends with a sha256"');
    assert.deepEqual(bytes.subarray(-32), createHash('sha256').update(bytes.subarray(0, -32)).digest());
    const decoded = decodeSnapshot(bytes);
    assert.equal(decoded.meta.nodeId, s.node.nodeId);
    assert.equal(decoded.meta.revision, s.node.kv.currentRevision());
    // Nothing was written since: the dump holds exactly what the engine holds.
    const view = (s.context.engine as MemoryEngine).snapshotView();
    const now = [...view.scan({ start: new Uint8Array(0) })].map((p) => `${hex(p.key)}=${hex(p.value)}`);
    view.close();
    assert.deepEqual(
      decoded.pairs.map((p) => `${hex(p.key)}=${hex(p.value)}`),
      now,
    );
    const all = Buffer.concat(decoded.pairs.flatMap((p) => [Buffer.from(p.key), Buffer.from(p.value)]));
    for (let i = 0; i < 20; i++) assert.ok(all.includes(`snap/key${i}`) && all.includes(`value-${i}`), `snap/key${i} is in the dump`);
    assert.equal(s.server.snapshotStats().completed, 1);
    const status = await etcdctl(address, ['snapshot', 'status', file]);
    assert.notEqual(status.code, 0, 'etcdctl snapshot status reads bolt files only');
  });

  test('a client that stops reading stalls the stream: one chunk in flight, memory flat, and it finishes when resumed', async () => {
    const BULK_VALUES = 256;
    const VALUE_BYTES = 256 * 1024;
    await loadBulk(s.context, BULK_VALUES, VALUE_BYTES);
    const dumpBytes = BULK_VALUES * VALUE_BYTES;
    const chunkBytes = 256 * 1024;
    const file = join(dir, 'slow.db');
    const before = s.server.snapshotStats().chunksSent;
    const baseline = bytesInUse();
    const child: ChildProcess = spawn(ETCDCTL_PATH, [`--endpoints=${s.server.address}`, '--command-timeout=60s', 'snapshot', 'save', file], {
      env: { ...process.env, ETCDCTL_API: '3' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.resume();
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the first chunks', () => s.server.snapshotStats().chunksSent - before >= 4);
      child.kill('SIGSTOP');
      // Let the client's windows and the socket buffers fill, then watch nothing more go out.
      await sleep(1_500);
      const stalledAt = s.server.snapshotStats().chunksSent;
      const grown = bytesInUse() - baseline;
      await sleep(1_500);
      const stats = s.server.snapshotStats();
      console.log(
        `# stalled reader: ${stalledAt - before} of ${dumpBytes / chunkBytes} chunks sent, ${stats.inFlightBytes} bytes in flight (peak ${stats.peakInFlightBytes}), heap+buffers grew ${(grown / MiB).toFixed(1)} MiB`,
      );
      assert.equal(stats.chunksSent, stalledAt, 'no chunk goes out while the client reads nothing');
      assert.ok((stalledAt - before) * chunkBytes < dumpBytes / 2, 'the server waits for the client instead of sending it all');
      assert.ok(stats.peakInFlightBytes <= chunkBytes + 32, 'one chunk in flight at most');
      assert.ok(grown < 32 * MiB, `memory grew by ${grown} bytes while stalled`);
      assert.equal(stats.active, 1);
    } finally {
      child.kill('SIGCONT');
    }
    const started = Date.now();
    assert.equal(await exited, 0);
    assert.equal(stdout, `Snapshot saved at ${file}\n`);
    const decoded = decodeSnapshot(await readFile(file));
    console.log(`# resumed and finished in ${Date.now() - started} ms; ${decoded.pairs.length} pairs`);
    assert.equal(decoded.pairs.filter((p) => Buffer.from(p.key).toString().startsWith('zbulk/')).length, BULK_VALUES);
    await waitFor('the stream to end', () => s.server.snapshotStats().active === 0);
  });
});

/** Calls Snapshot with grpc-js and resolves with how the call ended. */
function snapshotCall(address: string): Promise<ServiceError | undefined> {
  const client = rawClient(address, 'Maintenance') as unknown as { Snapshot(request: object): ClientReadableStream<unknown>; close(): void };
  const stream = client.Snapshot({});
  stream.resume();
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    stream.on('error', (e: ServiceError) => resolve(e));
    stream.on('end', () => resolve(undefined));
  });
  void ended.finally(() => client.close());
  return ended;
}

/**
 * A Snapshot call that never reads its answer: plain node:http2, stream
 * paused, so the client's flow-control window closes after 64 KiB. (grpc-js's
 * own client keeps reading into its buffer even when paused.)
 */
function stalledSnapshot(address: string): { cancel(): void; closed: Promise<void> } {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  const request = session.request({ ':method': 'POST', ':path': '/etcdserverpb.Maintenance/Snapshot', 'content-type': 'application/grpc', te: 'trailers' });
  request.on('error', () => {});
  // An empty SnapshotRequest: uncompressed, zero length.
  request.end(Buffer.alloc(5));
  request.pause();
  const closed = new Promise<void>((resolve) => session.on('close', () => resolve()));
  return {
    cancel: () => {
      request.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
    },
    closed,
  };
}

describe('Maintenance.Snapshot limits', () => {
  let s: SnapshotNode;
  before(async () => {
    s = await startSnapshotNode({ maxConcurrentSnapshots: 2, snapshotStallTimeoutMs: 1_500, snapshotChunkBytes: 64 * 1024 });
    await loadBulk(s.context, 64, 256 * 1024);
  });
  after(async () => {
    await s?.close();
  });

  test('past maxConcurrentSnapshots a stream is refused with "too many requests"; a stalled one is ended and its view released', async () => {
    const first = stalledSnapshot(s.server.address);
    const second = stalledSnapshot(s.server.address);
    await waitFor('two streams', () => s.server.snapshotStats().active === 2);
    const third = await snapshotCall(s.server.address);
    assert.equal(third?.code, 8, 'RESOURCE_EXHAUSTED');
    assert.equal(third?.details, 'etcdserver: too many requests');
    // Cancelling one releases it at once; the other stalls past the timeout and is ended.
    const cancelledAt = Date.now();
    first.cancel();
    await waitFor('the cancelled stream to be released', () => s.server.snapshotStats().active === 1);
    const releasedMs = Date.now() - cancelledAt;
    await waitFor('the stalled stream to be ended', () => s.server.snapshotStats().active === 0, 5_000);
    const stats = s.server.snapshotStats();
    console.log(`# cancelled stream released in ${releasedMs} ms; stalled one ended after ${Date.now() - cancelledAt} ms; ${JSON.stringify(stats)}`);
    assert.equal(stats.refused, 1, JSON.stringify(stats));
    assert.equal(stats.failed, 2, JSON.stringify(stats));
    assert.equal(stats.completed, 0, JSON.stringify(stats));
    second.cancel();
    await Promise.all([first.closed, second.closed]);
    // With the slots free, a client that reads gets the whole dump.
    assert.equal(await snapshotCall(s.server.address), undefined);
    assert.equal(s.server.snapshotStats().completed, 1);
  });
});

describe('Maintenance.Snapshot without an engine', () => {
  test('a server given no storage engine answers UNIMPLEMENTED', async (t) => {
    const etcd = await startTestEtcd();
    t.after(() => etcd.close());
    if (etcd.server === undefined) return t.skip('runs against tessera only');
    const error = await snapshotCall(etcd.address);
    assert.equal(error?.code, 12);
    assert.match(error?.details ?? '', /Maintenance\.Snapshot/);
  });
});
