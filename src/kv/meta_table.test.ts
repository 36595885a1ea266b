import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
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

/** The table as the update was first written: every stored descriptor overlapping the update replaced, the rest sorted again. */
function naiveUpdate(table: readonly RangeDescriptor[], incoming: readonly RangeDescriptor[]): readonly RangeDescriptor[] {
  const overlapsAny = (e: RangeDescriptor): boolean => incoming.some((n) => (e.end === undefined || Buffer.compare(e.end, n.start) > 0) && (n.end === undefined || Buffer.compare(n.end, e.start) > 0));
  return [...table.filter((e) => !overlapsAny(e)), ...incoming].sort((a, b) => Buffer.compare(a.start, b.start));
}

test('MetaTable (property): random splits, merges, membership changes and stale or misfit updates leave the table as the naive filter-and-sort would, and a partition', () => {
  const letters = 'bcdefghijklmnopqrstuvwxy';
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 4 })), { maxLength: 60 }), (steps) => {
      const { table, update } = setup();
      let model: readonly RangeDescriptor[] = table.all();
      let nextId = 2;
      for (const [a, b, kind] of steps) {
        const all = table.all();
        const i = a % all.length;
        const e = all[i] as RangeDescriptor;
        let incoming: RangeDescriptor[];
        let expected: RegExp = /^applied$/;
        if (kind <= 1) {
          // A split at a letter strictly inside e (if any).
          const inside = [...letters].filter((c) => Buffer.compare(Buffer.from(c), e.start) > 0 && (e.end === undefined || Buffer.compare(Buffer.from(c), e.end) < 0));
          if (inside.length === 0) continue;
          const at = enc.encode(inside[b % inside.length] as string);
          const v = e.epoch.version + 1;
          incoming = [{ ...e, end: at, epoch: { version: v, confVersion: e.epoch.confVersion } }, { ...e, rangeId: nextId++, start: at, epoch: { version: v, confVersion: 1 } }];
        } else if (kind === 2 && i + 1 < all.length) {
          const r = all[i + 1] as RangeDescriptor;
          incoming = [{ ...e, end: r.end, epoch: { version: Math.max(e.epoch.version, r.epoch.version) + 1, confVersion: e.epoch.confVersion } }];
        } else if (kind === 3) {
          incoming = [{ ...e, epoch: { version: e.epoch.version, confVersion: e.epoch.confVersion + 1 } }];
        } else {
          // Stale (the same descriptor again) or misfit (e cut short, leaving a gap).
          const stale = b % 2 === 0 || e.end === undefined;
          incoming = stale ? [e] : [{ ...e, end: enc.encode(`${new TextDecoder().decode(e.start)}\u0000`), epoch: { version: e.epoch.version + 1, confVersion: 1 } }];
          expected = stale ? /^stale$/ : /covers other keys/;
        }
        const out = update(incoming);
        assert.match(out, expected, `kind ${kind} on ${shape({ all: () => all } as unknown as MetaTable)}`);
        if (out === 'applied') model = naiveUpdate(model, incoming);
        assert.equal(shape(table), shape({ all: () => model } as unknown as MetaTable));
        assert.equal(tilingProblem(table.all(), new Uint8Array(0), undefined), undefined);
        for (const probe of ['', 'c', 'k', 'x', 'zz']) {
          const want = model.find((x) => Buffer.compare(x.start, Buffer.from(probe)) <= 0 && (x.end === undefined || Buffer.compare(Buffer.from(probe), x.end) < 0));
          assert.equal(table.lookup(enc.encode(probe))?.rangeId, want?.rangeId);
          assert.deepEqual(table.overlapping(d(0, probe, undefined, 0)).map((x) => x.rangeId), model.filter((x) => x.end === undefined || Buffer.compare(x.end, Buffer.from(probe)) > 0).map((x) => x.rangeId));
        }
      }
    }),
    { numRuns: 200 },
  );
});
