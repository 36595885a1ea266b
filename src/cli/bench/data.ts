#!/usr/bin/env node
/**
 * `npm run bench:data`: issue 13's data figure. Starts 3 tessera nodes as
 * real processes, loads `--keys` keys of `--value-bytes` bytes through the
 * etcd gRPC API (Puts, or Txns of `--batch` Puts of neighbouring keys) over
 * all 3 members, with keys spread over the whole key space so that size
 * splits happen everywhere, and reports: the time, the ranges, leaders and
 * bytes per node, and a sampled read-back (every value is derived from its
 * key, so a read is checked byte for byte). Then, with `--join` (the
 * default), it measures the latency of a steady put/get load, adds a 4th
 * node (etcd MemberAdd, then `start --initial-cluster-state existing`), and
 * measures the same load again until the newcomer votes in every range.
 * A benchmark, not a test: nothing fails on a figure.
 */
import { execFile } from 'node:child_process';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync, statfsSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_RANGE_MAX_BYTES } from '../../placement/index.js';
import { freePorts } from '../../server/net_util.js';
import { DEFAULT_READ_MODE } from '../../server/node.js';
import type { RangeInfo } from '../../server/ranges.js';
import { adminUrl } from '../admin_http.js';
import { KvChannel, describeGrpcError } from './client.js';
import { type Cluster, ETCDCTL_PATH, deadMembers, destroyCluster, killAllNow, liveClusterRoots, startCluster } from './clusters.js';
import { LatencySamples, quantile } from './measure.js';
import { machineLines, record } from './report.js';
import { channelCount } from './workloads.js';

const DEFAULT_RECORD_PATH = fileURLToPath(new URL('../../../docs/benchmarks.md', import.meta.url));
const TESSERA_MAIN = fileURLToPath(new URL('../main.js', import.meta.url));
/** Consecutive key indices sharing one hashed prefix: a batch never spans two groups, so its keys are neighbours. */
const GROUP = 64;
/** The server's --max-txn-ops default. */
const MAX_BATCH = 128;
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

interface DataFlags {
  readonly keys: number;
  readonly valueBytes: number;
  readonly concurrency: number;
  readonly batch: number;
  readonly rangeMaxBytes: number;
  readonly sample: number;
  readonly join: boolean;
  readonly joinConcurrency: number;
  readonly steadyS: number;
  readonly joinTimeoutS: number;
  readonly progressS: number;
  readonly minFreeGib: number;
  readonly record: boolean;
  readonly recordFile: string;
}

