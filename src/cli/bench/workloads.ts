/**
 * Closed-loop workloads: `concurrency` workers, each sending its next
 * request as soon as the previous one is answered, over channels spread
 * round-robin across the cluster's endpoints (the leader's first). A cell is
 * one workload at one concurrency against one system: a warm-up, then a
 * measured window in which completed operations, their latencies and the
 * servers' CPU are counted.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { KvChannel, describeGrpcError } from './client.js';
import { type Cluster, type SystemName, memberPids } from './clusters.js';
import { LatencySamples, processCpuMs, quantile, totalCpuMs } from './measure.js';
import { PRESPLIT_KEY_PREFIX } from '../../placement/index.js';

export type WorkloadName = 'put' | 'get' | 'sget' | 'txn' | 'mixed' | 'txn2' | 'hot1' | 'hot10';
/** The workloads a run does unless told: the transaction ones (issue 14) are asked for by name. */
export const WORKLOAD_NAMES: readonly WorkloadName[] = ['put', 'get', 'sget', 'txn', 'mixed'];
export const ALL_WORKLOAD_NAMES: readonly WorkloadName[] = [...WORKLOAD_NAMES, 'txn2', 'hot1', 'hot10'];

export const WORKLOAD_DESCRIPTIONS: Readonly<Record<WorkloadName, string>> = {
  put: 'Put of a random key',
  get: 'linearizable Range of one random key',
  sget: 'serializable Range of one random key',
  txn: 'Txn: compare mod_revision of the worker\'s own key, then Put it',
  mixed: '90% linearizable get, 10% put, random keys',
  txn2: "Txn: compare mod_revision of the worker's two keys, one in each half of the key space (two ranges with --ranges 2 or more), then Put both",
  hot1: 'Txn: compare mod_revision of the one hot key every worker shares, then Put it; a failed compare counts as an abort and the worker tries again',
  hot10: 'Txn: compare mod_revision of two of 10 hot keys spread over the key space (over ranges with --ranges), then Put both; a failed compare counts as an abort',
};

/** Workers per connection; etcd's benchmark tool likewise shares a few conns among many clients. */
export const WORKERS_PER_CHANNEL = 8;
/** Puts per Txn while preloading: below etcd's and tessera's default --max-txn-ops (128). */
const PRELOAD_PUTS_PER_TXN = 100;
/** Preload Txns in flight at once. */
const PRELOAD_CONCURRENCY = 32;
const CONNECT_TIMEOUT_MS = 10_000;
/** The share of puts in the mixed workload. */
const MIXED_PUT_FRACTION = 0.1;

/** The key space every workload draws from, and the one value all writes carry. */
export class KeySpace {
  readonly keys: readonly Buffer[];
  readonly value: Buffer;
  /** Per key, the pre-split range it falls in (0 without --ranges): a preload batch never spans two. */
  private readonly groups: readonly number[];

  /**
   * `ranges` above 1: the keys lie evenly in the ranges a tessera started
   * with `--dev-presplit-ranges <ranges>` cuts the key space into (all but
   * the first, below the first cut), in contiguous blocks.
   */
  constructor(keyCount: number, valueBytes: number, ranges = 0) {
    // Fixed-width keys, built once, so the workers allocate nothing per request for them.
    const width = String(ranges).length;
    this.groups = Array.from({ length: keyCount }, (_, i) => (ranges > 1 ? 1 + Math.floor((i * (ranges - 1)) / keyCount) : 0));
    this.keys = this.groups.map((g, i) => Buffer.from(ranges > 1 ? `${PRESPLIT_KEY_PREFIX}${String(g).padStart(width, '0')}/${String(i).padStart(8, '0')}` : `bench/${String(i).padStart(8, '0')}`));
    this.value = randomBytes(valueBytes);
  }

  randomKey(): Buffer {
    return this.keys[Math.floor(Math.random() * this.keys.length)] as Buffer;
  }

  /** The end of the preload batch that starts at key `from`: at most `max` keys, all in one pre-split range. */
  batchEnd(from: number, max: number): number {
    let end = from + 1;
    while (end < this.keys.length && end - from < max && this.groups[end] === this.groups[from]) end++;
    return end;
  }
}

