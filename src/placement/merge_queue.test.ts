import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TimerHandle, Timers } from '../base/index.js';
import { type KvNode, META_RANGE } from '../kv/index.js';
import { Cluster, bounds } from '../kv/kv_cluster.testlib.js';
import { MergeQueue } from './merge_queue.js';
import { ReplicaReconciler, relocationGoal } from './replica_reconciler.js';

function timersOf(c: Cluster): Timers {
  return { nowMs: () => c.nowMs, after: (): TimerHandle => ({ cancel: () => {} }) };
}

/** Range 1 [,g), then a [g,p) and b [p,); every node runs a merge queue. */
function setUp(rangeMaxBytes: number, qps: (id: number) => number = () => 0): { c: Cluster; a: number; b: number; queues: MergeQueue[]; events: string[] } {
  const c = new Cluster([1, 2, 3]);
  c.tick(30);
  const s1 = c.split(c.leaderOf(META_RANGE), META_RANGE, 'g');
  assert.ok(!(s1 instanceof Error));
  c.tick(30);
  const a = s1.right.rangeId;
  const s2 = c.split(c.leaderOf(a), a, 'p');
  assert.ok(!(s2 instanceof Error));
  c.tick(30);
  c.put(c.leaderOf(s2.right.rangeId), s2.right.rangeId, 'q', 'v');
  const events: string[] = [];
  const queues = [...c.nodes.values()].map(
    (kv) =>
      new MergeQueue({
        kv,
        timers: timersOf(c),
        rangeMaxBytes,
        rangeSplitQps: 100,
        qps,
        checkIntervalMs: 100,
        mergeDelayMs: 1_000,
        observe: (e) => events.push(e.kind === 'merge' ? `merge ${e.merged.rangeId}+${e.rightRangeId}` : `failed ${e.rangeId} ${e.error.code}`),
      }),
  );
  return { c, a, b: s2.right.rangeId, queues, events };
}

function run(c: Cluster, queues: readonly MergeQueue[], ticks: number): void {
  for (let i = 0; i < ticks; i++) {
    for (const q of queues) q.tick();
    c.tick(1);
  }
}

test('MergeQueue: small, cold neighbours merge once stable for the delay; range 1 is never a side', () => {
  const { c, a, b, queues, events } = setUp(1 << 20);
  // Before the delay has passed since the splits: nothing.
  run(c, queues, 50);
  assert.equal(events.length, 0, events.join(', '));
  run(c, queues, 400);
  assert.ok(events.includes(`merge ${a}+${b}`), events.join(', '));
  c.tick(20);
  for (const id of c.ids) assert.deepEqual(bounds(c.nodes.get(id) as KvNode), ['1:[,g)', `${a}:[g,)`]);
  assert.equal(c.value(1, 'q'), 'v');
  // Range 1 and the merged range stay apart, however long it runs.
  run(c, queues, 300);
  for (const id of c.ids) assert.equal((c.nodes.get(id) as KvNode).router.list().length, 2);
});

test('MergeQueue: neighbours too big together, or too busy, do not merge', () => {
  // One put of a one-byte key and value: two bytes, half of a four-byte maximum.
  const big = setUp(4);
  run(big.c, big.queues, 400);
  assert.deepEqual(big.events, []);
  const busy = setUp(1 << 20, () => 30);
  run(busy.c, busy.queues, 400);
  assert.deepEqual(busy.events, []);
});

test('relocationGoal: the left neighbour\'s voters while they are as many as --replicas and all candidates, else nothing (placement goes on as usual)', () => {
  assert.deepEqual([...(relocationGoal([1, 2, 3], [1, 2, 3, 4], 3) ?? new Map()).entries()], [[1, 'voter'], [2, 'voter'], [3, 'voter']]);
  assert.equal(relocationGoal(undefined, [1, 2, 3, 4], 3), undefined);
  assert.equal(relocationGoal([1, 2], [1, 2, 3, 4], 3), undefined, 'the left range is short of a replica: it is repaired first');
  assert.equal(relocationGoal([1, 2, 5], [1, 2, 3, 4], 3), undefined, 'a voter of the left range is dead or leaving');
});

