/**
 * `etcdctl check perf --load=s` (etcdctl 3.4) against a 3-node tessera
 * cluster of real processes: etcd's own health verdict for a cluster. For
 * 60 s, 50 clients put keys under /etcdctl-check-perf/ (256-byte keys,
 * 1 KiB values) at 150 writes/s in all; it then deletes the prefix and
 * prints one PASS or FAIL line for throughput, the slowest request and the
 * standard deviation of latencies, and a final PASS or FAIL (its exit status).
 *
 * The nodes run tessera's default Raft timing (100 ms ticks, elections after
 * 10), the same as etcd's defaults, not the faster timing of the other
 * process tests: the verdict is about a cluster as it is deployed. The
 * thresholds are etcd's and are not relaxed here: a failure is a finding.
 *
 * It runs for about a minute.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { KvClient, NodeProcess, ProcCluster, note, retryUntil } from '../process_cluster.testlib.js';
import { ETCDCTL_PATH, call, etcdctlMissing, rawClient } from './testing.testlib.js';

/** check perf runs 60 s plus setup and cleanup; on a loaded CI machine allow three times that. */
const CHECK_PERF_TIMEOUT_MS = 180_000;
const CHECK_PERF_PREFIX = '/etcdctl-check-perf/';
/** `tessera start`'s defaults, which equal etcd's (--heartbeat-interval 100, --election-timeout 1000). */
const DEFAULT_TIMING_ARGS = ['--tick-ms', '100', '--election-ticks', '10', '--heartbeat-ticks', '1'];
/** What --load=s leaves to delete: 150 writes/s for 60 s, with check perf's key and value sizes. */
const LOAD_S_KEYS = 9_000;
const LOAD_S_KEY_BYTES = 256;
const LOAD_S_VALUE_BYTES = 1024;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function runEtcdctl(args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(ETCDCTL_PATH, args, { env: { ...process.env, ETCDCTL_API: '3' }, timeout: CHECK_PERF_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(new Error(`etcdctl ${args.join(' ')} did not finish: ${error.message}; stderr: ${stderr}`));
        return;
      }
      resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr });
    });
  });
}

/** etcdctl's output without its progress bar, which redraws itself with carriage returns ("12 / 60 20.00% 00m48s"). */
function verdictLines(output: string): string[] {
  return output
    .split(/[\r\n]+/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !/^\d+ \/ \d+\s/.test(line));
}

interface Leadership {
  readonly leader: string;
  readonly raftTerm: string;
}

/** Whom each endpoint names as leader, and in which term. */
async function leadership(addresses: readonly string[]): Promise<Leadership[]> {
  return Promise.all(
    addresses.map(async (address) => {
      const client = rawClient(address, 'Maintenance');
      try {
        const s = await call<{ leader?: string; raft_term?: string }>(client, 'Status', {});
        return { leader: String(s.leader ?? '0'), raftTerm: String(s.raft_term ?? '0') };
      } finally {
        client.close();
      }
    }),
  );
}

const skip = etcdctlMissing();
if (skip !== undefined) note(`skipping etcdctl check perf: ${skip}`);

