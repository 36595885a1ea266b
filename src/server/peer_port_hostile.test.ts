/**
 * The peer port under attack (issue 12): malformed and forged frames, non-
 * members, oversized frames before the hello, snapshots past the node-wide
 * budget, and a fuzz of random and mutated frames against a running
 * cluster. The node must never crash or assert, and must keep serving.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { pino } from 'pino';
import { message, type Message, type MessageType } from '../raft/index.js';
import type { TxnRequest } from '../mvcc/index.js';
import { snapshotDataProblem } from '../kv/index.js';
import { freePorts } from './net_util.js';
import { startNode, type NodeHandle } from './node.js';
import { PeerTransport, type TransportHandler } from './transport.js';
import { decodeFrame, encodeFrame, encodeMessages, FrameDecoder, type MapFrame, PEER_PROTOCOL_VERSION } from './wire.js';
import { waitFor } from './wait.testlib.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const packer = new Packr({ useRecords: false, moreTypes: false });
let snapIds = 0;
const silent = pino({ level: 'silent' });
const FAST = { backoffInitialMs: 10, backoffMaxMs: 50, handshakeTimeoutMs: 1_000 };

const sink: TransportHandler = { receive: () => {}, reportUnreachable: () => {}, reportSnapshot: () => {}, receiveRevisions: () => {}, receiveLiveness: () => {}, receiveForward: () => {} };

/** Runs `body` against node 22, whose member peers are 11 and 33 (never dialled in these tests), and closes it. */
async function withReceiver(limits: Record<string, number>, body: (t: PeerTransport) => Promise<void>): Promise<void> {
  const peers = new Map([[11, '127.0.0.1:1'], [33, '127.0.0.1:2']]);
  const t = await PeerTransport.listen({ nodeId: 22, name: 'n22', clusterId: 'c1', listen: '127.0.0.1:0', peers, logger: silent, limits: { ...FAST, ...limits } });
  t.attach(sink);
  try {
    await body(t);
  } finally {
    await t.close();
  }
}

/** A raw connection that collects the frames the node answers with, and notices when it is closed. */
async function raw(address: string, localAddress?: string): Promise<{ socket: Socket; frames: MapFrame[]; closed: Promise<void> }> {
  const [host, port] = address.split(':');
  const socket = connect({ host: host as string, port: Number(port), ...(localAddress === undefined ? {} : { localAddress }) });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const frames: MapFrame[] = [];
  const decoder = new FrameDecoder(1 << 24);
  socket.on('data', (chunk: Buffer) => {
    for (const p of decoder.push(chunk)) frames.push(decodeFrame(p) as MapFrame);
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, frames, closed };
}

function hello(from: number, to: number, cluster = 'c1'): Buffer {
  return encodeFrame({ t: 'hello', v: PEER_PROTOCOL_VERSION, cluster, from, to, name: `n${from}` });
}

test('peer port: a snapshot chunk whose head is null is refused; the node goes on (it threw a TypeError out of the socket handler)', async () => {
  await withReceiver({}, async (t) => {
    const c = await raw(t.address);
    c.socket.write(hello(11, 22));
    const bad = { t: 'snap', id: 1, rangeId: 1, seq: 0, last: true, data: new Uint8Array(0), total: 0, head: null } as unknown as MapFrame;
    c.socket.write(encodeFrame(bad));
    await c.closed;
    assert.equal(c.frames[0]?.t, 'welcome');
    assert.equal(c.frames[1]?.t, 'reject');
    assert.equal(t.stats.rejectedInbound, 1);
  });
});

test('peer port: a hello from a node that is not a member is refused', async () => {
  await withReceiver({}, async (t) => {
    const c = await raw(t.address);
    c.socket.write(hello(99, 22));
    await c.closed;
    const r = c.frames[0];
    assert.equal(r?.t, 'reject');
    assert.equal(r?.t === 'reject' ? r.reason : '', 'unknown-member');
  });
});

test('peer port: before the hello, a frame above MAX pre-hello size is refused (a 16 MiB frame per connection was allowed)', async () => {
  await withReceiver({}, async (t) => {
    const c = await raw(t.address);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(t.limits.maxPreHelloFrameBytes + 1);
    c.socket.write(header);
    await c.closed;
    assert.equal(c.frames[0]?.t === 'reject' ? c.frames[0].reason : '', 'frame-too-large');
  });
});

test('peer port: a member has one connection past its hello; a newer hello replaces the older (each could buffer a 16 MiB frame)', async () => {
  await withReceiver({}, async (t) => {
    const first = await raw(t.address);
    first.socket.write(hello(11, 22));
    await waitFor(() => first.frames.find((f) => f.t === 'welcome'), 'the first welcome');
    // The first connection holds part of a large frame, as a slow or hostile sender's would.
    const header = Buffer.alloc(4);
    header.writeUInt32BE(t.limits.maxFrameBytes);
    first.socket.write(Buffer.concat([header, Buffer.alloc(1024)]));
    const second = await raw(t.address);
    second.socket.write(hello(11, 22));
    await waitFor(() => second.frames.find((f) => f.t === 'welcome'), 'the second welcome');
    const gone = await Promise.race([first.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2_000))]);
    assert.equal(gone, true, 'the older connection of member 11 was closed');
    assert.equal(second.socket.destroyed, false);
    second.socket.destroy();
  });
});

