import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { etcdctl, etcdctlMissing } from './etcd/testing.testlib.js';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from './net_util.js';
import { KvClient, NodeProcess, ProcCluster, note, partitionProblem, rangesOf, retryUntil } from './process_cluster.testlib.js';
import type { RangeInfo } from './ranges.js';

/** Small enough that a few hundred keys make several ranges. */
const RANGE_MAX_BYTES = 8_192;
const KEYS = 400;
const VALUE_BYTES = 100;

function valueOf(i: number): string {
  return `v${i}-`.padEnd(VALUE_BYTES, String.fromCharCode(97 + (i % 26)));
}



test('real processes: 3 nodes split a loaded key space into many ranges by size; every acknowledged key reads back through etcdctl and the etcd3 client; a 4th node joins and takes its share of the ranges', async (t) => {
  const cluster = await ProcCluster.create(3, { prefix: 'tessera-split-', extraArgs: ['--range-max-bytes', String(RANGE_MAX_BYTES)] });
  try {
    await cluster.startAll();
    const clients = cluster.clientAddresses.map((a) => new KvClient(a));
    // A watch over the whole prefix, opened before the load on another node than most writes: it must see every put once, in revision order, as the key space splits under it.
    const watchClient = new Etcd3({ hosts: [`http://${cluster.clientAddresses[1]!}`] });
    const live: { key: string; value: string; revision: number }[] = [];
    const watcher = await watchClient.watch().prefix('key/').create();
    watcher.on('put', (kv) => live.push({ key: kv.key.toString(), value: kv.value.toString(), revision: Number(kv.mod_revision) }));
    const acked = new Map<string, string>();
    const putErrors: string[] = [];
    for (let i = 0; i < KEYS; i++) {
      const key = `key/${String((i * 7919) % 10_007).padStart(5, '0')}`;
      const value = valueOf(i);
      await retryUntil(`put ${key}`, 20_000, () =>
        clients[i % clients.length]!.put(key, value, 5_000).catch((error: unknown) => {
          putErrors.push(String((error as Error).message ?? error).slice(0, 120));
          throw error;
        }),
      );
      acked.set(key, value);
    }
    const admin = cluster.specs[0]!.admin;
    const ranges = await retryUntil('several ranges', 30_000, async () => {
      const list = await rangesOf(admin);
      if (list.length < 4) throw new Error(`${list.length} ranges so far`);
      return list;
    });
    if (putErrors.length > 0) note(`puts retried after: ${[...new Set(putErrors)].join(' | ')} (${putErrors.length} times)`);
    note(`split into ${ranges.length} ranges: ${ranges.map((r) => `${r.id}:${r.keys}k/${r.bytes}B@${r.leader ?? '-'}`).join(' ')}`);
    assert.equal(partitionProblem(ranges), undefined);
    // Every node sees every range with the same bounds once it has caught up.
    for (const spec of cluster.specs) {
      await retryUntil(`${spec.name} holds every range`, 30_000, async () => {
        const mine = await rangesOf(spec.admin);
        const problem = partitionProblem(mine);
        if (problem !== undefined || mine.length < ranges.length) throw new Error(problem ?? `${mine.length} ranges`);
      });
    }

    await t.test('etcd3 client watches over every range: the live watch saw each put once, in revision order; one resumed from its first revision replays the same from history', async () => {
      try {
        await retryUntil('the live watch has every acknowledged key', 30_000, async () => {
          const keys = new Set(live.map((e) => e.key));
          if ([...acked.keys()].some((k) => !keys.has(k))) throw new Error(`${keys.size} of ${acked.size} keys in ${live.length} events`);
        });
        // Strictly rising revisions: no event twice, none out of order. A put retried after a timeout may have applied twice: two events.
        for (let i = 1; i < live.length; i++) assert.ok(live[i]!.revision > live[i - 1]!.revision, `event ${i} at ${live[i]!.revision} after ${live[i - 1]!.revision}`);
        for (const e of live) assert.equal(e.value, acked.get(e.key), e.key);
        assert.deepEqual(new Set(live.map((e) => e.key)), new Set(acked.keys()), 'every acknowledged key, and only those');
        note(`live watch: ${live.length} events for ${acked.size} acknowledged puts (${live.length - acked.size} from retried puts)`);
        const replayed: number[] = [];
        const again = await watchClient.watch().prefix('key/').startRevision(String(live[0]!.revision)).create();
        again.on('put', (kv) => replayed.push(Number(kv.mod_revision)));
        await retryUntil('the resumed watch replays every put', 30_000, async () => {
          if (replayed.length < live.length) throw new Error(`${replayed.length} of ${live.length} events`);
        });
        assert.deepEqual(replayed, live.map((e) => e.revision));
        await again.cancel();
      } finally {
        await watcher.cancel();
        watchClient.close();
      }
    });

    await t.test('etcd3 client: every key, with its value, one read over every range', async () => {
      const client = new Etcd3({ hosts: cluster.clientAddresses.map((a) => `http://${a}`) });
      try {
        const all = await client.getAll().prefix('key/').strings();
        assert.equal(Object.keys(all).length, acked.size);
        for (const [k, v] of acked) assert.equal(all[k], v, k);
        assert.equal(await client.getAll().prefix('key/').count(), acked.size);
      } finally {
        client.close();
      }
    });

    await t.test('etcdctl: get --prefix lists every key from each node; a limited read pages across ranges', { skip: etcdctlMissing() }, async () => {
      for (const address of cluster.clientAddresses) {
        const out = await etcdctl(address, ['get', '--prefix', 'key/', '--keys-only']);
        assert.equal(out.code, 0, out.stderr);
        const keys = out.stdout.split('\n').filter((l) => l.length > 0);
        assert.deepEqual(keys, [...acked.keys()].sort());
      }
      const limited = await etcdctl(cluster.clientAddresses[1]!, ['get', '--prefix', 'key/', '--limit', '7', '-w', 'json']);
      const json = JSON.parse(limited.stdout) as { kvs: unknown[]; more: boolean; count: number };
      assert.equal(json.kvs.length, 7);
      assert.equal(json.more, true);
      assert.equal(json.count, acked.size);
    });

    await t.test('a write over two ranges is refused whole (FAILED_PRECONDITION); a write inside one succeeds', { skip: etcdctlMissing() }, async () => {
      const refused = await etcdctl(cluster.clientAddresses[0]!, ['del', '--prefix', 'key/']);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /more than one range/);
      const still = await etcdctl(cluster.clientAddresses[0]!, ['get', '--prefix', 'key/', '--keys-only']);
      assert.equal(still.stdout.split('\n').filter((l) => l.length > 0).length, acked.size, 'nothing was deleted');
      const inside = await etcdctl(cluster.clientAddresses[2]!, ['put', 'key/00000', 'one range']);
      assert.equal(inside.code, 0, inside.stderr);
    });
    await t.test('a 4th node joins (etcdctl member add) and takes its share (default --replicas 3: a voter of some data ranges, each range on 3 voters); with one founder SIGKILLed every key still reads back', { skip: etcdctlMissing() }, async () => {
      const [client4, peer4, admin4] = (await freePorts(3)).map((p) => `127.0.0.1:${p}`) as [string, string, string];
      const added = await etcdctl(cluster.clientAddresses[0]!, ['member', 'add', 'n4', `--peer-urls=http://${peer4}`]);
      assert.equal(added.code, 0, added.stderr);
      const founders = cluster.specs[0]!.initialCluster as string;
      const joiner = NodeProcess.spawn(
        { name: 'n4', dataDir: join(cluster.root, 'n4'), client: client4, peer: peer4, admin: admin4, initialCluster: `${founders},n4=${peer4}` },
        ['--range-max-bytes', String(RANGE_MAX_BYTES), '--initial-cluster-state', 'existing'],
      );
      try {
        await joiner.waitReady();
        const share = await retryUntil('n4 takes its share of the data ranges', 90_000, async () => {
          // Each node lists its own replicas: the cluster's ranges are their union (n4's view of a range it holds wins).
          const byId = new Map<number, RangeInfo>();
          for (const a of [...cluster.specs.map((x) => x.admin), admin4]) for (const r of await rangesOf(a).catch(() => [] as RangeInfo[])) if (!byId.has(r.id) || a === admin4) byId.set(r.id, r);
          const all = [...byId.values()].sort((a, b) => Buffer.compare(Buffer.from(a.start, 'base64'), Buffer.from(b.start, 'base64')));
          const data = all.filter((r) => r.id !== 1);
          const mine = data.filter((r) => r.replicas.some((x) => x.node === 'n4' && x.role === 'voter')).length;
          const spread = data.every((r) => r.replicas.filter((x) => x.role === 'voter').length === 3);
          // Balanced: 3 replicas per range over 4 nodes, n4 within one of its even share.
          if (partitionProblem(all) !== undefined || !spread || mine < Math.floor((data.length * 3) / 4) - 1) throw new Error(`n4 votes in ${mine} of ${data.length} data ranges: ${data.map((r) => `${r.id}@${r.replicas.map((x) => `${x.node}:${x.role[0]}`).join("+")}`).join(" ")} partition ${partitionProblem(all)}`);
          return `${mine} of ${data.length}`;
        }, 250);
        note(`n4 joined and votes in ${share} data ranges`);
        const fromJoiner = await etcdctl(client4, ['get', '--prefix', 'key/', '--keys-only', '--consistency=s']);
        assert.deepEqual(fromJoiner.stdout.split('\n').filter((l) => l.length > 0), [...acked.keys()].sort(), 'the joiner holds every key');
        await cluster.kill(0);
        const survivors = [cluster.clientAddresses[1]!, cluster.clientAddresses[2]!, client4];
        const read = await retryUntil('a linearizable read with n1 down', 30_000, async () => {
          const out = await etcdctl(survivors[0]!, ['get', '--prefix', 'key/', '--keys-only']);
          if (out.code !== 0) throw new Error(out.stderr);
          return out.stdout.split('\n').filter((l) => l.length > 0);
        });
        assert.deepEqual(read, [...acked.keys()].sort());
        const put = await retryUntil('a write with n1 down', 30_000, async () => {
          const out = await etcdctl(client4, ['put', 'key/after-kill', 'ok']);
          if (out.code !== 0) throw new Error(out.stderr);
          return out;
        });
        assert.equal(put.code, 0);

        // n1 back (under --replicas 3, n4's replicas need a third live node to move to), then decommission
        // n4: it hands its range leaderships over, its replicas move, it asks for its removal, and stops once removed.
        await cluster.start(0);
        joiner.expectedExit = true;
        const survivorAdmins = [cluster.specs[0]!.admin, cluster.specs[1]!.admin, cluster.specs[2]!.admin, admin4];
        const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
        const out = await new Promise<{ code: number; stdout: string }>((resolve) =>
          execFile(process.execPath, [main, 'node', 'decommission', 'n4', '--endpoints', survivorAdmins.join(','), '--wait-ms', '60000'], (error, stdout) =>
            resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? 1), stdout }),
          ),
        );
        note(`decommission: ${out.stdout.trim().replace(/\n/g, ' / ')}`);
        if (out.code !== 0) note(`n4 ${joiner.exited === undefined ? 'runs' : `exited: ${JSON.stringify(joiner.exited)}`}; its log:\n${joiner.logs()}`);
        assert.equal(out.code, 0, out.stdout);
        await retryUntil('n4 stops once removed', 30_000, async () => {
          if (joiner.exited === undefined) throw new Error('still running');
        });
        const list = await etcdctl(survivors[0]!, ['member', 'list']);
        assert.doesNotMatch(list.stdout, /\bn4\b/);
        await retryUntil('no range keeps n4', 30_000, async () => {
          // By name while n4 is a member; by id once its record is gone: either way, a fourth replica.
          const left = (await rangesOf(cluster.specs[1]!.admin)).filter((r) => r.replicas.length > 3 || r.replicas.some((x) => x.node === 'n4')).length;
          if (left > 0) throw new Error(`${left} ranges still list n4`);
        });
        const after = await retryUntil('every key after the decommission', 30_000, async () => {
          const got = await etcdctl(survivors[1]!, ['get', '--prefix', 'key/', '--keys-only']);
          if (got.code !== 0) throw new Error(got.stderr);
          return got.stdout.split('\n').filter((l) => l.length > 0 && l !== 'key/after-kill');
        });
        assert.deepEqual(after, [...acked.keys()].sort());
      } finally {
        joiner.expectedExit = true;
        await joiner.kill();
      }
    });
    assert.deepEqual(cluster.unexpectedExits, []);
  } catch (error) {
    note(cluster.unexpectedExits.join('\n'));
    throw error;
  } finally {
    await cluster.destroy();
  }
});
