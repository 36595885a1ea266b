/**
 * Test harness for the etcd API: a single-node Store in this process (the
 * in-memory engine, the MVCC state machine, KvApi), driven by real timers,
 * with the etcd gRPC server in front of it; and a runner for the real
 * etcdctl binary.
 */
import { type ChannelCredentials, type Client as GrpcClient, type ServiceError, credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { SeededRng } from '../../base/index.js';
import { KvNode, type LeaseKeeper, META_RANGE, type Store, type WatchHub } from '../../kv/index.js';
import { MemoryEngine } from '../../storage/memory.js';
import { KvApi } from '../../kv/index.js';
import { NodeTransactions } from '../../txn/index.js';
import { realTimers } from '../timers.js';
import { etcdPackage } from './proto.js';
import { type EtcdServerHandle, type EtcdServerOptions, startEtcdServer } from './server.js';

export const TEST_RANGE = META_RANGE;
export const TEST_NODE_ID = 1;
/** The store's tick; with ELECTION_TICKS the lone node elects itself within 100-200 ms. */
const TICK_MS = 10;
const ELECTION_TICKS = 10;
const READY_TIMEOUT_MS = 5_000;

export interface TestNode {
  /** The node's kv side (ranges, router, splits). */
  readonly kvNode: KvNode;
  readonly store: Store;
  readonly kv: KvApi;
  /** Fed and pumped as the node runtime does it (src/server/node.ts). */
  readonly watches: WatchHub;
  readonly leaseKeeper: LeaseKeeper;
  /** While paused, the engine's syncs wait: nothing commits, so proposals time out with an unknown outcome. */
  pauseSync(paused: boolean): void;
  close(): Promise<void>;
}

export interface TestNodeOptions {
  /** KvApi's request timeout; default READY_TIMEOUT_MS. */
  readonly requestTimeoutMs?: number;
  /** false: the store never ticks, so it never elects a leader. Default true. */
  readonly elect?: boolean;
}

/**
 * A one-node store that (unless told otherwise) has elected itself and can
 * serve linearizable reads, with a WatchHub and a LeaseKeeper wired as the
 * node runtime wires them.
 */
export async function startTestNode(options: TestNodeOptions = {}): Promise<TestNode> {
  let syncPaused = false;
  const heldSyncs: (() => void)[] = [];
  const engine = new MemoryEngine({ scheduleSync: (flush) => (syncPaused ? heldSyncs.push(flush) : setImmediate(flush)) });
  const requestTimeoutMs = options.requestTimeoutMs ?? READY_TIMEOUT_MS;
  const requestIdPrefix = `test-${process.pid}-${Date.now()}`;
  // The node's kv side as the node runtime assembles it (src/kv/kv_node.ts), on real timers.
  const kvNode = new KvNode({
    nodeId: TEST_NODE_ID,
    name: 'test',
    engine,
    transport: { send: () => {}, sendRevisions: () => {} },
    rng: new SeededRng(1),
    timers: realTimers,
    raft: { electionTimeoutTicks: ELECTION_TICKS, heartbeatIntervalTicks: 1 },
    scheduleLoop: (loop) => setImmediate(loop),
    logRetainEntries: 1_000,
    requestTimeoutMs,
    requestIdPrefix,
    onStorageFailed: () => {},
    bootstrap: { confState: { voters: [TEST_NODE_ID], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }, founders: [] },
    membershipLog: { info: () => {}, warn: () => {}, debug: () => {} },
    clientUrls: () => [],
    onRemoved: () => {},
  });
  const { store, watches, leaseKeeper, stateMachine } = kvNode;
  const tick = (): void => kvNode.tick();
  const ticker = options.elect === false ? undefined : setInterval(tick, TICK_MS);
  // Transactions across ranges (ADR 0017), wired as the server wires them.
  let txns: NodeTransactions | undefined;
  const kv = new KvApi({
    timers: realTimers, store, stateMachine, rangeId: TEST_RANGE, requestTimeoutMs, requestIdPrefix, leaseKeeper, requests: kvNode.requests, ranges: kvNode,
    intents: { settle: (intents) => txns!.settle(intents) },
    crossRangeTxns: { run: (request) => txns!.run(request) },
  });
  txns = new NodeTransactions({ api: kv, allocate: (count, done) => kvNode.revisions.allocate(count, done), timers: realTimers, idPrefix: `${requestIdPrefix}.txn` });
  const pauseSync = (paused: boolean): void => {
    syncPaused = paused;
    if (!paused) for (const flush of heldSyncs.splice(0)) setImmediate(flush);
  };
  const close = async (): Promise<void> => {
    clearInterval(ticker);
    pauseSync(false);
    store.close();
    await engine.close();
  };
  try {
    if (ticker !== undefined) await waitUntilReadable(kv);
  } catch (error) {
    await close();
    throw error;
  }
  return { kvNode, store, kv, watches, leaseKeeper, pauseSync, close };
}

async function waitUntilReadable(kv: KvApi): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    try {
      await kv.readBarrier();
      return;
    } catch (error) {
      // Before the election a read is refused (no leader); try again shortly.
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
  }
}