/** How many connections a cell opens: a multiple of the endpoint count, so every member serves an equal share. */
export function channelCount(concurrency: number, endpointCount: number): number {
  if (concurrency <= endpointCount) return concurrency;
  return endpointCount * Math.ceil(concurrency / (WORKERS_PER_CHANNEL * endpointCount));
}

async function openChannels(cluster: Cluster, count: number): Promise<KvChannel[]> {
  const channels = Array.from({ length: count }, (_, i) => new KvChannel(cluster.endpoints[i % cluster.endpoints.length] as string));
  try {
    await Promise.all(channels.map((c) => c.connect(CONNECT_TIMEOUT_MS)));
  } catch (error) {
    for (const c of channels) c.close();
    throw error;
  }
  return channels;
}

/** Writes every key of the key space once (Txns of many Puts; not timed as a workload). */
export async function preload(cluster: Cluster, space: KeySpace): Promise<void> {
  const channels = await openChannels(cluster, channelCount(PRELOAD_CONCURRENCY, cluster.endpoints.length));
  let next = 0;
  const loader = async (worker: number): Promise<void> => {
    const channel = channels[worker % channels.length] as KvChannel;
    while (next < space.keys.length) {
      const from = next;
      next = space.batchEnd(from, PRELOAD_PUTS_PER_TXN);
      await channel.putMany(space.keys.slice(from, next).map((k) => [k, space.value] as const));
    }
  };
  try {
    await Promise.all(Array.from({ length: PRELOAD_CONCURRENCY }, (_, w) => loader(w)));
  } finally {
    for (const c of channels) c.close();
  }
}

