import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type Clock, type Rng, SeededRng, isTesseraError } from '../base/index.js';
import { type KeyInterval, compareBytes, utf8 } from '../mvcc/index.js';
import {
  LoadSplitDecider,
  RANGE_SPLIT_QPS,
  SPLIT_SAMPLE_WINDOW_MS,
  type RangeBounds,
  type SplitKeyChoice,
  SplitKeyFinder,
} from './split_finder.js';

class FakeClock implements Clock {
  constructor(public ms = 0) {}
  nowMs(): number {
    return this.ms;
  }
}

const WHOLE: RangeBounds = { start: new Uint8Array(0), end: undefined };
const KEYS = 10_000;

function keyOf(i: number): Uint8Array {
  return utf8(`k${String(i).padStart(5, '0')}`);
}

function point(key: Uint8Array): KeyInterval {
  return { start: key, end: undefined };
}

/**
 * Feeds `requestsPerSecond` requests from `next` for `seconds` of virtual
 * time and returns the decider's answer at the end.
 */
function drive(decider: LoadSplitDecider, clock: FakeClock, requestsPerSecond: number, seconds: number, next: () => KeyInterval): SplitKeyChoice {
  const stepMs = 1000 / requestsPerSecond;
  const total = requestsPerSecond * seconds;
  for (let i = 0; i < total; i++) {
    clock.ms += stepMs;
    decider.record(next());
  }
  return decider.decide();
}

function deciderFor(seed: number, bounds: RangeBounds = WHOLE): { decider: LoadSplitDecider; clock: FakeClock; rng: Rng } {
  const clock = new FakeClock();
  const rng = new SeededRng(seed);
  return { decider: new LoadSplitDecider(bounds, { clock, rng }), clock, rng };
}

test('LoadSplitDecider: uniform load above the threshold splits near the median', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const { decider, clock, rng } = deciderFor(seed);
    const choice = drive(decider, clock, 2 * RANGE_SPLIT_QPS, 12, () => point(keyOf(rng.intBelow(KEYS))));
    assert.equal(choice.kind, 'split', JSON.stringify(choice));
    if (choice.kind !== 'split') return;
    // Imbalance < 0.25 means the key sits between the 37.5th and 62.5th percentiles.
    assert.ok(compareBytes(choice.key, keyOf(3750)) > 0 && compareBytes(choice.key, keyOf(6250)) < 0, `seed ${seed}: key ${new TextDecoder().decode(choice.key)}`);
    assert.ok(choice.score.imbalance < 0.25 && choice.score.crossing === 0);
    assert.equal(decider.lastDecision, choice);
  }
});

test('LoadSplitDecider: below the threshold it does not sample; above it waits the sample window', () => {
  const { decider, clock, rng } = deciderFor(7);
  const uniform = (): KeyInterval => point(keyOf(rng.intBelow(KEYS)));
  assert.equal(drive(decider, clock, RANGE_SPLIT_QPS / 2, 12, uniform).kind, 'none');
  assert.deepEqual(decider.lastDecision, { kind: 'none', reason: 'below-threshold' });
  // Load rises: the first second measures it, then sampling runs for the window.
  const early = drive(decider, clock, 2 * RANGE_SPLIT_QPS, (SPLIT_SAMPLE_WINDOW_MS - 2000) / 1000, uniform);
  assert.deepEqual(early, { kind: 'none', reason: 'sampling' });
  assert.equal(drive(decider, clock, 2 * RANGE_SPLIT_QPS, 4, uniform).kind, 'split');
  // Load falls: the sample is dropped and the answer goes back to below-threshold.
  assert.equal(drive(decider, clock, 100, 3, uniform).kind, 'none');
  assert.deepEqual(decider.lastDecision, { kind: 'none', reason: 'below-threshold' });
  // An idle range's QPS decays without any request: the window that was open
  // is averaged over the whole idle time, and the next one is empty.
  clock.ms += 5000;
  assert.ok(decider.qps() < 100);
  clock.ms += 1500; // not exactly 1000: the fake clock's fractional steps would round it below a window
  assert.equal(decider.qps(), 0);
});

test('LoadSplitDecider: a single hot key has no good split key', () => {
  // Every candidate is the hot key itself, and every request starts at it, so
  // all of them fall right of a split there: imbalance 1. We do not split
  // right after the key instead: that would leave all of its load on one
  // side, spreading nothing; if other keys carried load too, they would be
  // candidates and a balanced one would win.
  const { decider, clock } = deciderFor(11);
  const hot = keyOf(5000);
  const choice = drive(decider, clock, 2 * RANGE_SPLIT_QPS, 12, () => point(hot));
  assert.equal(choice.kind, 'none');
  if (choice.kind !== 'none') return;
  assert.equal(choice.reason, 'imbalanced');
  assert.deepEqual(choice.best?.key, hot);
  assert.equal(choice.best?.imbalance, 1);
});

