import { type AddressInfo, type Server as NetServer, type Socket, createServer } from 'node:net';
import { TesseraError, assert } from '../../base/index.js';
import { META_RANGE, type WatchHub } from '../../kv/index.js';
import type { KvApi } from '../../kv/index.js';
import { ClusterService, type ClusterMembership } from './cluster_service.js';
import { AdminService } from './admin_services.js';
import { EtcdApiError, toEtcdStatus, unimplemented } from './errors.js';
import { type GrpcMethod, type StreamHandler, type UnaryHandler, grpcRouter } from './grpc_server.js';
import { H2Connection, type H2Stream } from './h2_server.js';
import { KvService } from './kv_service.js';
import { DEFAULT_LEASE_SERVICE_OPTIONS, type LeaderInfo, LeaseService, type LeaseServiceOptions } from './lease_service.js';
import { DEFAULT_ETCD_LIMITS, type EtcdLimits, GRPC_MESSAGE_PREFIX_BYTES, GRPC_OVERHEAD_BYTES, validateEtcdLimits } from './limits.js';
import type { HeaderField } from './hpack.js';
import { type EtcdNodeInfo, type NodeMemberStatus, wireId } from './node_info.js';
import { etcdService, type WireResponseHeader } from './proto.js';
import { type SnapshotSource, SnapshotService, type SnapshotStats } from './snapshot.js';
import type { SnapshotMeta } from './snapshot_format.js';
import { DEFAULT_WATCH_OPTIONS, WatchService, type WatchServiceOptions, type WatchStats } from './watch_service.js';

export type { EtcdMember, EtcdNodeInfo } from './node_info.js';

export interface EtcdServerOptions {
  readonly limits?: Partial<EtcdLimits>;
  /** Receives errors that are bugs (they are answered with UNKNOWN, never crash the node). */
  readonly onInternalError?: (error: unknown, method: string) => void;
  /** Watch progress interval and per-stream limits (watch_service.ts); fragments split at maxRequestBytes plus gRPC's overhead, as in etcd. */
  readonly watch?: Partial<Omit<WatchServiceOptions, 'fragmentBytes'>>;
  readonly lease?: Partial<LeaseServiceOptions>;
}

/**
 * The node the server serves. The Watch service needs its WatchHub, and a
 * follower's Lease service the leader's etcd address from its status (the
 * runtime's NodeContext has both); without a status the node is taken to
 * lead itself.
 */
export interface EtcdServedNode extends EtcdNodeInfo {
  readonly watches?: WatchHub;
  /** The node's membership; without it only MemberList is served (from `members` or `status`). */
  readonly membership?: ClusterMembership;
  readonly status?: () => { readonly members: readonly NodeMemberStatus[]; readonly leader?: number };
  /** The node's storage engine, dumped by Maintenance.Snapshot; without it Snapshot answers UNIMPLEMENTED. */
  readonly engine?: SnapshotSource;
}

/** The client listener's connection counts since it started. */
export interface ConnectionStats {
  /** Sockets open now. */
  readonly open: number;
  readonly accepted: number;
  /** Closed on accept because maxClientConnections were open. */
  readonly refused: number;
  /** Closed for not completing the HTTP/2 handshake within handshakeTimeoutMs. */
  readonly handshakeTimeouts: number;
}

export interface EtcdServerHandle {
  /** host:port actually bound (an ephemeral port resolved). */
  readonly address: string;
  /** What the Watch service holds; undefined when the node has no WatchHub. */
  watchStats(): WatchStats | undefined;
  snapshotStats(): SnapshotStats;
  connectionStats(): ConnectionStats;
  close(): Promise<void>;
}

/** How long close() lets in-flight calls finish before cutting connections. */
const CLOSE_GRACE_MS = 2_000;


