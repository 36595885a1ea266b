import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { TesseraError } from '../base/index.js';
import { type EventsPage, type ForwardMessage, type ForwardOp, Forwarder, decodeOp, decodeReply } from './forward.js';
import { ManualTimers } from '../base/manual_timers.testlib.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);


/** Two forwarders wired to each other through queues the test delivers by hand. */
function pair(leaderOfB?: () => number | undefined): { a: Forwarder; b: Forwarder; toA: ForwardMessage[]; toB: ForwardMessage[]; timers: ManualTimers; deliver: () => Promise<void> } {
  const timers = new ManualTimers();
  const toA: ForwardMessage[] = [];
  const toB: ForwardMessage[] = [];
  const a = new Forwarder({ nodeId: 1, timers, idPrefix: 'a', send: (_to, m) => toB.push(m) });
  const b = new Forwarder({ nodeId: 2, timers, idPrefix: 'b', send: (_to, m) => toA.push(m), ...(leaderOfB === undefined ? {} : { leaderOf: leaderOfB }) });
  const deliver = async (): Promise<void> => {
    for (let round = 0; round < 5; round++) {
      for (const m of toB.splice(0)) b.receive(1, m);
      await new Promise((r) => setImmediate(r));
      for (const m of toA.splice(0)) a.receive(2, m);
      await new Promise((r) => setImmediate(r));
    }
  };
  return { a, b, toA, toB, timers, deliver };
}

test('forward: a call reaches the handler of a node holding the range, with the op as sent, and its value comes back', async () => {
  const { a, b, deliver } = pair();
  const seen: { rangeId: number; op: ForwardOp }[] = [];
  b.serveWith(async (rangeId, op) => {
    seen.push({ rangeId, op });
    return { kvs: [{ key: bytes('k'), value: bytes('v'), createRevision: 3, modRevision: 4, version: 2, lease: 0 }], more: false, count: 1, revision: 9 };
  });
  const call = a.call(2, 7, { op: 'range', options: { key: bytes('k'), limit: 5 }, serializable: true }, 1_000);
  await deliver();
  const result = await call;
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.rangeId, 7);
  assert.equal(seen[0]!.op.op, 'range');
  assert.deepEqual(result, { kvs: [{ key: Buffer.from('k'), value: Buffer.from('v'), createRevision: 3, modRevision: 4, version: 2, lease: 0 }], more: false, count: 1, revision: 9 });
});

test('forward: a refusal comes back with its code (RANGE_MISMATCH reroutes, TIMEOUT is an unknown outcome); a code the peer made up becomes RANGE_UNAVAILABLE', async () => {
  const { a, b, deliver } = pair();
  let code = 'RANGE_MISMATCH';
  b.serveWith(async () => {
    throw new TesseraError(code as 'RANGE_MISMATCH', 'nope');
  });
  for (const [sent, got] of [['RANGE_MISMATCH', 'RANGE_MISMATCH'], ['TIMEOUT', 'TIMEOUT'], ['COMPACTED', 'COMPACTED']] as const) {
    code = sent;
    const outcome = a.call(2, 7, { op: 'current', serializable: false }, 1_000).then(() => undefined, (e: unknown) => e);
    await deliver();
    const error = await outcome;
    assert.ok(error instanceof TesseraError && error.code === got, `${sent}: ${String(error)}`);
  }
  const forged = decodeReply('current', packr.pack({ ok: false, code: 'AssertionError', message: 'x'.repeat(5_000) }));
  assert.ok(forged instanceof TesseraError);
  assert.equal(forged.code, 'RANGE_UNAVAILABLE');
  assert.ok(forged.message.length <= 1024, 'a peer\'s message is cut short');
});

test('forward: no reply within the deadline is TIMEOUT, and a late reply is ignored', async () => {
  const { a, b, toB, toA, timers } = pair();
  b.serveWith(async () => 5);
  const call = a.call(2, 7, { op: 'current', serializable: true }, 100);
  timers.advance(100);
  await assert.rejects(call, (e: unknown) => e instanceof TesseraError && e.code === 'TIMEOUT');
  for (const m of toB.splice(0)) b.receive(1, m);
  await new Promise((r) => setImmediate(r));
  for (const m of toA.splice(0)) a.receive(2, m); // the late reply: nothing waits for it
  assert.equal(a.busy, false);
});

