import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TesseraError } from '../base/index.js';
import type { NodeId } from '../raft/index.js';
import { encodeCommand } from './commands.js';
import type { CommandResult } from './mvcc_state_machine.js';
import { openEntry } from './stamp.js';
import type { ProposalOutcome, RevisionSource, Store } from './store.js';
import { Harness, RANGE } from './testing.testlib.js';
import type { TsoAnswer } from './tso.js';

const enc = new TextEncoder();

/** A stand-in for the revision service: one counter for the cluster; each answer runs as a harness task, or waits while its node is held. */
class FakeTso {
  next = 2;
  readonly held: (() => void)[] = [];
  readonly hold = new Set<NodeId>();
  refuse = false;
  readonly handedOut: { readonly node: NodeId; readonly first: number; readonly last: number }[] = [];

  constructor(private readonly harness: () => Harness) {}

  source(node: NodeId): RevisionSource {
    return {
      allocate: (count: number, done: (a: TsoAnswer) => void): void => {
        let answer: TsoAnswer;
        if (this.refuse) {
          answer = { ok: false, error: new TesseraError('NOT_LEADER', 'fake TSO refuses') };
        } else {
          answer = { ok: true, first: this.next, last: this.next + count - 1 };
          this.handedOut.push({ node, first: this.next, last: this.next + count - 1 });
          this.next += count;
        }
        const deliver = (): void => done(answer);
        if (this.hold.has(node)) this.held.push(deliver);
        else this.harness().tasks.push(deliver);
      },
    };
  }
}

/** A harness whose stores stamp from a FakeTso; every stamp a leader sends in an append is recorded by log index. */
function stampingCluster(ids: NodeId[]): { h: Harness; tso: FakeTso; stampAt: Map<number, number | undefined> } {
  let h: Harness | undefined;
  const tso = new FakeTso(() => h as Harness);
  h = new Harness(ids, { revisions: (id) => tso.source(id) });
  const stampAt = new Map<number, number | undefined>();
  h.filter = (_from, _to, msgs) => {
    for (const { message } of msgs) {
      if (message.type !== 'MsgApp') continue;
      for (const e of message.entries) {
        if (e.type !== 'normal' || e.data.byteLength === 0) continue;
        const opened = openEntry(e.data);
        assert.ok(typeof opened !== 'string', `entry ${e.index} is malformed: ${String(opened)}`);
        stampAt.set(e.index, opened.revision);
      }
    }
    return msgs;
  };
  return { h, tso, stampAt };
}

function put(h: Harness, store: Store, id: string, key: string, done: (r: CommandResult) => void): void {
  const txn = { compare: [], success: [{ type: 'put' as const, put: { key: enc.encode(key), value: enc.encode(id) } }], failure: [] };
  store.propose(RANGE, id, encodeCommand({ kind: 'txn', requestId: id, txn }), (o: ProposalOutcome) => {
    assert.equal(o.kind, 'applied', `proposal ${id} was dropped`);
    if (o.kind === 'applied') done(o.result as CommandResult);
  });
  void h;
}

test('Store stamping: local and follower-forwarded proposals reach the log in revision order, every one stamped', () => {
  const { h, stampAt } = stampingCluster([1, 2, 3]);
  h.tickAll(40);
  const stores = [...h.stores.values()];
  const results: CommandResult[] = [];
  for (let round = 0; round < 6; round++) {
    // Proposals from every node in one event-loop turn, then only part of the tasks run before the next round.
    for (let i = 0; i < 3; i++) put(h, stores[(round + i) % 3] as Store, `p${round}.${i}`, `k${round}.${i}`, (r) => results.push(r));
    for (let n = 0; n < 7 && h.tasks.length > 0; n++) (h.tasks.shift() as () => void)();
  }
  h.settle();
  h.tickAll(5);
  assert.equal(results.length, 18);
  for (const r of results) assert.equal(r.kind, 'txn', `a write was refused: ${JSON.stringify(r)}`);
  const indexes = [...stampAt.keys()].sort((a, b) => a - b);
  assert.ok(indexes.length >= 18);
  let last = 1;
  for (const index of indexes) {
    const stamp = stampAt.get(index);
    assert.ok(stamp !== undefined, `entry ${index} carries no stamp`);
    assert.ok(stamp > last, `entry ${index} has stamp ${stamp} after ${last}: log order and revision order differ`);
    last = stamp;
  }
  // Every replica applied each write at its stamp.
  const revisions = results.map((r) => (r as Extract<CommandResult, { kind: 'txn' }>).response.revision);
  for (const rev of revisions) assert.ok([...stampAt.values()].includes(rev));
});

