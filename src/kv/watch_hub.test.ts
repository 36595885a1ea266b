import { test } from 'node:test';
import assert from 'node:assert/strict';
import { INITIAL_REVISION, MvccStore, WHOLE_KEY_SPAN, type MvccEvent } from '../mvcc/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { type WatchOutput, type WatchRequest, type WatchSource, WatchHub, singleStoreRanges } from './watch_hub.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
/** The revision of the n-th write on a fresh store (revisions start at 1, as in etcd). */
const rev = (n: number): number => INITIAL_REVISION + n;

function setup(): { store: MvccStore; engine: MemoryEngine; hub: WatchHub; put: (k: string, v: string) => void; del: (k: string) => void; compact: (rev: number) => void } {
  const engine = new MemoryEngine({ scheduleSync: (f) => queueMicrotask(f) });
  // Wired as the node wires it: previous values are loaded only while a prev_kv watcher exists.
  const store = MvccStore.open(engine, { metaPrefix: enc.encode('m'), span: WHOLE_KEY_SPAN }, { eventsWantPrevKv: () => hub.wantsPrevKv });
  const hub = new WatchHub(singleStoreRanges(() => store));
  const write = (fn: (t: ReturnType<MvccStore['beginWrite']>) => void): void => {
    const batch = engine.newBatch();
    const txn = store.beginWrite(batch);
    fn(txn);
    const result = txn.end();
    engine.commit(batch, () => {});
    hub.onApplied(result.revision, result.events);
    hub.flush();
  };
  return {
    store,
    engine,
    hub,
    put: (k, v) => write((t) => t.put(enc.encode(k), enc.encode(v))),
    del: (k) => write((t) => t.deleteRange(enc.encode(k))),
    compact: (rev) => {
      const batch = engine.newBatch();
      store.compact(rev, batch, 1_000_000);
      engine.commit(batch, () => {});
    },
  };
}

function request(over: Partial<WatchRequest>): WatchRequest {
  return { key: enc.encode('a'), startRevision: 0, prevKv: false, noPut: false, noDelete: false, progressNotify: false, ...over };
}

function collect(limit = Infinity): { out: WatchOutput[]; sink: { deliver: (o: WatchOutput) => boolean } } {
  const out: WatchOutput[] = [];
  return { out, sink: { deliver: (o) => (out.push(o), out.length < limit) } };
}

const summary = (out: WatchOutput[]): string[] =>
  out.flatMap((o) => (o.kind === 'events' ? o.events.map((e: MvccEvent) => `${e.type} ${dec.decode(e.kv.key)}@${e.kv.modRevision}`) : [`${o.kind}@${o.revision}`]));

test('WatchHub: a live watch sees puts and deletes of its key once, in order', () => {
  const s = setup();
  const c = collect();
  s.hub.create(request({}), c.sink);
  s.put('a', '1');
  s.put('b', '1');
  s.del('a');
  assert.deepEqual(summary(c.out), [`PUT a@${rev(1)}`, `DELETE a@${rev(3)}`]);
});

test('WatchHub: a watch from a past revision replays history, then continues live without gaps or repeats', () => {
  const s = setup();
  s.put('a', '1');
  s.put('a', '2');
  const c = collect();
  s.hub.create(request({ startRevision: rev(1), rangeEnd: enc.encode('b') }), c.sink);
  s.put('a', '3'); // arrives before catch-up: must not be delivered twice or early
  while (s.hub.pump()) {
    /* catch up */
  }
  s.put('a', '4');
  assert.deepEqual(summary(c.out), [`PUT a@${rev(1)}`, `PUT a@${rev(2)}`, `PUT a@${rev(3)}`, `PUT a@${rev(4)}`]);
});

test('WatchHub: filters and prev_kv', () => {
  const s = setup();
  const noPut = collect();
  const withPrev = collect();
  s.hub.create(request({ noPut: true }), noPut.sink);
  s.hub.create(request({ prevKv: true }), withPrev.sink);
  s.put('a', 'x');
  s.put('a', 'y');
  s.del('a');
  assert.deepEqual(summary(noPut.out), [`DELETE a@${rev(3)}`]);
  const last = withPrev.out[2];
  assert.ok(last !== undefined && last.kind === 'events');
  assert.equal(dec.decode(last.events[0]?.prevKv?.value ?? new Uint8Array()), 'y');
});

