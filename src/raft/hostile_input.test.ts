/**
 * Messages from the network are hostile (issue 12): whatever a peer sends,
 * stepping it must never throw (an assertion here stops the node) and must
 * leave the node's invariants intact. A correct peer never sends these
 * messages, so Raft refuses them (logs and drops), as it would a corrupt
 * frame, rather than asserting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Cluster, drain, message } from './testing/cluster.js';
import type { Entry, Message, MessageType, NodeId } from './types.js';

const REMOTE_TYPES: readonly MessageType[] = [
  'MsgProp', 'MsgApp', 'MsgAppResp', 'MsgVote', 'MsgVoteResp', 'MsgPreVote', 'MsgPreVoteResp',
  'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex', 'MsgReadIndexResp',
];

/** A cluster of 3 with node 1 leading term 2 and 5 entries committed everywhere; then one hostile message to `target`. */
function setUp(): Cluster {
  const c = new Cluster(3);
  c.elect(1);
  for (const v of ['a', 'b', 'c']) c.run(`propose 1 ${v}`);
  c.run('stabilize');
  return c;
}

const anInt = (near: number): fc.Arbitrary<number> =>
  fc.oneof(fc.integer({ min: 0, max: near + 3 }), fc.constantFrom(0, 1, near, near + 1, 2 ** 31, Number.MAX_SAFE_INTEGER));

function hostile(last: number, term: number): fc.Arbitrary<{ target: NodeId; m: Message }> {
  return fc.record({
    target: fc.constantFrom(1, 2, 3),
    from: fc.constantFrom(1, 2, 3, 9),
    type: fc.constantFrom(...REMOTE_TYPES),
    term: anInt(term),
    logTerm: anInt(term),
    index: anInt(last),
    commit: anInt(last),
    reject: fc.boolean(),
    rejectHint: anInt(last),
    context: fc.option(fc.string({ maxLength: 8 }), { nil: undefined }),
    entryTerms: fc.array(anInt(term), { maxLength: 4 }),
    entryStart: anInt(last),
    contiguous: fc.boolean(),
  }).map((f) => {
    const entries: Entry[] = f.entryTerms.map((t, i) => ({
      term: t,
      index: f.contiguous ? f.index + 1 + i : f.entryStart + i * 2,
      type: 'normal' as const,
      data: new Uint8Array([i]),
    }));
    const fields = { type: f.type, from: f.from, to: f.target, term: f.term, logTerm: f.logTerm, index: f.index, commit: f.commit, reject: f.reject, rejectHint: f.rejectHint, entries };
    return { target: f.target as NodeId, m: message(f.context === undefined ? fields : { ...fields, context: f.context }) };
  });
}

test('raft: a hostile message never throws and never breaks an invariant, on a leader or a follower', () => {
  const probe = setUp();
  const last = probe.raft(1).raftLog.lastIndex();
  const term = probe.raft(1).term;
  fc.assert(
    fc.property(fc.array(hostile(last, term), { minLength: 1, maxLength: 6 }), (steps) => {
      const c = setUp();
      for (const { target, m } of steps) {
        const r = c.raft(target);
        if (m.from === target) continue; // a node's own messages never come over the network
        try {
          r.step(m);
          r.checkInvariants();
        } catch (error) {
          throw new Error(`node ${target} (${r.state}, term ${r.term}) stepping ${JSON.stringify(m)}: ${String(error)}`);
        }
        drain(r);
      }
      // The cluster still works: the leader (whoever it is now, after a new election) commits a write.
      c.run('stabilize');
      for (const id of c.ids()) c.raft(id).checkInvariants();
    }),
    { numRuns: 3000, seed: 12 },
  );
});

test('raft: a forged heartbeat with a commit index beyond the log is refused, not asserted', () => {
  const c = setUp();
  const f = c.raft(2);
  const last = f.raftLog.lastIndex();
  const commitBefore = f.raftLog.committed;
  assert.doesNotThrow(() => f.step(message({ type: 'MsgHeartbeat', from: 1, to: 2, term: f.term, commit: Number.MAX_SAFE_INTEGER })));
  assert.equal(f.raftLog.committed, commitBefore);
  assert.equal(f.raftLog.lastIndex(), last);
  f.checkInvariants();
});