test('LoadSplitDecider: requests spanning the whole range give no good key', () => {
  // Full scans start at the range start, which is no split key: no candidate at all.
  const bounds: RangeBounds = { start: utf8('a'), end: utf8('z') };
  const { decider, clock } = deciderFor(13, bounds);
  const scan: KeyInterval = { start: bounds.start, end: bounds.end };
  assert.deepEqual(drive(decider, clock, 2 * RANGE_SPLIT_QPS, 12, () => scan), { kind: 'none', reason: 'no-candidates' });
});

test('LoadSplitDecider: balanced keys that most requests cross give no good key', () => {
  // 60% whole-range scans, 40% uniform point reads: the point reads offer
  // balanced candidates, but each is crossed by ~60% of requests.
  const { decider, clock, rng } = deciderFor(17);
  const scan: KeyInterval = { start: new Uint8Array(0), end: new Uint8Array(0) }; // etcd's "every key from start on"
  const choice = drive(decider, clock, 2 * RANGE_SPLIT_QPS, 12, () => (rng.chance(0.6) ? scan : point(keyOf(rng.intBelow(KEYS)))));
  assert.equal(choice.kind, 'none');
  if (choice.kind !== 'none') return;
  assert.equal(choice.reason, 'too-many-crossing');
  assert.ok(choice.best !== undefined && choice.best.crossingFraction >= 0.5);
});

/** An Rng whose draws always lose the reservoir lottery, so the first candidates stay. */
const keepFirst: Rng = {
  nextUint32: () => 0xffffffff,
  intBelow: (bound) => bound - 1,
  intBetween: (_min, max) => max,
  float: () => 0.999999,
  chance: () => false,
  fork: () => keepFirst,
};

test('SplitKeyFinder: counts left, right and crossing per candidate', () => {
  const finder = new SplitKeyFinder(WHOLE, keepFirst, { sampleSize: 1, minCount: 5 });
  finder.record(point(utf8('m'))); // the only candidate: 'm' (its own request is not counted)
  finder.record(point(utf8('a'))); // left
  finder.record(point(utf8('m'))); // right: a split at 'm' puts 'm' on the right
  finder.record({ start: utf8('a'), end: utf8('m') }); // left: the end is exclusive
  finder.record({ start: utf8('a'), end: utf8('m\x00') }); // crosses
  finder.record({ start: utf8('a'), end: new Uint8Array(0) }); // crosses: to the end of the key space
  assert.deepEqual(finder.choose(), {
    kind: 'none',
    reason: 'imbalanced', // 2 left, 1 right: imbalance 1/3 is over 0.25
    best: { key: utf8('m'), left: 2, right: 1, crossing: 2, imbalance: 1 / 3, crossingFraction: 0.4 },
  });
});

test('SplitKeyFinder: refuses bad options with INVALID_CONFIG', () => {
  const rng = new SeededRng(1);
  const bad = (e: unknown): boolean => isTesseraError(e, 'INVALID_CONFIG');
  assert.throws(() => new SplitKeyFinder(WHOLE, rng, { sampleSize: 0 }), bad);
  assert.throws(() => new SplitKeyFinder(WHOLE, rng, { maxImbalance: 0 }), bad);
  assert.throws(() => new SplitKeyFinder(WHOLE, rng, { maxCrossingFraction: Number.NaN }), bad);
  assert.throws(() => new LoadSplitDecider(WHOLE, { clock: new FakeClock(), rng, minCount: 1.5 }), bad);
});

// ---------------------------------------------------------------------------
// Property: whatever the load, a chosen key lies strictly inside the range.

const keyArb = fc.uint8Array({ maxLength: 3, max: 6 });
const requestArb: fc.Arbitrary<KeyInterval> = fc.oneof(
  keyArb.map((k) => ({ start: k, end: undefined })),
  fc.tuple(keyArb, keyArb).map(([a, b]) => ({ start: a, end: b })), // may be empty, reversed or reach the end (b empty)
);
const boundsArb: fc.Arbitrary<RangeBounds> = fc
  .tuple(keyArb, fc.option(keyArb, { nil: undefined }))
  .filter(([s, e]) => e === undefined || compareBytes(s, e) < 0)
  .map(([start, end]) => ({ start, end }));

test('SplitKeyFinder property: a chosen key is strictly inside the range bounds', () => {
  let splits = 0;
  fc.assert(
    fc.property(boundsArb, fc.array(requestArb, { maxLength: 300 }), fc.integer(), (bounds, requests, seed) => {
      const finder = new SplitKeyFinder(bounds, new SeededRng(seed), { minCount: 5 });
      for (const r of requests) finder.record(r);
      const choice = finder.choose();
      if (choice.kind !== 'split') return;
      splits++;
      assert.ok(compareBytes(bounds.start, choice.key) < 0, 'after the start');
      assert.ok(bounds.end === undefined || compareBytes(choice.key, bounds.end) < 0, 'before the end');
    }),
    { numRuns: 500 },
  );
  assert.ok(splits > 20, `the property must see splits, saw ${splits}`);
});
