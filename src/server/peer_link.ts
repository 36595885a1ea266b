import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Message, NodeId, Snapshot } from '../raft/index.js';
import { META_RANGE, type RangeId, type RangeMessage, BytesSnapshotReader, SNAPSHOT_MEASURE_SLICE_PAIRS, type SnapshotDataReader, snapshotReaderOf } from '../kv/index.js';
import { isTesseraError } from '../base/index.js';
import { parseHostPort } from './address.js';
import { isPeerErrorReason, messageOf, PeerError } from './errors.js';
import type { TransportLimits } from './transport_limits.js';
import { decodeFrame, encodeFrame, encodeMessages, type Frame, FrameDecoder, type MapFrame } from './wire.js';

/** What a link needs from its transport. */
export interface LinkHost {
  readonly limits: TransportLimits;
  readonly logger: Logger;
  readonly stats: TransportStats;
  hello(to: NodeId): MapFrame;
  nextSnapshotId(): number;
  unreachable(to: NodeId, rangeIds: readonly RangeId[]): void;
  snapshotDone(rangeId: RangeId, to: NodeId, ok: boolean): void;
  peerInfo(id: NodeId, name: string, client: string | undefined): void;
  /** Whether an error with this key may be logged at its level now (repeats are logged at debug). */
  mayLog(key: string): boolean;
  /** The peer refused us as a member removed from the cluster. */
  removedByPeer(peer: NodeId): void;
  /** The node's snapshot budget: how long a chunk of `bytes` must wait (0: spent, send it). */
  snapshotBudget(bytes: number): number;
}

export interface TransportStats {
  framesSent: number;
  messagesSent: number;
  bytesSent: number;
  framesReceived: number;
  messagesReceived: number;
  droppedFrames: number;
  droppedMessages: number;
  connects: number;
  connectFailures: number;
  rejectedInbound: number;
  snapshotsSent: number;
  snapshotsFailed: number;
  snapshotsReceived: number;
  snapshotChunksSent: number;
}

export type LinkState = 'idle' | 'connecting' | 'open' | 'backoff' | 'closed';

interface Queued {
  readonly bytes: Buffer;
  readonly rangeIds: readonly RangeId[];
  readonly messages: number;
  readonly snapshotId?: number;
}

interface SnapshotSend {
  readonly id: number;
  readonly rangeId: RangeId;
  readonly message: Message;
  /** The data, read a chunk at a time from the leader's read view (or from bytes a test gave). */
  readonly reader: SnapshotDataReader;
  seq: number;
  allQueued: boolean;
  timer?: NodeJS.Timeout;
  /** Set while the next chunk waits for the node's snapshot budget. */
  rateTimer?: NodeJS.Timeout | undefined;
}

/** A snapshot waiting for its turn on the link; its reader holds a read view meanwhile. */
interface WaitingSnapshot {
  readonly rangeId: RangeId;
  readonly message: Message;
  readonly reader: SnapshotDataReader;
}

/**
 * The connection to one peer, for sending: it dials, says hello, waits for
 * the welcome, then writes queued frames while the socket has room. The
 * queue is bounded in bytes: when full, the oldest frames are dropped and
 * reported unreachable (Raft retransmits). While backing off after a failed
 * connection, new frames are dropped at once rather than queued, so a peer
 * that comes back gets fresh messages, not a backlog of stale ones.
 * Snapshots stream one at a time, one chunk queued at a time, so they share
 * the link fairly with Raft's batches and never sit whole in the queue. A
 * snapshot's data is read from the leader's read view as it goes: its size
 * first, a slice per event-loop turn, then each chunk when the queue has
 * room for it; so neither the loop nor memory holds a whole snapshot.
 */
export class PeerLink {
  private stateValue: LinkState = 'idle';
  private socket: Socket | undefined;
  private readonly queue: Queued[] = [];
  private queued = 0;
  private attempts = 0;
  private timer: NodeJS.Timeout | undefined;
  private active: SnapshotSend | undefined;
  private pumpScheduled = false;
  private readonly waiting: WaitingSnapshot[] = [];

  constructor(
    readonly peerId: NodeId,
    public address: string,
    private readonly host: LinkHost,
  ) {}

  get state(): LinkState {
    return this.stateValue;
  }

  /** Bytes of frames waiting in the queue (not yet handed to the socket). */
  get queuedBytes(): number {
    return this.queued;
  }

  /** Bytes this link holds for the peer: the queue plus what the socket has not yet handed to the kernel. */
  get bufferedBytes(): number {
    return this.queued + (this.socket?.writableLength ?? 0);
  }

