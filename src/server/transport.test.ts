import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { message, type Message, type NodeId } from '../raft/index.js';
import { type NodeLoad, type RangeMessage, type RevisionMessage, keys } from '../kv/index.js';
import { freePorts } from './net_util.js';
import { PeerTransport, type TransportHandler, type TransportLimits } from './transport.js';
import { decodeFrame, decodeMessages, encodeFrame, encodeMessages, FrameDecoder } from './wire.js';
import { isPeerError } from './errors.js';
import { StateSnapshotReader, readSnapshotData, streamedSnapshot } from '../kv/snapshot_stream.js';
import { MemoryEngine } from '../storage/memory.js';
import { SnapshotRate } from './transport_limits.js';

const A = 11;
const B = 22;
const FAST: Partial<TransportLimits> = { backoffInitialMs: 10, backoffMaxMs: 50, handshakeTimeoutMs: 1_000 };

/** A logger whose JSON lines the test can read. */
function capture(): { logger: Logger; lines: () => { level: number; msg: string; reason?: string }[] } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

interface Recorder extends TransportHandler {
  readonly batches: { from: NodeId; messages: readonly RangeMessage[] }[];
  readonly unreachable: { to: NodeId; rangeIds: readonly number[] }[];
  readonly snapshots: { rangeId: number; to: NodeId; ok: boolean }[];
  readonly revisions: { from: NodeId; message: RevisionMessage }[];
  readonly alive: NodeId[];
  readonly loads: { from: NodeId; load: NodeLoad }[];
}

function recorder(): Recorder {
  const r: Recorder = {
    batches: [],
    unreachable: [],
    snapshots: [],
    revisions: [],
    alive: [],
    loads: [],
    receiveRevisions: (from, message) => r.revisions.push({ from, message }),
    receiveLiveness: (from, load) => {
      r.alive.push(from);
      if (load !== undefined) r.loads.push({ from, load });
    },
    receiveForward: () => {},
    receive: (from, messages) => r.batches.push({ from, messages }),
    reportUnreachable: (to, rangeIds) => r.unreachable.push({ to, rangeIds }),
    reportSnapshot: (rangeId, to, ok) => r.snapshots.push({ rangeId, to, ok }),
  };
  return r;
}

async function node(id: NodeId, port: number, peers: Record<number, number>, opts: { cluster?: string; limits?: Partial<TransportLimits>; logger?: Logger } = {}): Promise<{ t: PeerTransport; rec: Recorder }> {
  const t = await PeerTransport.listen({
    nodeId: id,
    name: `n${id}`,
    clusterId: opts.cluster ?? 'c1',
    listen: `127.0.0.1:${port}`,
    peers: new Map(Object.entries(peers).map(([k, p]) => [Number(k), `127.0.0.1:${p}`])),
    logger: opts.logger ?? pino({ level: 'silent' }),
    limits: { ...FAST, ...opts.limits },
  });
  const rec = recorder();
  t.attach(rec);
  return { t, rec };
}

function heartbeat(from: NodeId, to: NodeId, commit = 0): RangeMessage {
  return { rangeId: 1, message: message({ type: 'MsgHeartbeat', from, to, term: 3, commit }) };
}