test('WatchHub: live events carry previous values exactly while some watcher asked for prev_kv', () => {
  const s = setup();
  const plain = collect();
  s.hub.create(request({}), plain.sink);
  s.put('a', 'x');
  s.put('a', 'y');
  const prevs = (out: WatchOutput[]): (string | undefined)[] =>
    out.flatMap((o) => (o.kind === 'events' ? o.events.map((e) => (e.prevKv === undefined ? undefined : dec.decode(e.prevKv.value))) : []));
  assert.deepEqual(prevs(plain.out), [undefined, undefined]);
  assert.equal(s.hub.wantsPrevKv, false);
  const withPrev = collect();
  const id = s.hub.create(request({ prevKv: true }), withPrev.sink);
  assert.equal(s.hub.wantsPrevKv, true);
  s.put('a', 'z');
  s.del('a');
  assert.deepEqual(prevs(withPrev.out), ['y', 'z']);
  assert.deepEqual(prevs(plain.out), [undefined, undefined, undefined, undefined], 'a watcher without prev_kv never sees one');
  assert.equal(s.hub.cancel(id), true);
  assert.equal(s.hub.cancel(id), false, 'a second cancel finds nothing and leaves the count alone');
  assert.equal(s.hub.wantsPrevKv, false);
  s.put('a', 'w');
  assert.deepEqual(prevs(plain.out).slice(-1), [undefined]);
  // A prev_kv watcher canceled because its start was compacted leaves the count, too.
  s.compact(s.store.currentRevision);
  s.hub.create(request({ prevKv: true, startRevision: rev(1) }), collect().sink);
  assert.equal(s.hub.wantsPrevKv, true);
  s.hub.pump();
  assert.equal(s.hub.wantsPrevKv, false);
});

test('WatchHub: a start below the compacted revision is canceled with the compacted revision', () => {
  const s = setup();
  for (let i = 0; i < 5; i++) s.put('a', String(i));
  s.compact(rev(4));
  const c = collect();
  s.hub.create(request({ startRevision: rev(2) }), c.sink);
  s.hub.pump();
  assert.equal(c.out.length, 1);
  const o = c.out[0];
  assert.ok(o !== undefined && o.kind === 'canceled');
  assert.equal(o.compactRevision, rev(4));
  assert.equal(s.hub.size, 0);
});

test('WatchHub: a sink that stops reading is left behind, then caught up from history after resume', () => {
  const s = setup();
  const out: WatchOutput[] = [];
  let capacity = 2;
  const id = s.hub.create(request({}), { deliver: (o) => (out.push(o), out.length < capacity) });
  for (let i = 0; i < 10; i++) s.put('a', String(i));
  assert.equal(out.length, 2, 'live delivery stopped at the sink limit');
  capacity = Infinity;
  s.hub.resume(id);
  while (s.hub.pump()) {
    /* catch up */
  }
  s.put('a', 'live');
  const revs = out.flatMap((o) => (o.kind === 'events' ? o.events.map((e) => e.kv.modRevision) : []));
  assert.deepEqual(revs, Array.from({ length: 11 }, (_, i) => rev(i + 1)));
});

test('WatchHub: progress notifications go to idle progress_notify watchers', () => {
  const s = setup();
  const c = collect();
  s.hub.create(request({ progressNotify: true }), c.sink);
  s.put('z', '1');
  s.hub.progressTick();
  assert.deepEqual(summary(c.out), [`progress@${rev(1)}`]);
});

/** A hub over two ranges: range 1 held here (`local`), range 2 only elsewhere (`remote`, a feed). */
function localAndRemoteHub(local: MvccStore, remote: WatchSource, requestClose: (id: number, revision: number) => void): WatchHub {
  return new WatchHub({
    cover: () => [1, 2],
    store: (id) => (id === 1 ? local : remote),
    isRemote: (id) => id === 2,
    generation: () => 0,
    newestRevision: () => local.currentRevision,
    requestClose,
  });
}

