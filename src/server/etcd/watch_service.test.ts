/**
 * The Watch service over the wire, with a raw grpc-js client: etcd 3.4's
 * answers (checked against a real etcd with TESSERA_ETCD_REFERENCE), then
 * tessera's limits: 10k watches on one stream, a client that never reads,
 * progress notifications on a short interval.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Client, type ClientDuplexStream, type ServiceError, status } from '@grpc/grpc-js';
import { type TestEtcd, type TestNode, REFERENCE_ETCD, call, rawClient, startTestEtcd } from './testing.testlib.js';
import { type WatchResponse, WatchStreamClient, brief } from './watch.testlib.js';
import { MAX_WATCHES_PER_STREAM } from './watch_service.js';

const b = (s: string): Buffer => Buffer.from(s);
const STEP_TIMEOUT_MS = 5_000;

describe('etcd Watch service', () => {
  let etcd: TestEtcd;
  let kv: Client;
  let watch: Client;
  before(async () => {
    etcd = await startTestEtcd({ watch: { progressIntervalMs: 300 } });
    kv = rawClient(etcd.address, 'KV');
    watch = rawClient(etcd.address, 'Watch');
  });
  after(async () => {
    kv?.close();
    watch?.close();
    await etcd?.close();
  });

  const put = async (key: string, value: string | Buffer, extra: object = {}): Promise<number> =>
    Number((await call<{ header: { revision: string } }>(kv, 'Put', { key: b(key), value: typeof value === 'string' ? b(value) : value, ...extra })).header.revision);
  const del = async (key: string, rangeEnd?: string): Promise<number> =>
    Number((await call<{ header: { revision: string } }>(kv, 'DeleteRange', { key: b(key), ...(rangeEnd === undefined ? {} : { range_end: b(rangeEnd) }) })).header.revision);

  test('created first (ids from 0), then puts and deletes as mvccpb events with the current revision in the header', async () => {
    const s = new WatchStreamClient(watch);
    try {
      s.send({ create_request: { key: b('w1/k') } });
      const created = await s.next();
      assert.equal(created.created, true);
      assert.equal(created.watch_id ?? '0', '0', 'the first watch of a stream is 0');
      assert.equal(await s.create({ key: b('w1/'), range_end: b('w10') }), '1');
      const r1 = await put('w1/k', 'v1');
      const r2 = await put('w1/other', 'x');
      const r3 = await del('w1/k');
      const byWatch = new Map<string, WatchResponse[]>();
      for (let i = 0; i < 5; i++) {
        const r = await s.next();
        byWatch.set(r.watch_id ?? '0', [...(byWatch.get(r.watch_id ?? '0') ?? []), r]);
      }
      const single = byWatch.get('0') ?? [];
      assert.deepEqual(single.map((r) => brief(r.events ?? [])), [[`PUT w1/k=v1@${r1}`], [`DELETE w1/k@${r3}`]]);
      assert.deepEqual(single.map((r) => r.header.revision), [String(r1), String(r3)]);
      const created1 = single[0]?.events?.[0]?.kv;
      assert.deepEqual([created1?.create_revision, created1?.version], [String(r1), '1']);
      const prefix = (byWatch.get('1') ?? []).flatMap((r) => r.events ?? []);
      assert.deepEqual(brief(prefix), [`PUT w1/k=v1@${r1}`, `PUT w1/other=x@${r2}`, `DELETE w1/k@${r3}`]);
    } finally {
      s.close();
    }
  });

  test('start_revision replays history; prev_kv and the NOPUT/NODELETE filters', async () => {
    const first = await put('w2/k', 'a');
    await put('w2/k', 'b');
    const last = await del('w2/k');
    const s = new WatchStreamClient(watch);
    try {
      const all = await s.create({ key: b('w2/k'), start_revision: first, prev_kv: true });
      assert.deepEqual(brief(await s.events(all, 3)), [`PUT w2/k=a@${first}`, `PUT w2/k=b@${first + 1} prev=a`, `DELETE w2/k@${last} prev=b`]);
      const noPut = await s.create({ key: b('w2/k'), start_revision: first, filters: [0] });
      assert.deepEqual(brief(await s.events(noPut, 1)), [`DELETE w2/k@${last}`]);
      const noDelete = await s.create({ key: b('w2/k'), start_revision: first, filters: [1] });
      assert.deepEqual(brief(await s.events(noDelete, 2)), [`PUT w2/k=a@${first}`, `PUT w2/k=b@${first + 1}`]);
    } finally {
      s.close();
    }
  });

  test('a watch from the empty key with range_end "\\0" sees every key', async () => {
    const s = new WatchStreamClient(watch);
    try {
      const id = await s.create({ key: b(''), range_end: Buffer.from([0]) });
      const rev = await put('w3/anything', 'v');
      assert.deepEqual(brief(await s.events(id, 1)), [`PUT w3/anything=v@${rev}`]);
    } finally {
      s.close();
    }
  });

  test("the client's own watch ids; a duplicate or an empty range is refused with etcd's reasons", async () => {
    const s = new WatchStreamClient(watch);
    try {
      assert.equal(await s.create({ key: b('w4/k'), watch_id: 7 }), '7');
      s.send({ create_request: { key: b('w4/k'), watch_id: 7 } });
      const dup = await s.next();
      assert.deepEqual([dup.watch_id, dup.created, dup.canceled, dup.cancel_reason], ['-1', true, true, 'mvcc: duplicate watch ID provided on the WatchStream']);
      s.send({ create_request: { key: b('w4/z'), range_end: b('w4/a') } });
      const empty = await s.next();
      assert.deepEqual([empty.watch_id, empty.created, empty.canceled, empty.cancel_reason], ['-1', true, true, 'mvcc: watcher range is empty']);
      // Automatic ids skip the ones in use.
      assert.equal(await s.create({ key: b('w4/k') }), '0');
      const rev = await put('w4/k', 'v');
      const got = [await s.next(), await s.next()].map((r) => `${r.watch_id ?? '0'}:${brief(r.events ?? []).join()}`).sort();
      assert.deepEqual(got, [`0:PUT w4/k=v@${rev}`, `7:PUT w4/k=v@${rev}`]);
    } finally {
      s.close();
    }
  });

  test('cancel is answered with canceled; an unknown id gets no answer; a progress request gets watch_id -1 and the revision', async () => {
    const s = new WatchStreamClient(watch);
    try {
      const id = await s.create({ key: b('w5/k') });
      s.send({ cancel_request: { watch_id: 12345 } });
      s.send({ cancel_request: { watch_id: id } });
      const canceled = await s.next();
      assert.deepEqual([canceled.watch_id ?? '0', canceled.canceled], [id, true]);
      const rev = await put('w5/k', 'after cancel');
      s.send({ progress_request: {} });
      const progress = await s.next();
      assert.equal(progress.watch_id, '-1');
      assert.equal(progress.header.revision, String(rev));
      assert.equal(progress.events?.length ?? 0, 0, 'the canceled watch sent nothing');
    } finally {
      s.close();
    }
  });

  test('a start below the compacted revision: created, then canceled with compact_revision', async () => {
    const old = await put('w6/k', '1');
    const now = await put('w6/k', '2');
    await call(kv, 'Compact', { revision: now });
    const s = new WatchStreamClient(watch);
    try {
      const id = await s.create({ key: b('w6/k'), start_revision: old });
      const r = await s.next();
      assert.equal(r.watch_id ?? '0', id);
      assert.equal(r.canceled, true);
      assert.equal(r.compact_revision, String(now));
      assert.equal(r.events?.length ?? 0, 0);
      // The stream goes on serving its other watches.
      const other = await s.create({ key: b('w6/k') });
      const rev = await put('w6/k', '3');
      assert.deepEqual(brief(await s.events(other, 1)), [`PUT w6/k=3@${rev}`]);
    } finally {
      s.close();
    }
  });

  test('fragment: a revision over max-request-bytes plus 512 KiB is split, fragment set on all but the last', async () => {
    const big = Buffer.alloc(600 * 1024, 0x66);
    for (const k of ['w7/a', 'w7/b', 'w7/c', 'w7/d']) await put(k, big);
    const s = new WatchStreamClient(watch);
    try {
      const fragmented = await s.create({ key: b('w7/'), range_end: b('w70'), prev_kv: true, fragment: true });
      const whole = await s.create({ key: b('w7/'), range_end: b('w70'), prev_kv: true });
      const rev = await del('w7/', 'w70');
      const parts = new Map<string, WatchResponse[]>();
      let events = 0;
      while (events < 8) {
        const r = await s.next();
        parts.set(r.watch_id ?? '0', [...(parts.get(r.watch_id ?? '0') ?? []), r]);
        events += r.events?.length ?? 0;
      }
      const split = parts.get(fragmented) ?? [];
      assert.deepEqual(
        split.map((r) => [r.events?.length, r.fragment === true]),
        [
          [3, true],
          [1, false],
        ],
      );
      assert.ok(split.every((r) => r.header.revision === String(rev)));
      assert.deepEqual(
        split.flatMap((r) => r.events ?? []).map((e) => `${e.kv.key.toString()} ${e.prev_kv?.value?.length}`),
        ['a', 'b', 'c', 'd'].map((k) => `w7/${k} ${big.length}`),
      );
      assert.deepEqual((parts.get(whole) ?? []).map((r) => [r.events?.length, r.fragment === true]), [[4, false]]);
    } finally {
      s.close();
    }
  });

  test('10k watches on one stream are served', async () => {
    const s = new WatchStreamClient(watch);
    const n = MAX_WATCHES_PER_STREAM;
    try {
      for (let i = 0; i < n; i++) s.send({ create_request: { key: b(`many/${i}`) } });
      for (let i = 0; i < n; i++) {
        const r = await s.next();
        assert.ok(r.created === true && r.canceled !== true, `watch ${i}: ${r.cancel_reason}`);
        assert.equal(r.watch_id ?? '0', String(i));
      }
      const rev = await put('many/4321', 'v');
      const r = await s.next();
      assert.equal(r.watch_id, '4321');
      assert.deepEqual(brief(r.events ?? []), [`PUT many/4321=v@${rev}`]);
      if (REFERENCE_ETCD === undefined) {
        assert.equal(etcd.server?.watchStats()?.watches, n);
        // One more is refused on this stream, which goes on serving.
        s.send({ create_request: { key: b('many/one-too-many') } });
        const refused = await s.next();
        assert.deepEqual([refused.watch_id, refused.created, refused.canceled], ['-1', true, true]);
        assert.match(refused.cancel_reason ?? '', /too many watches on one stream \(limit 10000\)/);
      }
    } finally {
      s.close();
    }
    if (REFERENCE_ETCD === undefined) await waitFor(() => etcd.node?.watches.size === 0, 'the ended stream canceled its watches in the hub');
  });

  test('progress_notify watches that saw nothing get a progress response on the interval', { skip: REFERENCE_ETCD !== undefined && 'etcd notifies every 10 minutes' }, async () => {
    const s = new WatchStreamClient(watch);
    try {
      const quiet = await s.create({ key: b('w8/quiet'), progress_notify: true });
      const rev = await put('w8/other', 'v');
      const r = await s.next();
      assert.equal(r.watch_id ?? '0', quiet);
      assert.equal(r.events?.length ?? 0, 0);
      assert.ok(Number(r.header.revision) >= rev);
    } finally {
      s.close();
    }
  });
});

describe('a Watch client that never reads', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, () => {
  const LIMIT = 64 * 1024;
  const PUTS = 3_000;
  const VALUE = Buffer.alloc(1024, 0x76);

  test('holds no more than the stream limit on the server, and later gets every event once, in order', async () => {
    const etcd = await startTestEtcd({ watch: { maxPendingBytes: LIMIT } });
    const watch = rawClient(etcd.address, 'Watch');
    const s = new WatchStreamClient(watch);
    try {
      const node = etcd.node;
      assert.ok(node !== undefined && etcd.server !== undefined);
      const id = await s.create({ key: b('flood/'), range_end: b('flood0') });
      // Stop reading: grpc-js stops taking data from HTTP/2, whose flow control then stops the server.
      s.call.pause();
      const enc = new TextEncoder();
      const first = node.kv.currentRevision() + 1;
      for (let i = 0; i < PUTS; i += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, j) => node.kv.txn({ compare: [], success: [{ type: 'put', put: { key: enc.encode(`flood/${String(i + j).padStart(5, '0')}`), value: VALUE } }], failure: [] })));
      }
      const stats = etcd.server.watchStats();
      assert.ok(stats !== undefined);
      const oneResponse = VALUE.length + 200;
      assert.ok(stats.peakStreamPendingBytes <= LIMIT + oneResponse, `at most the limit waits to be sent, saw ${stats.peakStreamPendingBytes}`);
      assert.ok(stats.peakStreamPendingBytes > LIMIT, 'the limit was reached');
      assert.equal(stats.blockedWatches, 1, 'the watch stopped live delivery');
      // Now read: everything arrives, caught up from history, each revision once and in order.
      s.call.resume();
      const events = await s.events(id, PUTS);
      assert.equal(events.length, PUTS);
      events.forEach((e, i) => assert.equal(Number(e.kv.mod_revision), first + i));
      await waitFor(() => etcd.server?.watchStats()?.blockedWatches === 0, 'the watch is live again');
      const rev = await nodePut(node, 'flood/live');
      assert.deepEqual(brief(await s.events(id, 1)), [`PUT flood/live=x@${rev}`]);
    } finally {
      s.close();
      watch.close();
      await etcd.close();
    }
  });
});

describe('closing the server with watch and keep-alive streams open', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, () => {
  test("ends them with etcd's 'server stopped' at once and cancels their hub watches", async () => {
    const etcd = await startTestEtcd();
    const watch = rawClient(etcd.address, 'Watch');
    const lease = rawClient(etcd.address, 'Lease');
    const s = new WatchStreamClient(watch);
    const ka = (lease as unknown as { LeaseKeepAlive(): ClientDuplexStream<object, object> }).LeaseKeepAlive();
    const kaError = new Promise<ServiceError>((resolve) => ka.on('error', resolve));
    try {
      await s.create({ key: b('c/k') });
      await s.create({ key: b('c/'), range_end: b('c0') });
      const answered = new Promise((resolve) => ka.once('data', resolve));
      ka.write({ ID: 1 });
      await answered;
      assert.equal(etcd.node?.watches.size, 2);
      const started = Date.now();
      await etcd.close();
      assert.ok(Date.now() - started < 1_500, `closed in ${Date.now() - started} ms, without waiting out the grace period`);
      await assert.rejects(s.next(), (e: ServiceError) => e.code === status.UNAVAILABLE && e.details === 'etcdserver: server stopped');
      const e = await kaError;
      assert.deepEqual([e.code, e.details], [status.UNAVAILABLE, 'etcdserver: server stopped']);
      assert.equal(etcd.node?.watches.size, 0, 'no watch is left in the hub');
    } finally {
      s.close();
      ka.cancel();
      watch.close();
      lease.close();
    }
  });
});

async function nodePut(node: TestNode, key: string): Promise<number> {
  const enc = new TextEncoder();
  const r = await node.kv.txn({ compare: [], success: [{ type: 'put', put: { key: enc.encode(key), value: enc.encode('x') } }], failure: [] });
  return r.revision;
}

async function waitFor(check: () => boolean, what: string, timeoutMs = STEP_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