test('forward: a hostile peer\'s call is answered INVALID_ARGUMENT and never reaches the handler; a malformed reply fails the call', async () => {
  const { a, b, toA } = pair();
  let reached = 0;
  b.serveWith(async () => {
    reached++;
    return 0;
  });
  const bodies = [
    new Uint8Array([0xc1]), // not msgpack
    packr.pack([1, 2]),
    packr.pack({ op: 'drop-table' }),
    packr.pack({ op: 'range', options: { key: 'not bytes' }, serializable: false }),
    packr.pack({ op: 'range', options: { key: bytes('k'), limit: 1.5 }, serializable: false }),
    packr.pack({ op: 'range', options: { key: bytes('k') } }),
    packr.pack({ op: 'txn', request: { compare: [], success: [{ type: 'put', put: { key: bytes('k') } }], failure: [] } }),
    packr.pack({ op: 'read-at', options: { key: bytes('k') } }),
    packr.pack({ op: 'compact', revision: -1 }),
    packr.pack({ op: 'current', serializable: 'yes' }),
  ];
  for (const [i, body] of bodies.entries()) b.receive(1, { kind: 'call', id: `x${i}`, rangeId: 3, body });
  await new Promise((r) => setImmediate(r));
  assert.equal(reached, 0);
  assert.equal(toA.length, bodies.length);
  for (const m of toA) assert.equal((decodeReply('current', m.body) as TesseraError).code, 'INVALID_ARGUMENT');
  // Replies of the wrong shape for their op are refused.
  assert.equal((decodeReply('range', packr.pack({ ok: true, value: { kvs: [{ key: 'k' }], more: false, count: 1, revision: 1 } })) as TesseraError).code, 'RANGE_UNAVAILABLE');
  assert.equal((decodeReply('txn', packr.pack({ ok: true, value: { succeeded: true, responses: [{ type: 'put', put: { revision: -4 } }], revision: 2 } })) as TesseraError).code, 'RANGE_UNAVAILABLE');
  assert.equal((decodeReply('current', packr.pack({ ok: true, value: 2 ** 60 })) as TesseraError).code, 'RANGE_UNAVAILABLE');
  assert.equal(decodeReply('current', packr.pack({ ok: true, value: 42 })), 42);
  assert.deepEqual(decodeReply('members', packr.pack({ ok: true, value: [1, 5, 9] })), [1, 5, 9]);
  assert.equal((decodeReply('members', packr.pack({ ok: true, value: [1, -2] })) as TesseraError).code, 'RANGE_UNAVAILABLE');
  assert.equal((decodeReply('members', packr.pack({ ok: true, value: Array.from({ length: 65 }, (_, i) => i + 1) })) as TesseraError).code, 'RANGE_UNAVAILABLE');
  assert.equal(typeof decodeOp(packr.pack({ op: 'txn', request: { compare: [], success: [], failure: [] } })), 'object');
  void a;
});

test('forward: a reply names the range\'s leader for the next call; a reply that names none, or no reply from the leader named, forgets it (seed 2003)', async () => {
  let lead: number | undefined = 5;
  const { a, b, deliver, timers } = pair(() => lead);
  b.serveWith(async () => 3);
  const ask = async (): Promise<void> => {
    const call = a.call(2, 7, { op: 'current', serializable: true }, 1_000);
    await deliver();
    await call;
  };
  await ask();
  assert.equal(a.leaderHint(7), 5);
  // The leader left the range: the holder knows of none, and the hint must not send every next call to node 5.
  lead = undefined;
  await ask();
  assert.equal(a.leaderHint(7), undefined);
  lead = 2;
  await ask();
  assert.equal(a.leaderHint(7), 2);
  // The leader named does not answer.
  const silent = a.call(2, 7, { op: 'current', serializable: true }, 100);
  timers.advance(100);
  await assert.rejects(silent, (e: unknown) => e instanceof TesseraError && e.code === 'TIMEOUT');
  assert.equal(a.leaderHint(7), undefined);
});

test('forward: an events op and its page round-trip, and malformed ones are refused', async () => {
  const { a, b, deliver } = pair();
  const seen: ForwardOp[] = [];
  const kv = { key: bytes('k'), value: bytes('v'), createRevision: 3, modRevision: 4, version: 1, lease: 0 };
  b.serveWith(async (_rangeId, op) => {
    seen.push(op);
    return { events: [{ type: 'PUT', kv }, { type: 'DELETE', kv: { ...kv, value: new Uint8Array(0), modRevision: 5 }, prevKv: kv }], nextRevision: 6, currentRevision: 9, compactedRevision: 1 };
  });
  const op: ForwardOp = { op: 'events', key: bytes('a'), rangeEnd: undefined, fromRevision: 4, prevKv: true, waitMs: 1_000, closeTo: 0 };
  const call = a.call(2, 7, op, 5_000);
  await deliver();
  const page = (await call) as EventsPage;
  assert.deepEqual({ ...seen[0], key: Buffer.from((seen[0] as { key: Uint8Array }).key) }, { ...op, key: Buffer.from(bytes("a")) });
  assert.equal(page.events.length, 2);
  assert.equal(page.nextRevision, 6);
  assert.equal(page.currentRevision, 9);
  for (const bad of [
    { ...op, fromRevision: 0 },
    { ...op, waitMs: -1 },
    { ...op, waitMs: 10_000_000 },
    { ...op, key: 'a' },
    { ...op, closeTo: -3 },
    { ...op, prevKv: 1 },
  ]) assert.equal(typeof decodeOp(packr.pack(bad)), 'string', JSON.stringify(bad));
  for (const bad of [
    { events: [{ type: 'PUT' }], nextRevision: 1, currentRevision: 1, compactedRevision: 0 },
    { events: [{ type: 'UPSERT', kv }], nextRevision: 1, currentRevision: 1, compactedRevision: 0 },
    { events: [], nextRevision: -1, currentRevision: 1, compactedRevision: 0 },
    { events: 'x', nextRevision: 1, currentRevision: 1, compactedRevision: 0 },
  ]) assert.ok(decodeReply('events', packr.pack({ ok: true, value: bad })) instanceof TesseraError, JSON.stringify(bad));
});