test('peer port: snapshots being reassembled share one node-wide budget; past it they are refused, and it is given back', async () => {
  await withReceiver({ maxSnapshotAssemblyBytes: 1000, maxSnapshotBytes: 800 }, async (t) => {
    const head = { type: 'MsgSnap', to: 22, from: 11, term: 2, snapshot: { metadata: { index: 5, term: 2 } } };
    const chunk = (id: number, total: number) => encodeFrame({ t: 'snap', id, rangeId: 1, seq: 0, last: false, data: new Uint8Array(10), total, head } as unknown as MapFrame);
    const a = await raw(t.address);
    a.socket.write(hello(11, 22));
    a.socket.write(chunk(1, 700));
    await waitFor(() => (t.snapshotAssemblyBytes === 700 ? true : undefined), 'the first reservation');
    const b = await raw(t.address);
    b.socket.write(hello(33, 22)); // another member: one member has one connection (see above)
    b.socket.write(chunk(2, 700));
    const refusal = await waitFor(() => b.frames.find((f) => f.t === 'snapack'), 'an answer to the second');
    assert.deepEqual(refusal, { t: 'snapack', id: 2, ok: false });
    assert.equal(t.snapshotAssemblyBytes, 700);
    a.socket.destroy();
    await waitFor(() => (t.snapshotAssemblyBytes === 0 ? true : undefined), 'the budget given back when the connection closed');
    b.socket.destroy();
  });
});

test('peer port: a join from a peer URL that no member has is refused without the cluster id or members', async () => {
  const t = await PeerTransport.listen({
    nodeId: 22, name: 'n22', clusterId: 'secret-cluster', listen: '127.0.0.1:0', peers: new Map([[11, '127.0.0.1:1']]), logger: silent, limits: FAST,
    members: () => [{ id: 22, name: 'n22', peerUrls: ['http://127.0.0.1:2380'], learner: false }, { id: 33, name: '', peerUrls: ['http://127.0.0.1:2390'], learner: false }],
  });
  try {
    const stranger = await raw(t.address);
    stranger.socket.write(encodeFrame({ t: 'join', v: PEER_PROTOCOL_VERSION, name: 'x', peer: '127.0.0.1:4444' }));
    await stranger.closed;
    assert.deepEqual(stranger.frames.map((f) => f.t), ['reject']);
    // The added member (33) is answered.
    const added = await raw(t.address);
    added.socket.write(encodeFrame({ t: 'join', v: PEER_PROTOCOL_VERSION, name: 'n33', peer: '127.0.0.1:2390' }));
    await added.closed;
    const m = added.frames[0];
    assert.equal(m?.t, 'members');
    assert.equal(m?.t === 'members' ? m.cluster : '', 'secret-cluster');
  } finally {
    await t.close();
  }
});

