/**
 * Real-process test harness: tessera nodes as child processes
 * (`node dist/cli/main.js start …`) on loopback with free ports and
 * temporary LMDB data directories, and a small etcd v3 KV client on raw
 * grpc-js. Used by the durability and corruption tests.
 *
 * Every child is started with an IPC channel: `tessera start` reports
 * readiness over it, and a child whose parent dies sees the channel close and
 * stops, so a crashed test run leaves no nodes behind. `ProcCluster.destroy()`
 * SIGKILLs whatever still runs and removes the data directories.
 */
import { type ChannelCredentials, type Client as GrpcClient, Metadata, type ServiceError, credentials, loadPackageDefinition, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from './net_util.js';
import type { RangeInfo } from './ranges.js';

/** The compiled CLI (dist/cli/main.js); tests run from dist/server. */
export const TESSERA_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
/** The vendored etcd protos, two levels above dist/server. */
const RPC_PROTO = fileURLToPath(new URL('../../proto/etcd/rpc.proto', import.meta.url));

/** Raft timing for the children: elections in 0.5-1 s, slack enough for a loaded 2-core machine. */
export const PROC_TIMING = { tickMs: 50, electionTicks: 10, heartbeatTicks: 1 } as const;
/** A child must report ready within this. */
export const READY_TIMEOUT_MS = 30_000;
/** Kept per child for diagnostics: the tail of its stdout and stderr. */
const LOG_TAIL_BYTES = 64 * 1024;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Test output lines; node:test shows console output, and '#' marks them as diagnostics. */
export function note(line: string): void {
  console.log(`# ${line}`);
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface NodeSpec {
  readonly name: string;
  readonly dataDir: string;
  readonly client: string;
  readonly peer: string;
  readonly admin: string;
  /** `--initial-cluster`; absent for a node alone. */
  readonly initialCluster?: string;
  readonly token?: string;
  /** More `tessera start` flags, e.g. ['--range-max-bytes', '16384']. */
  readonly extraArgs?: readonly string[];
}

/** One `tessera start` child. */
export class NodeProcess {
  readonly exit: Promise<Exit>;
  /** Set once the child reported ready over IPC. */
  ready = false;
  /** The exit, once it happened. */
  exited: Exit | undefined;
  /** True when the test itself ended the child (kill or stop); any other exit is unexpected. */
  expectedExit = false;
  private stdout = '';
  private stderr = '';
  private readonly readyPromise: Promise<void>;

  private constructor(
    readonly spec: NodeSpec,
    readonly proc: ChildProcess,
  ) {
    const tail = (s: string, d: Buffer): string => (s + d.toString()).slice(-LOG_TAIL_BYTES);
    proc.stdout?.on('data', (d: Buffer) => (this.stdout = tail(this.stdout, d)));
    proc.stderr?.on('data', (d: Buffer) => (this.stderr = tail(this.stderr, d)));
    // The IPC channel breaks when the child dies; the error is expected then.
    proc.on('error', () => {});
    this.exit = new Promise<Exit>((resolve) =>
      proc.once('exit', (code, signal) => {
        this.exited = { code, signal };
        resolve(this.exited);
      }),
    );
    this.readyPromise = new Promise<void>((resolve, reject) => {
      proc.on('message', (m: { type?: string }) => {
        if (m?.type === 'ready') {
          this.ready = true;
          resolve();
        }
      });
      void this.exit.then((e) => reject(new Error(`node ${spec.name} exited before it was ready (${describeExit(e)})\n${this.logs()}`)));
    });
    // Unobserved rejections must not end the test process.
    this.readyPromise.catch(() => {});
  }

  static spawn(spec: NodeSpec, extraArgs: readonly string[] = []): NodeProcess {
    const args = [
      TESSERA_MAIN,
      'start',
      '--name', spec.name,
      '--data-dir', spec.dataDir,
      '--listen-client', spec.client,
      '--listen-peer', spec.peer,
      '--listen-admin', spec.admin,
      '--engine', 'lmdb',
      '--tick-ms', String(PROC_TIMING.tickMs),
      '--election-ticks', String(PROC_TIMING.electionTicks),
      '--heartbeat-ticks', String(PROC_TIMING.heartbeatTicks),
      '--log-level', process.env['TESSERA_TEST_LOG_LEVEL'] ?? 'warn',
      ...(spec.initialCluster === undefined ? [] : ['--initial-cluster', spec.initialCluster]),
      ...(spec.token === undefined ? [] : ['--initial-cluster-token', spec.token]),
      ...(spec.extraArgs ?? []),
      ...extraArgs,
    ];
    return new NodeProcess(spec, spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }));
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.exited === undefined;
  }

  /** Resolves when the child serves (its client port is bound); rejects if it exits first or takes too long. */
  async waitReady(timeoutMs = READY_TIMEOUT_MS): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`node ${this.spec.name} not ready within ${timeoutMs} ms\n${this.logs()}`)), timeoutMs);
    });
    try {
      await Promise.race([this.readyPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Either it became ready, or it exited first. */
  async readyOrExit(timeoutMs = READY_TIMEOUT_MS): Promise<{ ready: true } | { ready: false; exit: Exit }> {
    try {
      await this.waitReady(timeoutMs);
      return { ready: true };
    } catch (error) {
      if (this.exited === undefined) throw error;
      return { ready: false, exit: this.exited };
    }
  }

  /** SIGKILL; resolves once the child is gone. */
  async kill(): Promise<Exit> {
    this.expectedExit = true;
    if (this.exited === undefined) this.proc.kill('SIGKILL');
    return this.exit;
  }

  /** SIGTERM (a graceful close), SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<Exit> {
    this.expectedExit = true;
    if (this.exited !== undefined) return this.exited;
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    this.proc.kill('SIGTERM');
    try {
      return await this.exit;
    } finally {
      clearTimeout(timer);
    }
  }

  get out(): string {
    return this.stdout;
  }

  get err(): string {
    return this.stderr;
  }

  logs(): string {
    return `--- ${this.spec.name} (pid ${this.pid}) stderr:\n${this.stderr}\n--- ${this.spec.name} stdout (tail):\n${this.stdout.slice(-8000)}`;
  }
}

export function describeExit(e: Exit): string {
  return e.signal !== null ? `signal ${e.signal}` : `status ${e.code}`;
}

/**
 * Runs `tessera start` for a spec until it exits or `timeoutMs` passes; for
 * nodes that are expected to refuse to start.
 */
export async function runToExit(spec: NodeSpec, timeoutMs = READY_TIMEOUT_MS): Promise<{ node: NodeProcess; exit: Exit | undefined }> {
  const node = NodeProcess.spawn(spec);
  const r = await node.readyOrExit(timeoutMs);
  return { node, exit: r.ready ? undefined : r.exit };
}

/** A temporary root directory with one data directory per node, and the child processes on it. */
export class ProcCluster {
  readonly processes: (NodeProcess | undefined)[];
  /** Every child ever started, so destroy() misses none. */
  private readonly all: NodeProcess[] = [];
  /** Exits nobody asked for: a node that crashed or stopped by itself. */
  readonly unexpectedExits: string[] = [];

  private constructor(
    readonly root: string,
    readonly specs: readonly NodeSpec[],
  ) {
    this.processes = specs.map(() => undefined);
  }

  /** `size` nodes n1…nN sharing one `--initial-cluster`, each with client, peer and admin ports picked free. */
  static async create(size: number, options: { token?: string; prefix?: string; extraArgs?: readonly string[]; nodeArgs?: (index: number) => readonly string[] } = {}): Promise<ProcCluster> {
    const root = mkdtempSync(join(tmpdir(), options.prefix ?? 'tessera-proc-'));
    const ports = await freePorts(size * 3);
    const addr = (i: number): string => `127.0.0.1:${ports[i]}`;
    const names = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    const initialCluster = names.map((n, i) => `${n}=${addr(i * 3 + 1)}`).join(',');
    const specs = names.map((name, i) => ({
      name,
      dataDir: join(root, name),
      client: addr(i * 3),
      peer: addr(i * 3 + 1),
      admin: addr(i * 3 + 2),
      ...(size > 1 ? { initialCluster } : {}),
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(options.extraArgs === undefined && options.nodeArgs === undefined ? {} : { extraArgs: [...(options.extraArgs ?? []), ...(options.nodeArgs?.(i) ?? [])] }),
    }));
    return new ProcCluster(root, specs);
  }

  get size(): number {
    return this.specs.length;
  }

  get clientAddresses(): string[] {
    return this.specs.map((s) => s.client);
  }

  /** Spawns node i (it must not be running); does not wait for it. */
  spawn(i: number): NodeProcess {
    const current = this.processes[i];
    if (current?.running) throw new Error(`node ${this.specs[i]?.name} is already running`);
    const node = NodeProcess.spawn(this.specs[i] as NodeSpec);
    this.processes[i] = node;
    this.all.push(node);
    void node.exit.then((e) => {
      if (!node.expectedExit) this.unexpectedExits.push(`${node.spec.name} (pid ${node.pid}) exited by itself: ${describeExit(e)}\n${node.logs()}`);
    });
    return node;
  }

  async start(i: number): Promise<NodeProcess> {
    const node = this.spawn(i);
    await node.waitReady();
    return node;
  }

  async startAll(): Promise<void> {
    const nodes = this.specs.map((_, i) => this.spawn(i));
    await Promise.all(nodes.map((n) => n.waitReady()));
  }

  async kill(i: number): Promise<Exit | undefined> {
    return this.processes[i]?.kill();
  }

  /** SIGKILLs every running node at once (one synchronous pass), then waits for all of them to be gone. */
  async killAll(): Promise<void> {
    const running = this.processes.filter((p): p is NodeProcess => p?.running === true);
    for (const p of running) p.expectedExit = true;
    for (const p of running) p.proc.kill('SIGKILL');
    await Promise.all(running.map((p) => p.exit));
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.processes.map((p) => p?.stop()));
  }

  logs(): string {
    return this.all.map((p) => p.logs()).join('\n');
  }

  /** Kills every child still running and removes the data. Safe to call more than once. */
  async destroy(): Promise<void> {
    for (const p of this.all) p.expectedExit = true;
    await Promise.all(this.all.map((p) => p.kill()));
    rmSync(this.root, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// A minimal etcd v3 KV client on raw grpc-js.

const LOADER_OPTIONS = { keepCase: true, longs: String, enums: Number, defaults: false, oneofs: false } as const;
let kvCtor: (new (address: string, creds: ChannelCredentials, options?: Record<string, unknown>) => GrpcClient) | undefined;

function kvClientCtor(): new (address: string, creds: ChannelCredentials, options?: Record<string, unknown>) => GrpcClient {
  if (kvCtor === undefined) {
    const pkg = loadPackageDefinition(loadSync(RPC_PROTO, LOADER_OPTIONS)) as unknown as {
      etcdserverpb: { KV: new (address: string, creds: ChannelCredentials, options?: Record<string, unknown>) => GrpcClient };
    };
    kvCtor = pkg.etcdserverpb.KV;
  }
  return kvCtor;
}

/** Fast reconnects: a restarted node is used again within a fraction of a second. No retries: every call is sent once. */
const CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.min_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
  'grpc.enable_retries': 0,
};

export interface WireKv {
  key: Buffer;
  value?: Buffer;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
}

export interface RangeResponse {
  header?: { revision?: string };
  kvs?: WireKv[];
  more?: boolean;
  count?: string;
}

/** The outcome of one call that failed: the gRPC status code name and details. */
export function grpcErrorOf(error: unknown): string {
  const e = error as Partial<ServiceError>;
  if (typeof e.code === 'number') return `${status[e.code] ?? e.code}: ${e.details ?? ''}`;
  return String(error);
}

export class KvClient {
  private readonly client: GrpcClient;

  constructor(readonly address: string) {
    const Ctor = kvClientCtor();
    this.client = new Ctor(address, credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  private call<T>(method: string, request: unknown, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fn = (this.client as unknown as Record<string, (r: unknown, md: unknown, o: unknown, cb: (e: ServiceError | null, v: T) => void) => void>)[method];
      if (fn === undefined) throw new Error(`no method ${method}`);
      fn.call(this.client, request, new Metadata(), { deadline: Date.now() + timeoutMs }, (error, value) => (error === null ? resolve(value) : reject(error)));
    });
  }

  /** Put; resolves with the revision the write got. */
  async put(key: string, value: string | Uint8Array, timeoutMs: number): Promise<number> {
    const res = await this.call<{ header?: { revision?: string } }>('Put', { key: Buffer.from(key), value: Buffer.from(value) }, timeoutMs);
    return Number(res.header?.revision ?? 0);
  }

  async range(request: { key: Buffer; range_end?: Buffer; limit?: number; serializable?: boolean }, timeoutMs: number): Promise<RangeResponse> {
    return this.call<RangeResponse>('Range', request, timeoutMs);
  }

  /** Deletes one key; resolves with the revision of the delete. */
  async delete(key: string, timeoutMs: number): Promise<number> {
    const res = await this.call<{ header?: { revision?: string } }>('DeleteRange', { key: Buffer.from(key) }, timeoutMs);
    return Number(res.header?.revision ?? 0);
  }

  /** etcd's Compact at `revision`, physical (answered once the history below it is gone). */
  async compact(revision: number, timeoutMs: number): Promise<void> {
    await this.call('Compact', { revision: String(revision), physical: true }, timeoutMs);
  }

  /** etcd's Txn, as the wire takes it (snake_case fields, Buffers). */
  async txn<T = unknown>(request: unknown, timeoutMs: number): Promise<T> {
    return this.call<T>('Txn', request, timeoutMs);
  }

  /** A linearizable get of one key. */
  async get(key: string | Uint8Array, timeoutMs: number): Promise<WireKv | undefined> {
    const res = await this.range({ key: Buffer.from(key) }, timeoutMs);
    return res.kvs?.[0];
  }

  /** Every key under `prefix`, read linearizably in pages of `pageSize` (each page its own read). */
  async scanPrefix(prefix: string, timeoutMs: number, pageSize = 2_000): Promise<WireKv[]> {
    const end = prefixEnd(Buffer.from(prefix));
    const out: WireKv[] = [];
    let start = Buffer.from(prefix);
    for (;;) {
      const res = await this.range({ key: start, range_end: end, limit: pageSize }, timeoutMs);
      const kvs = res.kvs ?? [];
      out.push(...kvs);
      if (res.more !== true || kvs.length === 0) return out;
      start = Buffer.concat([(kvs[kvs.length - 1] as WireKv).key, Buffer.of(0)]);
    }
  }

  close(): void {
    this.client.close();
  }
}

function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.of(0);
}

/** Retries `probe` until it resolves, or throws its last error after `timeoutMs`. */
export async function retryUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T>, pauseMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      return await probe();
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last error: ${grpcErrorOf(last)}`);
    await sleep(pauseMs);
  }
}

/** One node's admin `/ranges` (the ranges it holds, as it sees them). */
export async function rangesOf(admin: string): Promise<RangeInfo[]> {
  return (await (await fetch(`http://${admin}/ranges`, { signal: AbortSignal.timeout(5_000) })).json()) as RangeInfo[];
}

/** Every range any of `admins` holds, each as its leader sees it when the leader answered, else as the first holder does, in key order. */
export async function clusterRanges(admins: readonly string[], names: readonly string[]): Promise<RangeInfo[]> {
  const byId = new Map<number, RangeInfo>();
  await Promise.all(
    admins.map(async (admin, i) => {
      for (const r of await rangesOf(admin).catch(() => [] as RangeInfo[])) if (!byId.has(r.id) || r.leader === names[i]) byId.set(r.id, r);
    }),
  );
  return [...byId.values()].sort((a, b) => Buffer.compare(Buffer.from(a.start, 'base64'), Buffer.from(b.start, 'base64')));
}

/** Why ranges (in any order) do not cover the key space once, with no gap and no overlap; undefined if they do. */
export function partitionProblem(ranges: readonly RangeInfo[]): string | undefined {
  const sorted = [...ranges].sort((a, b) => Buffer.compare(Buffer.from(a.start, 'base64'), Buffer.from(b.start, 'base64')));
  if (sorted[0]?.start !== '') return 'the first range does not start at the empty key';
  for (let i = 0; i + 1 < sorted.length; i++) if (sorted[i]!.end !== sorted[i + 1]!.start) return `a gap or overlap after range ${sorted[i]!.id}`;
  return sorted[sorted.length - 1]?.end === '' ? undefined : 'the last range does not reach the end of the key space';
}

/** Why the data ranges (all but range 1, which every member holds) do not each have exactly `want` replicas, all voters, on `allowed` nodes (any when absent); undefined if they do. */
export function placementProblem(ranges: readonly RangeInfo[], want: number, allowed?: readonly string[]): string | undefined {
  for (const r of ranges) {
    if (r.id === 1) continue;
    const voters = r.replicas.filter((x) => x.role === 'voter').map((x) => x.node);
    if (r.replicas.length !== want || voters.length !== want || (allowed !== undefined && voters.some((n) => !allowed.includes(n)))) return `range ${r.id}: ${r.replicas.map((x) => `${x.node}:${x.role}`).join(',')}`;
  }
  return undefined;
}
