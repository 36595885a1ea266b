import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssertionError, TesseraError, type TesseraErrorCode } from '../base/index.js';
import { Sabotage } from '../raft/sabotage.js';
import {
  MAX_REVISION,
  TSO_MAX_BATCH_REVISIONS,
  TSO_MAX_QUEUED_REQUESTS,
  TSO_REFILL_BELOW,
  TSO_SERVES_BEFORE_PERSIST,
  TSO_WINDOW_REVISIONS,
  TimestampOracle,
  closedRevision,
  type TsoAnswer,
  type TsoSabotage,
} from './tso.js';

/** Collects the answers given to one `allocate`. */
function recorder(): { done: (a: TsoAnswer) => void; answers: TsoAnswer[] } {
  const answers: TsoAnswer[] = [];
  return { done: (a) => answers.push(a), answers };
}

function okRange(answers: readonly TsoAnswer[]): [number, number] {
  assert.equal(answers.length, 1, 'answered exactly once');
  const a = answers[0]!;
  assert.ok(a.ok, `expected revisions, got ${a.ok ? '' : a.error.code}`);
  return [a.first, a.last];
}

function errorCode(answers: readonly TsoAnswer[]): TesseraErrorCode {
  assert.equal(answers.length, 1, 'answered exactly once');
  const a = answers[0]!;
  assert.ok(!a.ok, 'expected a refusal');
  assert.ok(a.error instanceof TesseraError);
  return a.error.code;
}

/** A leader whose first window has landed: serves [bound, bound + TSO_WINDOW_REVISIONS). */
function servingLeader(bound = 1, options: ConstructorParameters<typeof TimestampOracle>[0] = {}): TimestampOracle {
  const tso = new TimestampOracle(options);
  const window = tso.becomeLeader(bound);
  assert.deepEqual(window, { bound: bound + TSO_WINDOW_REVISIONS });
  assert.equal(tso.onWindowPersisted(window!.bound), undefined, 'a full window asks for nothing more');
  return tso;
}

test('tso: a new leader serves nothing until a window above the persisted bound lands, then starts at that bound', () => {
  const tso = new TimestampOracle();
  const window = tso.becomeLeader(500);
  assert.deepEqual(window, { bound: 500 + TSO_WINDOW_REVISIONS });
  const r = recorder();
  assert.equal(tso.allocate(3, r.done), undefined, 'the window is already in flight');
  assert.equal(r.answers.length, 0, 'queued, not served from the unpersisted window');
  assert.equal(tso.queuedRequests, 1);
  tso.onWindowPersisted(window!.bound);
  assert.deepEqual(okRange(r.answers), [500, 502], 'every revision a predecessor handed out is below 500');
  assert.equal(tso.nextRevision, 503);
  tso.checkInvariants();
});

test('tso: a batch hands out consecutive revisions in one answer, and batches rise', () => {
  const tso = servingLeader();
  const a = recorder();
  const b = recorder();
  tso.allocate(10, a.done);
  tso.allocate(1, b.done);
  assert.deepEqual(okRange(a.answers), [1, 10]);
  assert.deepEqual(okRange(b.answers), [11, 11]);
});

test('tso: asks for the next window once fewer than TSO_REFILL_BELOW remain, and only once', () => {
  const tso = servingLeader();
  const uptoRefill = TSO_WINDOW_REVISIONS - TSO_REFILL_BELOW; // leaves exactly TSO_REFILL_BELOW
  assert.equal(tso.allocate(uptoRefill, recorder().done), undefined);
  const window = tso.allocate(1, recorder().done);
  assert.deepEqual(window, { bound: 1 + 2 * TSO_WINDOW_REVISIONS }, 'raises the bound by one window');
  assert.equal(tso.allocate(1, recorder().done), undefined, 'one proposal in flight at a time');
  assert.equal(tso.inFlightBound, window!.bound);
  assert.equal(tso.onWindowPersisted(window!.bound), undefined);
  assert.equal(tso.persistedBound, window!.bound);
  assert.equal(tso.inFlightBound, undefined);
});