  /** Queues one loop turn's messages for this peer as one frame (split only past maxFrameBytes). */
  sendBatch(messages: readonly RangeMessage[]): void {
    for (const part of encodeBatch(messages, this.host.limits.maxFrameBytes)) {
      if (part.bytes === undefined) {
        this.host.logger.error({ peer: this.peerId, messages: part.messages.length }, 'raft message larger than the peer frame limit; dropped');
        this.drop({ bytes: Buffer.alloc(0), rangeIds: part.rangeIds, messages: part.messages.length });
        continue;
      }
      this.push({ bytes: part.bytes, rangeIds: part.rangeIds, messages: part.messages.length });
    }
  }

  /** Queues one small map frame (a revision request or answer); dropped like any frame when the link is down. */
  sendFrame(frame: MapFrame): void {
    this.push({ bytes: encodeFrame(frame), rangeIds: [], messages: 1 });
  }

  /**
   * Queues a snapshot behind the one streaming, at most maxPendingSnapshots
   * (more are reported failed at once). The meta range's goes first, and
   * takes the place of the last data range's when the queue is full: a node
   * without range 1 knows no members, no meta table and no leases, and a
   * joining node would otherwise wait behind every data range's retries.
   */
  sendSnapshot(rangeId: RangeId, message: Message): void {
    const reader = readerOf(message);
    const meta = rangeId === META_RANGE;
    const full = this.waiting.length >= this.host.limits.maxPendingSnapshots;
    const bumped = meta && full && this.waiting.length > 0 && (this.waiting[this.waiting.length - 1] as WaitingSnapshot).rangeId !== META_RANGE ? this.waiting.pop() : undefined;
    if (bumped !== undefined) this.failWaiting(bumped);
    if (this.stateValue === 'backoff' || this.stateValue === 'closed' || (full && bumped === undefined)) {
      reader.close();
      this.host.stats.snapshotsFailed++;
      this.host.snapshotDone(rangeId, this.peerId, false);
      return;
    }
    if (meta) this.waiting.unshift({ rangeId, message, reader });
    else this.waiting.push({ rangeId, message, reader });
    this.startSnapshot();
    if (this.stateValue === 'idle') this.connect();
    else this.pump();
  }

  close(): void {
    this.stateValue = 'closed';
    clearTimeout(this.timer);
    this.socket?.destroy();
    this.socket = undefined;
    this.queue.length = 0;
    this.queued = 0;
    if (this.active !== undefined) {
      clearTimeout(this.active.timer);
      this.active.reader.close();
    }
    this.active = undefined;
    for (const w of this.waiting.splice(0)) w.reader.close();
  }

  private push(item: Queued): void {
    if (this.stateValue === 'backoff' || this.stateValue === 'closed') {
      this.drop(item);
      return;
    }
    this.queue.push(item);
    this.queued += item.bytes.byteLength;
    while (this.queued > this.host.limits.maxQueueBytes && this.queue.length > 0) {
      const oldest = this.queue.shift() as Queued;
      this.queued -= oldest.bytes.byteLength;
      this.drop(oldest);
    }
    if (this.stateValue === 'idle') this.connect();
    else this.schedulePump();
  }

  /**
   * Pumps once the current task's microtasks have run: the frames pushed
   * meanwhile (forwarded calls and their replies come one per request) go
   * to the socket in one corked write, one system call, not one each.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private drop(item: Queued): void {
    const s = this.host.stats;
    s.droppedFrames++;
    s.droppedMessages += item.messages;
    if (item.rangeIds.length > 0) this.host.unreachable(this.peerId, item.rangeIds);
    if (item.snapshotId !== undefined && this.active?.id === item.snapshotId) this.finishSnapshot(false);
  }

  /** Moves frames to the socket while it has room; 'drain' calls back here. */
  private pump(): void {
    const socket = this.socket;
    if (this.stateValue !== 'open' || socket === undefined) return;
    const s = this.host.stats;
    socket.cork();
    try {
      for (;;) {
        this.feedSnapshot();
        const item = this.queue[0];
        if (item === undefined || socket.writableLength >= this.host.limits.socketHighWaterBytes) return;
        this.queue.shift();
        this.queued -= item.bytes.byteLength;
        socket.write(item.bytes);
        s.framesSent++;
        s.messagesSent += item.messages;
        s.bytesSent += item.bytes.byteLength;
        if (item.snapshotId !== undefined) s.snapshotChunksSent++;
      }
    } finally {
      socket.uncork();
    }
  }

