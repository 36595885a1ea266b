import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
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

// ---------------------------------------------------------------------------
// Property: revisions rise strictly across leaders, lost proposals and crashes.
// ---------------------------------------------------------------------------

/**
 * One step of a history. The meta range's Raft log is modelled by its effect
 * on the TSO: window proposals in log order, each committed or lost; a
 * leader change resolves the proposals of the old term (a prefix commits,
 * the rest is lost), as a new leader's term-start entry would; a crash
 * loses a node's memory, and only the committed bound survives.
 */
type Step =
  | { readonly kind: 'allocate'; readonly node: number | 'leader'; readonly count: number }
  | { readonly kind: 'persist-complete' }
  | { readonly kind: 'persist-lost' }
  | { readonly kind: 'leader-change'; readonly to: number; readonly committedPrefix: number }
  | { readonly kind: 'crash-restart'; readonly node: number; readonly committedPrefix: number };

const NODES = 3;

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('allocate' as const),
      // Mostly at the leader (a node routes there); sometimes at whichever node, as a stale route would.
      node: fc.oneof({ weight: 3, arbitrary: fc.constant('leader' as const) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: NODES - 1 }) }),
      count: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: TSO_REFILL_BELOW / 2, max: TSO_MAX_BATCH_REVISIONS })),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ kind: 'persist-complete' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'persist-lost' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('leader-change' as const), to: fc.integer({ min: 0, max: NODES - 1 }), committedPrefix: fc.integer({ min: 0, max: 3 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('crash-restart' as const), node: fc.integer({ min: 0, max: NODES - 1 }), committedPrefix: fc.integer({ min: 0, max: 3 }) }),
  },
);

/** Fresh clusters start at 1; the other start runs into MAX_REVISION within a few windows. */
const startArb = fc.constantFrom(1, MAX_REVISION - 3 * TSO_WINDOW_REVISIONS);

interface Request {
  readonly count: number;
  answers: number;
  /** Held by a node that crashed: its caller times out, nobody answers. */
  lost: boolean;
}

interface Proposal {
  readonly node: number;
  readonly bound: number;
}

type ViolationKind = 'not-rising' | 'above-persisted-bound' | 'past-max' | 'wrong-count' | 'unexpected-error' | 'answered-twice' | 'never-answered';

class Cluster {
  private readonly nodes: TimestampOracle[];
  private leader: number | undefined = undefined;
  /** The bound the Raft log holds: the largest committed window. */
  private committedBound: number;
  /** The current leader's uncommitted window proposals, in log order. */
  private proposals: Proposal[] = [];
  private readonly requests: { request: Request; node: number }[] = [];
  private lastHandedOut = 0;
  readonly handedOutBatches: [number, number][] = [];
  readonly refusals: TesseraErrorCode[] = [];
  readonly violations: { kind: ViolationKind; detail: string }[] = [];

  constructor(
    start: number,
    private readonly options: ConstructorParameters<typeof TimestampOracle>[0],
  ) {
    this.committedBound = start;
    this.nodes = Array.from({ length: NODES }, () => new TimestampOracle(options));
    this.leaderChange(0, 0); // a bootstrapped cluster has elected its first meta leader
  }

  run(step: Step): void {
    switch (step.kind) {
      case 'allocate':
        return this.allocate(step.node, step.count);
      case 'persist-complete':
        return this.persistComplete();
      case 'persist-lost':
        return this.persistLost();
      case 'leader-change':
        return this.leaderChange(step.to, step.committedPrefix);
      case 'crash-restart':
        return this.crashRestart(step.node, step.committedPrefix);
    }
  }

  /** Elects a leader if there is none and commits windows until every request is answered. */
  settle(): void {
    if (this.leader === undefined) this.leaderChange(0, 0);
    for (let i = 0; i < 10_000 && this.proposals.length > 0; i++) this.persistComplete();
    for (const { request } of this.requests) {
      if (!request.lost && request.answers === 0) this.violations.push({ kind: 'never-answered', detail: `a request for ${request.count}` });
    }
  }

  checkInvariants(): void {
    for (const node of this.nodes) node.checkInvariants();
  }

  private allocate(at: number | 'leader', count: number): void {
    const node = at === 'leader' ? (this.leader ?? 0) : at;
    const request: Request = { count, answers: 0, lost: false };
    this.requests.push({ request, node });
    this.propose(node, this.nodes[node]!.allocate(count, (a) => this.answer(request, a)));
  }

  private answer(request: Request, a: TsoAnswer): void {
    request.answers++;
    if (request.answers > 1) this.violations.push({ kind: 'answered-twice', detail: `a request for ${request.count}` });
    if (!a.ok) {
      this.refusals.push(a.error.code);
      if (a.error.code !== 'NOT_LEADER' && a.error.code !== 'RESOURCE_EXHAUSTED') this.violations.push({ kind: 'unexpected-error', detail: a.error.code });
      return;
    }
    const batch = `[${a.first}, ${a.last}]`;
    if (a.last - a.first + 1 !== request.count) this.violations.push({ kind: 'wrong-count', detail: `${batch} for ${request.count}` });
    if (a.first <= this.lastHandedOut) this.violations.push({ kind: 'not-rising', detail: `${batch} after ${this.lastHandedOut}` });
    if (a.last >= this.committedBound) this.violations.push({ kind: 'above-persisted-bound', detail: `${batch} with ${this.committedBound} committed` });
    if (a.last >= MAX_REVISION) this.violations.push({ kind: 'past-max', detail: batch });
    this.lastHandedOut = Math.max(this.lastHandedOut, a.last);
    this.handedOutBatches.push([a.first, a.last]);
  }