function app(from: NodeId, to: NodeId, bytes: number, index = 1): RangeMessage {
  const data = new Uint8Array(bytes).fill(index & 0xff);
  return { rangeId: 1, message: message({ type: 'MsgApp', from, to, term: 3, index, logTerm: 3, entries: [{ term: 3, index: index + 1, type: 'normal', data }] }) };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('transport: one send (a loop turn to one peer) travels as one frame and arrives as one batch', async () => {
  const [pa, pb] = await freePorts(2);
  const a = await node(A, pa as number, { [B]: pb as number });
  const b = await node(B, pb as number, { [A]: pa as number });
  try {
    const batch = Array.from({ length: 50 }, (_, i) => heartbeat(A, B, i));
    a.t.send(B, batch);
    await waitFor(() => b.rec.batches.length === 1, 'the batch');
    assert.equal(a.t.stats.framesSent, 1);
    assert.equal(b.rec.batches[0]?.from, A);
    assert.deepEqual(b.rec.batches[0]?.messages.map((m) => m.message.commit), batch.map((m) => m.message.commit));
    // Entry payloads survive as plain Uint8Arrays, not Buffers.
    a.t.send(B, [app(A, B, 100, 7)]);
    await waitFor(() => b.rec.batches.length === 2, 'the append');
    const data = b.rec.batches[1]?.messages[0]?.message.entries[0]?.data;
    assert.equal(data?.constructor, Uint8Array);
    assert.deepEqual(data, new Uint8Array(100).fill(7));
    assert.ok(b.t.peers().get(A)?.name === 'n11' && a.t.peers().get(B)?.name === 'n22', 'handshakes name the peers');
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('transport: reconnects with backoff after the peer restarts; drops while it is down are reported unreachable', async () => {
  const [pa, pb] = await freePorts(2);
  const a = await node(A, pa as number, { [B]: pb as number });
  let b = await node(B, pb as number, { [A]: pa as number });
  try {
    a.t.send(B, [heartbeat(A, B, 1)]);
    await waitFor(() => b.rec.batches.length === 1, 'first delivery');
    await b.t.close();
    // Sends while B is down are dropped and reported, never queued without bound.
    for (let i = 0; i < 20; i++) {
      a.t.send(B, [heartbeat(A, B, 2)]);
      await new Promise((r) => setTimeout(r, 5));
    }
    await waitFor(() => a.rec.unreachable.some((u) => u.to === B), 'an unreachable report');
    b = await node(B, pb as number, { [A]: pa as number });
    const rb = b.rec;
    await waitFor(() => {
      a.t.send(B, [heartbeat(A, B, 3)]);
      return rb.batches.some((x) => x.messages[0]?.message.commit === 3);
    }, 'delivery after the restart');
    assert.ok(a.t.stats.connects >= 2, `reconnected (${a.t.stats.connects} connects)`);
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

/** A peer that completes the handshake and then never reads again. */
async function stuckPeer(port: number, id: NodeId): Promise<{ server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    const dec = new FrameDecoder(1 << 20);
    s.once('data', (chunk: Buffer) => {
      for (const p of dec.push(chunk)) if (decodeFrame(p).t === 'hello') s.write(encodeFrame({ t: 'welcome', from: id, name: 'stuck' }));
      s.pause();
    });
  });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port }, () => r()));
  return { server, sockets };
}

test('transport: a peer that stops reading cannot grow the queue past its byte limit; the oldest frames are dropped', async () => {
  const [pa, pb] = await freePorts(2);
  const limits = { maxQueueBytes: 512 * 1024, maxFrameBytes: 256 * 1024, socketHighWaterBytes: 64 * 1024, snapshotChunkBytes: 64 * 1024 };
  const a = await node(A, pa as number, { [B]: pb as number }, { limits });
  const stuck = await stuckPeer(pb as number, B);
  try {
    a.t.send(B, [heartbeat(A, B)]);
    await waitFor(() => a.t.stats.framesSent === 1, 'the handshake');
    let maxQueued = 0;
    let maxBuffered = 0;
    // 64 MiB offered to a peer that reads nothing.
    for (let i = 0; i < 1024; i++) {
      a.t.send(B, [app(A, B, 64 * 1024, i)]);
      maxQueued = Math.max(maxQueued, a.t.queuedBytes(B));
      maxBuffered = Math.max(maxBuffered, a.t.bufferedBytes(B));
      if (i % 64 === 0) await new Promise((r) => setImmediate(r));
    }
    assert.ok(maxQueued <= limits.maxQueueBytes, `queue peaked at ${maxQueued} bytes`);
    // What the process holds for the peer (the kernel's socket buffers aside) stays within the named limits.
    const bound = limits.maxQueueBytes + limits.socketHighWaterBytes + limits.maxFrameBytes;
    assert.ok(maxBuffered <= bound, `held ${maxBuffered} bytes for the peer, above ${bound}`);
    assert.ok(a.t.stats.droppedFrames > 900, `dropped ${a.t.stats.droppedFrames} frames`);
    await waitFor(() => a.rec.unreachable.length > 0, 'unreachable reports');
  } finally {
    await a.t.close();
    for (const s of stuck.sockets) s.destroy();
    await new Promise<void>((r) => stuck.server.close(() => r()));
  }
});

test('transport: a frame above the size limit closes the connection with a logged error; the node keeps serving', async () => {
  const [pa, pb] = await freePorts(2);
  const log = capture();
  const b = await node(B, pb as number, { [A]: pa as number }, { logger: log.logger, limits: { maxFrameBytes: 128 * 1024, snapshotChunkBytes: 64 * 1024 } });
  const a = await node(A, pa as number, { [B]: pb as number });
  try {
    const raw = connect({ host: '127.0.0.1', port: pb as number });
    await new Promise<void>((r) => raw.once('connect', () => r()));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(64 * 1024 * 1024);
    raw.write(header);
    raw.resume(); // reads, so that the server's end shows as 'close'
    await new Promise<void>((r) => raw.once('close', () => r()));
    const err = log.lines().find((l) => l.level === 50 && l.reason === 'frame-too-large');
    assert.ok(err, `logged: ${JSON.stringify(log.lines())}`);
    // Garbage that is not msgpack, and a valid frame that is not a hello, are refused the same way.
    for (const bad of [Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]), encodeMessages([])]) {
      const s = connect({ host: '127.0.0.1', port: pb as number });
      s.write(bad);
      s.resume();
      await new Promise<void>((r) => s.once('close', () => r()));
    }
    a.t.send(B, [heartbeat(A, B, 9)]);
    await waitFor(() => b.rec.batches.length === 1, 'delivery after the bad connections');
    assert.equal(b.t.stats.rejectedInbound, 3);
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('transport: a peer of another cluster is refused at the handshake, and says why', async () => {
  const [pa, pb] = await freePorts(2);
  const logA = capture();
  const logB = capture();
  const a = await node(A, pa as number, { [B]: pb as number }, { cluster: 'other', logger: logA.logger });
  const b = await node(B, pb as number, { [A]: pa as number }, { logger: logB.logger });
  try {
    a.t.send(B, [heartbeat(A, B)]);
    await waitFor(() => a.t.stats.connectFailures > 0 && b.t.stats.rejectedInbound > 0, 'the refusal');
    assert.equal(b.rec.batches.length, 0);
    assert.ok(logB.lines().some((l) => l.level === 50 && l.reason === 'cluster-mismatch'), 'the receiver logs the refusal');
    assert.ok(logA.lines().some((l) => l.level === 50 && l.reason === 'cluster-mismatch'), 'the dialer logs the reason it got');
    await waitFor(() => a.rec.unreachable.length > 0, 'unreachable report');
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('transport: snapshots stream in bounded chunks, are reassembled, and their outcome is reported', async () => {
  const [pa, pb, pc] = await freePorts(3);
  const limits = { snapshotChunkBytes: 256 * 1024 };
  const a = await node(A, pa as number, { [B]: pb as number, 33: pc as number }, { limits });
  const b = await node(B, pb as number, { [A]: pa as number }, { limits });
  try {
    const data = new Uint8Array(5 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const cs = { voters: [A, B], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    const snap: Message = message({ type: 'MsgSnap', from: A, to: B, term: 4, snapshot: { metadata: { index: 100, term: 4, confState: cs }, data } });
    // Batched messages go around the snapshot stream, not behind all of it.
    a.t.send(B, [heartbeat(A, B, 1), { rangeId: 5, message: snap }]);
    await waitFor(() => a.rec.snapshots.length === 1, 'the snapshot report', 10_000);
    assert.deepEqual(a.rec.snapshots[0], { rangeId: 5, to: B, ok: true });
    assert.equal(a.t.stats.snapshotChunksSent, Math.ceil(data.length / limits.snapshotChunkBytes));
    const got = b.rec.batches.flatMap((x) => x.messages).find((m) => m.message.type === 'MsgSnap');
    assert.equal(got?.rangeId, 5);
    assert.deepEqual(got?.message.snapshot?.metadata, snap.snapshot?.metadata);
    assert.ok(Buffer.from(got?.message.snapshot?.data ?? []).equals(Buffer.from(data)), 'data round-trips');
    // A snapshot to a peer that is down is reported failed (Raft will send another).
    a.t.send(33, [{ rangeId: 5, message: { ...snap, to: 33 } }]);
    await waitFor(() => a.rec.snapshots.length === 2, 'the failure report');
    assert.deepEqual(a.rec.snapshots[1], { rangeId: 5, to: 33, ok: false });
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('transport: snapshots are held to the node\'s snapshot rate, a bucket of one second that refills at that rate', async () => {
  const [pa, pb] = await freePorts(2);
  const rate = 2 * 1024 * 1024;
  const limits = { snapshotChunkBytes: 256 * 1024, snapshotBytesPerSecond: rate };
  const a = await node(A, pa as number, { [B]: pb as number }, { limits });
  const b = await node(B, pb as number, { [A]: pa as number }, { limits });
  try {
    const data = new Uint8Array(5 * 1024 * 1024).fill(7);
    const cs = { voters: [A, B], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    const started = performance.now();
    a.t.send(B, [{ rangeId: 5, message: message({ type: 'MsgSnap', from: A, to: B, term: 4, snapshot: { metadata: { index: 100, term: 4, confState: cs }, data } }) }]);
    await waitFor(() => a.rec.snapshots.length === 1, 'the snapshot report', 20_000);
    const elapsedMs = performance.now() - started;
    assert.deepEqual(a.rec.snapshots[0], { rangeId: 5, to: B, ok: true });
    // 2 MiB go at once (a full bucket); the other 3 MiB take 1.5 s at 2 MiB/s.
    assert.ok(elapsedMs >= 1_400, `5 MiB at 2 MiB/s took ${elapsedMs.toFixed(0)} ms`);
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('transport: the meta range\'s snapshot goes before data ranges\' waiting ones, and takes the last one\'s place when the queue is full', async () => {
  const [pa, pb] = await freePorts(2);
  // Slow enough that the first snapshot still streams while the others are queued.
  const limits = { snapshotChunkBytes: 64 * 1024, snapshotBytesPerSecond: 512 * 1024 };
  const a = await node(A, pa as number, { [B]: pb as number }, { limits });
  const b = await node(B, pb as number, { [A]: pa as number }, { limits });
  try {
    const cs = { voters: [A, B], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    const snap = (rangeId: number): { rangeId: number; message: ReturnType<typeof message> } => ({ rangeId, message: message({ type: 'MsgSnap', from: A, to: B, term: 4, snapshot: { metadata: { index: 100, term: 4, confState: cs }, data: new Uint8Array(256 * 1024).fill(rangeId) } }) });
    // Range 5 streams; 6, 7, 8 and 9 wait (maxPendingSnapshots 4); then range 1's arrives.
    for (const rangeId of [5, 6, 7, 8, 9, 1]) a.t.send(B, [snap(rangeId)]);
    await waitFor(() => a.rec.snapshots.length === 6, 'six snapshot reports', 30_000);
    assert.deepEqual(a.rec.snapshots.map((r) => `${r.rangeId}:${r.ok ? 'ok' : 'failed'}`), ['9:failed', '5:ok', '1:ok', '6:ok', '7:ok', '8:ok']);
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('SnapshotRate: a full bucket of one second, spent by chunks and refilled with time; a chunk larger than the bucket waits for a full one', () => {
  let now = 0;
  const r = new SnapshotRate(1000, () => now);
  assert.equal(r.take(600), 0);
  assert.equal(r.take(400), 0);
  assert.equal(r.take(100), 100); // empty: 100 bytes take 100 ms
  now += 50;
  assert.equal(r.take(100), 50);
  now += 50;
  assert.equal(r.take(100), 0);
  now += 10_000; // refills to one second's worth, not more
  assert.equal(r.take(1000), 0);
  assert.equal(r.take(1), 1);
  now += 2_000;
  assert.equal(r.take(5000), 0, 'a chunk above the bucket goes once it is full');
  assert.equal(r.take(1), 4001, 'and leaves the debt to pay');
});

test('transport: a leader\'s snapshot is read from its read view a chunk at a time, between event-loop turns, and the view is released however the send ends', async () => {
  const [pa, pb, pc] = await freePorts(3);
  const limits = { snapshotChunkBytes: 64 * 1024 };
  const a = await node(A, pa as number, { [B]: pb as number, 33: pc as number }, { limits });
  const b = await node(B, pb as number, { [A]: pa as number }, { limits });
  try {
    const engine = new MemoryEngine({ scheduleSync: () => {} });
    const batch = engine.newBatch();
    const start = keys.stateStart(5);
    for (let i = 0; i < 30_000; i++) batch.put(Buffer.concat([start, Buffer.from(`k${i}`)]), new Uint8Array(60).fill(i & 0xff));
    engine.stage(batch);
    const open = (): StateSnapshotReader => new StateSnapshotReader({ view: engine.snapshotView(), spans: [{ start, end: keys.stateEnd(5), stripBytes: start.byteLength - 1 }], tail: [] });
    const expected = readSnapshotData(open());
    const cs = { voters: [A, B], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    const metadata = { index: 100, term: 4, confState: cs };
    const reader = open();
    // Writes after the view was taken do not reach the snapshot.
    const later = engine.newBatch();
    later.deleteRange(start, keys.stateEnd(5));
    engine.stage(later);
    let turns = 0;
    let spinning = true;
    const spin = (): void => {
      turns++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    a.t.send(B, [{ rangeId: 5, message: message({ type: 'MsgSnap', from: A, to: B, term: 4, snapshot: streamedSnapshot(metadata, reader) }) }]);
    await waitFor(() => a.rec.snapshots.length === 1, 'the snapshot report', 10_000);
    spinning = false;
    assert.deepEqual(a.rec.snapshots[0], { rangeId: 5, to: B, ok: true });
    assert.ok(reader.closed, 'the view was released after the last chunk');
    const chunks = Math.ceil(expected.byteLength / limits.snapshotChunkBytes);
    assert.equal(a.t.stats.snapshotChunksSent, chunks);
    // Read all in one turn, the loop would turn a handful of times; read a chunk per turn, about once per chunk. The first
    // chunk may be read inside send, and the last report may land in the turn of the last read: allow those two.
    assert.ok(turns >= chunks - 2, `the event loop turned ${turns} times while ${chunks} chunks were read and sent`);
    const got = b.rec.batches.flatMap((x) => x.messages).find((m) => m.message.type === 'MsgSnap');
    assert.ok(Buffer.from(got?.message.snapshot?.data ?? []).equals(Buffer.from(expected)), 'the data is the view\'s state');
    // To a peer that is down, or once the transport is closing: reported failed (or not at all), the view released at once.
    const toDown = open();
    a.t.send(33, [{ rangeId: 5, message: message({ type: 'MsgSnap', from: A, to: 33, term: 4, snapshot: streamedSnapshot(metadata, toDown) }) }]);
    await waitFor(() => a.rec.snapshots.length === 2, 'the failure report');
    assert.deepEqual(a.rec.snapshots[1], { rangeId: 5, to: 33, ok: false });
    assert.ok(toDown.closed);
    // A view closed before its data went (held too long: OpenSnapshotReaders) fails the send.
    const expired = open();
    expired.close();
    a.t.send(B, [{ rangeId: 5, message: message({ type: 'MsgSnap', from: A, to: B, term: 4, snapshot: streamedSnapshot(metadata, expired) }) }]);
    await waitFor(() => a.rec.snapshots.length === 3, 'the expired report');
    assert.deepEqual(a.rec.snapshots[2], { rangeId: 5, to: B, ok: false });
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('wire: frames split at any byte boundary decode the same', () => {
  const frames = [encodeMessages([heartbeat(A, B, 5)]), encodeFrame({ t: 'snapack', id: 3, ok: true })];
  const all = Buffer.concat(frames);
  for (const cut of [1, 3, 4, 5, all.length - 1]) {
    const dec = new FrameDecoder(1024);
    const got = [...dec.push(all.subarray(0, cut)), ...dec.push(all.subarray(cut))].map((p) => decodeFrame(p).t);
    assert.deepEqual(got, ['msgs', 'snapack'], `cut at ${cut}`);
  }
});

test('wire: a message batch decodes to the messages encoded, every field and entry kind included', () => {
  const cc = { transition: 'auto' as const, changes: [{ type: 'add-learner' as const, nodeId: 33 }], context: 'ctx' };
  const sent: RangeMessage[] = [
    { rangeId: 7, message: message({ type: 'MsgApp', from: A, to: B, term: 2 ** 40, logTerm: 5, index: 2 ** 53 - 1, commit: 9, entries: [
      { term: 5, index: 10, type: 'normal', data: new Uint8Array([1, 2, 3]) },
      { term: 5, index: 11, type: 'normal', data: new Uint8Array(0) },
      { term: 5, index: 12, type: 'conf-change', data: new Uint8Array([9]), confChange: cc },
    ] }) },
    { rangeId: 1, message: message({ type: 'MsgAppResp', from: A, to: B, term: 5, index: 3, reject: true, rejectHint: 2 }) },
    { rangeId: 1, message: message({ type: 'MsgHeartbeat', from: A, to: B, term: 5, commit: 4, leaseTick: 77, context: 'read-ü-1' }) },
  ];
  const frame = encodeMessages(sent);
  assert.equal(frame.readUInt32BE(0), frame.byteLength - 4);
  const f = decodeFrame(frame.subarray(4));
  assert.ok(f.t === 'msgs');
  const got = decodeMessages(f.payload, A, B);
  const plainBytes = (rm: RangeMessage): unknown => ({ ...rm, message: { ...rm.message, entries: rm.message.entries.map((e) => ({ ...e, data: [...e.data] })) } });
  assert.deepEqual(got.map(plainBytes), sent.map(plainBytes));
  assert.deepEqual(decodeMessages(encodeMessages([]).subarray(4), A, B), []);
  assert.throws(() => encodeMessages([{ rangeId: 1, message: message({ type: 'MsgHup', from: A, to: B }) }]), /no wire code/);
});

test('wire: a malformed or misaddressed message batch is refused with a reason', () => {
  const refuse = (payload: Buffer, from = A, self = B): void => assert.throws(() => decodeMessages(payload, from, self), (e) => isPeerError(e, 'malformed-frame'));
  const good = encodeMessages([app(A, B, 16, 4)]).subarray(4);
  assert.equal(decodeMessages(good, A, B)[0]?.message.entries[0]?.data.byteLength, 16);
  const patched = (at: number, write: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    write(b.subarray(at));
    return b;
  };
  // Offsets in the payload: tag 0, count 1, range id 5, type 13, flags 14, to 15, from 23, term 31.
  refuse(good, 99); // not the connection's peer
  refuse(good, A, 99); // addressed to another node
  refuse(patched(13, (b) => (b[0] = 200))); // no such type
  refuse(patched(13, (b) => (b[0] = 7))); // MsgSnap outside a snapshot stream
  refuse(patched(14, (b) => (b[0] = 0x80))); // unknown flag
  refuse(patched(31, (b) => b.writeDoubleLE(-1, 0))); // negative term
  refuse(patched(31, (b) => b.writeDoubleLE(1.5, 0))); // not an integer
  refuse(patched(5, (b) => b.writeDoubleLE(2 ** 60, 0))); // range id past 2^53
  refuse(patched(1, (b) => b.writeUInt32LE(0xffffffff, 0))); // more messages than bytes
  refuse(good.subarray(0, good.length - 1)); // cut short
  refuse(Buffer.concat([good, Buffer.from([0])])); // trailing bytes
  refuse(patched(good.length - 16 - 4 - 1, (b) => (b[0] = 5))); // entry type
  refuse(patched(good.length - 16 - 4, (b) => b.writeUInt32LE(1 << 30, 0))); // entry data past the end
});

const wireMessage = (from: NodeId, to: NodeId): fc.Arbitrary<RangeMessage> => {
  const int = fc.oneof(fc.nat(1000), fc.maxSafeNat());
  const entry = fc.oneof(
    fc.record({ term: int, index: int, type: fc.constant('normal' as const), data: fc.uint8Array({ maxLength: 300 }) }),
    fc.record({
      term: int,
      index: int,
      type: fc.constant('conf-change' as const),
      data: fc.uint8Array({ maxLength: 20 }),
      // Spread into plain objects: fc.record builds them without a prototype, which deepEqual tells apart.
      confChange: fc
        .record({ transition: fc.constantFrom('auto' as const, 'implicit' as const, 'explicit' as const), changes: fc.array(fc.record({ type: fc.constantFrom('add-node' as const, 'remove-node' as const, 'add-learner' as const), nodeId: fc.integer({ min: 1, max: 2 ** 31 }) }), { maxLength: 3 }) })
        .map((c) => ({ ...c, changes: c.changes.map((x) => ({ ...x })) })),
    }),
  );
  const types = ['MsgProp', 'MsgApp', 'MsgAppResp', 'MsgVote', 'MsgVoteResp', 'MsgPreVote', 'MsgPreVoteResp', 'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex', 'MsgReadIndexResp'] as const;
  return fc
    .record({
      rangeId: int,
      type: fc.constantFrom(...types),
      term: int,
      logTerm: int,
      index: int,
      commit: int,
      reject: fc.boolean(),
      rejectHint: int,
      entries: fc.array(entry, { maxLength: 5 }),
      context: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
      leaseTick: fc.option(int, { nil: undefined }),
    })
    .map(({ rangeId, context, leaseTick, ...m }) => ({
      rangeId,
      message: message({ ...m, from, to, ...(context === undefined ? {} : { context }), ...(leaseTick === undefined ? {} : { leaseTick }) }),
    }));
};

test('wire: any batch of messages survives encode and decode unchanged (property)', () => {
  const plainBytes = (rm: RangeMessage): unknown => ({ ...rm, message: { ...rm.message, entries: rm.message.entries.map((e) => ({ ...e, data: [...e.data] })) } });
  fc.assert(
    fc.property(fc.array(wireMessage(A, B), { maxLength: 8 }), (sent) => {
      const frame = encodeMessages(sent);
      const got = decodeMessages(frame.subarray(4), A, B);
      assert.deepEqual(got.map(plainBytes), sent.map(plainBytes));
    }),
    { numRuns: 300 },
  );
});

test('wire: a corrupted message batch decodes to checked messages or is refused, never anything else (fuzz)', () => {
  fc.assert(
    fc.property(
      fc.array(wireMessage(A, B), { minLength: 1, maxLength: 4 }),
      fc.array(fc.record({ at: fc.nat(), value: fc.nat(255) }), { minLength: 1, maxLength: 6 }),
      fc.nat(),
      (sent, flips, cut) => {
        const payload = Buffer.from(encodeMessages(sent).subarray(4));
        for (const f of flips) payload[f.at % payload.length] = f.value;
        const damaged = cut % 3 === 0 ? payload.subarray(0, cut % payload.length) : payload;
        try {
          for (const { message: m } of decodeMessages(damaged, A, B)) {
            assert.equal(m.from, A);
            assert.equal(m.to, B);
            for (const v of [m.term, m.logTerm, m.index, m.commit, m.rejectHint]) assert.ok(Number.isSafeInteger(v) && v >= 0);
            assert.notEqual(m.type, 'MsgSnap');
          }
        } catch (error) {
          assert.ok(isPeerError(error, 'malformed-frame'), `refused with something other than a PeerError: ${String(error)}`);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

test('transport: a revision request and its answer travel between revision services as tso frames', async () => {
  const [pa, pb] = await freePorts(2);
  const a = await node(A, pa as number, { [B]: pb as number });
  const b = await node(B, pb as number, { [A]: pa as number });
  try {
    a.t.sendRevisions(B, { kind: 'request', id: 'n11:7', count: 3 });
    await waitFor(() => b.rec.revisions.length === 1, 'the request');
    assert.deepEqual(b.rec.revisions[0], { from: A, message: { kind: 'request', id: 'n11:7', count: 3 } });
    b.t.sendRevisions(A, { kind: 'refusal', id: 'n11:7', code: 'NOT_LEADER', leader: 33 });
    await waitFor(() => a.rec.revisions.length === 1, 'the refusal');
    assert.deepEqual(a.rec.revisions[0], { from: B, message: { kind: 'refusal', id: 'n11:7', code: 'NOT_LEADER', leader: 33 } });
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('transport: a node says it is alive in an alive frame, and a quiesce heartbeat keeps its mark on the wire (ADR 0010)', async () => {
  const [pa, pb] = await freePorts(2);
  const a = await node(A, pa as number, { [B]: pb as number });
  const b = await node(B, pb as number, { [A]: pa as number });
  try {
    a.t.sendLiveness(B);
    await waitFor(() => b.rec.alive.length === 1, 'the liveness');
    assert.deepEqual(b.rec.alive, [A]);
    assert.deepEqual(b.rec.loads, []);
    // KvNode's announcements carry its load (ADR 0015).
    a.t.sendLiveness(B, { bytes: 4096, leaderQps: 12.5 });
    await waitFor(() => b.rec.alive.length === 2, 'the liveness with a load');
    assert.deepEqual(b.rec.loads, [{ from: A, load: { bytes: 4096, leaderQps: 12.5 } }]);
    a.t.send(B, [{ rangeId: 4, message: message({ type: 'MsgHeartbeat', from: A, to: B, term: 3, index: 9, logTerm: 2, commit: 9, quiesce: true }) }]);
    await waitFor(() => b.rec.batches.length === 1, 'the quiesce heartbeat');
    assert.equal(b.rec.batches[0]?.messages[0]?.message.quiesce, true);
    assert.equal(b.rec.batches[0]?.messages[0]?.message.logTerm, 2);
  } finally {
    await a.t.close();
    await b.t.close();
  }
});

test('wire: an alive frame carries the sender\'s load (ADR 0015), rebuilt from checked figures; a bad figure is refused, and a frame without one still decodes', () => {
  const frame = (f: unknown): Buffer => encodeFrame(f as never).subarray(4);
  assert.deepEqual(decodeFrame(frame({ t: 'alive', load: { bytes: 1234, leaderQps: 5.5, extra: 'dropped' } })), { t: 'alive', load: { bytes: 1234, leaderQps: 5.5 } });
  assert.deepEqual(decodeFrame(frame({ t: 'alive', load: { bytes: 1234, leaderQps: 5.5, leaders: 7 } })), { t: 'alive', load: { bytes: 1234, leaderQps: 5.5, leaders: 7 } });
  assert.deepEqual(decodeFrame(frame({ t: 'alive' })), { t: 'alive' });
  for (const load of [null, 7, { bytes: -1, leaderQps: 0 }, { bytes: 1, leaderQps: Number.NaN }, { bytes: 1 }, { bytes: '1', leaderQps: 0 }, { bytes: 2 ** 60, leaderQps: 0 }, { bytes: 1, leaderQps: 0, leaders: 1.5 }, { bytes: 1, leaderQps: 0, leaders: -1 }]) {
    assert.throws(() => decodeFrame(frame({ t: 'alive', load })), (e) => isPeerError(e, 'malformed-frame'), JSON.stringify(load));
  }
});

test('wire: a tso frame is rebuilt from checked fields; anything else in it is refused as malformed', () => {
  const frame = (m: unknown): Buffer => encodeFrame({ t: 'tso', m } as never).subarray(4);
  assert.deepEqual(decodeFrame(frame({ kind: 'answer', id: 'x', first: 2, last: 9, extra: 'dropped' })), { t: 'tso', m: { kind: 'answer', id: 'x', first: 2, last: 9 } });
  const bad: unknown[] = [
    null,
    [],
    { kind: 'request', id: 'x', count: 0 },
    { kind: 'request', id: 'x', count: 100_001 },
    { kind: 'request', id: 'x', count: 1.5 },
    { kind: 'request', id: 7, count: 1 },
    { kind: 'request', id: 'x'.repeat(129), count: 1 },
    { kind: 'answer', id: 'x', first: 9, last: 2 },
    { kind: 'answer', id: 'x', first: 0, last: 2 },
    { kind: 'answer', id: 'x', first: 2, last: 2 ** 53 },
    { kind: 'answer', id: 'x', first: -1, last: 2 },
    { kind: 'refusal', id: 'x', code: 'BOOM', leader: 1 },
    { kind: 'refusal', id: 'x', code: 'NOT_LEADER', leader: -1 },
    { kind: 'what', id: 'x' },
  ];
  for (const m of bad) assert.throws(() => decodeFrame(frame(m)), (e) => isPeerError(e, 'malformed-frame'), JSON.stringify(m));
});
