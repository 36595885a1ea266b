import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { isTesseraError } from '../base/index.js';
import type { Entry } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { MALFORMED_COMMAND, MvccStateMachine, snapshotDataProblem } from './mvcc_state_machine.js';
import { encodeCommand } from './commands.js';
import { readSnapshotData, snapshotReaderOf } from './snapshot_stream.js';
import { Harness, RANGE } from './testing.testlib.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

test('snapshot data: a real snapshot passes the check; data of any other shape is refused, and restore refuses it as CORRUPT_DATA, not with a RangeError', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const leader = h.leader();
  for (let i = 0; i < 3; i++) h.put(leader, `r${i}`, `k${i}`, 'v', () => {});
  h.settle();
  const snapshot = leader.replica(RANGE)?.log.snapshot();
  const reader = snapshot === undefined ? undefined : snapshotReaderOf(snapshot);
  assert.ok(reader !== undefined, 'the leader makes streamed snapshots');
  const real = readSnapshotData(reader);
  assert.ok(real.byteLength > 0);
  assert.equal(snapshotDataProblem(RANGE, real), undefined);
  const carried = (packr.unpack(real) as Uint8Array[]).filter((_, i) => i % 2 === 0).map((k) => k[0]);
  assert.ok(carried.includes(0x64) && carried.includes(0x65), 'the snapshot carries MVCC records and change index entries');
  // A range that holds only the keys from 's' on owns none of those.
  assert.match(snapshotDataProblem(RANGE, real, { start: new TextEncoder().encode('s'), end: undefined }) ?? '', /not an mvcc key of the range's span/);
  const inside = new Uint8Array([0x6d, 1]); // a key suffix in the range's state keys ('m'…'r')
  const bad: [string, Uint8Array][] = [
    ['random bytes', new Uint8Array([0x92, 0xc4, 0x03, 4, 3])], // a list whose bytes end early
    ['a map', packr.pack({ a: 1 })],
    ['an odd list', packr.pack([inside])],
    ['a number among the pairs', packr.pack([inside, 7])],
    ['a key outside the state (the range log)', packr.pack([new Uint8Array([0x6c, 1]), new Uint8Array([1])])],
    ['an empty key', packr.pack([new Uint8Array(0), new Uint8Array([1])])],
    // Keys of the MVCC families ('d' records, 'e' change index entries) are carried whole and must be well formed.
    ['a record key without its terminator', packr.pack([new Uint8Array([0x64, 0x61]), new Uint8Array([1])])],
    ['a record key with a bad escape', packr.pack([new Uint8Array([0x64, 0x61, 0x00, 0x01, 0x00, 0x00, ...new Array<number>(12).fill(0xff)]), new Uint8Array([1])])],
    ['a record key with a short revision', packr.pack([new Uint8Array([0x64, 0x61, 0x00, 0x00, 0xff, 0xff]), new Uint8Array([1])])],
    ['a change index key of the wrong length', packr.pack([new Uint8Array([0x65, 0, 0, 0]), new Uint8Array([0x61])])],
    ['a change index entry naming no key', packr.pack([new Uint8Array([0x65, ...new Array<number>(12).fill(0)]), new Uint8Array(0)])],
    ['a change index entry whose value is not bytes', packr.pack([new Uint8Array([0x65, ...new Array<number>(12).fill(0)]), 7])],
  ];
  for (const [what, data] of bad) {
    assert.notEqual(snapshotDataProblem(RANGE, data), undefined, what);
    const engine = new MemoryEngine({ scheduleSync: () => {} });
    const sm = new MvccStateMachine(engine, RANGE);
    assert.throws(() => sm.restore(engine.newBatch(), data), (e) => isTesseraError(e, 'CORRUPT_DATA'), what);
  }
});

test('apply: an entry that is not a command, or a txn the server would refuse, is refused without a write, alike on every replica (it threw and stopped the node)', () => {
  const engine = new MemoryEngine({ scheduleSync: () => {} });
  const sm = new MvccStateMachine(engine, RANGE);
  const log: Entry[] = [];
  sm.attachLog({ firstIndex: () => 1, entries: (lo, hi) => log.slice(lo - 1, hi - 1) });
  const apply = (data: Uint8Array) => {
    const entry: Entry = { term: 1, index: log.length + 1, type: 'normal', data };
    log.push(entry);
    const batch = engine.newBatch();
    const result = sm.apply(batch, entry);
    engine.stage(batch);
    assert.ok(typeof result !== 'symbol', 'no merge here: nothing is held');
    return result;
  };
  const key = new TextEncoder().encode('k');
  const put = { type: 'put', put: { key, value: key } };
  // What the old apply did with each is noted: a throw stopped the node (and every replica applies it).
  const refused: [string, Uint8Array, string][] = [
    ['not msgpack (threw)', new Uint8Array([0xc1]), MALFORMED_COMMAND],
    ['no request id (threw)', packr.pack({ kind: 'txn', txn: { compare: [], success: [], failure: [] } }), MALFORMED_COMMAND],
    ['a key that is not bytes (threw a TypeError)', packr.pack({ kind: 'txn', requestId: 'a', txn: { compare: [], success: [{ type: 'put', put: { key: 'k', value: key } }], failure: [] } }), MALFORMED_COMMAND],
    ['a null range end (threw a TypeError)', packr.pack({ kind: 'txn', requestId: 'b', txn: { compare: [], success: [{ type: 'deleteRange', deleteRange: { key, rangeEnd: null } }], failure: [] } }), MALFORMED_COMMAND],
    ['an unknown compare target (was applied)', packr.pack({ kind: 'txn', requestId: 'c', txn: { compare: [{ key, target: 'NOPE', result: 'EQUAL' }], success: [], failure: [] } }), MALFORMED_COMMAND],
    ['a lease checkpoint without a list (threw a TypeError)', packr.pack({ kind: 'lease-checkpoint', requestId: 'd', checkpoints: 3 }), MALFORMED_COMMAND],
    ['one key put twice (was applied)', packr.pack({ kind: 'txn', requestId: 'e', txn: { compare: [], success: [put, put], failure: [] } }), 'DUPLICATE_KEY'],
    ['an empty key (was refused already)', packr.pack({ kind: 'txn', requestId: 'f', txn: { compare: [], success: [{ type: 'put', put: { key: new Uint8Array(0), value: key } }], failure: [] } }), 'EMPTY_KEY'],
  ];
  const revision = sm.mvcc.currentRevision;
  for (const [what, data, code] of refused) {
    const result = apply(data);
    assert.equal(result.kind, 'error', what);
    assert.equal(result.kind === 'error' ? result.code : '', code, what);
  }
  assert.equal(sm.mvcc.currentRevision, revision, 'nothing was written');
  // A real command still applies.
  const ok = apply(encodeCommand({ kind: 'txn', requestId: 'g', txn: { compare: [], success: [{ type: 'put', put: { key, value: key } }], failure: [] } }));
  assert.equal(ok.kind, 'txn');
  assert.equal(sm.mvcc.currentRevision, revision + 1);
});
