import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import type { Entry } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { utf8, type PrepareRequest } from '../mvcc/index.js';
import { MALFORMED_COMMAND, MvccStateMachine, type CommandResult, snapshotDataProblem } from './mvcc_state_machine.js';
import { type KvCommand, encodeCommand } from './commands.js';
import { readSnapshotData, snapshotReaderOf } from './snapshot_stream.js';
import { Harness, RANGE } from './testing.testlib.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

/** A lone state machine and an apply of one command at a time, each in its own batch. */
function machine() {
  const engine = new MemoryEngine({ scheduleSync: () => {} });
  const sm = new MvccStateMachine(engine, RANGE);
  const log: Entry[] = [];
  sm.attachLog({ firstIndex: () => 1, entries: (lo, hi) => log.slice(lo - 1, hi - 1) });
  const apply = (command: KvCommand | Uint8Array): CommandResult => {
    const entry: Entry = { term: 1, index: log.length + 1, type: 'normal', data: command instanceof Uint8Array ? command : encodeCommand(command) };
    log.push(entry);
    const batch = engine.newBatch();
    const result = sm.apply(batch, entry);
    engine.stage(batch);
    assert.ok(typeof result !== 'symbol');
    return result;
  };
  return { engine, sm, apply };
}

const put = (key: string, value: string): KvCommand => ({ kind: 'txn', requestId: `put-${key}-${value}`, txn: { compare: [], success: [{ type: 'put', put: { key: utf8(key), value: utf8(value) } }], failure: [] } });

function prepareOf(txnId: string, startRevision: number, writes: Record<string, string>): PrepareRequest {
  return {
    txnId,
    startRevision,
    priority: startRevision,
    primary: utf8(Object.keys(writes)[0]!),
    writes: Object.entries(writes).map(([key, value], sub) => ({ key: utf8(key), sub, write: { kind: 'put' as const, value: utf8(value), lease: 0 } })),
    reads: [],
    holdsRecord: true,
  };
}

test('txn steps: prepare, commit and resolve apply through the log; the closed revision waits for the resolve, whose changes come at C', () => {
  const { sm, apply } = machine();
  apply(put('a', 'a0'));
  const S = sm.mvcc.currentRevision;
  const prepared = apply({ kind: 'txn-prepare', requestId: 'p', prepare: prepareOf('t1', S, { a: 'a1', b: 'b1' }) });
  assert.deepEqual(prepared, { requestId: 'p', kind: 'txn-prepared', outcome: { kind: 'prepared' } });
  apply(put('z', 'z0'));
  apply(put('z', 'z1'));
  assert.equal(sm.mvcc.closedRevision, S, 'held at the intents\' floor');
  const C = sm.mvcc.currentRevision + 1;
  assert.deepEqual(apply({ kind: 'txn-commit', requestId: 'c', primary: utf8('a'), txnId: 't1', commitRevision: C }), { requestId: 'c', kind: 'txn-committed', outcome: { kind: 'committed', commitRevision: C } });
  const resolved = apply({ kind: 'txn-resolve', requestId: 'r', txnId: 't1', keys: [utf8('a'), utf8('b')], commitRevision: C });
  assert.equal(resolved.kind, 'txn-resolved');
  assert.equal(resolved.kind === 'txn-resolved' && resolved.revision, C);
  assert.deepEqual(resolved.kind === 'txn-resolved' && resolved.events.map((e) => `${e.type} ${new TextDecoder().decode(e.kv.key)}@${e.kv.modRevision}`), [`PUT a@${C}`, `PUT b@${C}`]);
  assert.equal(sm.mvcc.closedRevision, C);
  assert.equal(sm.mvcc.intentCount, 0);
  assert.deepEqual(apply({ kind: 'txn-forget', requestId: 'f', primary: utf8('a'), txnId: 't1' }), { requestId: 'f', kind: 'txn-record', record: undefined });
  assert.equal(sm.mvcc.txnRecord(utf8('a'), 't1'), undefined);
});

