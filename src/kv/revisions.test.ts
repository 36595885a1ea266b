import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TesseraError } from '../base/index.js';
import type { NodeId, StateType } from '../raft/index.js';
import { readCommand } from './commands.js';
import { type RevisionHost, type RevisionMessage, RevisionService } from './revisions.js';
import { openEntry } from './stamp.js';
import type { ProposalOutcome } from './store.js';
import type { TsoAnswer } from './tso.js';
import { ManualTimers } from '../base/manual_timers.testlib.js';

/** Timers on a hand-moved clock. */

/** The Store and meta replica a service sees, driven by hand. */
class FakeHost implements RevisionHost {
  raft: { state: StateType; term: number; lead: NodeId } = { state: 'follower', term: 1, lead: 0 };
  window = 0;
  floor = 1;
  readonly reads: ((error: TesseraError | undefined) => void)[] = [];
  readonly proposals: { requestId: string; bound: number; done: (o: ProposalOutcome) => void }[] = [];
  linearizableRead(_rangeId: number, done: (error: TesseraError | undefined) => void): void {
    this.reads.push(done);
  }
  propose(_rangeId: number, requestId: string, data: Uint8Array, done: (o: ProposalOutcome) => void): void {
    const opened = openEntry(data);
    assert.ok(typeof opened !== 'string' && opened.revision === undefined);
    const command = readCommand(opened.body);
    assert.ok(typeof command !== 'string' && command.kind === 'tso-window', 'the service proposes only windows');
    this.proposals.push({ requestId, bound: command.bound, done });
  }
  metaRaft(): { state: StateType; term: number; lead: NodeId } {
    return this.raft;
  }
  windowBound(): number {
    return this.window;
  }
  floorBound(): number {
    return this.floor;
  }
}

function service(nodeId: NodeId, opts: { sabotage?: boolean } = {}) {
  const host = new FakeHost();
  const timers = new ManualTimers();
  const sent: { to: NodeId; message: RevisionMessage }[] = [];
  const handedOut: [number, number][] = [];
  const svc = new RevisionService({
    nodeId,
    metaRange: 1,
    host,
    send: (to, message) => sent.push({ to, message }),
    timers,
    deadlineMs: 100,
    requestIdPrefix: `n${nodeId}`,
    onHandedOut: (first, last) => handedOut.push([first, last]),
    ...(opts.sabotage === true ? { sabotage: { has: () => true } } : {}),
  });
  return { svc, host, timers, sent, handedOut };
}

/** Makes the service's node meta leader in `term`, with its no-op applied and its first window persisted. */
function lead(s: ReturnType<typeof service>, term: number): void {
  s.host.raft = { state: 'leader', term, lead: 1 };
  s.svc.onMetaApplied(term, undefined);
  const window = s.host.proposals.at(-1);
  assert.ok(window !== undefined, 'a new leader proposes a window');
  s.host.window = Math.max(s.host.window, window.bound);
  s.svc.onMetaApplied(term, s.host.window);
}

function collect(): { answers: TsoAnswer[]; done: (a: TsoAnswer) => void } {
  const answers: TsoAnswer[] = [];
  return { answers, done: (a) => answers.push(a) };
}

test('RevisionService: the oracle leads only once an entry of its own term applied, and serves only under a persisted window', () => {
  const s = service(1);
  s.host.raft = { state: 'leader', term: 2, lead: 1 };
  const a = collect();
  s.svc.allocate(3, a.done);
  s.svc.onMetaApplied(1, undefined); // an entry of the previous term: not yet
  assert.equal(s.svc.isLeader, false);
  // Past the deadline it proposes an entry of its own term (Raft's no-op may be missing: commit-old-term), once per term.
  assert.equal(s.host.proposals.length, 0);
  s.timers.advance(60);
  s.svc.check();
  assert.deepEqual(s.host.proposals.map((p) => p.bound), [0]);
  s.svc.check();
  assert.equal(s.host.proposals.length, 1);
  s.svc.onMetaApplied(2, undefined);
  assert.equal(s.svc.isLeader, true);
  assert.equal(s.host.proposals.length, 2, 'the new leader persists a window first');
  assert.equal(s.host.reads.length, 0, 'nothing is served before the window is persisted');
  s.host.window = (s.host.proposals[1] as { bound: number }).bound;
  s.svc.onMetaApplied(2, s.host.window);
  assert.equal(s.host.reads.length, 1, 'then leadership is confirmed');
  assert.equal(a.answers.length, 0, 'and nothing is answered before the confirmation');
  (s.host.reads[0] as (e: undefined) => void)(undefined);
  assert.deepEqual(a.answers, [{ ok: true, first: 2, last: 4 }], 'the first revision is above etcd’s initial revision 1');
  assert.deepEqual(s.handedOut, [[2, 4]]);
});