/**
 * Serves the etcd v3 gRPC API (package etcdserverpb) for one node on
 * `listen` (host:port; port 0 picks a free one). KV, Watch (when the node
 * has a WatchHub), Lease, Maintenance (Snapshot when the node gives its
 * storage engine), and Cluster.MemberList are served; every other method
 * answers UNIMPLEMENTED with its name. Connections are bounded by
 * `limits` (maxClientConnections, maxConcurrentStreams, handshakeTimeoutMs,
 * idleTimeoutMs; see limits.ts).
 */
export async function startEtcdServer(
  kv: KvApi,
  node: EtcdServedNode,
  listen: string,
  options: EtcdServerOptions = {},
): Promise<EtcdServerHandle> {
  const { host, port } = parseListen(listen);
  const limits: EtcdLimits = validateEtcdLimits({ ...DEFAULT_ETCD_LIMITS, ...options.limits });
  let address = listen;
  const headerFor = headerSource(kv, node);
  const kvService = new KvService(kv, headerFor, limits);
  const admin = new AdminService(kv, node, headerFor, () => address);
  const cluster = node.membership === undefined ? undefined : new ClusterService(kv, node.membership, headerFor);
  const onBug = options.onInternalError ?? defaultBugReport(node);
  const statusOf = (method: string) => (error: unknown) => toEtcdStatus(error, (bug) => onBug(bug, method));
  const leaseOptions = { ...DEFAULT_LEASE_SERVICE_OPTIONS, ...options.lease };
  const lease = new LeaseService(kv, headerFor, leaseOptions, statusOf('Lease.LeaseKeepAlive'), () => leaderOf(node), node.nodeId);
  // As etcd: requests just over maxRequestBytes get etcd's own message, far larger ones gRPC's receive limit.
  const maxMessageBytes = limits.maxRequestBytes + GRPC_OVERHEAD_BYTES;
  const watchOptions: WatchServiceOptions = { ...DEFAULT_WATCH_OPTIONS, ...options.watch, fragmentBytes: maxMessageBytes };
  const watch =
    node.watches === undefined ? undefined : new WatchService(kv, node.watches, headerFor, watchOptions, statusOf('Watch.Watch'), (bug) => onBug(bug, 'Watch'));
  const snapshotOptions = { chunkBytes: limits.snapshotChunkBytes, maxConcurrent: limits.maxConcurrentSnapshots, stallTimeoutMs: limits.snapshotStallTimeoutMs };
  const snapshots = new SnapshotService(node.engine, () => snapshotMeta(kv, node), headerFor, snapshotOptions, statusOf('Maintenance.Snapshot'));
  // Requests arrive as proto-loader objects; each handler declares the wire shape it reads.
  const served: Record<string, Record<string, UnaryHandler>> = {
    KV: {
      Range: (r) => kvService.range(r),
      Put: (r) => kvService.put(r),
      DeleteRange: (r) => kvService.deleteRange(r),
      Txn: (r) => kvService.txn(r),
      Compact: (r) => kvService.compact(r),
    },
    Lease: {
      LeaseGrant: (r) => lease.grant(r),
      LeaseRevoke: (r) => lease.revoke(r),
      LeaseTimeToLive: (r, metadata) => lease.timeToLive(r, metadata),
      LeaseLeases: () => lease.leases(),
    },
    Maintenance: {
      Status: () => admin.status(),
      Alarm: (r) => admin.alarm(r),
      HashKV: (r) => admin.hashKV(r),
      Hash: () => admin.hash(),
      Defragment: () => admin.defragment(),
      MoveLeader: (r) => admin.moveLeader(r),
    },
    Cluster:
      cluster === undefined
        ? { MemberList: () => admin.memberList() }
        : {
            MemberList: () => cluster.memberList(),
            MemberAdd: (r) => cluster.memberAdd(r),
            MemberRemove: (r) => cluster.memberRemove(r),
            MemberUpdate: (r) => cluster.memberUpdate(r),
            MemberPromote: (r) => cluster.memberPromote(r),
          },
  };
  const streamed: Record<string, Record<string, StreamHandler>> = {
    Watch: watch === undefined ? {} : { Watch: (call) => watch.watch(call) },
    Lease: { LeaseKeepAlive: (call) => lease.keepAlive(call) },
    Maintenance: { Snapshot: (call) => snapshots.snapshot(call) },
  };
  const methods = new Map<string, GrpcMethod>();
  for (const name of ['KV', 'Watch', 'Lease', 'Cluster', 'Maintenance', 'Auth'] as const) {
    for (const [method, definition] of Object.entries(etcdService(name))) {
      const full = `${name}.${method}`;
      const toStatus = (error: unknown) => toEtcdStatus(error, (bug) => onBug(bug, full));
      const missing = unimplemented(full);
      if (definition.requestStream || definition.responseStream) {
        methods.set(definition.path, { definition, toStatus, stream: streamed[name]?.[method] ?? ((call) => call.fail(missing)) });
      } else {
        methods.set(definition.path, { definition, toStatus, unary: served[name]?.[method] ?? (() => Promise.reject(new EtcdApiError(missing))) });
      }
    }
  }
  const route = grpcRouter(methods, { maxReceiveMessageBytes: maxMessageBytes, onBug });
  const onError = (error: Error): void => onBug(error, 'listener');
  let listener: TcpListener;
  try {
    // One whole request fits the stream window, so a unary call is read without waiting for credit.
    const streamWindowBytes = maxMessageBytes + GRPC_MESSAGE_PREFIX_BYTES;
    listener = await listenTcp(host, port, { route, onError, onBug: (error) => onBug(error, 'HTTP/2 connection'), limits, streamWindowBytes });
  } catch (error) {
    watch?.close();
    throw error;
  }
  address = `${host}:${listener.port}`;
  const close = (): Promise<void> => {
    // Streams never end by themselves: end them first, so the shutdown need not wait out its grace.
    watch?.close();
    lease.close();
    snapshots.close();
    return listener.close();
  };
  return { address, watchStats: () => watch?.stats(), snapshotStats: () => snapshots.stats(), connectionStats: () => listener.stats(), close };
}

