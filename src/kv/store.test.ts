import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import { INITIAL_REVISION, type TxnResponse } from '../mvcc/index.js';
import type { MemoryEngine } from '../storage/memory.js';
import { Harness, RANGE } from './testing.testlib.js';

test('Store: a three-node cluster elects a leader and applies a put on every replica', () => {
  const h = new Harness([1, 2, 3]);
  h.tickAll(40);
  const leader = h.leader();
  let revision = 0;
  h.put(leader, 'a', 'k', 'v1', (r) => {
    assert.equal(r.kind, 'txn');
    revision = (r as { response: TxnResponse }).response.revision;
  });
  h.settle();
  h.tickAll(3);
  assert.ok(revision > 0);
  for (const id of [1, 2, 3]) assert.equal(h.value(id, 'k'), 'v1');
});

test('Store: one loop turn group-commits many proposals with one sync', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const leader = h.leader();
  h.settle();
  const before = h.syncs;
  let answered = 0;
  for (let i = 0; i < 50; i++) h.put(leader, `r${i}`, `k${i}`, 'x', () => answered++);
  h.settle();
  assert.equal(answered, 50);
  // One synced write for the 50 appends (the apply batch syncs with it or with the next one).
  assert.ok(h.syncs - before <= 2, `${h.syncs - before} syncs for one turn`);
});

test('Store: no answer before the sync, and a crash before it loses the unanswered write only', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  h.settle();
  let answered = false;
  h.put(h.leader(), 'w', 'k', 'v', () => (answered = true));
  // Run the loop turn but not the sync: the write is committed to the engine, not durable.
  while (h.tasks.length > 0 && (h.engines.get(1) as MemoryEngine).hasUnsynced() === false) (h.tasks.shift() as () => void)();
  assert.equal(answered, false, 'answered before the data was durable');
  (h.engines.get(1) as MemoryEngine).crash(new SeededRng(99));
  h.tasks.length = 0;
  h.start(1);
  h.tickAll(30);
  h.put(h.leader(), 'w2', 'k2', 'v2', () => {});
  h.settle();
  assert.equal(h.value(1, 'k2'), 'v2');
});

test('Store: a duplicated proposal applies once', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const results: string[] = [];
  const leader = h.leader();
  h.put(leader, 'same', 'k', 'first', (r) => results.push(r.kind));
  h.settle();
  h.put(leader, 'same', 'k', 'second', (r) => results.push(r.kind));
  h.settle();
  assert.deepEqual(results, ['txn', 'duplicate']);
  assert.equal(h.value(1, 'k'), 'first');
});

test('Store: the log is compacted and a restarted node recovers the applied state', () => {
  const h = new Harness([1, 2, 3]);
  h.tickAll(40);
  for (let i = 0; i < 40; i++) {
    h.put(h.leader(), `c${i}`, `key${i % 5}`, `v${i}`, () => {});
    h.settle();
  }
  h.tickAll(3);
  const replica = h.stores.get(2)?.replica(RANGE);
  assert.ok(replica !== undefined && replica.log.firstIndex() > 2, 'log was never compacted');
  h.settle();
  h.stores.get(2)?.close();
  h.start(2);
  assert.equal(h.value(2, 'key4'), 'v39');
});

test('Store: a proposal duplicated within one loop turn applies once (regression)', () => {
  const h = new Harness([1]);
  h.tickAll(30);
  const results: string[] = [];
  const leader = h.leader();
  // Both copies are appended before the loop runs, so they commit and apply in the same batch.
  h.put(leader, 'twice', 'k', 'first', (r) => results.push(r.kind));
  h.put(leader, 'twice', 'k', 'second', (r) => results.push(r.kind));
  h.settle();
  assert.equal(h.value(1, 'k'), 'first');
  assert.equal(h.sms.get(1)?.mvcc.currentRevision, INITIAL_REVISION + 1, 'one write applied');
  void RANGE;
});
