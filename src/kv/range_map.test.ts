import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AssertionError, isTesseraError } from '../base/index.js';
import { compareBytes, utf8 } from '../mvcc/index.js';
import {
  type RangeDescriptor,
  type RangeEpoch,
  RangeMap,
  RangeMismatchError,
  type ReplicaDescriptor,
  checkRangeRequest,
  decodeDescriptor,
  encodeDescriptor,
  isStaleEpoch,
  rangeContainsKey,
} from './range_map.js';

const R3: readonly ReplicaDescriptor[] = [
  { nodeId: 1, role: 'voter' },
  { nodeId: 2, role: 'voter' },
  { nodeId: 3, role: 'voter' },
];

function isInvalid(error: unknown): boolean {
  return isTesseraError(error, 'INVALID_ARGUMENT');
}

/** Ranges 1 [, b) 2 [b, m) 3 [m, ). */
function threeRanges(): RangeMap {
  const a = RangeMap.initial(1, R3);
  const b = a.split(1, utf8('b'), 2).map;
  return b.split(2, utf8('m'), 3).map;
}

test('RangeMap: initial map is one whole-space range', () => {
  const m = RangeMap.initial(1, R3);
  m.checkInvariants();
  assert.equal(m.size, 1);
  assert.equal(m.lookup(new Uint8Array(0)).rangeId, 1);
  assert.equal(m.lookup(utf8('zzz')).rangeId, 1);
  assert.deepEqual(m.get(1)!.epoch, { version: 1, confVersion: 1 });
});

test('RangeMap: split gives left the id, both version + 1, right the same replicas', () => {
  const m = RangeMap.initial(1, R3);
  const { map, left, right } = m.split(1, utf8('k'), 7);
  map.checkInvariants();
  assert.equal(left.rangeId, 1);
  assert.equal(right.rangeId, 7);
  assert.deepEqual(left.end, utf8('k'));
  assert.deepEqual(right.start, utf8('k'));
  assert.equal(right.end, undefined);
  assert.deepEqual(left.epoch, { version: 2, confVersion: 1 });
  assert.deepEqual(right.epoch, { version: 2, confVersion: 1 });
  assert.deepEqual(right.replicas, R3);
  // The old map is unchanged.
  assert.equal(m.size, 1);
  assert.equal(m.get(7), undefined);
});

test('RangeMap: lookup uses unsigned byte order and range ends are exclusive', () => {
  const m = threeRanges();
  assert.equal(m.lookup(utf8('a')).rangeId, 1);
  assert.equal(m.lookup(utf8('b')).rangeId, 2);
  assert.equal(m.lookup(new Uint8Array([0x62, 0x00])).rangeId, 2);
  assert.equal(m.lookup(utf8('l\xff')).rangeId, 2);
  assert.equal(m.lookup(utf8('m')).rangeId, 3);
  assert.equal(m.lookup(new Uint8Array([0xff, 0xff])).rangeId, 3);
});

test('RangeMap: overlapping spans', () => {
  const m = threeRanges();
  const ids = (s: string, e: string | undefined): number[] => m.overlapping(utf8(s), e === undefined ? undefined : utf8(e)).map((d) => d.rangeId);
  assert.deepEqual(ids('', undefined), [1, 2, 3]);
  assert.deepEqual(ids('a', 'b'), [1]); // end exclusive: 'b' belongs to range 2
  assert.deepEqual(ids('a', 'b\x00'), [1, 2]);
  assert.deepEqual(ids('c', 'd'), [2]);
  assert.deepEqual(ids('c', undefined), [2, 3]);
  assert.deepEqual(ids('m', 'n'), [3]);
  assert.deepEqual(ids('d', 'c'), []);
  assert.deepEqual(ids('d', 'd'), []);
});

test('RangeMap: split refuses keys outside or at the start, unknown and used ids', () => {
  const m = threeRanges(); // 2 is [b, m)
  assert.throws(() => m.split(2, utf8('b'), 9), isInvalid); // equal to the start
  assert.throws(() => m.split(2, utf8('a'), 9), isInvalid); // left of it
  assert.throws(() => m.split(2, utf8('m'), 9), isInvalid); // the end is not inside
  assert.throws(() => m.split(2, utf8('z'), 9), isInvalid);
  assert.throws(() => m.split(1, new Uint8Array(0), 9), isInvalid); // the empty key starts range 1
  assert.throws(() => m.split(42, utf8('c'), 9), isInvalid);
  assert.throws(() => m.split(2, utf8('c'), 3), isInvalid); // id in use
  assert.throws(() => m.split(2, utf8('c'), 0), isInvalid);
  assert.throws(() => m.split(2, utf8('c'), 1.5), isInvalid);
  assert.equal(m.split(2, utf8('c'), 9).map.size, 4);
});