function positiveInt(value: string): number {
  const n = Number(value.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got '${value}'`);
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Key i: `data/<8 hex of sha1(group)>/<i>`; groups of GROUP neighbours land at random places in the key space. */
function keyOf(i: number): Buffer {
  const prefix = createHash('sha1').update(String(Math.floor(i / GROUP))).digest('hex').slice(0, 8);
  return Buffer.from(`data/${prefix}/${String(i).padStart(9, '0')}`);
}

/** The value of a key: sha256 of the key, repeated to `bytes` bytes. */
function valueOf(key: Buffer, bytes: number): Buffer {
  const digest = createHash('sha256').update(key).digest();
  const out = Buffer.allocUnsafe(bytes);
  for (let o = 0; o < bytes; o += digest.length) digest.copy(out, o, 0, Math.min(digest.length, bytes - o));
  return out;
}

async function adminJson<T>(endpoint: string, path: string, timeoutMs: number): Promise<T | undefined> {
  try {
    const res = await fetch(adminUrl(endpoint, path), { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return undefined;
    return (await res.json()) as T;
  } catch {
    return undefined;
  }
}

interface StatusView {
  readonly ranges: number | undefined;
  /** Ranges the node votes in, and is a learner of (each replica's own configuration). */
  readonly voterIn: number | undefined;
  readonly learnerIn: number | undefined;
  readonly members: readonly { readonly name: string; readonly peer?: string }[];
}

async function statusOf(endpoint: string): Promise<StatusView | undefined> {
  const body = await adminJson<{ stats?: { store?: { ranges?: number; voterIn?: number; learnerIn?: number } }; members?: { name: string; peer?: string }[] }>(endpoint, '/status', 10_000);
  return body === undefined ? undefined : { ranges: body.stats?.store?.ranges, voterIn: body.stats?.store?.voterIn, learnerIn: body.stats?.store?.learnerIn, members: body.members ?? [] };
}

function freeGib(dir: string): number {
  const s = statfsSync(dir);
  return (s.bavail * s.bsize) / GIB;
}

function duBytes(dir: string): Promise<number> {
  return new Promise((resolve) => {
    execFile('du', ['-sb', dir], (error, stdout) => resolve(error === null ? Number(stdout.split('\t')[0]) : Number.NaN));
  });
}

function isMultiRange(error: unknown): boolean {
  return /more than one range/i.test(describeGrpcError(error));
}

async function openChannels(endpoints: readonly string[], count: number): Promise<KvChannel[]> {
  const channels = Array.from({ length: count }, (_, i) => new KvChannel(endpoints[i % endpoints.length] as string));
  try {
    await Promise.all(channels.map((c) => c.connect(10_000)));
  } catch (error) {
    for (const c of channels) c.close();
    throw error;
  }
  return channels;
}

interface LoadResult {
  readonly seconds: number;
  readonly keysPerSec: number;
  readonly txns: number;
  readonly splitBatches: number;
  readonly retries: number;
  readonly retryReasons: ReadonlyMap<string, number>;
  readonly progress: readonly string[];
}

/** Writes keys 0..keys-1 once each; retries a failed request (its puts are idempotent) until it succeeds. */
async function load(cluster: Cluster, f: DataFlags, log: (line: string) => void): Promise<LoadResult> {
  const channels = await openChannels(cluster.endpoints, channelCount(f.concurrency, cluster.endpoints.length));
  const admin = cluster.members[0]?.adminEndpoint as string;
  let next = 0;
  let done = 0;
  let txns = 0;
  let splitBatches = 0;
  let retries = 0;
  let failure: Error | undefined;
  const retryReasons = new Map<string, number>();
  const noteRetry = (error: unknown): void => {
    retries++;
    // grpc-js adds timings to a deadline's message ("after 10.004s,remote_addr=…"): grouped without them.
    const why = describeGrpcError(error).replace(/ after [\d.]+s.*$/, '').slice(0, 120);
    retryReasons.set(why, (retryReasons.get(why) ?? 0) + 1);
  };
  const withRetry = async (op: () => Promise<void>): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (error) {
        if (isMultiRange(error)) throw error;
        noteRetry(error);
        if (attempt > 50) throw new Error(`a request failed ${attempt} times: ${describeGrpcError(error)}`);
        await sleep(100);
      }
    }
  };
  const worker = async (w: number): Promise<void> => {
    const channel = channels[w % channels.length] as KvChannel;
    while (next < f.keys && failure === undefined) {
      const from = next;
      const groupEnd = (Math.floor(from / GROUP) + 1) * GROUP;
      const to = Math.min(f.keys, from + f.batch, groupEnd);
      next = to;
      const pairs: (readonly [Buffer, Buffer])[] = [];
      for (let i = from; i < to; i++) {
        const key = keyOf(i);
        pairs.push([key, valueOf(key, f.valueBytes)]);
      }
      if (pairs.length === 1) {
        const [k, v] = pairs[0] as readonly [Buffer, Buffer];
        await withRetry(() => channel.put(k, v));
      } else {
        try {
          await withRetry(() => channel.putMany(pairs));
        } catch (error) {
          if (!isMultiRange(error)) throw error;
          // A split fell between these neighbours: put them one by one.
          splitBatches++;
          for (const [k, v] of pairs) await withRetry(() => channel.put(k, v));
        }
      }
      txns++;
      done += pairs.length;
    }
  };
  const t0 = performance.now();
  const progress: string[] = [];
  let lastDone = 0;
  let lastT = t0;
  const root = cluster.root;
  const ticker = setInterval(() => {
    void (async () => {
      const now = performance.now();
      const st = await statusOf(admin);
      const free = freeGib(root);
      const line = `[${((now - t0) / 1000).toFixed(0)} s] ${done} keys (${((done / f.keys) * 100).toFixed(1)} %), ${(((done - lastDone) * 1000) / (now - lastT)).toFixed(0)} keys/s now, ${((done * 1000) / (now - t0)).toFixed(0)} keys/s overall, ${st?.ranges ?? '?'} ranges on n1, ${retries} retries${retries > 0 ? ` (most: ${[...retryReasons].sort((a, b) => b[1] - a[1])[0]?.[0] ?? ''})` : ''}, ${free.toFixed(1)} GiB free, load ${loadavg()[0]?.toFixed(2)}`;
      lastDone = done;
      lastT = now;
      progress.push(line);
      log(line);
      const dead = deadMembers(cluster);
      if (dead.length > 0) failure ??= new Error(dead.join('\n'));
      if (free < f.minFreeGib) failure ??= new Error(`only ${free.toFixed(1)} GiB free on the data filesystem (--min-free-gib ${f.minFreeGib}): stopped`);
    })();
  }, f.progressS * 1000);
  try {
    await Promise.all(Array.from({ length: f.concurrency }, (_, w) => worker(w)));
  } finally {
    clearInterval(ticker);
    for (const c of channels) c.close();
  }
  if (failure !== undefined) throw failure;
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, keysPerSec: f.keys / seconds, txns, splitBatches, retries, retryReasons, progress };
}

interface ReadBack {
  readonly sampled: number;
  readonly matched: number;
  readonly missing: number;
  readonly mismatched: number;
  readonly errors: number;
  readonly firstProblem: string | undefined;
  readonly seconds: number;
}

/** Linearizable Gets of `sample` random loaded keys over every member, each value compared byte for byte. */
async function readBack(cluster: Cluster, f: DataFlags): Promise<ReadBack> {
  const channels = await openChannels(cluster.endpoints, channelCount(f.concurrency, cluster.endpoints.length));
  const total = Math.min(f.sample, f.keys);
  let next = 0;
  let matched = 0;
  let missing = 0;
  let mismatched = 0;
  let errors = 0;
  let firstProblem: string | undefined;
  const t0 = performance.now();
  try {
    await Promise.all(
      Array.from({ length: Math.min(f.concurrency, 32) }, async (_, w) => {
        const channel = channels[w % channels.length] as KvChannel;
        while (next < total) {
          next++;
          const key = keyOf(Math.floor(Math.random() * f.keys));
          let got: Buffer | undefined;
          try {
            const res = await channel.get(key, false);
            const v = res.kvs?.[0]?.value;
            got = v === undefined ? undefined : Buffer.from(v as Uint8Array);
          } catch (error) {
            errors++;
            firstProblem ??= `${key.toString()}: ${describeGrpcError(error)}`;
            continue;
          }
          if (got === undefined) {
            missing++;
            firstProblem ??= `${key.toString()}: missing`;
          } else if (!got.equals(valueOf(key, f.valueBytes))) {
            mismatched++;
            firstProblem ??= `${key.toString()}: value differs (${got.length} bytes)`;
          } else matched++;
        }
      }),
    );
  } finally {
    for (const c of channels) c.close();
  }
  return { sampled: total, matched, missing, mismatched, errors, firstProblem, seconds: (performance.now() - t0) / 1000 };
}

interface NodeFigures {
  readonly name: string;
  readonly ranges: number;
  readonly voterIn: number;
  readonly leaders: number;
  /** Sum of the bytes (keys plus values at the current revision) of the ranges this node holds, as it counts them. */
  readonly bytes: number;
  /** `du -sb` of its data directory: LMDB file, MVCC history, Raft log. */
  readonly diskBytes: number;
}

interface Layout {
  readonly ranges: number;
  /** Keys over all ranges, each range counted once (as its leader, else any holder, reports it). */
  readonly keys: number;
  readonly nodes: readonly NodeFigures[];
  readonly seconds: number;
}

/** /ranges of every node (a scan of each node's live keys: slow with much data), and du of each data directory. */
async function layout(cluster: Cluster, extra: readonly { name: string; adminEndpoint: string }[] = []): Promise<Layout> {
  const t0 = performance.now();
  const nodes = [...cluster.members.map((m) => ({ name: m.name, adminEndpoint: m.adminEndpoint as string })), ...extra];
  const answers = await Promise.all(nodes.map((n) => adminJson<RangeInfo[]>(n.adminEndpoint, '/ranges', 900_000)));
  const byId = new Map<number, RangeInfo>();
  answers.forEach((list, i) => {
    for (const r of list ?? []) if (!byId.has(r.id) || r.leader === nodes[i]?.name) byId.set(r.id, r);
  });
  const all = [...byId.values()];
  const disk = await Promise.all(nodes.map((n) => duBytes(join(cluster.root, n.name))));
  const figures = nodes.map((n, i): NodeFigures => {
    const own = answers[i] ?? [];
    return {
      name: n.name,
      ranges: own.length,
      voterIn: own.filter((r) => r.replicas.some((x) => x.node === n.name && x.role === 'voter')).length,
      leaders: all.filter((r) => r.leader === n.name).length,
      bytes: own.reduce((s, r) => s + r.bytes, 0),
      diskBytes: disk[i] as number,
    };
  });
  return { ranges: all.length, keys: all.reduce((s, r) => s + r.keys, 0), nodes: figures, seconds: (performance.now() - t0) / 1000 };
}

interface Window {
  readonly seconds: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** A closed-loop load of half linearizable Gets, half Puts (each rewriting a loaded key with its own value), measured in windows. */
class SteadyLoad {
  private stopped = false;
  private latencies = new LatencySamples();
  private errors = 0;
  private firstError: string | undefined;
  private since = performance.now();
  private workers: Promise<void>[] = [];
  private channels: KvChannel[] = [];

  constructor(private readonly f: DataFlags) {}

  async start(endpoints: readonly string[]): Promise<void> {
    this.channels = await openChannels(endpoints, channelCount(this.f.joinConcurrency, endpoints.length));
    this.workers = Array.from({ length: this.f.joinConcurrency }, (_, w) => this.worker(this.channels[w % this.channels.length] as KvChannel));
    this.window();
  }

  private async worker(channel: KvChannel): Promise<void> {
    while (!this.stopped) {
      const key = keyOf(Math.floor(Math.random() * this.f.keys));
      const t = performance.now();
      try {
        if (Math.random() < 0.5) await channel.put(key, valueOf(key, this.f.valueBytes));
        else await channel.get(key, false);
        this.latencies.add(performance.now() - t);
      } catch (error) {
        this.errors++;
        this.firstError ??= describeGrpcError(error);
        await sleep(10);
      }
    }
  }

  /** The figures since the last call, and a new window. */
  window(): Window {
    const now = performance.now();
    const sorted = this.latencies.sorted();
    const w: Window = {
      seconds: (now - this.since) / 1000,
      ops: sorted.length,
      errors: this.errors,
      firstError: this.firstError,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      maxMs: sorted.length > 0 ? (sorted[sorted.length - 1] as number) : Number.NaN,
    };
    this.latencies = new LatencySamples();
    this.errors = 0;
    this.firstError = undefined;
    this.since = now;
    return w;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.workers);
    for (const c of this.channels) c.close();
  }
}

function etcdctl(endpoint: string, args: readonly string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(ETCDCTL_PATH, [`--endpoints=${endpoint}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' } }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, out: `${stdout}${stderr}`.trim() }),
    );
  });
}