test('tso: never hands out a revision at or above the persisted bound; waiting requests are served in order when the window lands', () => {
  const tso = servingLeader();
  const first = recorder();
  const window = tso.allocate(TSO_WINDOW_REVISIONS - 5, first.done);
  assert.deepEqual(okRange(first.answers), [1, TSO_WINDOW_REVISIONS - 5]);
  assert.ok(window !== undefined);
  const big = recorder();
  const small = recorder();
  tso.allocate(10, big.done); // 5 remain: waits
  tso.allocate(1, small.done); // would fit, but waits behind the earlier request
  assert.equal(big.answers.length + small.answers.length, 0);
  assert.equal(tso.nextRevision, TSO_WINDOW_REVISIONS - 4);
  assert.equal(tso.onWindowPersisted(window.bound), undefined);
  assert.deepEqual(okRange(big.answers), [TSO_WINDOW_REVISIONS - 4, TSO_WINDOW_REVISIONS + 5]);
  assert.deepEqual(okRange(small.answers), [TSO_WINDOW_REVISIONS + 6, TSO_WINDOW_REVISIONS + 6]);
  tso.checkInvariants();
});

test('tso: the queue is bounded; beyond it requests are refused with RESOURCE_EXHAUSTED', () => {
  const tso = new TimestampOracle();
  tso.becomeLeader(1);
  const queued = Array.from({ length: TSO_MAX_QUEUED_REQUESTS }, () => recorder());
  for (const r of queued) tso.allocate(1, r.done);
  const refused = recorder();
  tso.allocate(1, refused.done);
  assert.equal(errorCode(refused.answers), 'RESOURCE_EXHAUSTED');
  tso.onWindowPersisted(1 + TSO_WINDOW_REVISIONS);
  assert.deepEqual(queued.map((r) => okRange(r.answers)[0]), Array.from({ length: TSO_MAX_QUEUED_REQUESTS }, (_, i) => 1 + i));
});

test('tso: stepDown fails queued requests with NOT_LEADER, and a follower refuses requests and ignores windows', () => {
  const tso = new TimestampOracle();
  const window = tso.becomeLeader(1);
  const queued = recorder();
  tso.allocate(2, queued.done);
  tso.stepDown();
  assert.equal(errorCode(queued.answers), 'NOT_LEADER');
  const refused = recorder();
  assert.equal(tso.allocate(1, refused.done), undefined);
  assert.equal(errorCode(refused.answers), 'NOT_LEADER');
  assert.equal(tso.onWindowPersisted(window!.bound), undefined);
  assert.equal(tso.persistedBound, 0, 'the next leadership is told its bound by becomeLeader');
  tso.stepDown(); // repeated notices are harmless
  tso.checkInvariants();
});

test('tso: a lost window proposal is asked for again; a late or older one changes nothing', () => {
  const tso = new TimestampOracle();
  const window = tso.becomeLeader(1)!;
  assert.equal(tso.onWindowPersistFailed(window.bound - 1), undefined, 'not the proposal in flight');
  assert.deepEqual(tso.onWindowPersistFailed(window.bound), window, 'asks for the same bound again');
  const r = recorder();
  tso.allocate(1, r.done);
  tso.onWindowPersisted(window.bound);
  assert.deepEqual(okRange(r.answers), [1, 1]);
  assert.equal(tso.onWindowPersisted(window.bound), undefined, 'a repeated commit');
  assert.equal(tso.onWindowPersisted(1), undefined, 'an older, lower bound');
  assert.equal(tso.persistedBound, window.bound);
});

test('tso: a re-elected leader starts at the bound it is given, above what it handed out before', () => {
  const tso = servingLeader();
  const r = recorder();
  tso.allocate(7, r.done);
  tso.stepDown();
  assert.throws(() => tso.becomeLeader(5), AssertionError, 'a bound below a revision it handed out is a caller bug');
  const window = tso.becomeLeader(1 + TSO_WINDOW_REVISIONS)!;
  tso.onWindowPersisted(window.bound);
  const again = recorder();
  tso.allocate(1, again.done);
  assert.deepEqual(okRange(again.answers), [1 + TSO_WINDOW_REVISIONS, 1 + TSO_WINDOW_REVISIONS]);
  assert.throws(() => tso.becomeLeader(window.bound), AssertionError, 'already leader');
});

test('tso: a batch of a bad size is refused with INVALID_ARGUMENT', () => {
  const tso = servingLeader();
  for (const count of [0, -1, 1.5, Number.NaN, TSO_MAX_BATCH_REVISIONS + 1]) {
    const r = recorder();
    assert.equal(tso.allocate(count, r.done), undefined);
    assert.equal(errorCode(r.answers), 'INVALID_ARGUMENT', `count ${count}`);
  }
  const r = recorder();
  tso.allocate(TSO_MAX_BATCH_REVISIONS, r.done);
  assert.deepEqual(okRange(r.answers), [1, TSO_MAX_BATCH_REVISIONS], 'a whole window is a valid batch');
});