test('RangeMap: merge of adjacent ranges takes max version + 1', () => {
  let m = threeRanges(); // epochs: 1 v2, 2 v3, 3 v3
  m = m.split(3, utf8('x'), 4).map; // 3 v4, 4 v4
  const { map, merged } = m.merge(2, 3);
  map.checkInvariants();
  assert.equal(merged.rangeId, 2);
  assert.deepEqual(merged.start, utf8('b'));
  assert.deepEqual(merged.end, utf8('x'));
  assert.deepEqual(merged.epoch, { version: 5, confVersion: 1 });
  assert.equal(map.get(3), undefined);
  assert.equal(map.lookup(utf8('p')).rangeId, 2);
});

test('RangeMap: merge refuses non-adjacent, reversed, unknown and differently replicated ranges', () => {
  const m = threeRanges();
  assert.throws(() => m.merge(1, 3), isInvalid);
  assert.throws(() => m.merge(2, 1), isInvalid);
  assert.throws(() => m.merge(2, 2), isInvalid);
  assert.throws(() => m.merge(2, 99), isInvalid);
  const moved = m.replaceReplicas(3, [{ nodeId: 4, role: 'voter' }]).map;
  assert.throws(() => moved.merge(2, 3), isInvalid);
});

test('RangeMap: replaceReplicas bumps confVersion only and validates the set', () => {
  const m = threeRanges();
  const before = m.get(2)!.epoch;
  const replicas: ReplicaDescriptor[] = [
    { nodeId: 1, role: 'voter' },
    { nodeId: 5, role: 'learner' },
  ];
  const { map, updated } = m.replaceReplicas(2, replicas);
  assert.deepEqual(updated.epoch, { version: before.version, confVersion: before.confVersion + 1 });
  assert.deepEqual(map.get(2)!.replicas, replicas);
  replicas.push({ nodeId: 6, role: 'voter' }); // the map holds its own copy
  assert.equal(map.get(2)!.replicas.length, 2);
  assert.throws(() => m.replaceReplicas(2, []), isInvalid);
  assert.throws(() => m.replaceReplicas(2, [{ nodeId: 1, role: 'learner' }]), isInvalid); // no voter
  assert.throws(() => m.replaceReplicas(2, [R3[0]!, R3[0]!]), isInvalid);
  assert.throws(() => m.replaceReplicas(2, [{ nodeId: 0, role: 'voter' }]), isInvalid);
  assert.throws(() => m.replaceReplicas(2, [{ nodeId: 1, role: 'witness' as 'voter' }]), isInvalid);
  assert.throws(() => m.replaceReplicas(9, R3), isInvalid);
});

function desc(rangeId: number, start: string, end: string | undefined, version = 1): RangeDescriptor {
  return { rangeId, start: utf8(start), end: end === undefined ? undefined : utf8(end), epoch: { version, confVersion: 1 }, replicas: R3 };
}

test('RangeMap.fromDescriptors: sorts, and refuses what does not partition the key space', () => {
  const m = RangeMap.fromDescriptors([desc(3, 'm', undefined), desc(1, '', 'b'), desc(2, 'b', 'm')]);
  m.checkInvariants();
  assert.deepEqual(
    m.descriptors().map((d) => d.rangeId),
    [1, 2, 3],
  );
  assert.throws(() => RangeMap.fromDescriptors([]), isInvalid);
  assert.throws(() => RangeMap.fromDescriptors([desc(1, 'a', undefined)]), isInvalid); // first start not empty
  assert.throws(() => RangeMap.fromDescriptors([desc(1, '', 'b')]), isInvalid); // last end bounded
  assert.throws(() => RangeMap.fromDescriptors([desc(1, '', 'b'), desc(2, 'c', undefined)]), isInvalid); // gap
  assert.throws(() => RangeMap.fromDescriptors([desc(1, '', 'c'), desc(2, 'b', undefined)]), isInvalid); // overlap
  assert.throws(() => RangeMap.fromDescriptors([desc(1, '', 'b'), desc(1, 'b', undefined)]), isInvalid); // duplicate id
  assert.throws(() => RangeMap.fromDescriptors([desc(1, '', 'b'), desc(2, 'b', 'b'), desc(3, 'b', undefined)]), isInvalid); // empty range
});