test('WatchHub: a watch over a local range and a remote one (a feed) gets both ranges\' changes merged in revision order, up to the lower current revision, never skipping the remote ones (seed 7145)', () => {
  const engine = new MemoryEngine({ scheduleSync: (f) => queueMicrotask(f) });
  const local = MvccStore.open(engine, { metaPrefix: enc.encode('m'), span: WHOLE_KEY_SPAN });
  const remoteEvents: MvccEvent[] = [];
  const wanted: number[] = [];
  const closes: number[] = [];
  const remote = {
    currentRevision: 0,
    compactedRevision: 0,
    events: (o: { fromRevision: number; toRevision?: number | undefined }) => {
      const to = Math.min(o.toRevision ?? remote.currentRevision, remote.currentRevision);
      return { events: remoteEvents.filter((e) => e.kv.modRevision >= o.fromRevision && e.kv.modRevision <= to), nextRevision: Math.max(o.fromRevision, to + 1) };
    },
    want: (from: number) => void wanted.push(from),
  };
  const hub = localAndRemoteHub(local, remote, (id, revision) => void (id === 2 && closes.push(revision)));
  hub.flush();
  const write = (k: string): void => {
    const batch = engine.newBatch();
    const txn = local.beginWrite(batch);
    txn.put(enc.encode(k), enc.encode('v'));
    const result = txn.end();
    engine.commit(batch, () => {});
    hub.onApplied(result.revision, result.events);
    hub.flush();
  };
  // The remote range's change takes rev(1); the local range passes it without a change.
  const batch = engine.newBatch();
  local.advanceTo(batch, rev(1));
  engine.commit(batch, () => {});
  remoteEvents.push({ type: 'PUT', kv: { key: enc.encode('x'), value: enc.encode('r'), createRevision: rev(1), modRevision: rev(1), version: 1, lease: 0 } });
  const { out, sink } = collect();
  hub.create(request({ key: enc.encode('a'), rangeEnd: new Uint8Array([0]), startRevision: rev(1), progressNotify: true }), sink);
  // The feed is current through rev(2) when the local change at rev(2) applies: it reaches the hub's buffer,
  // which holds no remote change, so the watcher must read history, not the buffer.
  remote.currentRevision = rev(2);
  write('b');
  hub.pump();
  assert.ok(wanted.includes(rev(1)), 'the feed is asked for the history from the start');
  assert.deepEqual(summary(out), [`PUT x@${rev(1)}`, `PUT b@${rev(2)}`]);
  // Caught up with its ranges: a progress notification at rev(2).
  hub.progressTick();
  hub.progressTick();
  assert.deepEqual(summary(out).slice(2), [`progress@${rev(2)}`]);
  // A local change above the feed's revision waits for it, and the quiet remote range is asked to close past it.
  write('c');
  hub.pump();
  assert.deepEqual(summary(out).slice(3), []);
  assert.ok(closes.includes(rev(3)));
  remote.currentRevision = rev(3);
  hub.pump();
  assert.deepEqual(summary(out).slice(3), [`PUT c@${rev(3)}`]);
});

test('WatchHub: a watch over a local and a remote range asks a range to close only past changes, not past the other\'s closes (seed 86 under --replicas 3)', () => {
  const engine = new MemoryEngine({ scheduleSync: (f) => queueMicrotask(f) });
  const local = MvccStore.open(engine, { metaPrefix: enc.encode('m'), span: WHOLE_KEY_SPAN });
  const closes: { id: number; revision: number }[] = [];
  const remote = {
    currentRevision: 0,
    compactedRevision: 0,
    latestChangeRevision: 0,
    events: (o: { fromRevision: number; toRevision?: number | undefined }) => ({ events: [], nextRevision: Math.max(o.fromRevision, Math.min(o.toRevision ?? remote.currentRevision, remote.currentRevision) + 1) }),
    want: () => {},
  };
  const hub = localAndRemoteHub(local, remote, (id, revision) => void closes.push({ id, revision }));
  hub.flush();
  const { out, sink } = collect();
  hub.create(request({ key: enc.encode('a'), rangeEnd: new Uint8Array([0]), startRevision: rev(1), progressNotify: true }), sink);
  const batch = engine.newBatch();
  const txn = local.beginWrite(batch);
  txn.put(enc.encode('b'), enc.encode('v'));
  const result = txn.end();
  engine.commit(batch, () => {});
  hub.onApplied(result.revision, result.events);
  hub.flush();
  hub.pump();
  // The quiet remote range is asked to pass the local change.
  assert.deepEqual(closes, [{ id: 2, revision: result.revision }]);
  // Its close stamps a fresh revision, above the local range's: that is no change to wait for.
  remote.currentRevision = result.revision + 5;
  for (let i = 0; i < 5; i++) {
    hub.pump();
    hub.progressTick();
  }
  assert.deepEqual(summary(out).slice(0, 1), [`PUT b@${result.revision}`]);
  assert.deepEqual(closes.filter((c) => c.id === 1), [], 'the local range is not asked to close up to the remote range\'s close');
});
