import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TesseraError, type Timers } from '../base/index.js';
import type { DropReason } from '../raft/index.js';
import { PROPOSAL_RETRY_MS, RequestRunner, type RequestOutcome } from './requests.js';
import type { ProposalOutcome, Store } from './store.js';
import { ManualTimers } from '../base/manual_timers.testlib.js';

/** Timers driven by hand: `advance` runs what falls due, in order. */

/** A store that answers each proposal with the next scripted outcome (none: it stays in flight). */
function scriptedStore(script: (attempt: number) => ProposalOutcome | undefined) {
  const calls = { proposals: [] as string[], abandoned: [] as string[], reads: [] as ((e: TesseraError | undefined) => void)[] };
  const store = {
    propose: (_rangeId: number, requestId: string, _data: Uint8Array, done: (o: ProposalOutcome) => void) => {
      calls.proposals.push(requestId);
      const outcome = script(calls.proposals.length);
      if (outcome !== undefined) done(outcome);
    },
    abandon: (requestId: string) => calls.abandoned.push(requestId),
    linearizableRead: (_rangeId: number, done: (e: TesseraError | undefined) => void) => calls.reads.push(done),
  };
  return { store: store as unknown as Store, calls };
}

const dropped = (reason: DropReason): ProposalOutcome => ({ kind: 'dropped', error: new TesseraError('PROPOSAL_DROPPED', `dropped: ${reason}`), reason });

function runner(store: Store, timers: Timers, requestTimeoutMs = 1000): RequestRunner {
  return new RequestRunner({ store, rangeId: 1, requestTimeoutMs, requestIdPrefix: 'n1-boot', timers });
}

function proposeOnce(r: RequestRunner): RequestOutcome[] {
  const outcomes: RequestOutcome[] = [];
  r.propose(() => new Uint8Array([1]), (o) => outcomes.push(o));
  return outcomes;
}

test('requests: a proposal dropped while no leader is known is proposed again, with the same request id, until it applies', () => {
  const timers = new ManualTimers();
  const { store, calls } = scriptedStore((n) => (n < 4 ? dropped('no-leader') : { kind: 'applied', result: 'ok' }));
  const outcomes = proposeOnce(runner(store, timers));
  assert.equal(outcomes.length, 0);
  timers.advance(PROPOSAL_RETRY_MS * 3);
  assert.deepEqual(outcomes, [{ kind: 'applied', result: 'ok' }]);
  assert.equal(calls.proposals.length, 4);
  assert.equal(new Set(calls.proposals).size, 1, 'one request id for every attempt, so the store deduplicates');
  timers.advance(5000);
  assert.equal(outcomes.length, 1, 'reported once: the deadline was cancelled');
});

test('requests: dropped on every attempt until the deadline is a definite NOT_LEADER, not an unknown outcome', () => {
  const timers = new ManualTimers();
  const { store, calls } = scriptedStore(() => dropped('no-leader'));
  const outcomes = proposeOnce(runner(store, timers, 200));
  timers.advance(1000);
  assert.equal(outcomes.length, 1);
  const o = outcomes[0];
  assert.ok(o?.kind === 'failed' && o.error.code === 'NOT_LEADER', JSON.stringify(o));
  assert.ok(calls.proposals.length >= 200 / PROPOSAL_RETRY_MS - 1, `retried ${calls.proposals.length} times`);
  assert.deepEqual(calls.abandoned, []);
});

test('requests: a proposal still in flight at the deadline is abandoned and its outcome is unknown (TIMEOUT)', () => {
  const timers = new ManualTimers();
  const { store, calls } = scriptedStore((n) => (n === 1 ? dropped('no-leader') : undefined));
  const outcomes = proposeOnce(runner(store, timers, 300));
  timers.advance(299);
  assert.equal(outcomes.length, 0);
  timers.advance(1);
  const o = outcomes[0];
  assert.ok(o?.kind === 'failed' && o.error.code === 'TIMEOUT', JSON.stringify(o));
  assert.deepEqual(calls.abandoned, [calls.proposals[0]]);
});

test('requests: a drop that is not about leadership (the uncommitted log is full) is reported at once, not retried', () => {
  const timers = new ManualTimers();
  const { store, calls } = scriptedStore(() => dropped('uncommitted-size-limit'));
  const outcomes = proposeOnce(runner(store, timers));
  const o = outcomes[0];
  assert.ok(o?.kind === 'failed' && o.error.code === 'NOT_LEADER', JSON.stringify(o));
  assert.equal(calls.proposals.length, 1);
});

test('requests: a read barrier that gets no answer by the deadline reports TIMEOUT once; a late answer is ignored', () => {
  const timers = new ManualTimers();
  const { store, calls } = scriptedStore(() => undefined);
  const r = runner(store, timers, 100);
  const errors: (TesseraError | undefined)[] = [];
  r.readBarrier((e) => errors.push(e));
  timers.advance(100);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.code, 'TIMEOUT');
  calls.reads[0]?.(undefined);
  assert.equal(errors.length, 1);
});