  private connect(): void {
    const { host, port } = parseHostPort(this.address, `peer ${this.peerId} address`);
    this.stateValue = 'connecting';
    this.host.stats.connects++;
    const socket = connect({ host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    const decoder = new FrameDecoder(this.host.limits.maxFrameBytes);
    this.timer = setTimeout(
      () => this.fail(socket, new PeerError('handshake-timeout', `no welcome within ${this.host.limits.handshakeTimeoutMs} ms`)),
      this.host.limits.handshakeTimeoutMs,
    );
    socket.on('connect', () => socket.write(encodeFrame(this.host.hello(this.peerId))));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const payload of decoder.push(chunk)) this.onFrame(socket, decodeFrame(payload));
      } catch (error) {
        this.fail(socket, error);
      }
    });
    socket.on('drain', () => this.pump());
    socket.on('error', (error) => this.fail(socket, error));
    socket.on('close', () => this.fail(socket, new Error('connection closed by peer')));
  }

  private onFrame(socket: Socket, frame: Frame): void {
    if (this.socket !== socket) return;
    if (frame.t === 'welcome' && this.stateValue === 'connecting') {
      if (frame.from !== this.peerId) throw new PeerError('wrong-node', `${this.address} is node ${frame.from}, not ${this.peerId}`);
      clearTimeout(this.timer);
      this.stateValue = 'open';
      this.attempts = 0;
      this.host.logger.info({ peer: this.peerId, name: frame.name, address: this.address }, 'peer connected');
      this.host.peerInfo(frame.from, frame.name, frame.client);
      this.pump();
    } else if (frame.t === 'reject') {
      const reason = isPeerErrorReason(frame.reason) ? frame.reason : 'unexpected-frame';
      if (reason === 'member-removed') this.host.removedByPeer(this.peerId);
      throw new PeerError(reason, `peer ${this.peerId} at ${this.address} refused us (${frame.reason}): ${frame.message}`);
    } else if (frame.t === 'snapack' && this.stateValue === 'open') {
      if (this.active?.id === frame.id) this.finishSnapshot(frame.ok);
    } else {
      throw new PeerError('unexpected-frame', `unexpected '${frame.t}' frame from peer ${this.peerId}`);
    }
  }

  /** Ends the connection: drops what is queued (reported unreachable), fails snapshots, and backs off. */
  private fail(socket: Socket, error: unknown): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    clearTimeout(this.timer);
    socket.destroy();
    if (this.stateValue === 'closed') return;
    // A peer that is down is routine and retried; a refusal or bad frame needs an operator's eye, once per interval.
    if (error instanceof PeerError) {
      const level = this.host.mayLog(`out:${this.peerId}:${error.reason}`) ? 'error' : 'debug';
      this.host.logger[level]({ peer: this.peerId, address: this.address, code: error.code, reason: error.reason }, messageOf(error));
    } else if (this.attempts === 0) {
      this.host.logger.warn({ peer: this.peerId, address: this.address }, `peer connection lost: ${messageOf(error)}`);
    }
    this.host.stats.connectFailures++;
    for (const item of this.queue.splice(0)) this.drop(item);
    this.queued = 0;
    this.failSnapshots();
    this.stateValue = 'backoff';
    const l = this.host.limits;
    const delay = Math.min(l.backoffMaxMs, l.backoffInitialMs * 2 ** Math.min(this.attempts, 30));
    this.attempts++;
    // Jitter keeps peers that failed together from retrying in lockstep.
    // Reconnects lazily, on the next send: Raft's heartbeats come often enough.
    this.timer = setTimeout(() => {
      this.stateValue = 'idle';
    }, delay * (0.5 + Math.random() / 2));
  }

  private startSnapshot(): void {
    if (this.active !== undefined) return;
    const next = this.waiting.shift();
    if (next === undefined) return;
    const send: SnapshotSend = { id: this.host.nextSnapshotId(), rangeId: next.rangeId, message: next.message, reader: next.reader, seq: 0, allQueued: false };
    this.armAckTimer(send);
    this.active = send;
    this.measureSnapshot(send);
  }

  /**
   * The send's deadline, `snapshotAckTimeoutMs` from its start and again from
   * each chunk queued: a large snapshot held to the node's snapshot rate
   * (shared with other peers' snapshots) takes as long as it takes, so long
   * as it moves; one that stops moving, or whose ack never comes, fails.
   */
  private armAckTimer(send: SnapshotSend): void {
    clearTimeout(send.timer);
    send.timer = setTimeout(() => {
      this.host.logger.warn({ peer: this.peerId, rangeId: send.rangeId, chunksQueued: send.seq }, 'snapshot not acknowledged in time; reported failed');
      if (this.active === send) this.finishSnapshot(false);
    }, this.host.limits.snapshotAckTimeoutMs);
  }

  /** The sizing pass, a slice per event-loop turn (the first chunk declares the size); then the chunks can flow. */
  private measureSnapshot(send: SnapshotSend): void {
    if (this.active !== send) return;
    if (!this.stepReader(send, () => send.reader.measure(SNAPSHOT_MEASURE_SLICE_PAIRS))) return;
    if (send.reader.measured) this.pump();
    else setImmediate(() => this.measureSnapshot(send));
  }

  /** Runs one step of the reader; a reader closed under it (held too long, see OpenSnapshotReaders) fails the send. */
  private stepReader(send: SnapshotSend, step: () => unknown): boolean {
    try {
      step();
      return true;
    } catch (error) {
      if (!isTesseraError(error, 'CLOSED')) throw error;
      this.host.logger.warn({ peer: this.peerId, rangeId: send.rangeId }, 'snapshot read view closed before the data was sent; reported failed');
      if (this.active === send) this.finishSnapshot(false);
      return false;
    }
  }

  /**
   * Queues the active snapshot's next chunk once the queue is nearly empty,
   * so chunks interleave with batches, and once the node's snapshot budget
   * allows (`--snapshot-max-rate`); otherwise a timer pumps again then.
   */
  private feedSnapshot(): void {
    const a = this.active;
    if (a === undefined || a.allQueued || !a.reader.measured || this.queued >= this.host.limits.snapshotChunkBytes || a.rateTimer !== undefined) return;
    const waitMs = this.host.snapshotBudget(Math.min(this.host.limits.snapshotChunkBytes, Math.max(1, a.reader.remainingBytes)));
    if (waitMs > 0) {
      a.rateTimer = setTimeout(() => {
        a.rateTimer = undefined;
        if (this.active === a) this.pump();
      }, waitMs);
      return;
    }
    const total = a.reader.totalBytes;
    let data: Uint8Array | undefined;
    if (!this.stepReader(a, () => (data = a.reader.nextChunk(this.host.limits.snapshotChunkBytes)))) return;
    // An empty snapshot still sends one (empty) chunk: the receiver delivers on the last one.
    const chunk = data ?? new Uint8Array(0);
    const last = a.reader.remainingBytes === 0;
    const head = a.seq === 0 ? { total, head: withoutData(a.message) } : {};
    const bytes = encodeFrame({ t: 'snap', id: a.id, rangeId: a.rangeId, seq: a.seq, last, data: chunk, ...head });
    a.seq++;
    a.allQueued = last;
    this.armAckTimer(a);
    if (last) a.reader.close();
    this.queue.push({ bytes, rangeIds: [], messages: 0, snapshotId: a.id });
    this.queued += bytes.byteLength;
  }

  private finishSnapshot(ok: boolean): void {
    const a = this.active;
    if (a === undefined) return;
    clearTimeout(a.timer);
    clearTimeout(a.rateTimer);
    a.reader.close();
    this.active = undefined;
    // Chunks of an abandoned snapshot still queued would only be ignored by the receiver.
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i] as Queued;
      if (q.snapshotId !== a.id) continue;
      this.queue.splice(i, 1);
      this.queued -= q.bytes.byteLength;
    }
    if (ok) this.host.stats.snapshotsSent++;
    else this.host.stats.snapshotsFailed++;
    this.host.snapshotDone(a.rangeId, this.peerId, ok);
    this.startSnapshot();
  }

  private failSnapshots(): void {
    if (this.active !== undefined) this.finishSnapshot(false);
    for (const w of this.waiting.splice(0)) this.failWaiting(w);
  }

  private failWaiting(w: WaitingSnapshot): void {
    w.reader.close();
    this.host.stats.snapshotsFailed++;
    this.host.snapshotDone(w.rangeId, this.peerId, false);
  }
}