test('RevisionService: requests that arrive during a confirmation share the next one', () => {
  const s = service(1);
  lead(s, 2);
  const a = collect();
  s.svc.allocate(1, a.done);
  assert.equal(s.host.reads.length, 1);
  s.svc.allocate(2, a.done);
  s.svc.allocate(3, a.done);
  assert.equal(s.host.reads.length, 1, 'one confirmation in flight');
  (s.host.reads[0] as (e: undefined) => void)(undefined);
  assert.equal(s.host.reads.length, 2, 'the two later requests share the second');
  (s.host.reads[1] as (e: undefined) => void)(undefined);
  assert.deepEqual(a.answers.map((x) => (x.ok ? [x.first, x.last] : x.error.code)), [[2, 2], [3, 4], [5, 7]]);
});

test('RevisionService: a leader deposed while confirming answers NOT_LEADER, and the late confirmation hands out nothing', () => {
  const s = service(1);
  lead(s, 2);
  const a = collect();
  s.svc.allocate(5, a.done);
  s.host.raft = { state: 'follower', term: 3, lead: 2 };
  s.svc.check();
  assert.equal(a.answers.length, 1);
  assert.equal((a.answers[0] as { ok: false; error: TesseraError }).error.code, 'NOT_LEADER');
  (s.host.reads[0] as (e: undefined) => void)(undefined);
  assert.equal(a.answers.length, 1);
  assert.deepEqual(s.handedOut, []);
  // A later leadership starts at the persisted window, above anything this one took from its oracle.
  s.host.raft = { state: 'leader', term: 4, lead: 1 };
  const before = s.host.window;
  lead(s, 4);
  const b = collect();
  s.svc.allocate(1, b.done);
  (s.host.reads.at(-1) as (e: undefined) => void)(undefined);
  assert.ok(b.answers[0]?.ok === true && b.answers[0].first >= before);
});

test('RevisionService: a follower asks the meta leader over the transport; answers are checked, and a silent leader times out retryably', () => {
  const leaderSide = service(1);
  lead(leaderSide, 2);
  const follower = service(2);
  follower.host.raft = { state: 'follower', term: 2, lead: 1 };
  const a = collect();
  follower.svc.allocate(4, a.done);
  const request = follower.sent.pop() as { to: NodeId; message: RevisionMessage };
  assert.equal(request.to, 1);
  leaderSide.svc.receive(2, request.message);
  (leaderSide.host.reads[0] as (e: undefined) => void)(undefined);
  const answer = leaderSide.sent.pop() as { to: NodeId; message: RevisionMessage };
  assert.equal(answer.to, 2);
  follower.svc.receive(1, answer.message);
  follower.svc.receive(1, answer.message); // a duplicate answers nobody
  assert.deepEqual(a.answers, [{ ok: true, first: 2, last: 5 }]);
  // A hostile answer of the wrong size is refused, never stamped.
  const b = collect();
  follower.svc.allocate(2, b.done);
  const r2 = follower.sent.pop()?.message as RevisionMessage;
  follower.svc.receive(1, { kind: 'answer', id: r2.id, first: 10, last: 20 });
  assert.equal(b.answers[0]?.ok, false);
  // No answer: the deadline fails it with TIMEOUT; nothing was proposed with it.
  const c = collect();
  follower.svc.allocate(1, c.done);
  follower.timers.advance(100);
  assert.equal(c.answers.length, 1);
  assert.equal((c.answers[0] as { ok: false; error: TesseraError }).error.code, 'TIMEOUT');
});

test('RevisionService: a node that does not lead the meta range refuses a peer with a leader hint; a node that knows no meta leader refuses at once', () => {
  const s = service(3);
  s.host.raft = { state: 'follower', term: 5, lead: 1 };
  s.svc.receive(2, { kind: 'request', id: 'x', count: 1 });
  assert.deepEqual(s.sent, [{ to: 2, message: { kind: 'refusal', id: 'x', code: 'NOT_LEADER', leader: 1 } }]);
  const asker = service(2);
  asker.host.raft = { state: 'candidate', term: 5, lead: 0 };
  const a = collect();
  asker.svc.allocate(1, a.done);
  assert.equal(a.answers[0]?.ok, false, 'no leader known: refused at once');
});

test('RevisionService: under tso-serves-before-persist the oracle serves before its window is persisted', () => {
  const s = service(1, { sabotage: true });
  s.host.raft = { state: 'leader', term: 2, lead: 1 };
  s.svc.onMetaApplied(2, undefined);
  const a = collect();
  s.svc.allocate(1, a.done);
  assert.equal(s.host.reads.length, 1, 'served from the window only asked for');
});