interface JoinResult {
  readonly steady: Window;
  readonly joining: Window;
  readonly finished: boolean;
  readonly joinSeconds: number;
  readonly n4: NodeFigures | undefined;
  readonly polls: readonly string[];
}

/** The joining node, so a signal can kill it too. */
let joiner: ChildProcess | undefined;

async function joinFourth(cluster: Cluster, f: DataFlags, ranges: number, log: (line: string) => void): Promise<JoinResult> {
  const load = new SteadyLoad(f);
  await load.start(cluster.endpoints);
  let n4Exited = false;
  const n4Log: string[] = [];
  try {
    await sleep(f.steadyS * 1000);
    const steady = load.window();
    log(`steady: ${steady.ops} ops in ${steady.seconds.toFixed(1)} s, p50 ${steady.p50Ms.toFixed(2)} ms, p99 ${steady.p99Ms.toFixed(2)} ms, max ${steady.maxMs.toFixed(1)} ms, ${steady.errors} errors`);
    const st = await statusOf(cluster.members[0]?.adminEndpoint as string);
    if (st === undefined) throw new Error('n1 /status did not answer');
    const founders = st.members.filter((m) => m.peer !== undefined).map((m) => `${m.name}=${m.peer}`).join(',');
    const [client4, peer4, admin4] = (await freePorts(3)).map((p) => `127.0.0.1:${p}`) as [string, string, string];
    const t0 = performance.now();
    const added = await etcdctl(cluster.endpoints[0] as string, ['member', 'add', 'n4', `--peer-urls=http://${peer4}`]);
    if (added.code !== 0) throw new Error(`etcdctl member add failed: ${added.out}`);
    joiner = spawn(
      process.execPath,
      [
        TESSERA_MAIN, 'start',
        '--name', 'n4',
        '--data-dir', join(cluster.root, 'n4'),
        '--listen-client', client4,
        '--listen-peer', peer4,
        '--listen-admin', admin4,
        '--initial-cluster', `${founders},n4=${peer4}`,
        '--initial-cluster-token', 'tessera-bench',
        '--initial-cluster-state', 'existing',
        '--engine', 'lmdb',
        '--log-level', process.env['TESSERA_BENCH_N4_LOG_LEVEL'] ?? 'warn',
        '--read-mode', DEFAULT_READ_MODE,
        '--range-max-bytes', String(f.rangeMaxBytes),
        '--range-split-qps', '0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
    );
    const keep = (d: Buffer): void => void n4Log.push(d.toString());
    joiner.stdout?.on('data', keep);
    joiner.stderr?.on('data', keep);
    joiner.on('error', () => {});
    joiner.once('exit', () => (n4Exited = true));
    const polls: string[] = [];
    let finished = false;
    const deadline = t0 + f.joinTimeoutS * 1000;
    // Under --replicas 3 (the default) four nodes share each data range's three replicas; range 1 is on every member.
    const share = 1 + Math.floor((3 * (ranges - 1)) / 4);
    while (performance.now() < deadline) {
      if (n4Exited) throw new Error(`n4 exited while joining:\n${n4Log.join('').slice(-8000)}`);
      await sleep(2000);
      const s4 = await statusOf(admin4);
      const voterIn = s4?.voterIn ?? 0;
      const line = `[join ${((performance.now() - t0) / 1000).toFixed(0)} s] n4 holds ${s4?.ranges ?? '?'} of ${ranges} ranges, votes in ${voterIn} (its share: ${share}), learner of ${s4?.learnerIn ?? '?'}, ${((await duBytes(join(cluster.root, 'n4'))) / MIB).toFixed(0)} MiB on disk`;
      const done = voterIn >= share - 1 && s4?.learnerIn === 0;
      if (polls.length === 0 || polls.length % 5 === 0 || done) log(line);
      polls.push(line);
      if (done) {
        finished = true;
        break;
      }
    }
    const joinSeconds = (performance.now() - t0) / 1000;
    const joining = load.window();
    log(`joining (${joinSeconds.toFixed(1)} s, ${finished ? 'n4 took its share' : 'NOT finished'}): ${joining.ops} ops, p50 ${joining.p50Ms.toFixed(2)} ms, p99 ${joining.p99Ms.toFixed(2)} ms, max ${joining.maxMs.toFixed(1)} ms, ${joining.errors} errors`);
    await load.stop();
    const after = await layout(cluster, [{ name: 'n4', adminEndpoint: admin4 }]);
    return { steady, joining, finished, joinSeconds, n4: after.nodes.find((n) => n.name === 'n4'), polls };
  } finally {
    await load.stop();
    // n4's output, kept for a look after the run (its data directory is deleted).
    const logFile = join(tmpdir(), `tessera-bench-data-n4-${process.pid}.log`);
    writeFileSync(logFile, n4Log.join(''));
    log(`n4's output: ${logFile}`);
  }
}

async function stopJoiner(): Promise<void> {
  const p = joiner;
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((done) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), 5_000);
    p.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    p.kill('SIGTERM');
  });
}

