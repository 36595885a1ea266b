/**
 * The two systems under test, each a 3-member cluster of real processes on
 * loopback with free ports and data under one temporary directory in /tmp
 * (the same filesystem for both): tessera as `node dist/cli/main.js start`
 * children, etcd as Debian's /usr/bin/etcd. Both run with their default Raft
 * timing (100 ms heartbeat, 1 s election) and logs at warn, so neither pays
 * for logging the other does not.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '../../server/net_util.js';
import { DEFAULT_READ_MODE, type ReadMode } from '../../server/node.js';
import { KvChannel, describeGrpcError, memberStatus } from './client.js';

export type SystemName = 'tessera' | 'etcd';
export const SYSTEM_NAMES: readonly SystemName[] = ['tessera', 'etcd'];

export const ETCD_PATH = '/usr/bin/etcd';
export const ETCDCTL_PATH = '/usr/bin/etcdctl';
/** The compiled tessera CLI, one level above dist/cli/bench. */
const TESSERA_MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

/** A cluster must elect a leader and serve a linearizable read on every member within this. */
const READY_TIMEOUT_MS = 60_000;
/** After SIGTERM, a member gets this long to exit before SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** Kept per member for a failure report. */
const LOG_TAIL_BYTES = 16 * 1024;

export interface Member {
  readonly name: string;
  readonly clientEndpoint: string;
  /** The HTTP admin endpoint, when the cluster was started with one (tessera only). */
  readonly adminEndpoint?: string;
  readonly proc: ChildProcess;
  /** Set once the process is gone. */
  exited: boolean;
  logTail: string;
}

export interface Cluster {
  readonly system: SystemName;
  readonly root: string;
  readonly members: readonly Member[];
  /** Client endpoints, the leader's first (see orderLeaderFirst). */
  endpoints: string[];
  /** What the cluster says it is, for the record ("3.4.23", "3.4.0-tessera"). */
  version: string;
}

/** Every cluster started and not yet destroyed, so a signal or crash of the benchmark kills them all. */
const live = new Set<Cluster>();

/** SIGKILLs every member of every live cluster, synchronously (usable from an 'exit' handler). */
export function killAllNow(): void {
  for (const cluster of live) {
    for (const m of cluster.members) if (!m.exited) m.proc.kill('SIGKILL');
  }
}