/** The node's state at this moment, for a snapshot's meta block (the view is taken in the same turn). */
function snapshotMeta(kv: KvApi, node: EtcdServedNode): SnapshotMeta {
  const rangeId = node.rangeId ?? META_RANGE;
  const replica = kv.store.replica(rangeId);
  return {
    format: 'tessera-engine-dump',
    nodeId: node.nodeId,
    clusterId: BigInt(wireId(node.clusterId ?? 0, 'cluster id')).toString(16),
    engine: node.engine?.kind ?? 'unknown',
    revision: kv.currentRevision(),
    compactRevision: kv.compactedRevision(),
    raftAppliedIndex: replica?.appliedIndex() ?? 0,
    raftTerm: kv.raftTerm(),
    createdAtMs: Date.now(),
  };
}

/** The node's range leader and its etcd API address, from the node's status; a node that reports no leader field leads itself. */
function leaderOf(node: EtcdServedNode): LeaderInfo {
  const status = node.status?.();
  if (status?.leader === undefined) return { self: true, leader: node.nodeId };
  const leader = status.leader;
  return { self: leader === node.nodeId, leader, address: status.members.find((m) => m.id === leader)?.client };
}

function defaultBugReport(node: EtcdNodeInfo): (error: unknown, method: string) => void {
  const logger = node.logger;
  if (logger !== undefined) return (error, method) => logger.error({ err: error, method }, `etcd API: internal error in ${method}`);
  return (error, method) => console.error(`tessera etcd API: internal error in ${method}`, error);
}

/** The header of every top-level response; ids are fixed, term and revision read per call. */
function headerSource(kv: KvApi, node: EtcdNodeInfo): (revision: number) => WireResponseHeader {
  const clusterId = wireId(node.clusterId ?? 0, 'cluster id');
  const memberId = wireId(node.nodeId, 'member id');
  return (revision) => {
    // Revisions cross the wire as int64 but must stay exact JavaScript numbers (DESIGN.md decision 3).
    assert(Number.isSafeInteger(revision) && revision >= 0, () => `response revision must be in [0, 2^53), got ${revision}`);
    return { cluster_id: clusterId, member_id: memberId, revision, raft_term: kv.raftTerm() };
  };
}