const gib = (b: number): string => (b / GIB).toFixed(2);
const ratio = (xs: readonly number[]): string => {
  const min = Math.min(...xs);
  return min > 0 ? (Math.max(...xs) / min).toFixed(2) : '∞';
};

function report(f: DataFlags, r: { load: LoadResult; readBack: ReadBack; layout: Layout; join: JoinResult | undefined; startLoad: number; endLoad: number; error: string | undefined }): string {
  const { load: l, readBack: rb, layout: lay, join: j } = r;
  const lines = [`## ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} (data: ${f.keys} keys)`, '', '### Machine', ...machineLines(''), '', '### Parameters'];
  lines.push(`- command: bench:data ${process.argv.slice(2).join(' ')}`.trimEnd());
  lines.push(`- 3 tessera nodes on 127.0.0.1 (LMDB engine, --replicas 3, the default: on 3 nodes every node holds every range), --range-max-bytes ${f.rangeMaxBytes}, load splits off (--range-split-qps 0)`);
  lines.push(`- ${f.keys} keys of ${f.valueBytes}-byte values (${gib(f.keys * f.valueBytes)} GiB of values), keys \`data/<8 hex of sha1(i/${GROUP})>/<i>\`: groups of ${GROUP} neighbours scattered over the key space; each value is sha256(key) repeated`);
  lines.push(`- loaded through the etcd gRPC API by ${f.concurrency} closed-loop workers over all 3 members, ${f.batch === 1 ? 'one Put per request' : `Txns of up to ${f.batch} Puts of neighbouring keys (one by one when a split fell between them)`}; failed requests retried`);
  lines.push(`- load average (1 min) of the machine: ${r.startLoad.toFixed(2)} at the start, ${r.endLoad.toFixed(2)} at the end (2 cores shared with other work)`);
  lines.push('', '### Results', '');
  lines.push(`- load: ${l.seconds.toFixed(0)} s, ${l.keysPerSec.toFixed(0)} keys/s, ${((f.keys * f.valueBytes) / MIB / l.seconds).toFixed(1)} MiB/s of values; ${l.txns} requests, ${l.retries} retries${l.retries > 0 ? ` (${[...l.retryReasons].map(([k, v]) => `${v}× ${k}`).join('; ')})` : ''}, ${l.splitBatches} batches cut by a split`);
  lines.push(`- ranges: ${lay.ranges} (the meta range included), ${lay.keys} keys in them (${lay.keys === f.keys ? 'every loaded key' : `loaded ${f.keys}`}); /ranges of all nodes took ${lay.seconds.toFixed(0)} s`);
  lines.push(`- read-back of ${rb.sampled} random keys (linearizable Gets over all members, ${rb.seconds.toFixed(1)} s): ${rb.matched} equal, ${rb.missing} missing, ${rb.mismatched} different, ${rb.errors} errors${rb.firstProblem === undefined ? '' : ` (first: ${rb.firstProblem})`}`);
  lines.push('', '| node | ranges held | voter in | leaders | bytes (keys + values, from /ranges) | on disk (du of data dir) |', '| --- | --- | --- | --- | --- | --- |');
  for (const n of lay.nodes) lines.push(`| ${n.name} | ${n.ranges} | ${n.voterIn} | ${n.leaders} | ${gib(n.bytes)} GiB | ${gib(n.diskBytes)} GiB |`);
  const ns = lay.nodes;
  lines.push('', `- max/min across nodes: leaders ${ratio(ns.map((n) => n.leaders))}, bytes ${ratio(ns.map((n) => n.bytes))}, on disk ${ratio(ns.map((n) => n.diskBytes))} (target ≤ 1.2; with 3 nodes and every range on every node, bytes are equal by construction)`);
  if (j !== undefined) {
    lines.push('', `Join of a 4th node under a steady load (${f.joinConcurrency} closed-loop workers on n1-n3, half linearizable Gets, half Puts of loaded keys):`, '');
    lines.push('| window | seconds | ops | ops/s | p50 ms | p99 ms | max ms | errors |', '| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const [name, w] of [['steady (3 nodes)', j.steady], [`n4 joining${j.finished ? '' : ' (not finished)'}`, j.joining]] as const) {
      lines.push(`| ${name} | ${w.seconds.toFixed(1)} | ${w.ops} | ${(w.ops / w.seconds).toFixed(0)} | ${w.p50Ms.toFixed(2)} | ${w.p99Ms.toFixed(2)} | ${w.maxMs.toFixed(1)} | ${w.errors}${w.firstError === undefined ? '' : ` (${w.firstError})`} |`);
    }
    lines.push('', `- n4 ${j.finished ? `took its share (within one of 1 + 3/4 of the data ranges, as a voter, no learner left) ${j.joinSeconds.toFixed(0)} s after etcdctl member add` : `had not taken its share after ${j.joinSeconds.toFixed(0)} s (--join-timeout-s)`}; then it held ${j.n4?.ranges ?? '?'} ranges (voter in ${j.n4?.voterIn ?? '?'}), ${j.n4?.leaders ?? '?'} leaders, ${j.n4 === undefined ? '?' : gib(j.n4.bytes)} GiB, ${j.n4 === undefined ? '?' : gib(j.n4.diskBytes)} GiB on disk`);
  }
  if (r.error !== undefined) lines.push('', `- the run ended early: ${r.error}`);
  return lines.join('\n');
}

