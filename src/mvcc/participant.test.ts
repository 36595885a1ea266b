import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from './bytes.js';
import type { MemoryEngine } from '../storage/memory.js';
import type { WriteBatch } from '../storage/engine.js';
import { MvccStore } from './store.js';
import { intentKey } from './intents.js';
import { abortRecord, commitRecord, heartbeatRecord, prepare, prepareProblem, resolveIntents, type PrepareRequest } from './participant.js';
import { codeOf, get, newStore, put, reopenAndCompare, write } from './testing.testlib.js';

function commit<T>(engine: MemoryEngine, body: (batch: WriteBatch) => T): T {
  const batch = engine.newBatch();
  const out = body(batch);
  engine.commit(batch, () => {});
  return out;
}

function req(txnId: string, startRevision: number, writes: Record<string, string | null>, reads: string[] = [], holdsRecord = true): PrepareRequest {
  return {
    txnId,
    startRevision,
    priority: startRevision,
    primary: utf8(Object.keys(writes)[0] ?? reads[0]!),
    writes: Object.entries(writes).map(([key, value], sub) => ({ key: utf8(key), sub, write: value === null ? { kind: 'delete' as const } : { kind: 'put' as const, value: utf8(value), lease: 0 } })),
    reads: reads.map(utf8),
    holdsRecord,
  };
}

test('participant: a prepare lays intents, read locks and the PENDING record; reads see no value, and meet the writes started below them', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', 'a0'); // rev 2
  put(engine, store, 'r', 'r0'); // rev 3
  const S = store.currentRevision;
  assert.deepEqual(commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1', b: 'b1' }, ['r']))), { kind: 'prepared' });
  assert.equal(store.intentCount, 3);
  assert.equal(store.txnRecord(utf8('a'), 't1')?.status, 'pending');
  // An intent is not a version: the value and the revision are as before.
  assert.equal(get(store, 'a')?.value, 'a0');
  assert.equal(get(store, 'b'), undefined);
  assert.equal(store.currentRevision, S);
  const all = { start: utf8('a'), end: new Uint8Array(0) };
  // A read at R > S meets the two writes (not the read lock); one at R ≤ S meets none.
  assert.deepEqual(store.conflictingIntents(all, S + 1).map((i) => new TextDecoder().decode(i.key)), ['a', 'b']);
  assert.deepEqual(store.conflictingIntents(all, S), []);
  // Prepared again (a retried command): nothing changes.
  assert.deepEqual(commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1', b: 'b1' }, ['r']))), { kind: 'prepared' });
  assert.equal(store.intentCount, 3);
  reopenAndCompare(engine, store);
  assert.equal(MvccStore.open(engine, { metaPrefix: utf8('r1/'), span: store.span }).intentCount, 3, 'counted again after a reopen');
});

test('participant: a prepare is refused, writing nothing, over a newer version (first committer wins) or another transaction\'s intent', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', 'a0');
  const S = store.currentRevision;
  put(engine, store, 'b', 'b0'); // after S
  const stale = commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1' }, ['b'])));
  assert.equal(stale.kind, 'stale');
  assert.equal(stale.kind === 'stale' && stale.modRevision, S + 1);
  assert.equal(store.intentCount, 0);
  assert.equal(store.txnRecord(utf8('a'), 't1'), undefined);
  // A delete after S is a change too.
  const S2 = store.currentRevision;
  commit(engine, (b) => prepare(store, b, req('t2', S2, { a: 'a2' })));
  const held = commit(engine, (b) => prepare(store, b, req('t3', S2, { c: 'c3' }, ['a'])));
  assert.equal(held.kind, 'conflict');
  assert.equal(held.kind === 'conflict' && held.holders[0]!.txnId, 't2');
  assert.equal(store.intent(utf8('c')), undefined, 'nothing of the refused prepare');
  assert.equal(store.txnRecord(utf8('c'), 't3'), undefined);
});

test('participant: a commit resolves intents into versions at C, below the revision the range reached meanwhile; create revision, version and events follow', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', 'a0'); // rev 2: create 2, version 1
  put(engine, store, 'd', 'd0'); // rev 3
  const S = store.currentRevision;
  commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1', n: 'n1', d: null, z: null })));
  // Revisions come from the cluster's oracle, with gaps: other keys of the range went on to S+2, S+4, S+6.
  for (const r of [S + 2, S + 4, S + 6]) write(engine, store, (txn) => txn.put(utf8('other'), utf8(String(r))), r);
  const before = store.currentRevision;
  // The intents were laid at S: the range's history is final only below them until they resolve.
  assert.equal(store.closedRevision, S);
  const C = S + 3; // between the others' writes, below the range revision
  assert.deepEqual(commit(engine, (b) => commitRecord(store, b, { primary: utf8('a'), txnId: 't1', commitRevision: C })), { kind: 'committed', commitRevision: C });
  const events = commit(engine, (b) => resolveIntents(store, b, { txnId: 't1', keys: ['a', 'n', 'd', 'z'].map(utf8), commitRevision: C }));
  assert.deepEqual(events.map((e) => `${e.type} ${new TextDecoder().decode(e.kv.key)}@${e.kv.modRevision}`), [`PUT a@${C}`, `PUT n@${C}`, `DELETE d@${C}`]);
  assert.equal(store.currentRevision, before, 'the range revision stays where it was');
  assert.equal(store.closedRevision, before, 'no pending intent holds the closed revision back');
  assert.equal(store.intentCount, 0);
  assert.deepEqual(get(store, 'a'), { key: 'a', value: 'a1', create: 2, mod: C, version: 2, lease: 0 });
  assert.deepEqual(get(store, 'n'), { key: 'n', value: 'n1', create: C, mod: C, version: 1, lease: 0 });
  assert.equal(get(store, 'd'), undefined);
  // History reads at revisions around C see the transaction whole or not at all.
  assert.equal(get(store, 'a', C - 1)?.value, 'a0');
  assert.equal(get(store, 'd', C - 1)?.value, 'd0');
  assert.equal(get(store, 'n', C - 1), undefined);
  assert.equal(get(store, 'a', C)?.value, 'a1');
  assert.deepEqual(store.liveKeysAndBytes(), store.countLiveKeysAndBytes());
  reopenAndCompare(engine, store);
  // Resolving again is a no-op.
  assert.deepEqual(commit(engine, (b) => resolveIntents(store, b, { txnId: 't1', keys: [utf8('a')], commitRevision: C })), []);
});

