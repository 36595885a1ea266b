import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { isTesseraError } from '../base/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { MvccStateMachine, snapshotDataProblem } from './mvcc_state_machine.js';
import { Harness, RANGE } from './testing.testlib.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

test('snapshot data: a real snapshot passes the check; data of any other shape is refused, and restore refuses it as CORRUPT_DATA, not with a RangeError', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const leader = h.leader();
  for (let i = 0; i < 3; i++) h.put(leader, `r${i}`, `k${i}`, 'v', () => {});
  h.settle();
  const real = leader.replica(RANGE)?.log.snapshot().data;
  assert.ok(real !== undefined && real.byteLength > 0);
  assert.equal(snapshotDataProblem(RANGE, real), undefined);
  const inside = new Uint8Array([0x6d, 1]); // a key suffix in the range's state keys ('m'…'r')
  const bad: [string, Uint8Array][] = [
    ['random bytes', new Uint8Array([0x92, 0xc4, 0x03, 4, 3])], // a list whose bytes end early
    ['a map', packr.pack({ a: 1 })],
    ['an odd list', packr.pack([inside])],
    ['a number among the pairs', packr.pack([inside, 7])],
    ['a key outside the state (the range log)', packr.pack([new Uint8Array([0x6c, 1]), new Uint8Array([1])])],
    ['an empty key', packr.pack([new Uint8Array(0), new Uint8Array([1])])],
  ];
  for (const [what, data] of bad) {
    assert.notEqual(snapshotDataProblem(RANGE, data), undefined, what);
    const engine = new MemoryEngine({ scheduleSync: () => {} });
    const sm = new MvccStateMachine(engine, RANGE);
    assert.throws(() => sm.restore(engine.newBatch(), data), (e) => isTesseraError(e, 'CORRUPT_DATA'), what);
  }
});