test('peer port: a join is answered only from the address its peer URL names, a host name resolved first (a name vouched for any address)', async () => {
  const t = await PeerTransport.listen({
    nodeId: 22, name: 'n22', clusterId: 'secret-cluster', listen: '127.0.0.1:0', peers: new Map([[11, '127.0.0.1:1']]), logger: silent, limits: FAST,
    members: () => [
      { id: 22, name: 'n22', peerUrls: ['http://127.0.0.1:2380'], learner: false },
      { id: 33, name: '', peerUrls: ['http://127.0.0.1:2390'], learner: false },
      { id: 44, name: '', peerUrls: ['http://localhost:2400'], learner: false },
    ],
  });
  // What a join from `from` for peer URL `peer` is answered with.
  const ask = async (peer: string, from: string): Promise<string[]> => {
    const c = await raw(t.address, from);
    c.socket.write(encodeFrame({ t: 'join', v: PEER_PROTOCOL_VERSION, name: 'x', peer }));
    await c.closed;
    return c.frames.map((f) => (f.t === 'reject' ? `reject:${f.reason}` : f.t));
  };
  try {
    // 127.0.0.2 is this machine too (the loopback net), but not the address the member was added with.
    assert.deepEqual(await ask('127.0.0.1:2390', '127.0.0.2'), ['reject:unknown-member']);
    assert.deepEqual(await ask('127.0.0.1:2390', '127.0.0.1'), ['members']);
    assert.deepEqual(await ask('localhost:2400', '127.0.0.2'), ['reject:unknown-member']);
    assert.deepEqual(await ask('localhost:2400', '127.0.0.1'), ['members']);
  } finally {
    await t.close();
  }
});

// ---- fuzz against a running cluster ------------------------------------------------------------

const TYPES: readonly MessageType[] = ['MsgProp', 'MsgApp', 'MsgAppResp', 'MsgVote', 'MsgVoteResp', 'MsgPreVote', 'MsgPreVoteResp', 'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex', 'MsgReadIndexResp'];

function put(key: string, value: string): TxnRequest {
  return { compare: [], success: [{ type: 'put', put: { key: enc.encode(key), value: enc.encode(value) } }], failure: [] };
}

/** A running 3-node cluster on memory engines; `fatal` collects what would have stopped a node. */
async function threeNodes(): Promise<{ nodes: NodeHandle[]; fatal: unknown[] }> {
  const ports = await freePorts(3);
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const initialCluster = [0, 1, 2].map((i) => `n${i + 1}=${peers[i]}`).join(',');
  const fatal: unknown[] = [];
  const nodes: NodeHandle[] = await Promise.all(
    [0, 1, 2].map((i) =>
      startNode({ name: `n${i + 1}`, engine: 'memory', initialCluster, listenPeer: peers[i] as string, clientServer: false, logger: silent, tickMs: 20, electionTicks: 10, heartbeatTicks: 1, onFatal: (e) => fatal.push(e) }),
    ),
  );
  after(() => Promise.all(nodes.map((n) => n.close())));
  await waitFor(() => nodes.find((n) => n.status().state === 'leader'), 'a leader');
  return { nodes, fatal };
}

test('peer port: one forged heartbeat with a huge commit index is refused and counted by the follower, which goes on serving (it stopped the node through an assertion)', async () => {
  const { nodes, fatal } = await threeNodes();
  const leader = await waitFor(() => nodes.find((n) => n.status().state === 'leader'), 'a leader');
  const follower = nodes.find((n) => n !== leader) as NodeHandle;
  await leader.kv.txn(put('before', 'v'));
  const raft = () => follower.store.replica(1)?.raw.raft;
  const refusedBefore = raft()?.refusedMessages ?? 0;
  const c = await raw(follower.transport.address);
  c.socket.write(hello(leader.nodeId, follower.nodeId, follower.status().clusterId));
  await waitFor(() => c.frames.find((f) => f.t === 'welcome'), 'the welcome');
  const term = raft()?.term ?? 0;
  const forged = message({ type: 'MsgHeartbeat', from: leader.nodeId, to: follower.nodeId, term, commit: 2 ** 40 });
  c.socket.write(encodeMessages([{ rangeId: 1, message: forged }]));
  await waitFor(() => (fatal.length > 0 || (raft()?.refusedMessages ?? 0) > refusedBefore ? true : undefined), 'the refusal');
  c.socket.destroy();
  assert.deepEqual(fatal.map(String), [], 'the node stopped');
  assert.ok((raft()?.raftLog.committed ?? 0) < 2 ** 40);
  await leader.kv.txn(put('after', 'v'));
  const read = await waitFor(() => follower.kv.range({ key: enc.encode('after') }, false).catch(() => undefined), 'a read through the follower');
  assert.equal(dec.decode(read.kvs[0]?.value), 'v');
});