/** On SIGINT or SIGTERM: every live cluster killed and its data removed, then exit 130. */
export function cleanUpOnSignal(): void {
  const onSignal = (): void => {
    killAllNow();
    for (const root of liveClusterRoots()) rmSync(root, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

/** The data directories of the live clusters, for removal after killAllNow(). */
export function liveClusterRoots(): string[] {
  return [...live].map((c) => c.root);
}

/** Starts `size` members of `system`; `readMode` is tessera's --read-mode (etcd serves ReadIndex reads). */
export interface ClusterOptions {
  readonly readMode?: ReadMode;
  readonly rangeMaxBytes?: number;
  readonly rangeSplitQps?: number;
  /** tessera: each member listens for admin requests (Member.adminEndpoint). */
  readonly admin?: boolean;
  /** tessera: more `start` flags for every member. */
  readonly extraArgs?: readonly string[];
}

export async function startCluster(system: SystemName, size: number, options: ClusterOptions = {}): Promise<Cluster> {
  const root = mkdtempSync(join(tmpdir(), `tessera-bench-${system}-`));
  const ports = await freePorts(size * 3);
  const clientAddr = (i: number): string => `127.0.0.1:${ports[i * 3]}`;
  const peerAddr = (i: number): string => `127.0.0.1:${ports[i * 3 + 1]}`;
  const adminAddr = (i: number): string | undefined => (options.admin === true ? `127.0.0.1:${ports[i * 3 + 2]}` : undefined);
  const names = Array.from({ length: size }, (_, i) => `${system === 'etcd' ? 'm' : 'n'}${i + 1}`);
  const members = names.map((name, i): Member => {
    const admin = adminAddr(i);
    const spec = { name, dataDir: join(root, name), client: clientAddr(i), peer: peerAddr(i), ...(admin === undefined ? {} : { admin }) };
    const proc = system === 'etcd'
      ? spawnEtcd(spec, names.map((n, j) => `${n}=http://${peerAddr(j)}`).join(','))
      : spawnTessera(spec, names.map((n, j) => `${n}=${peerAddr(j)}`).join(','), options.readMode ?? DEFAULT_READ_MODE, { rangeMaxBytes: options.rangeMaxBytes ?? 0, rangeSplitQps: options.rangeSplitQps ?? 0 }, options.extraArgs ?? []);
    const member: Member = { name, clientEndpoint: spec.client, ...(admin === undefined ? {} : { adminEndpoint: admin }), proc, exited: false, logTail: '' };
    const keep = (d: Buffer): void => void (member.logTail = (member.logTail + d.toString()).slice(-LOG_TAIL_BYTES));
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.on('error', () => {});
    proc.once('exit', () => (member.exited = true));
    return member;
  });
  const cluster: Cluster = { system, root, members, endpoints: members.map((m) => m.clientEndpoint), version: '' };
  live.add(cluster);
  try {
    await waitServing(cluster);
    await orderLeaderFirst(cluster);
  } catch (error) {
    await destroyCluster(cluster);
    throw error;
  }
  return cluster;
}

interface MemberSpec {
  readonly name: string;
  readonly dataDir: string;
  readonly client: string;
  readonly peer: string;
  readonly admin?: string;
}

function spawnTessera(spec: MemberSpec, initialCluster: string, readMode: ReadMode, splits: { readonly rangeMaxBytes: number; readonly rangeSplitQps: number }, extraArgs: readonly string[]): ChildProcess {
  const args = [
    TESSERA_MAIN, 'start',
    '--name', spec.name,
    '--data-dir', spec.dataDir,
    '--listen-client', spec.client,
    '--listen-peer', spec.peer,
    '--listen-admin', spec.admin ?? 'none',
    '--initial-cluster', initialCluster,
    '--initial-cluster-token', 'tessera-bench',
    '--engine', 'lmdb',
    '--log-level', 'warn',
    '--read-mode', readMode,
    '--range-max-bytes', String(splits.rangeMaxBytes),
    '--range-split-qps', String(splits.rangeSplitQps),
    ...extraArgs,
  ];
  // Node flags for the members, e.g. TESSERA_BENCH_NODE_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof' (NODE_OPTIONS refuses --cpu-prof).
  const nodeFlags = (process.env['TESSERA_BENCH_NODE_FLAGS'] ?? '').split(' ').filter((f) => f.length > 0);
  // The IPC channel closing tells a child its parent is gone, so a killed benchmark leaves no nodes behind.
  return spawn(process.execPath, [...nodeFlags, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
}

function spawnEtcd(spec: MemberSpec, initialCluster: string): ChildProcess {
  if (!existsSync(ETCD_PATH)) throw new Error(`${ETCD_PATH} is missing: apt-get install -y etcd-server`);
  const args = [
    '--name', spec.name,
    '--data-dir', spec.dataDir,
    '--listen-client-urls', `http://${spec.client}`,
    '--advertise-client-urls', `http://${spec.client}`,
    '--listen-peer-urls', `http://${spec.peer}`,
    '--initial-advertise-peer-urls', `http://${spec.peer}`,
    '--initial-cluster', initialCluster,
    '--initial-cluster-token', 'etcd-bench',
    '--initial-cluster-state', 'new',
    '--logger', 'zap',
    '--log-level', 'warn',
  ];
  return spawn(ETCD_PATH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Waits until every member answers a linearizable read (a leader exists and every member reaches it). */
async function waitServing(cluster: Cluster): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const probeKey = Buffer.from('bench-probe');
  for (const m of cluster.members) {
    const channel = new KvChannel(m.clientEndpoint);
    try {
      for (;;) {
        const dead = cluster.members.find((x) => x.exited);
        if (dead !== undefined) throw new Error(`${cluster.system} member ${dead.name} exited while starting:\n${dead.logTail}`);
        try {
          await channel.get(probeKey, false);
          break;
        } catch (error) {
          if (Date.now() > deadline) throw new Error(`${cluster.system} member ${m.name} not serving within ${READY_TIMEOUT_MS} ms: ${describeGrpcError(error)}\n${m.logTail}`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    } finally {
      channel.close();
    }
  }
}

/**
 * Puts the leader's endpoint first. Workers' channels are spread round-robin
 * over the endpoints from the first (as etcd's benchmark tool spreads its
 * conns), so the single worker of a c=1 cell always talks to the leader, in
 * both systems, rather than to whichever member happened to win the election.
 */
async function orderLeaderFirst(cluster: Cluster): Promise<void> {
  const statuses = await Promise.all(cluster.endpoints.map((e) => memberStatus(e, 5_000)));
  const leader = statuses.findIndex((s) => s.memberId === s.leaderId);
  cluster.version = statuses[0]?.version ?? '';
  if (leader <= 0) return;
  const endpoints = cluster.endpoints;
  cluster.endpoints = [...endpoints.slice(leader), ...endpoints.slice(0, leader)];
}

/** The process ids of the members still running, for CPU accounting. */
export function memberPids(cluster: Cluster): number[] {
  return cluster.members.filter((m) => !m.exited && m.proc.pid !== undefined).map((m) => m.proc.pid as number);
}

/** A member that died during the run makes the figures meaningless: say so. */
export function deadMembers(cluster: Cluster): string[] {
  return cluster.members.filter((m) => m.exited).map((m) => `${cluster.system} ${m.name} exited:\n${m.logTail}`);
}

/** SIGTERM, SIGKILL after a grace period, then removes the data. Idempotent. */
export async function destroyCluster(cluster: Cluster): Promise<void> {
  await Promise.all(
    cluster.members.map(
      (m) =>
        new Promise<void>((done) => {
          if (m.exited) return done();
          const timer = setTimeout(() => m.proc.kill('SIGKILL'), STOP_GRACE_MS);
          m.proc.once('exit', () => {
            clearTimeout(timer);
            done();
          });
          m.proc.kill('SIGTERM');
        }),
    ),
  );
  live.delete(cluster);
  rmSync(cluster.root, { recursive: true, force: true });
}