test('RangeMap.checkInvariants throws an AssertionError when the map is broken from inside', () => {
  const m = threeRanges();
  // Break it behind the map's back, as a bug would: the descriptors are frozen but key bytes are not.
  (m.get(2)!.end as Uint8Array)[0] = 0x7a; // range 2 now ends at 'z' while range 3 starts at 'm'
  assert.throws(() => m.checkInvariants(), AssertionError);
});

test('isStaleEpoch: older in either counter', () => {
  const cur: RangeEpoch = { version: 3, confVersion: 5 };
  assert.equal(isStaleEpoch({ version: 3, confVersion: 5 }, cur), false);
  assert.equal(isStaleEpoch({ version: 2, confVersion: 5 }, cur), true);
  assert.equal(isStaleEpoch({ version: 3, confVersion: 4 }, cur), true);
  assert.equal(isStaleEpoch({ version: 4, confVersion: 5 }, cur), false);
});

test('checkRangeRequest: refuses another version or a key outside with the current descriptor', () => {
  const m = threeRanges();
  const r2 = m.get(2)!; // [b, m) at v3 c1
  checkRangeRequest(r2, r2.epoch, utf8('c'), undefined);
  checkRangeRequest(r2, r2.epoch, utf8('b'), utf8('m'));
  checkRangeRequest(r2, { version: 3, confVersion: 0 }, utf8('c'), undefined); // data requests ignore confVersion
  const refused = (f: () => void, reason: string): void => {
    assert.throws(f, (e: unknown) => e instanceof RangeMismatchError && e.code === 'RANGE_MISMATCH' && e.reason === reason && e.current === r2);
  };
  refused(() => checkRangeRequest(r2, { version: 3, confVersion: 0 }, utf8('c'), undefined, true), 'epoch');
  refused(() => checkRangeRequest(r2, { version: 2, confVersion: 1 }, utf8('c'), undefined), 'epoch');
  refused(() => checkRangeRequest(r2, { version: 4, confVersion: 1 }, utf8('c'), undefined), 'epoch'); // replica lags
  refused(() => checkRangeRequest(r2, r2.epoch, utf8('m'), undefined), 'key-outside');
  refused(() => checkRangeRequest(r2, r2.epoch, utf8('a'), undefined), 'key-outside');
  refused(() => checkRangeRequest(r2, r2.epoch, utf8('c'), utf8('n')), 'key-outside');
  assert.ok(isTesseraError(new RangeMismatchError('epoch', r2, 'x'), 'RANGE_MISMATCH'));
});

test('descriptor encoding round-trips', () => {
  const m = threeRanges().replaceReplicas(3, [
    { nodeId: 9, role: 'voter' },
    { nodeId: 4, role: 'learner' },
  ]).map;
  for (const d of m.descriptors()) {
    const back = decodeDescriptor(encodeDescriptor(d));
    assert.deepEqual(back, d);
    assert.ok(!(back.start instanceof Buffer), 'decoded keys are plain Uint8Arrays');
  }
});

test('decodeDescriptor refuses hostile input with CORRUPT_DATA', () => {
  const good = encodeDescriptor(threeRanges().get(2)!);
  const corrupt = (e: unknown): boolean => isTesseraError(e, 'CORRUPT_DATA');
  assert.throws(() => decodeDescriptor(new Uint8Array(0)), corrupt);
  assert.throws(() => decodeDescriptor(new Uint8Array([0xc1])), corrupt);
  assert.throws(() => decodeDescriptor(good.subarray(0, good.length - 1)), corrupt);
  assert.throws(() => decodeDescriptor(new Uint8Array([...good, 0])), corrupt);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decodeDescriptor(bytes);
      } catch (e) {
        assert.ok(corrupt(e), `unexpected error ${String(e)}`);
      }
    }),
    { numRuns: 2000 },
  );
  // Flip every byte of a good encoding in turn: each result decodes to a valid descriptor or is refused.
  for (let i = 0; i < good.length; i++) {
    for (const x of [0x01, 0x80, 0xff]) {
      const bad = good.slice();
      bad[i] = bad[i]! ^ x;
      try {
        const d = decodeDescriptor(bad);
        assert.ok(d.end === undefined || compareBytes(d.start, d.end) < 0);
      } catch (e) {
        assert.ok(corrupt(e), `byte ${i} ^ ${x}: unexpected error ${String(e)}`);
      }
    }
  }
});