test('peer port: forwarded proposals that are not commands are applied as refusals on every replica, which go on serving (one stopped the whole cluster)', async () => {
  const { nodes, fatal } = await threeNodes();
  const leader = await waitFor(() => nodes.find((n) => n.status().state === 'leader'), 'a leader');
  const follower = nodes.find((n) => n !== leader) as NodeHandle;
  const key = enc.encode('k');
  const commands = [
    new Uint8Array([0xc1]), // not msgpack
    packer.pack({ kind: 'txn', requestId: 'forged-1', txn: { compare: [], success: [{ type: 'put', put: { key: 'k', value: 1 } }], failure: [] } }), // wrong types
    packer.pack({ kind: 'txn', requestId: 'forged-2', txn: { compare: [], success: [{ type: 'put', put: { key, value: key } }, { type: 'put', put: { key, value: key } }], failure: [] } }), // one key put twice
  ];
  const c = await raw(leader.transport.address);
  c.socket.write(hello(follower.nodeId, leader.nodeId, leader.status().clusterId));
  await waitFor(() => c.frames.find((f) => f.t === 'welcome'), 'the welcome');
  const prop = message({ type: 'MsgProp', from: follower.nodeId, to: leader.nodeId, entries: commands.map((data) => ({ term: 0, index: 0, type: 'normal' as const, data })) });
  const lastIndex = () => leader.store.replica(1)?.raw.raft.raftLog.lastIndex() ?? 0;
  const before = lastIndex();
  c.socket.write(encodeMessages([{ rangeId: 1, message: prop }]));
  await waitFor(() => (lastIndex() >= before + commands.length ? true : undefined), 'the forged proposals in the leader log');
  // Once a later write is read back through every node, every node has applied the forged ones.
  await leader.kv.txn(put('after-forged', 'ok'));
  for (const n of nodes) {
    const read = await waitFor(() => n.kv.range({ key: enc.encode('after-forged') }, false).catch(() => undefined), `a read from node ${n.nodeId}`);
    assert.equal(dec.decode(read.kvs[0]?.value), 'ok');
  }
  c.socket.destroy();
  assert.deepEqual(fatal.map(String), [], 'a node stopped');
  assert.equal((await leader.kv.range({ key }, false)).kvs.length, 0, 'no forged write was applied');
});

test('peer port: a forwarded membership change without a well-formed member context is refused before the log (it stopped every node)', async () => {
  const { nodes, fatal } = await threeNodes();
  const leader = await waitFor(() => nodes.find((n) => n.status().state === 'leader'), 'a leader');
  const follower = nodes.find((n) => n !== leader) as NodeHandle;
  const c = await raw(leader.transport.address);
  c.socket.write(hello(follower.nodeId, leader.nodeId, leader.status().clusterId));
  await waitFor(() => c.frames.find((f) => f.t === 'welcome'), 'the welcome');
  const contexts = ['{not json', JSON.stringify({ requestId: 'x', member: { id: 'nine' } }), ''];
  const lastIndex = () => leader.store.replica(1)?.raw.raft.raftLog.lastIndex() ?? 0;
  const before = lastIndex();
  const received = leader.transport.stats.messagesReceived;
  for (const context of contexts) {
    const confChange = { transition: 'implicit' as const, changes: [{ type: 'add-learner' as const, nodeId: 999 }], context };
    const prop = message({ type: 'MsgProp', from: follower.nodeId, to: leader.nodeId, entries: [{ term: 0, index: 0, type: 'conf-change', data: new Uint8Array(0), confChange }] });
    c.socket.write(encodeMessages([{ rangeId: 1, message: prop }]));
  }
  // The forged changes arrived (and, on the old code, stopped the nodes once applied).
  await waitFor(() => (leader.transport.stats.messagesReceived >= received + contexts.length ? true : undefined), 'the forged proposals');
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(fatal.map(String), [], 'a node stopped');
  await leader.kv.txn(put('after-conf', 'ok'));
  for (const n of nodes) {
    const read = await waitFor(() => n.kv.range({ key: enc.encode('after-conf') }, false).catch(() => undefined), `a read from node ${n.nodeId}`);
    assert.equal(dec.decode(read.kvs[0]?.value), 'ok');
  }
  c.socket.destroy();
  assert.deepEqual(fatal.map(String), [], 'a node stopped');
  assert.equal(lastIndex(), before + 1, 'only the write entered the log');
  assert.deepEqual(leader.store.replica(1)?.currentConfState().learners, []);
});