/** The snapshot's data as a reader: streamed from the leader's read view, or over the bytes it carries. */
export function readerOf(m: Message): SnapshotDataReader {
  const snapshot = m.snapshot;
  if (snapshot === undefined) return new BytesSnapshotReader(new Uint8Array(0));
  return snapshotReaderOf(snapshot) ?? new BytesSnapshotReader(snapshot.data);
}

/** The MsgSnap as the first chunk carries it: metadata only, the data follows in chunks. */
function withoutData(m: Message): Message {
  const { snapshot, ...rest } = m;
  return { ...rest, ...(snapshot === undefined ? {} : { snapshot: { metadata: snapshot.metadata } as unknown as Snapshot }) };
}

interface EncodedPart {
  readonly bytes: Buffer | undefined;
  readonly messages: readonly RangeMessage[];
  readonly rangeIds: readonly RangeId[];
}

/** One frame for the batch; halves it recursively only when it exceeds the frame limit. */
export function encodeBatch(messages: readonly RangeMessage[], maxFrameBytes: number): EncodedPart[] {
  const rangeIds = [...new Set(messages.map((m) => m.rangeId))];
  const bytes = encodeMessages(messages);
  if (bytes.byteLength - 4 <= maxFrameBytes) return [{ bytes, messages, rangeIds }];
  if (messages.length === 1) return [{ bytes: undefined, messages, rangeIds }];
  const mid = messages.length >> 1;
  return [...encodeBatch(messages.slice(0, mid), maxFrameBytes), ...encodeBatch(messages.slice(mid), maxFrameBytes)];
}