// ---------------------------------------------------------------------------
// Property: random splits, merges and replica changes keep the partition.

type Op =
  | { kind: 'split'; pick: number; key: Uint8Array }
  | { kind: 'merge'; pick: number }
  | { kind: 'replicas'; pick: number; nodes: number[]; learners: number };

const keyArb = fc.uint8Array({ minLength: 0, maxLength: 3, max: 4 }); // a small alphabet so keys collide with bounds
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('split' as const), pick: fc.nat(), key: keyArb }),
  fc.record({ kind: fc.constant('merge' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('replicas' as const), pick: fc.nat(), nodes: fc.uniqueArray(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }), learners: fc.nat(3) }),
);

function apply(m: RangeMap, op: Op, nextId: number): RangeMap {
  const ds = m.descriptors();
  const d = ds[op.pick % ds.length]!;
  switch (op.kind) {
    case 'split':
      return m.split(d.rangeId, op.key, nextId).map;
    case 'merge': {
      const right = ds[(op.pick % ds.length) + 1];
      // Merges need equal replicas: copy the left's onto the right first, as a real merge would by moving replicas.
      if (right === undefined) return m.merge(d.rangeId, ds[0]!.rangeId).map; // refused: not adjacent (or itself)
      return m.replaceReplicas(right.rangeId, d.replicas).map.merge(d.rangeId, right.rangeId).map;
    }
    case 'replicas': {
      const learners = Math.min(op.learners, op.nodes.length - 1); // keep a voter
      return m.replaceReplicas(
        d.rangeId,
        op.nodes.map((nodeId, i) => ({ nodeId, role: i < learners ? 'learner' : 'voter' })),
      ).map;
    }
  }
}

function checkEveryKeyInOneRange(m: RangeMap, probes: readonly Uint8Array[]): void {
  const ds = m.descriptors();
  const extra = ds.flatMap((d) => (d.end === undefined ? [d.start] : [d.start, d.end]));
  for (const key of [...probes, ...extra]) {
    const holders = ds.filter((d) => rangeContainsKey(d, key));
    assert.equal(holders.length, 1, `key ${key.join(',')} is in ${holders.length} ranges`);
    assert.equal(m.lookup(key), holders[0]);
  }
}

test('RangeMap property: random changes keep a partition, keys in one range, epochs rising', () => {
  const applied = { split: 0, merge: 0, replicas: 0 };
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), fc.array(keyArb, { maxLength: 20 }), (ops, probes) => {
      let m = RangeMap.initial(1, R3);
      let nextId = 2;
      for (const op of ops) {
        let next: RangeMap;
        try {
          next = apply(m, op, nextId);
        } catch (e) {
          assert.ok(isInvalid(e), `refusals are INVALID_ARGUMENT, got ${String(e)}`);
          continue;
        }
        if (op.kind === 'split') nextId++;
        applied[op.kind]++;
        next.checkInvariants();
        checkEveryKeyInOneRange(next, probes);
        for (const d of next.descriptors()) {
          const before = m.get(d.rangeId);
          if (before === undefined) continue; // a new right half
          assert.ok(d.epoch.version >= before.epoch.version && d.epoch.confVersion >= before.epoch.confVersion, 'epochs never fall');
          const boundsChanged = compareBytes(d.start, before.start) !== 0 || (d.end === undefined) !== (before.end === undefined) || (d.end !== undefined && compareBytes(d.end, before.end!) !== 0);
          if (boundsChanged) assert.ok(d.epoch.version > before.epoch.version, 'changed bounds raise the version');
        }
        m = next;
      }
    }),
    { numRuns: 300 },
  );
  // The generator must exercise every change, not just have it refused.
  assert.ok(applied.split > 200 && applied.merge > 50 && applied.replicas > 200, JSON.stringify(applied));
});