test('txn steps: malformed or impossible steps are refused alike on every replica, never asserted on', () => {
  const { sm, apply } = machine();
  apply(put('a', 'a0'));
  const S = sm.mvcc.currentRevision;
  apply({ kind: 'txn-prepare', requestId: 'p', prepare: prepareOf('t1', S, { a: 'a1' }) });
  const code = (r: CommandResult): string => (r.kind === 'error' ? r.code : r.kind);
  // A resolve at or below the intent's floor, or a commit not above the start: the protocol never asks for them.
  assert.equal(code(apply({ kind: 'txn-resolve', requestId: 'r1', txnId: 't1', keys: [utf8('a')], commitRevision: S })), MALFORMED_COMMAND);
  assert.equal(code(apply({ kind: 'txn-commit', requestId: 'c1', primary: utf8('a'), txnId: 't1', commitRevision: S })), MALFORMED_COMMAND);
  const bad: [string, unknown][] = [
    ['a prepare without writes or reads', { kind: 'txn-prepare', requestId: 'x1', prepare: { ...prepareOf('t2', S, { q: 'q' }), writes: [] } }],
    ['a prepare whose write is a lock', { kind: 'txn-prepare', requestId: 'x2', prepare: { ...prepareOf('t2', S, { q: 'q' }), writes: [{ key: utf8('q'), sub: 0, write: { kind: 'lock' } }] } }],
    ['a prepare with a string key', { kind: 'txn-prepare', requestId: 'x3', prepare: { ...prepareOf('t2', S, { q: 'q' }), reads: ['q'] } }],
    ['a txn id too long', { kind: 'txn-commit', requestId: 'x4', primary: utf8('a'), txnId: 'x'.repeat(65), commitRevision: S + 1 }],
    ['a resolve of no keys', { kind: 'txn-resolve', requestId: 'x5', txnId: 't1', keys: [], commitRevision: S + 1 }],
    ['an abort with a negative heartbeat below -1', { kind: 'txn-abort', requestId: 'x6', primary: utf8('a'), txnId: 't1', ifHeartbeat: -2 }],
  ];
  for (const [what, command] of bad) assert.equal(code(apply(packr.pack(command))), MALFORMED_COMMAND, what);
  // Two prepares of one transaction that gave two keys one sub-revision: resolving both at one revision would
  // give two changes one change-index key; refused whole.
  apply({ kind: 'txn-prepare', requestId: 'd1', prepare: prepareOf('t3', S, { m: 'm' }) });
  apply({ kind: 'txn-prepare', requestId: 'd2', prepare: { ...prepareOf('t3', S, { n: 'n' }), holdsRecord: false, primary: utf8('m') } });
  assert.equal(code(apply({ kind: 'txn-resolve', requestId: 'd3', txnId: 't3', keys: [utf8('m'), utf8('n')], commitRevision: S + 5 })), MALFORMED_COMMAND);
  assert.equal(sm.mvcc.intentCount, 3, 'nothing resolved');
  assert.equal(sm.mvcc.intent(utf8('a'))?.txnId, 't1', 'the intent is untouched');
  assert.equal(sm.mvcc.txnRecord(utf8('a'), 't1')?.status, 'pending');
});

test('txn steps: a snapshot carries intents and transaction records; the restored replica holds them, and malformed ones are refused', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const leader = h.leader();
  h.put(leader, 'w', 'a', 'a0', () => {});
  h.settle();
  const S = h.sms.get(1)!.mvcc.currentRevision;
  let prepared: CommandResult | undefined;
  h.command(leader, { kind: 'txn-prepare', requestId: 'p', prepare: prepareOf('t1', S, { a: 'a1', b: 'b1' }) }, (r) => (prepared = r));
  h.settle();
  assert.equal(prepared?.kind, 'txn-prepared');
  const snapshot = leader.replica(RANGE)?.log.snapshot();
  const reader = snapshot === undefined ? undefined : snapshotReaderOf(snapshot);
  assert.ok(reader !== undefined, 'the leader makes streamed snapshots');
  const data = readSnapshotData(reader);
  assert.equal(snapshotDataProblem(RANGE, data), undefined);
  const families = new Set((packr.unpack(data) as Uint8Array[]).filter((_, i) => i % 2 === 0).map((k) => k[0]));
  assert.ok(families.has(0x69) && families.has(0x74), 'intents (i) and records (t) are carried');
  const engine = new MemoryEngine({ scheduleSync: () => {} });
  const restored = new MvccStateMachine(engine, RANGE);
  const batch = engine.newBatch();
  restored.restore(batch, data);
  engine.stage(batch);
  assert.equal(restored.mvcc.intentCount, 2);
  assert.equal(restored.mvcc.txnRecord(utf8('a'), 't1')?.status, 'pending');
  assert.equal(restored.mvcc.closedRevision, S);
  // An intent key without its terminator, or a record key without a transaction id, is refused.
  assert.match(snapshotDataProblem(RANGE, packr.pack([new Uint8Array([0x69, 0x61]), new Uint8Array([1])])) ?? '', /not an mvcc key/);
  assert.match(snapshotDataProblem(RANGE, packr.pack([new Uint8Array([0x74, 0x61, 0, 0]), new Uint8Array([1])])) ?? '', /not an mvcc key/);
  // Removing the replica (a restore of nothing) deletes them.
  const cleared = engine.newBatch();
  restored.restore(cleared, new Uint8Array(0));
  engine.stage(cleared);
  assert.equal(restored.mvcc.intentCount, 0);
  assert.equal(restored.mvcc.txnRecords().length, 0);
});