async function run(f: DataFlags): Promise<void> {
  if (f.batch > MAX_BATCH) throw new Error(`--batch ${f.batch} is above the server's --max-txn-ops ${MAX_BATCH}`);
  const startLoad = loadavg()[0] ?? 0;
  const log = (line: string): void => console.log(line);
  log(`data: ${f.keys} keys × ${f.valueBytes} bytes into 3 nodes, c=${f.concurrency}, batch ${f.batch}, --range-max-bytes ${f.rangeMaxBytes}, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const cluster = await startCluster('tessera', 3, { admin: true, rangeMaxBytes: f.rangeMaxBytes, rangeSplitQps: 0 });
  log(`data under ${cluster.root}, ${freeGib(cluster.root).toFixed(1)} GiB free there`);
  try {
    const l = await load(cluster, f, log);
    log(`loaded ${f.keys} keys in ${l.seconds.toFixed(1)} s: ${l.keysPerSec.toFixed(0)} keys/s, ${l.retries} retries, ${l.splitBatches} batches cut by a split`);
    const rb = await readBack(cluster, f);
    log(`read-back: ${rb.sampled} sampled, ${rb.matched} equal, ${rb.missing} missing, ${rb.mismatched} different, ${rb.errors} errors${rb.firstProblem === undefined ? '' : ` (first: ${rb.firstProblem})`}`);
    // Give the leader balancer (every 2 s) a few rounds after the last splits.
    await sleep(10_000);
    const lay = await layout(cluster);
    log(`${lay.ranges} ranges, ${lay.keys} keys; ${lay.nodes.map((n) => `${n.name}: ${n.ranges} ranges, ${n.leaders} leaders, ${gib(n.bytes)} GiB, ${gib(n.diskBytes)} GiB on disk`).join('; ')}`);
    let joinResult: JoinResult | undefined;
    let error: string | undefined;
    if (f.join) {
      try {
        joinResult = await joinFourth(cluster, f, lay.ranges, log);
      } catch (e) {
        error = `join: ${e instanceof Error ? e.message.slice(0, 2000) : String(e)}`;
        log(error);
      }
    }
    const dead = deadMembers(cluster);
    if (dead.length > 0) error = `${error ?? ''} ${dead.join('\n')}`.trim();
    const section = report(f, { load: l, readBack: rb, layout: lay, join: joinResult, startLoad, endLoad: loadavg()[0] ?? 0, error });
    console.log(`\n${section}`);
    if (f.record) record(f.recordFile, section);
  } finally {
    await stopJoiner();
    await destroyCluster(cluster);
  }
}

const program = new Command()
  .name('bench:data')
  .description('load many keys into 3 tessera nodes; ranges, leaders and bytes per node; read-back; p99 while a 4th node joins (issue 13)')
  .option('--keys <n>', 'keys to load', positiveInt, 10_000_000)
  .option('--value-bytes <n>', 'value size', positiveInt, 1024)
  .option('--concurrency <n>', 'closed-loop loading workers', positiveInt, 64)
  .option('--batch <n>', `Puts per request (a Txn of neighbouring keys when above 1; at most ${MAX_BATCH})`, positiveInt, 32)
  .option('--range-max-bytes <bytes>', "the nodes' --range-max-bytes", positiveInt, DEFAULT_RANGE_MAX_BYTES)
  .option('--sample <n>', 'keys read back and compared', positiveInt, 10_000)
  .option('--no-join', 'skip the 4th-node join')
  .option('--join-concurrency <n>', 'closed-loop workers of the load measured before and during the join', positiveInt, 16)
  .option('--steady-s <s>', 'seconds of steady load measured before the join', positiveInt, 30)
  .option('--join-timeout-s <s>', 'seconds at most measured while the 4th node joins', positiveInt, 900)
  .option('--progress-s <s>', 'seconds between progress lines', positiveInt, 10)
  .option('--min-free-gib <n>', 'stop the load when the data filesystem has less free', nonNegativeInt, 8)
  .option('--record', 'append the results to docs/benchmarks.md')
  .option('--record-file <path>', 'where --record appends the results (nothing is written without --record)', DEFAULT_RECORD_PATH)
  .action(async (flags: DataFlags) => {
    const onSignal = (): void => {
      killAllNow();
      joiner?.kill('SIGKILL');
      for (const root of liveClusterRoots()) rmSync(root, { recursive: true, force: true });
      process.exit(130);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    await run({ ...flags, record: flags.record === true });
  });

await program.parseAsync();
