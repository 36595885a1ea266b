import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { TxnRequest } from '../mvcc/index.js';
import { MembershipError } from './membership.js';
import { freePorts } from './net_util.js';
import { type NodeHandle, startNode, type StartNodeOptions } from './node.js';
import { waitFor } from './wait.testlib.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const TIMING = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 } as const;

function put(key: string, value: string): TxnRequest {
  return { compare: [], success: [{ type: 'put', put: { key: enc.encode(key), value: enc.encode(value) } }], failure: [] };
}


function leaderOf(nodes: readonly NodeHandle[]): NodeHandle | undefined {
  const leaders = nodes.filter((n) => n.status().state === 'leader');
  return leaders.length === 1 ? leaders[0] : undefined;
}

async function valueOn(node: NodeHandle, key: string): Promise<string | undefined> {
  const kv = (await node.kv.range({ key: enc.encode(key) }, true)).kvs[0];
  return kv === undefined ? undefined : dec.decode(kv.value);
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    assert.ok(error instanceof MembershipError, `a MembershipError, got ${String(error)}`);
    return error.reason;
  }
  assert.fail('the request was accepted');
}

test('membership: a learner joins an existing cluster from a snapshot, is promoted, and a removed member stops', async (t) => {
  const ports = await freePorts(5);
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const founders = [0, 1, 2].map((i) => `n${i + 1}=${peers[i]}`).join(',');
  const removed = new Set<string>();
  const base = (i: number, extra: Partial<StartNodeOptions>): StartNodeOptions => ({
    ...TIMING,
    name: `n${i + 1}`,
    engine: 'memory',
    listenPeer: peers[i] as string,
    listenClient: '127.0.0.1:0',
    clientServer: false,
    logger: pino({ level: 'silent' }),
    // A small log, so the joiner must be sent a snapshot rather than the whole log.
    logRetainEntries: 5,
    onRemoved: () => removed.add(`n${i + 1}`),
    ...extra,
  });
  const nodes: NodeHandle[] = await Promise.all([0, 1, 2].map((i) => startNode(base(i, { initialCluster: founders }))));
  try {
    const leader = await waitFor(() => leaderOf(nodes), 'a leader');
    for (let i = 0; i < 30; i++) await leader.kv.txn(put(`k${i}`, `v${i}`));

    await t.test('refusals carry etcd reasons', async () => {
      assert.equal(await refusal(leader.membership.add([`http://${peers[0]}`], false)), 'peer-url-exists');
      assert.equal(await refusal(leader.membership.add(['not a url'], false)), 'bad-urls');
      assert.equal(await refusal(leader.membership.add([], true)), 'bad-urls');
      assert.equal(await refusal(leader.membership.remove(12345)), 'member-not-found');
      assert.equal(await refusal(leader.membership.promote(nodes[1]?.nodeId as number)), 'member-not-learner');
      assert.equal(await refusal(leader.membership.update(12345, ['http://127.0.0.1:1'])), 'member-not-found');
    });

    let joiner: NodeHandle | undefined;
    await t.test('MemberAdd as learner, then the new node joins with initialClusterState existing', async () => {
      const { member, members } = await leader.membership.add([`http://${peers[3]}`], true);
      assert.equal(member.isLearner, true);
      assert.equal(member.name, '', 'unnamed until it starts');
      assert.equal(members.length, 4);
      assert.equal(await refusal(leader.membership.add([`http://${peers[4]}`], true)), 'too-many-learners');
      // Every founder learns the learner's address from the replicated record.
      for (const n of nodes) await waitFor(() => (n.membership.list().some((m) => m.id === member.id) ? true : undefined), `${n.name} lists the learner`);
      joiner = await startNode(base(3, { initialCluster: `${founders},n4=${peers[3]}`, initialClusterState: 'existing' }));
      assert.equal(joiner.nodeId, member.id, 'the joiner runs under the id MemberAdd gave its peer URL');
      assert.equal(joiner.clusterId, leader.clusterId);
      const j = joiner;
      await waitFor(async () => ((await valueOn(j, 'k29')) === 'v29' ? true : undefined), 'the joiner has the data');
      // It publishes its name once it serves, as etcd members do.
      await waitFor(() => (leader.membership.list().find((m) => m.id === member.id)?.name === 'n4' ? true : undefined), 'the learner published its name');
      nodes.push(joiner);
    });

    await t.test('MemberPromote makes the caught-up learner a voter through a joint configuration', async () => {
      const id = joiner?.nodeId as number;
      const members = await leader.membership.promote(id);
      assert.equal(members.find((m) => m.id === id)?.isLearner, false);
      const cs = leader.store.replica(1)?.currentConfState();
      assert.equal(cs?.voters.length, 4);
      assert.deepEqual(cs?.votersOutgoing, [], 'the joint configuration was left');
      await leader.kv.txn(put('after-promote', 'yes'));
      await waitFor(async () => ((await valueOn(joiner as NodeHandle, 'after-promote')) === 'yes' ? true : undefined), 'the new voter applies writes');
    });

    await t.test('MemberUpdate changes the recorded peer URLs', async () => {
      const id = joiner?.nodeId as number;
      await leader.membership.update(id, [`http://localhost:${ports[3]}`]);
      assert.deepEqual(leader.membership.list().find((m) => m.id === id)?.peerUrls, [`http://localhost:${ports[3]}`]);
      await leader.membership.update(id, [`http://${peers[3]}`]);
    });

    await t.test('MemberRemove takes a follower out; it notices and stops, and the rest keep writing', async () => {
      const victim = nodes.find((n) => n !== leader && n !== joiner) as NodeHandle;
      const members = await leader.membership.remove(victim.nodeId);
      assert.equal(members.length, 3);
      assert.ok(!members.some((m) => m.id === victim.nodeId));
      await waitFor(() => (removed.has(victim.name) ? true : undefined), 'the removed node stopped itself');
      const res = await leader.kv.txn(put('after-remove', 'ok'));
      assert.equal(res.succeeded, true);
      nodes.splice(nodes.indexOf(victim), 1);
    });
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
});

test('membership: a node that asks to join under a peer URL nobody added is refused at start, and learns nothing of the cluster', async () => {
  const ports = await freePorts(2);
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const quiet = { ...TIMING, engine: 'memory' as const, clientServer: false as const, logger: pino({ level: 'silent' }), listenClient: '127.0.0.1:0' };
  const n1 = await startNode({ ...quiet, name: 'n1', listenPeer: peers[0] as string, initialCluster: `n1=${peers[0]}` });
  try {
    await waitFor(() => (n1.status().state === 'leader' ? true : undefined), 'a leader');
    await assert.rejects(
      startNode({ ...quiet, name: 'n2', listenPeer: peers[1] as string, initialCluster: `n1=${peers[0]},n2=${peers[1]}`, initialClusterState: 'existing' }),
      // The member refuses it: an unknown node gets neither the cluster id nor the member list (issue 12).
      /refused: no member has peer URL/,
    );
  } finally {
    await n1.close();
  }
});