test('tso: revisions stay below MAX_REVISION (2^53 − 1); a request that would pass it is refused with RESOURCE_EXHAUSTED', () => {
  const tso = new TimestampOracle();
  const window = tso.becomeLeader(MAX_REVISION - 10)!;
  assert.deepEqual(window, { bound: MAX_REVISION }, 'the last window is cut at MAX_REVISION');
  const waiting = recorder();
  const passes = recorder();
  tso.allocate(8, waiting.done);
  tso.allocate(11, passes.done);
  assert.equal(errorCode(passes.answers), 'RESOURCE_EXHAUSTED', 'refused at once, not queued');
  assert.equal(tso.onWindowPersisted(window.bound), undefined, 'nothing left to ask for');
  assert.deepEqual(okRange(waiting.answers), [MAX_REVISION - 10, MAX_REVISION - 3]);
  const last = recorder();
  tso.allocate(2, last.done);
  assert.deepEqual(okRange(last.answers), [MAX_REVISION - 2, MAX_REVISION - 1]);
  assert.ok(MAX_REVISION - 1 < 2 ** 53);
  const none = recorder();
  tso.allocate(1, none.done);
  assert.equal(errorCode(none.answers), 'RESOURCE_EXHAUSTED');
  tso.checkInvariants();
});

test('tso: queued requests that together would pass MAX_REVISION are refused when their turn comes', () => {
  const tso = new TimestampOracle();
  const window = tso.becomeLeader(MAX_REVISION - 10)!;
  const a = recorder();
  const b = recorder();
  const c = recorder();
  tso.allocate(6, a.done);
  tso.allocate(6, b.done); // fits on its own when asked, not after a
  tso.allocate(4, c.done);
  tso.onWindowPersisted(window.bound);
  assert.deepEqual(okRange(a.answers), [MAX_REVISION - 10, MAX_REVISION - 5]);
  assert.equal(errorCode(b.answers), 'RESOURCE_EXHAUSTED');
  assert.deepEqual(okRange(c.answers), [MAX_REVISION - 4, MAX_REVISION - 1]);
});

test('tso: an answer callback may call back into the oracle', () => {
  const tso = new TimestampOracle();
  const window = tso.becomeLeader(1)!;
  const inner = recorder();
  const outer = recorder();
  tso.allocate(1, (a) => {
    outer.done(a);
    tso.allocate(1, inner.done); // asked while the queue is being served: it goes behind
  });
  tso.allocate(1, (a) => {
    outer.done(a);
    tso.stepDown();
  });
  tso.allocate(1, outer.done);
  tso.onWindowPersisted(window.bound);
  assert.deepEqual(outer.answers.map((a) => (a.ok ? a.first : a.error.code)), [1, 2, 'NOT_LEADER']);
  assert.equal(errorCode(inner.answers), 'NOT_LEADER');
  tso.checkInvariants();
});

test("tso: the 'tso-serves-before-persist' bug serves from the window it has only asked for", () => {
  const sabotage: TsoSabotage = Sabotage.of(); // the raft layer's Sabotage fits the option's shape
  assert.equal(sabotage.has(TSO_SERVES_BEFORE_PERSIST), false);
  const tso = new TimestampOracle({ sabotage: { has: (name) => name === TSO_SERVES_BEFORE_PERSIST } });
  tso.becomeLeader(1);
  const r = recorder();
  tso.allocate(3, r.done);
  assert.deepEqual(okRange(r.answers), [1, 3], 'served although nothing was persisted');
});

test('closedRevision: one below the smallest revision in flight, or the last TSO revision with none in flight', () => {
  assert.equal(closedRevision([], 41), 41);
  assert.equal(closedRevision([], 0), 0, 'nothing received yet: nothing is closed');
  assert.equal(closedRevision([40, 38, 39], 41), 37);
  assert.equal(closedRevision(new Set([41]), 41), 40);
  assert.equal(closedRevision([1], 5), 0);
});

test("closedRevision: a new leader's inherited entries above its last TSO revision do not close anything above that revision", () => {
  // Entries stamped 90..92 by the previous leader are in its log; it has received only 50 from the TSO itself.
  assert.equal(closedRevision([90, 91, 92], 50), 50);
});

test('closedRevision: non-revisions are bugs', () => {
  assert.throws(() => closedRevision([0], 5), AssertionError);
  assert.throws(() => closedRevision([1.5], 5), AssertionError);
  assert.throws(() => closedRevision([MAX_REVISION], 5), AssertionError);
  assert.throws(() => closedRevision([], -1), AssertionError);
  assert.throws(() => closedRevision([], MAX_REVISION), AssertionError);
});

