import { MAX_BUFFERED_INBOUND_BYTES } from './h2_server.js';
import { TesseraError } from '../../base/index.js';
import { DEFAULT_MAX_TXN_OPS } from '../../mvcc/index.js';

/**
 * Request limits of the etcd API, with etcd 3.4's defaults so that clients
 * tuned against etcd meet the same walls here.
 */
export interface EtcdLimits {
  /** etcd's --max-request-bytes: a write whose request is larger gets "etcdserver: request is too large". */
  readonly maxRequestBytes: number;
  /** etcd's --max-txn-ops: compares, success ops and failure ops each count up to this. */
  readonly maxTxnOps: number;
  /** Client connections open at once (MAX_CLIENT_CONNECTIONS); one more is closed as soon as it is accepted. */
  readonly maxClientConnections: number;
  /** Calls one connection may have open at once, advertised as HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. */
  readonly maxConcurrentStreams: number;
  /** Time a new connection gets to send the HTTP/2 preface and acknowledge our SETTINGS; then it is closed. */
  readonly handshakeTimeoutMs: number;
  /** An HTTP/2 connection with no call open for this long is closed with GOAWAY. */
  readonly idleTimeoutMs: number;
  /** Blob bytes per Maintenance.Snapshot message. */
  readonly snapshotChunkBytes: number;
  /** Maintenance.Snapshot streams served at once; one more is refused with "etcdserver: too many requests". */
  readonly maxConcurrentSnapshots: number;
  /** A snapshot stream whose client has read nothing for this long is ended and its storage view released. */
  readonly snapshotStallTimeoutMs: number;
}

/** 1.5 MiB, etcd's default --max-request-bytes. */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;

/**
 * etcd lets gRPC receive this much beyond max-request-bytes (grpcOverheadBytes
 * in etcd's embed package), so that a request just above the limit is refused
 * with etcd's own message and only a much larger one by gRPC's frame check.
 */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;

/**
 * Client connections held open at once. Each costs a socket, a file
 * descriptor and an HTTP/2 session, plus up to MAX_HELD_BYTES (256 KiB) while
 * it is at the :authority gate, so this bounds what a flood of connections
 * can take: past it the listener closes new sockets at once (net.Server's
 * maxConnections) and the node keeps serving the connections it has. etcd
 * has no such limit; 1024 is far above what a service's clients open (one
 * or a few connections each). The node's descriptor limit (ulimit -n) must
 * be above this plus what it needs besides (peers, LMDB, the admin port).
 */
export const MAX_CLIENT_CONNECTIONS = 1_024;

/**
 * Concurrent calls per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
 * gRPC clients queue calls past it rather than fail. etcd's own default is
 * unlimited; one etcd client uses a stream per watch context and per
 * keep-alive, plus its in-flight unary calls, far below this.
 */
export const MAX_CONCURRENT_STREAMS = 1_000;

/**
 * A connection that has not sent the HTTP/2 preface and acknowledged our
 * SETTINGS by then is closed (a slowloris socket that opens and sends
 * nothing, or too little). A gRPC client does both in one round trip.
 */
export const CLIENT_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * An HTTP/2 connection with no call open for this long gets GOAWAY and is
 * closed; gRPC clients reconnect when they next call. This bounds how long
 * connections that completed the handshake and then do nothing hold a slot
 * of MAX_CLIENT_CONNECTIONS. Watches and lease keep-alives are open calls,
 * so they keep their connection.
 */
export const CLIENT_IDLE_TIMEOUT_MS = 5 * 60_000;

/**
 * Blob bytes per Maintenance.Snapshot message. etcd sends 32 KiB; larger
 * messages send a big dump with fewer round trips through grpc-js, and only
 * one is in flight per stream (memory per snapshot client is about this).
 */
export const SNAPSHOT_CHUNK_BYTES = 256 * 1024;

/**
 * Snapshot streams served at once. Each holds a storage read view (with
 * LMDB, pages freed after it began cannot be reused until it ends) and one
 * chunk; more than this are refused with "etcdserver: too many requests".
 */
export const MAX_CONCURRENT_SNAPSHOTS = 2;

/**
 * A snapshot stream whose client has taken no chunk for this long is ended,
 * so a stalled client cannot hold a read view (and its pinned pages) forever.
 */
export const SNAPSHOT_STALL_TIMEOUT_MS = 60_000;

export const DEFAULT_ETCD_LIMITS: EtcdLimits = {
  maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
  maxTxnOps: DEFAULT_MAX_TXN_OPS,
  maxClientConnections: MAX_CLIENT_CONNECTIONS,
  maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
  handshakeTimeoutMs: CLIENT_HANDSHAKE_TIMEOUT_MS,
  idleTimeoutMs: CLIENT_IDLE_TIMEOUT_MS,
  snapshotChunkBytes: SNAPSHOT_CHUNK_BYTES,
  maxConcurrentSnapshots: MAX_CONCURRENT_SNAPSHOTS,
  snapshotStallTimeoutMs: SNAPSHOT_STALL_TIMEOUT_MS,
};

/** gRPC's per-message prefix: a compressed flag and a 4-byte length. */
export const GRPC_MESSAGE_PREFIX_BYTES = 5;

/**
 * The largest maxRequestBytes: with GRPC_OVERHEAD_BYTES and the message
 * prefix, one request must fit what a connection may hold unconsumed
 * (MAX_BUFFERED_INBOUND_BYTES, 64 MiB), or it could never be received.
 */
export const MAX_REQUEST_BYTES_CEILING = MAX_BUFFERED_INBOUND_BYTES - GRPC_OVERHEAD_BYTES - GRPC_MESSAGE_PREFIX_BYTES;

/** Checks limits given by the caller once, at startup; the message names the rule. */
export function validateEtcdLimits(limits: EtcdLimits): EtcdLimits {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new TesseraError('INVALID_CONFIG', `etcd API limit ${name} must be a positive integer, got ${String(value)}`);
  }
  if (limits.maxRequestBytes > MAX_REQUEST_BYTES_CEILING) {
    throw new TesseraError('INVALID_CONFIG', `etcd API limit maxRequestBytes must be at most ${MAX_REQUEST_BYTES_CEILING}, got ${limits.maxRequestBytes}`);
  }
  return limits;
}

/** The version Maintenance.Status reports: the etcd API level we serve, tagged so tools can tell us apart. */
export const ETCD_API_VERSION = '3.4.0-tessera';
