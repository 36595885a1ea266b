#!/usr/bin/env node
// How long a leader's snapshot for a new member holds the leader's event loop,
// on LMDB. A one-node cluster is loaded with --keys keys (100 per txn), then
// node 2 is added and must be sent a snapshot; meanwhile a write is proposed
// every millisecond. Prints the longest synchronous call into the leader's
// Store (its loop turns, the callbacks after a sync, receive, ticks and
// proposals), the longest snapshot step outside it (sizing slice or chunk), the
// longest event-loop stall measured by a 1 ms timer, and how many writes
// committed while the snapshot was in flight.
//
//   node scripts/bench-snapshot-loop.mjs [--keys 100000] [--dist dist]
//
// --dist may name another build (e.g. one of an older commit) to compare.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const KEYS = Number(opt('keys', '100000'));
const dist = resolve(opt('dist', 'dist'));
const load = (p) => import(pathToFileURL(join(dist, p)).href);

const { SeededRng } = await load('base/index.js');
const { LmdbEngine } = await load('storage/lmdb/engine.js');
const { Store } = await load('kv/store.js');
const { MvccStateMachine } = await load('kv/mvcc_state_machine.js');
const { encodeCommand } = await load('kv/commands.js');
let stream;
try {
  stream = await load('kv/snapshot_stream.js');
} catch {
  stream = undefined; // a build from before snapshots were streamed: MsgSnap carries its data
}

const RANGE = 1;
const CHUNK_BYTES = 1024 * 1024;
const enc = new TextEncoder();
const dirs = [];
const stores = new Map();
const sms = new Map();
const stats = { maxLeaderCallMs: 0, maxStepMs: 0, steps: 0, snapshotBytes: 0, snapshotSent: 0, snapshotDelivered: 0 };
let measuring = false;

function timed(store, names, stat) {
  for (const name of names) {
    const original = store[name].bind(store);
    store[name] = (...a) => {
      const t0 = performance.now();
      try {
        return original(...a);
      } finally {
        if (measuring) stats[stat] = Math.max(stats[stat] ?? 0, performance.now() - t0);
      }
    };
  }
}

function deliver(to, msgs) {
  setImmediate(() => stores.get(to)?.receive(msgs));
}

/** Streams a snapshot's data as the server's PeerLink does: a sizing slice per event-loop turn, then a chunk per turn. */
function carry(from, to, rm) {
  const snap = rm.message.snapshot;
  const reader = stream?.snapshotReaderOf(snap);
  stats.snapshotSent = performance.now();
  if (reader === undefined) {
    stats.snapshotBytes = snap.data.byteLength;
    stats.snapshotDelivered = performance.now();
    deliver(to, [rm]);
    return;
  }
  const chunks = [];
  const step = () => {
    const t0 = performance.now();
    const measured = reader.measure(stream.SNAPSHOT_MEASURE_SLICE_PAIRS);
    const chunk = measured ? reader.nextChunk(CHUNK_BYTES) : undefined;
    stats.maxStepMs = Math.max(stats.maxStepMs, performance.now() - t0);
    stats.steps++;
    if (!measured) return void setImmediate(step);
    if (chunk !== undefined) {
      chunks.push(chunk);
      return void setImmediate(step);
    }
    const data = Buffer.concat(chunks);
    stats.snapshotBytes = data.byteLength;
    stats.snapshotDelivered = performance.now();
    deliver(to, [{ rangeId: rm.rangeId, message: { ...rm.message, snapshot: { metadata: snap.metadata, data } } }]);
  };
  setImmediate(step);
}