test('Store stamping: revisions that arrive after the leader was deposed are never applied; the new leader stamps the write afresh', () => {
  const { h, tso, stampAt } = stampingCluster([1, 2, 3]);
  h.tickAll(40);
  const leader = h.leader();
  const successor = ([...h.stores.values()].find((s) => s !== leader) as Store).nodeId;
  tso.hold.add(leader.nodeId);
  let result: CommandResult | undefined;
  put(h, leader, 'late', 'k', (r) => (result = r));
  h.settle();
  assert.equal(tso.held.length, 1, 'the leader asked for revisions and waits');
  const late = tso.handedOut[0] as { first: number; last: number };
  leader.transferLeader(RANGE, successor);
  h.settle();
  h.tickAll(5);
  assert.notEqual(leader.replica(RANGE)?.raw.raft.state, 'leader');
  // The old leader's revisions arrive now: it forwards the bare command, the new leader stamps it.
  tso.hold.clear();
  for (const deliver of tso.held.splice(0)) deliver();
  h.settle();
  h.tickAll(5);
  assert.equal(result?.kind, 'txn');
  const revision = (result as Extract<CommandResult, { kind: 'txn' }>).response.revision;
  assert.ok(revision > late.last, `applied at ${revision}, not above the late batch ${late.first}..${late.last}`);
  assert.ok(![...stampAt.values()].includes(late.first), 'the late revision reached the log');
  assert.equal(leader.stats.revisionsAbandoned, 1);
});

test('Store stamping: a refused allocation drops the proposals as retryable (no-leader), before Raft saw them', () => {
  const { h, tso } = stampingCluster([1]);
  h.tickAll(30);
  tso.refuse = true;
  const outcomes: ProposalOutcome[] = [];
  const txn = { compare: [], success: [{ type: 'put' as const, put: { key: enc.encode('k'), value: enc.encode('v') } }], failure: [] };
  h.leader().propose(RANGE, 'r1', encodeCommand({ kind: 'txn', requestId: 'r1', txn }), (o) => outcomes.push(o));
  h.settle();
  assert.equal(outcomes.length, 1);
  const o = outcomes[0] as ProposalOutcome;
  assert.equal(o.kind, 'dropped');
  if (o.kind === 'dropped') assert.equal(o.reason, 'no-leader');
  assert.equal(h.value(1, 'k'), undefined);
});

test('Store stamping: a proposal queued while revisions are in flight is stamped once they arrive, with no later write to wake it', () => {
  const { h, tso } = stampingCluster([1, 2, 3]);
  h.tickAll(40);
  const leader = h.leader();
  tso.hold.add(leader.nodeId);
  const results: CommandResult[] = [];
  put(h, leader, 'first', 'k1', (r) => results.push(r));
  h.settle();
  assert.equal(tso.held.length, 1, 'the first write asked for revisions and waits');
  // The second arrives while the first request is in flight: it waits in awaitingStamp.
  put(h, leader, 'second', 'k2', (r) => results.push(r));
  h.settle();
  assert.equal(tso.held.length, 1, 'only one request is ever in flight');
  tso.hold.clear();
  for (const deliver of tso.held.splice(0)) deliver();
  h.settle();
  h.tickAll(5);
  assert.equal(results.length, 2, 'the write that waited behind the in-flight request was never stamped');
  for (const r of results) assert.equal(r.kind, 'txn');
});