export interface CellOptions {
  readonly cluster: Cluster;
  readonly space: KeySpace;
  readonly workload: WorkloadName;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface CellResult {
  readonly system: SystemName;
  readonly workload: WorkloadName;
  readonly concurrency: number;
  readonly channels: number;
  /** Operations completed inside the measured window. */
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** Txns whose compare failed (another writer moved the key); 0 unless something else writes it. */
  readonly casFailures: number;
  readonly elapsedMs: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU of all members together per completed operation. */
  readonly serverCpuMsPerOp: number;
  /** CPU of all members together, in cores (CPU ms per wall ms). */
  readonly serverCores: number;
  /** Each member's cores over the window, in member order (the busiest one bounds throughput when one event loop is full). */
  readonly memberCores: readonly number[];
  /** CPU of this benchmark process, in cores: the client shares the machine with the servers. */
  readonly clientCores: number;
}

interface CellState {
  measuring: boolean;
  stopped: boolean;
  ops: number;
  errors: number;
  firstError: string | undefined;
  casFailures: number;
  readonly latencies: LatencySamples;
}

type Operation = () => Promise<void>;

/** The operation worker `index` repeats; txn workers first read their own key's mod revision. */
async function makeOperation(options: CellOptions, channel: KvChannel, index: number, state: CellState): Promise<Operation> {
  const { space } = options;
  switch (options.workload) {
    case 'put':
      return () => channel.put(space.randomKey(), space.value);
    case 'get':
      return async () => void (await channel.get(space.randomKey(), false));
    case 'sget':
      return async () => void (await channel.get(space.randomKey(), true));
    case 'mixed':
      return async () => {
        if (Math.random() < MIXED_PUT_FRACTION) await channel.put(space.randomKey(), space.value);
        else await channel.get(space.randomKey(), false);
      };
    case 'txn2':
    case 'hot10': {
      const half = Math.floor(space.keys.length / 2);
      const hot = Array.from({ length: 10 }, (_, i) => space.keys[Math.floor((i * space.keys.length) / 10)] as Buffer);
      const pick = (): [Buffer, Buffer] => {
        if (options.workload === 'txn2') return [space.keys[index % half] as Buffer, space.keys[half + (index % half)] as Buffer];
        const a = Math.floor(Math.random() * 10);
        const b = (a + 1 + Math.floor(Math.random() * 9)) % 10;
        return [hot[a] as Buffer, hot[b] as Buffer];
      };
      const revisions = new Map<Buffer, string>();
      const revisionOf = async (key: Buffer): Promise<string> => revisions.get(key) ?? String((await channel.get(key, false)).kvs?.[0]?.mod_revision ?? '0');
      return async () => {
        const keys = pick();
        const r = await channel.casPut2(keys, space.value, [await revisionOf(keys[0]), await revisionOf(keys[1])]);
        revisions.set(keys[0], r.modRevisions[0]);
        revisions.set(keys[1], r.modRevisions[1]);
        if (!r.succeeded && state.measuring) state.casFailures++;
      };
    }
    case 'hot1': {
      const key = space.keys[0] as Buffer;
      let modRevision = String((await channel.get(key, false)).kvs?.[0]?.mod_revision ?? '0');
      return async () => {
        const r = await channel.casPut(key, space.value, modRevision);
        modRevision = r.modRevision;
        if (!r.succeeded && state.measuring) state.casFailures++;
      };
    }
    case 'txn': {
      // One key per worker, as in etcd-baseline.md, so compares fail only if something else interferes.
      const key = space.keys[index % space.keys.length] as Buffer;
      const current = await channel.get(key, false);
      let modRevision = String(current.kvs?.[0]?.mod_revision ?? '0');
      return async () => {
        const r = await channel.casPut(key, space.value, modRevision);
        modRevision = r.modRevision;
        if (!r.succeeded && state.measuring) state.casFailures++;
      };
    }
  }
}

async function worker(options: CellOptions, channel: KvChannel, index: number, state: CellState): Promise<void> {
  const operation = await makeOperation(options, channel, index, state);
  while (!state.stopped) {
    const startMs = performance.now();
    try {
      await operation();
    } catch (error) {
      if (state.measuring) {
        state.errors++;
        state.firstError ??= describeGrpcError(error);
      }
      // A refused call answers at once; a short pause keeps a failing cell from spinning the CPU the servers need.
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    if (state.measuring) {
      state.ops++;
      state.latencies.add(performance.now() - startMs);
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runCell(options: CellOptions): Promise<CellResult> {
  const { cluster, concurrency } = options;
  const channels = await openChannels(cluster, channelCount(concurrency, cluster.endpoints.length));
  const state: CellState = { measuring: false, stopped: false, ops: 0, errors: 0, firstError: undefined, casFailures: 0, latencies: new LatencySamples() };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(options, channels[w % channels.length] as KvChannel, w, state));
  // A worker that throws while setting up (the txn read) ends the cell; the others are stopped first.
  const all = Promise.all(workers).catch((error: unknown) => {
    state.stopped = true;
    throw error;
  });
  all.catch(() => {});
  try {
    await sleep(options.warmupMs);
    const pids = memberPids(cluster);
    const serverCpu0 = totalCpuMs(pids);
    const memberCpu0 = pids.map((p) => processCpuMs(p));
    const clientCpu0 = process.cpuUsage();
    const start = performance.now();
    state.measuring = true;
    await sleep(options.durationMs);
    state.measuring = false;
    const elapsedMs = performance.now() - start;
    const serverCpuMs = totalCpuMs(pids) - serverCpu0;
    const memberCpuMs = pids.map((p, i) => processCpuMs(p) - (memberCpu0[i] as number));
    const clientCpu = process.cpuUsage(clientCpu0);
    state.stopped = true;
    await all;
    const sorted = state.latencies.sorted();
    return {
      system: cluster.system,
      workload: options.workload,
      concurrency,
      channels: channels.length,
      ops: state.ops,
      errors: state.errors,
      firstError: state.firstError,
      casFailures: state.casFailures,
      elapsedMs,
      opsPerSec: (state.ops * 1000) / elapsedMs,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      serverCpuMsPerOp: state.ops > 0 ? serverCpuMs / state.ops : Number.NaN,
      serverCores: serverCpuMs / elapsedMs,
      memberCores: memberCpuMs.map((ms) => ms / elapsedMs),
      clientCores: (clientCpu.user + clientCpu.system) / 1000 / elapsedMs,
    };
  } finally {
    state.stopped = true;
    await all.catch(() => {});
    for (const c of channels) c.close();
  }
}
