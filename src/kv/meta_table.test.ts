import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryEngine } from '../storage/memory.js';
import { MetaTable, tilingProblem } from './meta_table.js';
import type { RangeDescriptor } from './range_map.js';

const enc = new TextEncoder();
const replicas = [{ nodeId: 1, role: 'voter' as const }];

function d(rangeId: number, start: string, end: string | undefined, version: number, confVersion = 1): RangeDescriptor {
  return { rangeId, start: enc.encode(start), end: end === undefined ? undefined : enc.encode(end), epoch: { version, confVersion }, replicas };
}

function setup(): { engine: MemoryEngine; table: MetaTable; update: (ds: RangeDescriptor[]) => string } {
  const engine = new MemoryEngine({ scheduleSync: (f) => queueMicrotask(f) });
  const table = new MetaTable(engine, 1);
  const seed = engine.newBatch();
  table.seed(seed, d(1, '', undefined, 1));
  engine.commit(seed, () => {});
  const update = (ds: RangeDescriptor[]): string => {
    const batch = engine.newBatch();
    const out = table.update(batch, ds);
    engine.commit(batch, () => {});
    return out;
  };
  return { engine, table, update };
}

const shape = (t: MetaTable): string => t.all().map((x) => `${x.rangeId}[${new TextDecoder().decode(x.start)},${x.end === undefined ? '' : new TextDecoder().decode(x.end)})v${x.epoch.version}.${x.epoch.confVersion}`).join(' ');

test('MetaTable: splits, membership changes and merges replace what they cover; the table always partitions the key space and survives a reload', () => {
  const { engine, table, update } = setup();
  assert.equal(update([d(1, '', 'm', 2), d(2, 'm', undefined, 2)]), 'applied');
  assert.equal(update([d(2, 'm', 't', 3), d(3, 't', undefined, 3)]), 'applied');
  assert.equal(update([d(3, 't', undefined, 3, 2)]), 'applied', 'a membership change: same keys, next confVersion');
  assert.equal(shape(table), '1[,m)v2.1 2[m,t)v3.1 3[t,)v3.2');
  // A merge of 2 and 3 into 2.
  assert.equal(update([d(2, 'm', undefined, 4, 2)]), 'applied');
  assert.equal(shape(table), '1[,m)v2.1 2[m,)v4.2');
  assert.equal(table.lookup(enc.encode('zz'))?.rangeId, 2);
  assert.equal(table.lookup(enc.encode('a'))?.rangeId, 1);
  assert.equal(tilingProblem(table.all(), new Uint8Array(0), undefined), undefined);
  // Read back from storage, as after a restart or a snapshot.
  const again = new MetaTable(engine, 1);
  assert.equal(shape(again), shape(table));
});

test('MetaTable: an update already applied or overtaken is stale; one that does not cover exactly what it replaces is refused and changes nothing', () => {
  const { table, update } = setup();
  assert.equal(update([d(1, '', 'm', 2), d(2, 'm', undefined, 2)]), 'applied');
  const before = shape(table);
  assert.equal(update([d(1, '', 'm', 2), d(2, 'm', undefined, 2)]), 'stale', 'the same split again');
  assert.equal(update([d(1, '', undefined, 1)]), 'stale', 'an older descriptor');
  assert.match(update([d(2, 'm', 'x', 3)]), /covers other keys/, 'half of range 2 alone would leave a gap');
  assert.match(update([d(1, '', 'c', 3), d(4, 'd', 'm', 3)]), /does not tile/, 'a gap inside the update');
  assert.match(update([]), /no descriptors/);
  assert.equal(shape(table), before);
});