/** Changes range `rangeId`'s membership by one step from its leader and ticks until it applied everywhere it is. */
function change(c: Cluster, rangeId: number, type: 'add-learner' | 'add-node' | 'remove-node', nodeId: number): void {
  const leader = c.leaderOf(rangeId);
  leader.store.proposeConfChange(rangeId, { transition: 'auto', changes: [{ type, nodeId }] });
  c.tick(40);
  const cs = c.leaderOf(rangeId).store.replica(rangeId)?.currentConfState();
  const voter = cs?.voters.includes(nodeId) ?? false;
  assert.equal(type === 'add-learner' ? cs?.learners.includes(nodeId) : voter, type !== 'remove-node', `${type} ${nodeId} on range ${rangeId}`);
}

test('MergeQueue under placement: a right range on other replicas is moved onto its left neighbour\'s voters, then the two merge; every key stays readable', () => {
  const c = new Cluster([1, 2, 3, 4]);
  c.tick(30);
  const s1 = c.split(c.leaderOf(META_RANGE), META_RANGE, 'g');
  assert.ok(!(s1 instanceof Error));
  const a = s1.right.rangeId;
  c.tick(30);
  // a on 1, 2, 3; then b split off it, moved to 2, 3, 4.
  change(c, a, 'remove-node', 4);
  const s2 = c.split(c.leaderOf(a), a, 'p');
  assert.ok(!(s2 instanceof Error));
  const b = s2.right.rangeId;
  c.tick(30);
  change(c, b, 'add-learner', 4);
  change(c, b, 'add-node', 4);
  change(c, b, 'remove-node', 1);
  for (const [k, range] of [['h', a], ['q', b], ['x', b]] as const) assert.equal(c.put(c.leaderOf(range), range, k, `v-${k}`).kind, 'txn');
  c.tick(20);
  const events: string[] = [];
  const moves: string[] = [];
  const parts = [...c.nodes.values()].map((kv) => {
    const queue = new MergeQueue({
      kv,
      timers: timersOf(c),
      rangeMaxBytes: 1 << 20,
      rangeSplitQps: 0,
      qps: () => 0,
      checkIntervalMs: 100,
      mergeDelayMs: 500,
      observe: (e) => events.push(e.kind === 'merge' ? `merge ${e.merged.rangeId}+${e.rightRangeId}` : `failed ${e.rangeId} ${e.error.code}`),
    });
    const reconciler = new ReplicaReconciler({ kv, replicas: 3, merges: queue, observe: (e) => moves.push(`${e.rangeId}: ${e.change}`) });
    return { queue, reconciler };
  });
  for (let i = 0; i < 1_500 && !events.includes(`merge ${a}+${b}`); i++) {
    for (const p of parts) (p.queue.tick(), p.reconciler.tick());
    c.tick(1);
  }
  assert.ok(events.includes(`merge ${a}+${b}`), `events: ${events.join(', ')}; moves: ${moves.join('; ')}`);
  // The right range was moved (node 1 added, node 4 removed); the left one never was.
  assert.ok(moves.some((m) => m.startsWith(`${b}: add-learner 1`)), moves.join('; '));
  assert.ok(!moves.some((m) => m.startsWith(`${a}:`)), moves.join('; '));
  c.tick(50);
  for (const id of [1, 2, 3]) {
    assert.deepEqual(bounds(c.nodes.get(id) as KvNode), ['1:[,g)', `${a}:[g,)`], `node ${id}`);
    for (const k of ['h', 'q', 'x']) assert.equal(c.value(id, k), `v-${k}`, `node ${id} key ${k}`);
  }
});