  private propose(node: number, window: { bound: number } | undefined): void {
    if (window === undefined) return;
    assert.equal(node, this.leader, 'only the leader asks for windows');
    this.proposals.push({ node, bound: window.bound });
  }

  private persistComplete(): void {
    const p = this.proposals.shift();
    if (p === undefined) return;
    this.committedBound = Math.max(this.committedBound, p.bound); // applying keeps the larger bound
    this.propose(p.node, this.nodes[p.node]!.onWindowPersisted(p.bound));
  }

  private persistLost(): void {
    const p = this.proposals.shift();
    if (p === undefined) return;
    this.propose(p.node, this.nodes[p.node]!.onWindowPersistFailed(p.bound));
  }

  /** The old term's proposals: a prefix commits (the new leader applies it before it serves), the rest is lost. */
  private endTerm(committedPrefix: number): void {
    for (const p of this.proposals.slice(0, committedPrefix)) this.committedBound = Math.max(this.committedBound, p.bound);
    this.proposals = [];
  }

  private leaderChange(to: number, committedPrefix: number): void {
    if (this.leader !== undefined) this.nodes[this.leader]!.stepDown();
    this.endTerm(committedPrefix);
    this.leader = to;
    this.propose(to, this.nodes[to]!.becomeLeader(this.committedBound));
  }

  private crashRestart(node: number, committedPrefix: number): void {
    for (const r of this.requests) if (r.node === node && r.request.answers === 0) r.request.lost = true;
    if (node === this.leader) {
      this.endTerm(committedPrefix);
      this.leader = undefined;
    }
    this.nodes[node] = new TimestampOracle(this.options);
  }
}

function runHistory(start: number, steps: readonly Step[], options: ConstructorParameters<typeof TimestampOracle>[0] = {}): Cluster {
  const cluster = new Cluster(start, options);
  for (const step of steps) {
    cluster.run(step);
    cluster.checkInvariants();
  }
  cluster.settle();
  cluster.checkInvariants();
  return cluster;
}

// size 'max': fast-check otherwise keeps arrays near 10 steps, too few to go through several windows.
const historyArb = fc.array(stepArb, { minLength: 1, maxLength: 60, size: 'max' });

test('tso property: across leader changes, lost windows and crashes, handed-out revisions are unique, strictly rising, below the committed bound and below 2^53', () => {
  let handedOut = 0;
  const refusals = new Map<TesseraErrorCode, number>();
  fc.assert(
    fc.property(startArb, historyArb, (start, steps) => {
      const cluster = runHistory(start, steps);
      assert.deepEqual(cluster.violations, []);
      handedOut += cluster.handedOutBatches.length;
      for (const code of cluster.refusals) refusals.set(code, (refusals.get(code) ?? 0) + 1);
    }),
    { numRuns: 400 },
  );
  // The histories reach the cases they are for: many batches, refusals at followers, and the end of the revision space.
  assert.ok(handedOut > 1000, `batches handed out: ${handedOut}`);
  assert.ok((refusals.get('NOT_LEADER') ?? 0) > 50, `NOT_LEADER refusals: ${refusals.get('NOT_LEADER')}`);
  assert.ok((refusals.get('RESOURCE_EXHAUSTED') ?? 0) > 50, `RESOURCE_EXHAUSTED refusals: ${refusals.get('RESOURCE_EXHAUSTED')}`);
  console.log(`tso property: ${handedOut} batches, refusals ${JSON.stringify([...refusals])}`);
});

test("tso property: with 'tso-serves-before-persist' on, some history hands out a revision twice", () => {
  const sabotage = { has: (name: string) => name === TSO_SERVES_BEFORE_PERSIST };
  const result = fc.check(
    fc.property(startArb, historyArb, (start, steps) => runHistory(start, steps, { sabotage }).violations.every((v) => v.kind !== 'not-rising')),
    { numRuns: 2000, seed: Number(process.env['TSO_BUG_SEED'] ?? 13) },
  );
  assert.ok(result.failed, 'the property must fail with the bug on');
  assert.ok(result.counterexample !== null);
  const [start, steps] = result.counterexample;
  const violations = runHistory(start, steps, { sabotage }).violations.filter((v) => v.kind === 'not-rising');
  assert.ok(violations.length > 0);
  console.log(`tso bug: found after ${result.numRuns} runs; shrunk to start ${start}, ${JSON.stringify(steps)}: ${violations[0]!.detail}`);
  // A leader that served from an unpersisted window, then a successor that starts at the old bound.
  assert.ok(steps.some((s) => s.kind === 'leader-change' || s.kind === 'crash-restart'), JSON.stringify(steps));
});
