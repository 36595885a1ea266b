import { TesseraError } from '../base/index.js';

/**
 * Every bound the peer transport keeps, with its default. A slow or dead
 * peer costs at most `maxQueueBytes` of queued frames plus the socket's
 * buffer (`socketHighWaterBytes`, overshot by at most one frame); a peer
 * that sends garbage costs at most one frame of `maxFrameBytes`.
 */
export interface TransportLimits {
  /** Largest frame sent or accepted; a bigger one closes the connection. Well above Raft's 1 MiB per MsgApp and a 1.5 MiB request. */
  readonly maxFrameBytes: number;
  /** Bytes of frames queued per peer; past it the oldest are dropped and reported unreachable to Raft. */
  readonly maxQueueBytes: number;
  /** Frames leave the queue for the socket only while the socket buffers less than this. */
  readonly socketHighWaterBytes: number;
  /** A snapshot is streamed in chunks of this size, one chunk queued at a time. */
  readonly snapshotChunkBytes: number;
  /** Largest snapshot a receiver reassembles. */
  readonly maxSnapshotBytes: number;
  /**
   * A snapshot not acknowledged this long after the time its bytes take at
   * `snapshotBytesPerSecond` is reported failed (Raft sends another).
   */
  readonly snapshotAckTimeoutMs: number;
  /**
   * Snapshot bytes this node sends per second, over all peers (`--snapshot-max-rate`):
   * snapshots that rebalance or repair ranges must not starve the Raft traffic
   * of the ranges they share the links and disks with (CockroachDB limits them likewise).
   */
  readonly snapshotBytesPerSecond: number;
  /** Snapshots waiting per peer behind the one streaming; more are reported failed at once. */
  readonly maxPendingSnapshots: number;
  /** Connect plus hello/welcome must finish within this, on both sides. */
  readonly handshakeTimeoutMs: number;
  /** Reconnection backoff: the first delay, doubled per failed attempt up to the max (with jitter). */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** Inbound peer connections accepted at once (peers hold one each; more is a flood). */
  readonly maxInboundConnections: number;
  /** Largest frame accepted before the peer's hello is accepted: a hello or a join request is small. */
  readonly maxPreHelloFrameBytes: number;
  /** Bytes of snapshots being reassembled at once on this node, over all connections (each declares its size first). */
  readonly maxSnapshotAssemblyBytes: number;
}

/** `--snapshot-max-rate` by default: 64 MiB a second (TiKV's default is 100 MB/s, CockroachDB's 32 MiB/s). */
export const DEFAULT_SNAPSHOT_BYTES_PER_SECOND = 64 * 1024 * 1024;

/**
 * The node's snapshot send budget: a token bucket refilled at
 * `bytesPerSecond`, holding at most one second's worth, shared by every
 * peer link. `take` answers how long a chunk of `bytes` must wait (0: send
 * it now, and its bytes are spent).
 */
export class SnapshotRate {
  private tokens: number;
  private atMs: number;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly nowMs: () => number,
  ) {
    this.tokens = bytesPerSecond;
    this.atMs = nowMs();
  }

  take(bytes: number): number {
    const now = this.nowMs();
    this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.atMs) * this.bytesPerSecond) / 1000);
    this.atMs = now;
    // A chunk larger than the whole bucket goes once the bucket is full.
    const need = Math.min(bytes, this.bytesPerSecond);
    if (this.tokens >= need) {
      this.tokens -= bytes;
      return 0;
    }
    return Math.ceil(((need - this.tokens) * 1000) / this.bytesPerSecond);
  }
}

/** Room in a chunk's frame for its header (the first chunk carries the MsgSnap's metadata and membership). */
export const SNAPSHOT_CHUNK_HEADROOM_BYTES = 4096;

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  maxFrameBytes: 16 * 1024 * 1024,
  maxQueueBytes: 32 * 1024 * 1024,
  socketHighWaterBytes: 1024 * 1024,
  snapshotChunkBytes: 1024 * 1024,
  maxSnapshotBytes: 1024 * 1024 * 1024,
  snapshotAckTimeoutMs: 60_000,
  snapshotBytesPerSecond: DEFAULT_SNAPSHOT_BYTES_PER_SECOND,
  maxPendingSnapshots: 4,
  handshakeTimeoutMs: 5_000,
  backoffInitialMs: 50,
  backoffMaxMs: 2_000,
  maxInboundConnections: 256,
  maxPreHelloFrameBytes: 64 * 1024,
  maxSnapshotAssemblyBytes: 1024 * 1024 * 1024,
};

export function resolveLimits(partial: Partial<TransportLimits> | undefined): TransportLimits {
  const l = { ...DEFAULT_TRANSPORT_LIMITS, ...partial };
  for (const [name, value] of Object.entries(l)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new TesseraError('INVALID_CONFIG', `transport limit ${name} must be a positive integer, got ${value}`);
  }
  if (l.maxQueueBytes < l.maxFrameBytes) throw new TesseraError('INVALID_CONFIG', `maxQueueBytes (${l.maxQueueBytes}) must hold one frame of maxFrameBytes (${l.maxFrameBytes})`);
  // A chunk travels in one frame with a small header of its own.
  if (l.snapshotChunkBytes + SNAPSHOT_CHUNK_HEADROOM_BYTES > l.maxFrameBytes) {
    throw new TesseraError('INVALID_CONFIG', `snapshotChunkBytes (${l.snapshotChunkBytes}) must leave ${SNAPSHOT_CHUNK_HEADROOM_BYTES} bytes of room below maxFrameBytes`);
  }
  if (l.maxPreHelloFrameBytes > l.maxFrameBytes) throw new TesseraError('INVALID_CONFIG', `maxPreHelloFrameBytes (${l.maxPreHelloFrameBytes}) must not exceed maxFrameBytes (${l.maxFrameBytes})`);
  if (l.backoffMaxMs < l.backoffInitialMs) throw new TesseraError('INVALID_CONFIG', 'backoffMaxMs must be ≥ backoffInitialMs');
  return l;
}
