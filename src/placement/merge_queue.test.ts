import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TimerHandle, Timers } from '../base/index.js';
import { type KvNode, META_RANGE } from '../kv/index.js';
import { Cluster, bounds } from '../kv/kv_cluster.testlib.js';
import { MergeQueue } from './merge_queue.js';

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