export interface TestEtcd {
  /** Undefined when the tests run against REFERENCE_ETCD. */
  readonly node: TestNode | undefined;
  readonly server: EtcdServerHandle | undefined;
  /** host:port of the etcd API. */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Set to host:port of a real etcd 3.4 (fresh data directory) to run the wire
 * tests against it instead: that checks that the tests expect what etcd does.
 * Tests of tessera-only details skip themselves then.
 */
export const REFERENCE_ETCD = process.env['TESSERA_ETCD_REFERENCE'];

export async function startTestEtcd(options: EtcdServerOptions = {}, nodeOptions: TestNodeOptions = {}): Promise<TestEtcd> {
  if (REFERENCE_ETCD !== undefined) return { node: undefined, server: undefined, address: REFERENCE_ETCD, close: async () => {} };
  const node = await startTestNode(nodeOptions);
  const server = await startEtcdServer(node.kv, { nodeId: TEST_NODE_ID, clusterId: 0x7e55e7a, name: 'test-node', watches: node.watches }, '127.0.0.1:0', options);
  return {
    node,
    server,
    address: server.address,
    close: async () => {
      await server.close();
      await node.close();
    },
  };
}

export const ETCDCTL_PATH = '/usr/bin/etcdctl';
const ETCDCTL_TIMEOUT_MS = 15_000;

/** Why the etcdctl tests cannot run here, or undefined when they can (CI installs etcdctl). */
export function etcdctlMissing(): string | undefined {
  return existsSync(ETCDCTL_PATH) ? undefined : `${ETCDCTL_PATH} is missing: install etcd-client (etcdctl 3.4) to run the etcdctl interop tests`;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `etcdctl --endpoints=<address> ...args` with API v3, feeding `stdin` if given. */
export function etcdctl(address: string, args: readonly string[], stdin?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      ETCDCTL_PATH,
      [`--endpoints=${address}`, '--dial-timeout=5s', '--command-timeout=10s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: ETCDCTL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== 'number') {
          reject(new Error(`etcdctl ${args.join(' ')} did not finish: ${error.message}; stderr: ${stderr}`));
          return;
        }
        resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr });
      },
    );
    if (stdin !== undefined) child.stdin?.end(stdin);
    else child.stdin?.end();
  });
}

/** A raw grpc-js client of package etcdserverpb, decoding as the server does. */
export function rawClient(address: string, service: 'KV' | 'Maintenance' | 'Cluster' | 'Lease' | 'Watch'): GrpcClient {
  const pkg = loadPackageDefinition(etcdPackage()) as unknown as { etcdserverpb: Record<string, new (address: string, creds: ChannelCredentials) => GrpcClient> };
  const ctor = pkg.etcdserverpb[service];
  if (ctor === undefined) throw new Error(`no service ${service}`);
  return new ctor(address, credentials.createInsecure());
}

/** Calls a unary method; resolves with the response or the gRPC error. */
export function call<T = Record<string, unknown>>(client: GrpcClient, method: string, request: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: unknown, cb: (e: ServiceError | null, v: T) => void) => void>)[method];
    if (fn === undefined) throw new Error(`no method ${method}`);
    fn.call(client, request, (error, value) => (error === null ? resolve(value) : reject(error)));
  });
}

/** Calls a unary method and returns the error it must fail with. */
export async function callError(client: GrpcClient, method: string, request: unknown): Promise<ServiceError> {
  try {
    await call(client, method, request);
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error(`${method} succeeded but was expected to fail`);
}