function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(listen.trim());
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port > 65_535) throw new TesseraError('INVALID_CONFIG', `etcd API listen address must be host:port, got '${listen}'`);
  return { host: m[1] as string, port };
}

interface TcpListener {
  readonly port: number;
  stats(): ConnectionStats;
  close(): Promise<void>;
}

interface ListenOptions {
  readonly route: (stream: H2Stream, headers: readonly HeaderField[]) => void;
  readonly onError: (error: Error) => void;
  readonly onBug: (error: unknown) => void;
  readonly limits: Pick<EtcdLimits, 'maxClientConnections' | 'handshakeTimeoutMs' | 'idleTimeoutMs' | 'maxConcurrentStreams'>;
  readonly streamWindowBytes: number;
}

/**
 * Our TCP listener; each accepted socket is one HTTP/2 connection
 * (h2_server.ts) whose streams go to the gRPC router. Every connection is
 * tracked, so close() ends them all.
 *
 * A flood of connections is bounded here: net.Server's maxConnections
 * closes each socket past maxClientConnections as it is accepted (before
 * any byte is read or buffered), a connection that has not completed the
 * HTTP/2 handshake within handshakeTimeoutMs is closed, and one that then
 * stays without a call for idleTimeoutMs is closed with GOAWAY.
 */
async function listenTcp(host: string, port: number, o: ListenOptions): Promise<TcpListener> {
  const connections = new Set<H2Connection>();
  const counts = { accepted: 0, refused: 0, handshakeTimeouts: 0 };
  const sockets = new Set<Socket>();
  const tcp = createServer({ noDelay: true }, (socket) => {
    counts.accepted++;
    const connection = new H2Connection(socket, {
      maxConcurrentStreams: o.limits.maxConcurrentStreams,
      streamWindowBytes: o.streamWindowBytes,
      handshakeTimeoutMs: o.limits.handshakeTimeoutMs,
      idleTimeoutMs: o.limits.idleTimeoutMs,
      onStream: o.route,
      onHandshakeTimeout: () => counts.handshakeTimeouts++,
      onBug: o.onBug,
    });
    connections.add(connection);
    sockets.add(socket);
    socket.once('close', () => {
      connections.delete(connection);
      sockets.delete(socket);
    });
  });
  tcp.maxConnections = o.limits.maxClientConnections;
  // Node destroys the socket itself; 'drop' only tells us (Node 18.6+).
  tcp.on('drop', () => counts.refused++);
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, host.replace(/^\[(.*)\]$/, '$1'), () => resolve());
    });
  } catch (error) {
    throw new TesseraError('INVALID_CONFIG', `etcd API cannot listen on ${host}:${port}: ${(error as Error).message}`, { cause: error });
  }
  // After listening, errors (an accept failing when file descriptors run out) are reported, never thrown.
  tcp.on('error', o.onError);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= shutdown(tcp, connections));
  // Open means not yet destroyed: net.Server frees a connection's slot when the socket is destroyed,
  // and may accept the next one before that socket's 'close' event, so the set alone overcounts by one.
  const stats = (): ConnectionStats => ({ open: [...sockets].filter((s) => !s.destroyed).length, ...counts });
  return { port: (tcp.address() as AddressInfo).port, stats, close };
}

/** Stops accepting, lets in-flight calls finish (GOAWAY), and cuts what is left after CLOSE_GRACE_MS. */
async function shutdown(tcp: NetServer, connections: Set<H2Connection>): Promise<void> {
  const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
  for (const connection of connections) connection.shutdown();
  const deadline = Date.now() + CLOSE_GRACE_MS;
  while (connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  for (const connection of connections) connection.destroy();
  await closed;
}