test('participant: a commit above the range revision raises it; an abort drops the intents and the versions stay', () => {
  const { engine, store } = newStore();
  put(engine, store, 'a', 'a0');
  const S = store.currentRevision;
  commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1' })));
  commit(engine, (b) => commitRecord(store, b, { primary: utf8('a'), txnId: 't1', commitRevision: S + 10 }));
  commit(engine, (b) => resolveIntents(store, b, { txnId: 't1', keys: [utf8('a')], commitRevision: S + 10 }));
  assert.equal(store.currentRevision, S + 10);
  commit(engine, (b) => prepare(store, b, req('t2', S + 10, { a: 'a2', b: 'b2' })));
  assert.equal(commit(engine, (b) => abortRecord(store, b, { primary: utf8('a'), txnId: 't2' })).status, 'aborted');
  assert.deepEqual(commit(engine, (b) => resolveIntents(store, b, { txnId: 't2', keys: ['a', 'b'].map(utf8), commitRevision: undefined })), []);
  assert.equal(store.intentCount, 0);
  assert.equal(get(store, 'a')?.value, 'a1');
  assert.equal(store.currentRevision, S + 10);
  reopenAndCompare(engine, store);
});

test('participant: the record moves only forward: an abort waits on a moving heartbeat, a late commit or prepare meets the end', () => {
  const { engine, store } = newStore();
  const S = store.currentRevision;
  commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1' })));
  const primary = utf8('a');
  assert.equal(commit(engine, (b) => heartbeatRecord(store, b, { primary, txnId: 't1' }))?.heartbeat, 1);
  // A pusher saw heartbeat 0 stand still; it has moved since: the coordinator lives, nothing changes.
  assert.equal(commit(engine, (b) => abortRecord(store, b, { primary, txnId: 't1', ifHeartbeat: 0 })).status, 'pending');
  assert.equal(commit(engine, (b) => abortRecord(store, b, { primary, txnId: 't1', ifHeartbeat: 1 })).status, 'aborted');
  assert.deepEqual(commit(engine, (b) => commitRecord(store, b, { primary, txnId: 't1', commitRevision: S + 5 })), { kind: 'aborted' });
  const late = commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1' })));
  assert.equal(late.kind, 'ended');
  // A commit of a transaction this range never prepared leaves an ABORTED record: its late prepare is refused.
  assert.deepEqual(commit(engine, (b) => commitRecord(store, b, { primary: utf8('q'), txnId: 't9', commitRevision: S + 5 })), { kind: 'aborted' });
  assert.equal(commit(engine, (b) => prepare(store, b, req('t9', S, { q: 'q' }))).kind, 'ended');
});

test('participant: intents and records split and merge with their keys', () => {
  const { engine, store } = newStore();
  const S = store.currentRevision;
  commit(engine, (b) => prepare(store, b, req('t1', S, { a: 'a1', m: 'm1', z: 'z1' })));
  const RIGHT = utf8('r2/');
  commit(engine, (b) => store.splitOff(b, utf8('k'), RIGHT));
  const right = MvccStore.open(engine, { metaPrefix: RIGHT, span: { start: utf8('k'), end: undefined } });
  assert.equal(store.intentCount, 1);
  assert.equal(right.intentCount, 2);
  assert.equal(right.intent(utf8('m'))?.txnId, 't1');
  assert.equal(store.intent(utf8('m')), undefined, 'outside the left span');
  assert.equal(store.txnRecord(utf8('a'), 't1')?.status, 'pending');
  commit(engine, (b) => store.absorb(b, undefined, RIGHT));
  assert.equal(store.intentCount, 3);
});

test('participant: malformed prepares are named; a damaged intent is CORRUPT_DATA, never decoded', () => {
  const ok = req('t1', 5, { a: 'a1' }, ['b']);
  assert.equal(prepareProblem(ok), undefined);
  assert.match(prepareProblem({ ...ok, txnId: '' }) ?? '', /transaction id/);
  assert.match(prepareProblem({ ...ok, txnId: 'x'.repeat(65) }) ?? '', /at most 64 bytes/);
  assert.match(prepareProblem({ ...ok, reads: [utf8('a')] }) ?? '', /also written/);
  assert.match(prepareProblem({ ...ok, writes: [ok.writes[0]!, { ...ok.writes[0]!, key: utf8('c') }] }) ?? '', /sub-revision/);
  assert.match(prepareProblem({ ...ok, writes: [], reads: [] }) ?? '', /no keys/);
  const { engine, store } = newStore();
  commit(engine, (b) => prepare(store, b, ok));
  const raw = engine.get(intentKey(utf8('a')))!;
  const damaged = raw.slice();
  damaged[3] = damaged[3]! ^ 0xff;
  commit(engine, (b) => b.put(intentKey(utf8('a')), damaged));
  const reopened = MvccStore.open(engine, { metaPrefix: utf8('r1/'), span: store.span });
  assert.equal(codeOf(() => reopened.intent(utf8('a'))), 'CORRUPT_DATA');
});