describe('etcdctl check perf against a 3-node tessera cluster', { skip, timeout: CHECK_PERF_TIMEOUT_MS * 2 }, () => {
  let cluster: ProcCluster;
  const nodes: NodeProcess[] = [];
  let endpoints: string;

  const logs = (): string => nodes.map((n) => n.logs()).join('\n');
  const unexpectedExits = (): string[] => nodes.filter((n) => n.exited !== undefined).map((n) => `${n.spec.name} exited:\n${n.logs()}`);

  before(async () => {
    cluster = await ProcCluster.create(3, { prefix: 'tessera-check-perf-' });
    // Spawned here rather than by the cluster, to give them the default timing (the last flag wins).
    for (const spec of cluster.specs) nodes.push(NodeProcess.spawn(spec, DEFAULT_TIMING_ARGS));
    await Promise.all(nodes.map((n) => n.waitReady()));
    endpoints = cluster.clientAddresses.join(',');
    // check perf times its first writes too: start it only once a leader serves every member.
    for (const address of cluster.clientAddresses) {
      const client = new KvClient(address);
      try {
        await retryUntil(`a linearizable read on ${address}`, 30_000, () => client.get('probe', 2_000));
      } finally {
        client.close();
      }
    }
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    await cluster?.destroy();
  });

  test('--load=s passes (throughput, slowest request, stddev) and leaves no keys behind', async () => {
    const r = await runEtcdctl([`--endpoints=${endpoints}`, 'check', 'perf', '--load=s']);
    const lines = [...verdictLines(r.stdout), ...verdictLines(r.stderr)];
    for (const line of lines) note(line);
    const context = `etcdctl check perf exited ${r.code}:\n${lines.join('\n')}\n${unexpectedExits().join('\n')}\nnode logs:\n${logs()}`;
    assert.equal(r.code, 0, context);
    assert.ok(lines.some((l) => /^PASS: Throughput is \d+ writes\/s$/.test(l)), context);
    assert.ok(lines.some((l) => /^PASS: Slowest request took [\d.]+s$/.test(l)), context);
    assert.ok(lines.some((l) => /^PASS: Stddev is [\d.]+s$/.test(l)), context);
    assert.ok(!lines.some((l) => l.startsWith('FAIL')), context);
    assert.equal(lines.at(-1), 'PASS', context);
    assert.deepEqual(unexpectedExits(), []);

    // check perf deletes its prefix when done; every member must agree that it is gone.
    for (const address of cluster.clientAddresses) {
      const client = new KvClient(address);
      try {
        const left = await retryUntil(`a scan of ${CHECK_PERF_PREFIX} on ${address}`, 10_000, () => client.scanPrefix(CHECK_PERF_PREFIX, 5_000));
        assert.deepEqual(left, [], `keys left under ${CHECK_PERF_PREFIX} on ${address}`);
      } finally {
        client.close();
      }
    }
  });

  /*
   * What `check perf --auto-compact` does after its run, without the 60 s
   * wait: delete --load=s's 9000 keys by prefix, then Compact at once.
   * Before 7a0477d the Compact failed with "etcdserver: no leader" (or
   * "request timed out"): applying the 9000-key DeleteRange blocks each
   * node's event loop for about a second, longer than an election timeout;
   * the leader caught up on the ticks it missed before it read the heartbeat
   * responses queued meanwhile, CheckQuorum found no follower active, and it
   * stepped down (same term, no leader) until a new election. 7a0477d steps
   * those acks first, but when every node stalled at once no ack arrived,
   * and with 500 ms elections a Compact right after the delete still ran
   * past etcdctl's 5 s deadline once. Since then a catch-up of PAUSE_TICKS
   * or more reaches Raft as one pause (Raft.tickAfterPause): the lease clock
   * counts it all, the election and CheckQuorum timers one tick, so a
   * cluster that stalled together keeps its leader.
   */
  test('a DeleteRange of --load=s\'s keys keeps the leader, so --auto-compact\'s Compact right after succeeds', async () => {
    const kv = rawClient(cluster.clientAddresses[0] as string, 'KV');
    try {
      const value = Buffer.alloc(LOAD_S_VALUE_BYTES);
      for (let i = 0; i < LOAD_S_KEYS; i += 100) {
        const success = Array.from({ length: 100 }, (_, j) => {
          const key = Buffer.alloc(CHECK_PERF_PREFIX.length + LOAD_S_KEY_BYTES);
          key.write(CHECK_PERF_PREFIX);
          key.write(String(i + j), CHECK_PERF_PREFIX.length);
          return { request_put: { key, value } };
        });
        await call(kv, 'Txn', { success });
      }
      const before = await leadership(cluster.clientAddresses);
      const prefix = Buffer.from(CHECK_PERF_PREFIX);
      const end = Buffer.from(prefix);
      end[end.length - 1] = (end[end.length - 1] as number) + 1;
      const deleted = await call<{ header?: { revision?: string }; deleted?: string }>(kv, 'DeleteRange', { key: prefix, range_end: end });
      assert.equal(String(deleted.deleted), String(LOAD_S_KEYS));
      const r = await runEtcdctl([`--endpoints=${endpoints}`, 'compaction', String(deleted.header?.revision)]);
      const afterward = await leadership(cluster.clientAddresses);
      assert.equal(r.code, 0, `compaction failed: ${r.stderr}\nleadership before the delete ${JSON.stringify(before)}, after the compaction ${JSON.stringify(afterward)}`);
      assert.deepEqual(afterward, before);
    } finally {
      kv.close();
    }
  });
});
