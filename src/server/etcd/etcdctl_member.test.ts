/**
 * Interop: etcdctl 3.4's `member` commands against a three-node tessera
 * cluster, following etcd's runtime-reconfiguration steps: `member add`
 * prints the environment for the new member, which starts with the initial
 * cluster it was given and state "existing".
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { freePorts } from '../net_util.js';
import { type NodeHandle, startNode, type StartNodeOptions } from '../node.js';
import { etcdctl, etcdctlMissing } from './testing.testlib.js';
import { waitFor } from '../wait.testlib.js';

const skip = etcdctlMissing();
if (skip !== undefined) console.log(`# skipping etcdctl member tests: ${skip}`);

const TIMING = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 } as const;


interface MemberLine {
  readonly id: string;
  readonly status: string;
  readonly name: string;
  readonly peerUrls: string;
  readonly clientUrls: string;
  readonly learner: string;
}

/** `member list` prints one "id, status, name, peer URLs, client URLs, is learner" line per member. */
function parseMemberList(out: string): MemberLine[] {
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id, status, name, peerUrls, clientUrls, learner] = l.split(', ');
      return { id: id ?? '', status: status ?? '', name: name ?? '', peerUrls: peerUrls ?? '', clientUrls: clientUrls ?? '', learner: learner ?? '' };
    });
}

describe('etcdctl 3.4 member commands against a tessera cluster', { skip }, () => {
  const nodes: NodeHandle[] = [];
  let peers: string[] = [];
  let base: (i: number, extra: Partial<StartNodeOptions>) => StartNodeOptions;
  const stopped = new Set<string>();

  before(async () => {
    const ports = await freePorts(4);
    peers = ports.map((p) => `127.0.0.1:${p}`);
    const initialCluster = [0, 1, 2].map((i) => `n${i + 1}=${peers[i]}`).join(',');
    base = (i, extra) => ({ ...TIMING, name: `n${i + 1}`, engine: 'memory', listenPeer: peers[i] as string, listenClient: '127.0.0.1:0', logger: pino({ level: 'silent' }), onRemoved: () => stopped.add(`n${i + 1}`), ...extra });
    nodes.push(...(await Promise.all([0, 1, 2].map((i) => startNode(base(i, { initialCluster }))))));
    await waitFor(() => nodes.find((n) => n.status().state === 'leader'), 'a leader');
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
  });

  const leader = (): NodeHandle => nodes.find((n) => n.status().state === 'leader') ?? (nodes[0] as NodeHandle);
  const endpoint = (n: NodeHandle): string => n.endpoints.client as string;
  async function ok(node: NodeHandle, ...args: string[]): Promise<string> {
    const r = await etcdctl(endpoint(node), args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  test('member list shows every member started, with its name, peer URL and client URL', async () => {
    // Client URLs are published by each member once it serves.
    const members = await waitFor(async () => {
      const list = parseMemberList(await ok(nodes[0] as NodeHandle, 'member', 'list'));
      return list.length === 3 && list.every((m) => m.clientUrls !== '') ? list : undefined;
    }, 'all members published');
    for (const n of nodes) {
      const m = members.find((x) => x.name === n.name);
      assert.ok(m !== undefined, `${n.name} listed`);
      assert.equal(m.id, n.nodeId.toString(16));
      assert.equal(m.status, 'started');
      assert.equal(m.peerUrls, `http://${n.endpoints.peer}`);
      assert.equal(m.clientUrls, `http://${endpoint(n)}`);
      assert.equal(m.learner, 'false');
    }
  });

  let added = '';
  test('member add --learner prints the new member\'s environment, and the member joins with it', async () => {
    const out = await ok(leader(), 'member', 'add', 'n4', `--peer-urls=http://${peers[3]}`, '--learner');
    const m = /Member\s+([0-9a-f]+) added to cluster\s+([0-9a-f]+)/.exec(out);
    assert.ok(m !== null, out);
    added = m[1] as string;
    const env = Object.fromEntries([...out.matchAll(/^(ETCD_[A-Z_]+)="(.*)"$/gm)].map((x) => [x[1], x[2]]));
    assert.equal(env['ETCD_NAME'], 'n4');
    assert.equal(env['ETCD_INITIAL_CLUSTER_STATE'], 'existing');
    const initialCluster = env['ETCD_INITIAL_CLUSTER'] as string;
    assert.match(initialCluster, new RegExp(`n4=http://${peers[3]}`));
    const before = parseMemberList(await ok(leader(), 'member', 'list')).find((x) => x.id === added);
    assert.equal(before?.learner, 'true');
    const joiner = await startNode(base(3, { initialCluster, initialClusterState: 'existing' }));
    nodes.push(joiner);
    assert.equal(joiner.nodeId.toString(16), added);
    await ok(leader(), 'put', 'after-join', 'yes');
    const started = await waitFor(async () => {
      const mm = parseMemberList(await ok(leader(), 'member', 'list')).find((x) => x.id === added);
      return mm?.status === 'started' ? mm : undefined;
    }, 'n4 started');
    assert.equal(started.name, 'n4');
    await waitFor(async () => ((await ok(joiner, 'get', 'after-join', '--print-value-only', '--consistency=s')) === 'yes\n' ? true : undefined), 'the learner has the data');
  });

  test('member promote makes the learner a voter', async () => {
    const out = await ok(leader(), 'member', 'promote', added);
    assert.match(out, new RegExp(`Member\\s+${added} promoted in cluster`));
    const mm = parseMemberList(await ok(leader(), 'member', 'list')).find((x) => x.id === added);
    assert.equal(mm?.learner, 'false');
  });

  test('member update records new peer URLs', async () => {
    const out = await ok(leader(), 'member', 'update', added, `--peer-urls=http://localhost:${peers[3]?.split(':')[1]}`);
    assert.match(out, new RegExp(`Member\\s+${added} updated in cluster`));
    assert.equal(parseMemberList(await ok(leader(), 'member', 'list')).find((x) => x.id === added)?.peerUrls, `http://localhost:${peers[3]?.split(':')[1]}`);
    await ok(leader(), 'member', 'update', added, `--peer-urls=http://${peers[3]}`);
  });

  test('member remove takes a follower out, and refusals carry etcd\'s messages', async () => {
    const victim = nodes.find((n) => n !== leader() && n.nodeId.toString(16) !== added) as NodeHandle;
    const out = await ok(leader(), 'member', 'remove', victim.nodeId.toString(16));
    assert.match(out, new RegExp(`Member\\s+${victim.nodeId.toString(16)} removed from cluster`));
    const list = parseMemberList(await ok(leader(), 'member', 'list'));
    assert.equal(list.length, 3);
    assert.ok(!list.some((x) => x.id === victim.nodeId.toString(16)));
    nodes.splice(nodes.indexOf(victim), 1);
    // As an etcd member does, the removed node stops by itself.
    await waitFor(() => (stopped.has(victim.name) ? true : undefined), 'the removed member stopped');
    const gone = await etcdctl(endpoint(leader()), ['member', 'remove', victim.nodeId.toString(16)]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /etcdserver: member not found/);
    const dup = await etcdctl(endpoint(leader()), ['member', 'add', 'again', `--peer-urls=http://${peers[3]}`]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /etcdserver: Peer URLs already exists/);
    const notLearner = await etcdctl(endpoint(leader()), ['member', 'promote', added]);
    assert.notEqual(notLearner.code, 0);
    assert.match(notLearner.stderr, /etcdserver: can only promote a learner member/);
    assert.equal(await ok(leader(), 'put', 'after-remove', 'ok'), 'OK\n');
  });
});