test('peer port: random and mutated frames from a fast-check property never crash or stop a node, which keeps serving', async () => {
  const { nodes, fatal } = await threeNodes();
  // Each node in turn is attacked (leaders and followers alike), over connections that claim the next node's id.
  for (const [at, target] of nodes.entries()) {
    const forger = nodes[(at + 1) % nodes.length] as NodeHandle;
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(hostileFrame(nodes, target, forger), { minLength: 1, maxLength: 5 }), async (greet, frames) => {
        const c = await raw(target.transport.address);
        if (greet) c.socket.write(hello(forger.nodeId, target.nodeId, target.status().clusterId));
        for (const f of frames) c.socket.write(f);
        await new Promise((r) => setTimeout(r, 2));
        c.socket.destroy();
        assert.deepEqual(fatal.map(String), [], 'a node stopped');
      }),
      // A stopped node stays stopped: shrinking against it would only find refused connections.
      { numRuns: FUZZ_RUNS_PER_NODE, seed: Number(process.env['PEER_FUZZ_SEED'] ?? 42) + at, endOnFailure: true },
    );
    assert.ok(target.transport.stats.rejectedInbound > 0, `node ${target.nodeId} refused frames`);
  }
  assert.deepEqual(fatal, [], 'a node stopped');
  // The cluster still serves a write (forged votes may have caused an election meanwhile)…
  const res = await waitFor(async () => {
    const leader = nodes.find((n) => n.status().state === 'leader');
    return leader === undefined ? undefined : await leader.kv.txn(put('after-fuzz', 'ok')).catch(() => undefined);
  }, 'a write after the fuzz', 15_000);
  assert.equal(res.succeeded, true);
  // …and every attacked node itself serves a linearizable read that sees it.
  for (const n of nodes) {
    const read = await waitFor(() => n.kv.range({ key: enc.encode('after-fuzz') }, false).catch(() => undefined), `a read from node ${n.nodeId}`, 15_000);
    assert.equal(dec.decode(read.kvs[0]?.value), 'ok');
  }
});

/** Runs of the fuzz per attacked node (3 nodes; about 1 s in all on a quiet machine). */
const FUZZ_RUNS_PER_NODE = 400;