async function open(id, bootstrap) {
  const dir = mkdtempSync(join(tmpdir(), `snapbench-${id}-`));
  dirs.push(dir);
  const engine = await LmdbEngine.open({ path: dir });
  const sm = new MvccStateMachine(engine, RANGE);
  const store = new Store({
    nodeId: id,
    engine,
    transport: {
      send: (to, msgs) => {
        const plain = msgs.filter((m) => m.message.type !== 'MsgSnap');
        if (plain.length > 0) deliver(to, plain);
        for (const m of msgs) if (m.message.type === 'MsgSnap') carry(id, to, m);
      },
    },
    rng: new SeededRng(id),
    raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 },
    stateMachines: () => sm,
    scheduleLoop: (loop) => setImmediate(loop),
    logRetainEntries: 1000,
  });
  const cs = { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  store.openRange(RANGE, bootstrap ? { confState: cs } : undefined);
  stores.set(id, store);
  sms.set(id, sm);
  return { store, engine };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const leader = await open(1, true);
timed(leader.store, ['loop', 'receive', 'catchUpTicks', 'propose', 'afterDurable', 'reportSnapshot'], 'maxLeaderCallMs');
const ticker = setInterval(() => {
  for (const s of stores.values()) s.tick();
}, 10);
while (leader.store.replica(RANGE).raw.raft.state !== 'leader') await sleep(10);

function propose(requestId, txn) {
  return new Promise((res) => leader.store.propose(RANGE, requestId, encodeCommand({ kind: 'txn', requestId, txn }), res));
}
const tLoad = performance.now();
for (let t = 0; t < KEYS / 100; t += 50) {
  const batch = [];
  for (let j = t; j < Math.min(t + 50, KEYS / 100); j++) {
    const success = Array.from({ length: 100 }, (_, i) => ({ type: 'put', put: { key: enc.encode(`key${String(j * 100 + i).padStart(7, '0')}`), value: enc.encode('v'.repeat(100)) } }));
    batch.push(propose(`load${j}`, { compare: [], success, failure: [] }));
  }
  await Promise.all(batch);
}
console.log(`loaded ${KEYS} keys in ${((performance.now() - tLoad) / 1000).toFixed(1)} s (${dist})`);

// A 1 ms timer: how late it fires is how long the event loop was held.
let maxLagMs = 0;
let last = performance.now();
const lagTimer = setInterval(() => {
  const now = performance.now();
  if (measuring) maxLagMs = Math.max(maxLagMs, now - last - 1);
  last = now;
}, 1);

const follower = await open(2, false);
timed(follower.store, ['loop', 'receive', 'catchUpTicks', 'afterDurable'], 'maxFollowerCallMs');
let writes = 0;
let writesInFlight = 0;
const writer = setInterval(() => {
  const id = `w${writes + writesInFlight}`;
  writesInFlight++;
  void propose(id, { compare: [], success: [{ type: 'put', put: { key: enc.encode('live'), value: enc.encode(id) } }], failure: [] }).then(() => {
    writesInFlight--;
    if (stats.snapshotSent > 0 && stats.snapshotDelivered === 0) writes++;
  });
}, 1);
measuring = true;
leader.store.proposeConfChange(RANGE, { transition: 'auto', changes: [{ type: 'add-learner', nodeId: 2 }] });
const t0 = performance.now();
// Wait for the new member to install the snapshot (its applied index passes the snapshot's), then check it converged.
const applied = () => stores.get(2).replica(RANGE)?.appliedIndex() ?? 0;
while (stats.snapshotDelivered === 0 || applied() <= 1) {
  if (performance.now() - t0 > 120_000) throw new Error('the new member did not install a snapshot in 120 s');
  await sleep(20);
}
// And until it applied entries after it (the first apply reopens its MVCC store from the engine).
const target = applied() + 20;
while (applied() < target) {
  if (performance.now() - t0 > 120_000) throw new Error('the new member did not apply entries after the snapshot in 120 s');
  await sleep(20);
}
measuring = false;
clearInterval(writer);
await sleep(200);
if (sms.get(2).digest() !== sms.get(1).digest()) throw new Error('the new member did not converge');
clearInterval(writer);
clearInterval(lagTimer);
clearInterval(ticker);
console.log(
  `snapshot ${(stats.snapshotBytes / 1048576).toFixed(1)} MiB, streamed ${stream !== undefined}: ` +
    `longest leader store call ${stats.maxLeaderCallMs.toFixed(1)} ms; longest snapshot step outside it ${stats.maxStepMs.toFixed(1)} ms (${stats.steps} steps); ` +
    `longest new-member store call ${(stats.maxFollowerCallMs ?? 0).toFixed(1)} ms (installing it); longest event-loop stall ${maxLagMs.toFixed(1)} ms (both nodes share this process); ` +
    `writes committed while the snapshot was in flight: ${writes} in ${(stats.snapshotDelivered - stats.snapshotSent).toFixed(0)} ms`,
);
for (const s of stores.values()) s.close();
await sleep(50);
for (const d of dirs) rmSync(d, { recursive: true, force: true });
process.exit(0);