/** One hostile frame (or a few, run together) for `target`, as a connection claiming to be `forger` might send. */
function hostileFrame(nodes: readonly NodeHandle[], target: NodeHandle, forger: NodeHandle): fc.Arbitrary<Buffer> {
  const term = () => target.store.replica(1)?.raw.raft.term ?? 1;
  const last = () => target.store.replica(1)?.raw.raft.raftLog.lastIndex() ?? 1;
  const anInt = (near: () => number) => fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(null).map(() => near()), fc.integer({ min: 0, max: 2 ** 40 }));
  const forged: fc.Arbitrary<Message> = fc
    .record({ type: fc.constantFrom(...TYPES), t: anInt(term), lt: anInt(term), i: anInt(last), c: anInt(last), reject: fc.boolean(), n: fc.integer({ min: 0, max: 3 }) })
    .map((f) => message({ type: f.type, from: forger.nodeId, to: target.nodeId, term: f.t, logTerm: f.lt, index: f.i, commit: f.c, reject: f.reject, entries: Array.from({ length: f.n }, (_, k) => ({ term: f.t, index: f.i + 1 + k, type: 'normal' as const, data: new Uint8Array([k]) })) }));
  const mutate = (bytes: Buffer, flips: readonly [number, number][]): Buffer => {
    const out = Buffer.from(bytes);
    for (const [at, v] of flips) if (out.length > 4) out[4 + (at % (out.length - 4))] = v;
    return out;
  };
  // A snapshot whose head Raft would take (a higher or current term, an index past the log), with data
  // that is random bytes, a list that is not key/value pairs, or pairs whose keys fall anywhere. Data of
  // the right shape is left out: a well-formed snapshot from a connection that claims a member's id is a
  // forgery only authentication can refuse (the security issue); taken, it replaces the node's state.
  const snapData = fc
    .oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.array(fc.oneof(fc.integer(), fc.string(), fc.uint8Array({ maxLength: 8 })), { maxLength: 6 }).map((xs) => packer.pack(xs) as Uint8Array),
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 12 }), { maxLength: 8 }).map((xs) => packer.pack(xs.length % 2 === 0 ? xs : xs.slice(1)) as Uint8Array),
    )
    .filter((data) => snapshotDataProblem(1, data) !== undefined);
  const snapshotStream = fc
    .record({ dt: fc.integer({ min: 0, max: 3 }), di: fc.integer({ min: 1, max: 1_000 }), data: snapData, split: fc.boolean(), rangeId: fc.constantFrom(1, 1, 2) })
    .map(({ dt, di, data, split, rangeId }) => {
      const t = term() + dt;
      const voters = nodes.map((n) => n.nodeId);
      const head = {
        type: 'MsgSnap', to: target.nodeId, from: forger.nodeId, term: t, logTerm: 0, index: 0, commit: 0, reject: false, rejectHint: 0, entries: [],
        snapshot: { metadata: { index: last() + di, term: t, confState: { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } } },
      };
      const cut = split ? data.byteLength >> 1 : data.byteLength;
      const chunks = [{ seq: 0, data: data.subarray(0, cut), last: !split }, ...(split ? [{ seq: 1, data: data.subarray(cut), last: true }] : [])];
      const id = ++snapIds;
      return Buffer.concat(chunks.map((c) => encodeFrame({ t: 'snap', id, rangeId, seq: c.seq, last: c.last, data: c.data, ...(c.seq === 0 ? { total: data.byteLength, head } : {}) } as unknown as MapFrame)));
    });
  const batch = fc.tuple(fc.array(forged, { minLength: 1, maxLength: 3 }), fc.constantFrom(1, 1, 1, 2, 2 ** 40), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 3 }));
  // A join for a member's own URL (answered: it is asked from that member's address) or for any address.
  const join = fc.oneof(fc.constantFrom(...nodes.map((n) => n.transport.address)), fc.string()).map((peer) => encodeFrame({ t: 'join', v: PEER_PROTOCOL_VERSION, name: 'j', peer }));
  return fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.from(b)), // bytes, often a bad length
    batch.map(([ms, rangeId, flips]) => mutate(encodeMessages(ms.map((message) => ({ rangeId, message }))), flips)),
    fc.record({ seq: fc.nat({ max: 2 }), total: fc.nat({ max: 64 }), head: fc.oneof(fc.constant(null), fc.constant([]), fc.constant({}), fc.constant({ type: 'MsgSnap', snapshot: null })) }).map(({ seq, total, head }) => encodeFrame({ t: 'snap', id: 1, rangeId: 1, seq, last: true, data: new Uint8Array(total), total, head } as unknown as MapFrame)),
    fc.record({ t: fc.constantFrom('hello', 'welcome', 'join', 'members', 'snapack', 'reject', 'nope'), x: fc.anything() }).map((f) => encodeFrame(f as unknown as MapFrame)),
    join,
    snapshotStream, // a well-formed head whose data is not a snapshot of this state machine
  );
}
