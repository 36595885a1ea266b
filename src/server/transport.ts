import { lookup } from 'node:dns/promises';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { TesseraError } from '../base/index.js';
import type { Message, NodeId } from '../raft/index.js';
import type { ForwardMessage, NodeLoad, RangeId, RangeMessage, RevisionMessage, Transport } from '../kv/index.js';
import { dialAddressOf, formatHostPort, parseHostPort } from './address.js';
import { messageOf, PeerError } from './errors.js';
import { type LinkHost, PeerLink, readerOf, type TransportStats } from './peer_link.js';
import { SnapshotRate, resolveLimits, type TransportLimits } from './transport_limits.js';
import { decodeFrame, encodeFrame, type Frame, FrameDecoder, type MapFrame, PEER_PROTOCOL_VERSION, type JoinMember, type SnapChunkFrame, decodeMessages, toMessage } from './wire.js';

export { DEFAULT_TRANSPORT_LIMITS, type TransportLimits } from './transport_limits.js';
export type { TransportStats } from './peer_link.js';

/** A peer refused (or refusing us) for the same reason is logged as an error at most this often; repeats go to debug. */
export const REPEATED_ERROR_LOG_INTERVAL_MS = 60_000;
/** Keys remembered for that; past it the memory is cleared (a flood of distinct peers just logs more). */
const MAX_THROTTLED_LOG_KEYS = 1024;

/** Where the transport hands what arrives and how sends ended; the node wires it to its Store. */
export interface TransportHandler {
  receive(from: NodeId, messages: readonly RangeMessage[]): void;
  /** A peer's revision request or answer, its fields checked (wire.ts toRevisionMessage). */
  receiveRevisions(from: NodeId, message: RevisionMessage): void;
  /** A peer said it is alive (ADR 0010). */
  receiveLiveness(from: NodeId, load?: NodeLoad): void;
  /** A peer's forwarded request or reply, its frame checked (wire.ts toForwardMessage; the body is the forwarder's to check). */
  receiveForward(from: NodeId, message: ForwardMessage): void;
  /** Messages to `to` for these ranges were dropped (etcd's ReportUnreachable). */
  reportUnreachable(to: NodeId, rangeIds: readonly RangeId[]): void;
  /** How sending a snapshot ended (etcd's ReportSnapshot). */
  reportSnapshot(rangeId: RangeId, to: NodeId, ok: boolean): void;
}

export interface PeerTransportOptions {
  readonly nodeId: NodeId;
  readonly name: string;
  readonly clusterId: string;
  /** `host:port` to listen on; port 0 picks a free port (see `address`). */
  readonly listen: string;
  /** Peer id → `host:port`; more can be added with `setPeer`. */
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly logger: Logger;
  /** This node's client address, told to peers in the handshake (for member lists). */
  readonly clientAddress?: () => string | undefined;
  readonly limits?: Partial<TransportLimits>;
  /** The cluster's members, for a node asking to join; undefined while this node does not know them itself. */
  readonly members?: () => readonly JoinMember[] | undefined;
  /** Whether a node was removed from the cluster: its connections are refused with 'member-removed'. */
  readonly isRemovedMember?: (id: NodeId) => boolean;
  /** A peer refused this node as a member removed from the cluster (a member removed while it was down learns so). */
  readonly onRemovedByPeer?: (peer: NodeId) => void;
  /**
   * An exception that is not a refusal of bad input came out of handling a
   * peer's frame: a bug on this side. The connection is closed and the error
   * goes here (the node stops through its fatal path); it never escapes the
   * socket's handler. Without it, it is logged.
   */
  readonly onInternalError?: (error: unknown) => void;
  /**
   * Why a peer's snapshot data cannot be one of this node's state machine, or
   * undefined. A snapshot that fails it is refused like any malformed frame,
   * before Raft sees it: installing it would throw inside the store's loop.
   */
  readonly checkSnapshot?: (rangeId: RangeId, data: Uint8Array) => string | undefined;
}

export interface PeerInfo {
  readonly name: string;
  readonly client?: string;
}

/**
 * The peer transport (DESIGN.md decision 9): TCP, length-prefixed msgpackr
 * frames, one connection per peer for sending (PeerLink) and the peers'
 * connections accepted for receiving. Each `send` (one loop turn's messages
 * to one peer) becomes one frame. A handshake names the cluster and both
 * nodes; a peer of another cluster is refused. Reports to Raft (unreachable,
 * snapshot status) are delivered on a later turn of the event loop, never
 * from inside `send`, which the store calls in the middle of its loop.
 */
export class PeerTransport implements Transport {
  readonly stats: TransportStats = {
    framesSent: 0, messagesSent: 0, bytesSent: 0, framesReceived: 0, messagesReceived: 0, droppedFrames: 0, droppedMessages: 0,
    connects: 0, connectFailures: 0, rejectedInbound: 0, snapshotsSent: 0, snapshotsFailed: 0, snapshotsReceived: 0, snapshotChunksSent: 0,
  };
  readonly limits: TransportLimits;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly inbound = new Set<Inbound>();
  private readonly peerInfos = new Map<NodeId, PeerInfo>();
  private handler: TransportHandler | undefined;
  private readonly pendingReports: (() => void)[] = [];
  private reportScheduled = false;
  private snapshotSeq = 0;
  private snapshotBytesReserved = 0;
  private readonly lastLogged = new Map<string, number>();
  /** Snapshot bytes this node may send now, over every peer (TransportLimits.snapshotBytesPerSecond). */
  private readonly snapshotRate: SnapshotRate;
  private closing: Promise<void> | undefined;
  private readonly host: LinkHost;

  private constructor(
    private readonly o: PeerTransportOptions,
    private readonly server: Server,
    readonly address: string,
  ) {
    this.limits = resolveLimits(o.limits);
    this.snapshotRate = new SnapshotRate(this.limits.snapshotBytesPerSecond, () => performance.now());
    this.host = this.linkHost();
    for (const [id, addr] of o.peers) if (id !== o.nodeId) this.setPeer(id, addr);
  }

  /** Listens on `options.listen` and returns the transport; `address` is the bound `host:port`. */
  static async listen(options: PeerTransportOptions): Promise<PeerTransport> {
    resolveLimits(options.limits);
    const { host, port } = parseHostPort(options.listen, 'peer listen address');
    const server = createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const bound = server.address();
    const address = typeof bound === 'object' && bound !== null ? formatHostPort({ host, port: bound.port }) : options.listen;
    const t = new PeerTransport(options, server, address);
    server.maxConnections = t.limits.maxInboundConnections;
    server.on('connection', (socket) => t.accept(socket));
    server.on('error', (error) => options.logger.error({ err: error }, 'peer listener error'));
    return t;
  }

  /** Sets the handler; messages that arrive before it are dropped (Raft retransmits). */
  attach(handler: TransportHandler): void {
    this.handler = handler;
  }

  setPeer(id: NodeId, address: string): void {
    parseHostPort(address, `peer ${id} address`);
    const link = this.links.get(id);
    if (link === undefined) this.links.set(id, new PeerLink(id, address, this.host));
    else link.address = address;
  }

  removePeer(id: NodeId): void {
    this.links.get(id)?.close();
    this.links.delete(id);
    // A former member's own connections go too: messages are accepted only from current members.
    for (const conn of this.inbound) if (conn.peerId === id) conn.destroy();
  }

  /**
   * A member sends to us over one connection (its PeerLink), so a newer hello
   * from it replaces any older connection, which that peer has given up on.
   * This bounds what connections past their hello may buffer to one frame
   * per member, however many connections claim a member's id.
   */
  adopt(conn: Inbound, id: NodeId): void {
    for (const other of this.inbound) if (other !== conn && other.peerId === id) other.destroy();
  }

  /** Whether `id` is a current member, as the node keeps this transport's peers in step with its member table. */
  isMember(id: NodeId): boolean {
    return this.links.has(id);
  }

  /** Reserves room for a snapshot of `bytes` to be reassembled; false when the node-wide budget has no room. */
  reserveSnapshot(bytes: number): boolean {
    if (this.snapshotBytesReserved + bytes > this.limits.maxSnapshotAssemblyBytes) return false;
    this.snapshotBytesReserved += bytes;
    return true;
  }

  releaseSnapshot(bytes: number): void {
    this.snapshotBytesReserved -= bytes;
  }

  /** Bytes reserved for snapshots being reassembled (bounded by maxSnapshotAssemblyBytes). */
  get snapshotAssemblyBytes(): number {
    return this.snapshotBytesReserved;
  }

  /** What peers told us about themselves in handshakes. */
  peers(): ReadonlyMap<NodeId, PeerInfo> {
    return this.peerInfos;
  }

  /** Bytes queued for `to` and not yet handed to its socket. */
  queuedBytes(to: NodeId): number {
    return this.links.get(to)?.queuedBytes ?? 0;
  }

  /** Bytes held for `to`: its queue plus its socket's unsent buffer (bounded by maxQueueBytes + socketHighWaterBytes + one frame). */
  bufferedBytes(to: NodeId): number {
    return this.links.get(to)?.bufferedBytes ?? 0;
  }

  send(to: NodeId, messages: readonly RangeMessage[]): void {
    const link = this.closing === undefined ? this.links.get(to) : undefined;
    const batch: RangeMessage[] = [];
    for (const rm of messages) {
      if (rm.message.type !== 'MsgSnap') batch.push(rm);
      else if (link !== undefined) link.sendSnapshot(rm.rangeId, rm.message);
      else {
        // The snapshot's read view is released at once, whatever becomes of the message.
        readerOf(rm.message).close();
        if (this.closing === undefined) this.host.snapshotDone(rm.rangeId, to, false);
      }
    }
    if (this.closing !== undefined) return;
    if (batch.length === 0) return;
    if (link === undefined) {
      this.stats.droppedMessages += batch.length;
      this.host.unreachable(to, [...new Set(batch.map((m) => m.rangeId))]);
      return;
    }
    link.sendBatch(batch);
  }

  sendRevisions(to: NodeId, message: RevisionMessage): void {
    if (this.closing !== undefined) return;
    // No link: the message is lost, and the waiting side's deadline answers for it.
    this.links.get(to)?.sendFrame({ t: 'tso', m: message });
  }

  sendForward(to: NodeId, message: ForwardMessage): void {
    if (this.closing !== undefined) return;
    // No link: the message is lost, and the caller's deadline answers for it.
    this.links.get(to)?.sendFrame({ t: 'fwd', m: message });
  }

  sendLiveness(to: NodeId, load?: NodeLoad): void {
    if (this.closing !== undefined) return;
    // No link: nothing is said, which is what the peer must hear from a node it cannot reach.
    this.links.get(to)?.sendFrame(load === undefined ? { t: 'alive' } : { t: 'alive', load });
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    for (const link of this.links.values()) link.close();
    for (const conn of this.inbound) conn.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    const conn = new Inbound(socket, this, this.o, () => this.inbound.delete(conn));
    this.inbound.add(conn);
  }

  /** Called by an inbound connection with a validated revision message. */
  deliverRevisions(from: NodeId, message: RevisionMessage): void {
    if (!this.isMember(from)) return;
    this.stats.messagesReceived++;
    this.handler?.receiveRevisions(from, message);
  }

  /** Called by an inbound connection with a checked forward frame. */
  deliverForward(from: NodeId, message: ForwardMessage): void {
    if (!this.isMember(from)) return;
    this.stats.messagesReceived++;
    this.handler?.receiveForward(from, message);
  }

  /** Called by an inbound connection when its peer says it is alive. */
  deliverLiveness(from: NodeId, load: NodeLoad | undefined): void {
    if (!this.isMember(from)) return;
    this.handler?.receiveLiveness(from, load);
  }

  /** Called by an inbound connection with validated messages. */
  deliver(from: NodeId, messages: readonly RangeMessage[]): void {
    if (!this.isMember(from)) return; // removed since its hello: Raft retransmits to members only
    this.stats.messagesReceived += messages.length;
    this.handler?.receive(from, messages);
  }

  notePeer(id: NodeId, name: string, client: string | undefined): void {
    this.peerInfos.set(id, client === undefined ? { name } : { name, client });
  }

  /** Runs reports on a later event-loop turn, in order. */
  private defer(report: () => void): void {
    this.pendingReports.push(report);
    if (this.reportScheduled) return;
    this.reportScheduled = true;
    setImmediate(() => {
      this.reportScheduled = false;
      const reports = this.pendingReports.splice(0);
      if (this.closing !== undefined) return;
      for (const r of reports) r();
    });
  }

  private linkHost(): LinkHost {
    return {
      limits: this.limits,
      logger: this.o.logger,
      stats: this.stats,
      hello: (to) => this.helloFrame(to),
      nextSnapshotId: () => ++this.snapshotSeq,
      unreachable: (to, rangeIds) => this.defer(() => this.handler?.reportUnreachable(to, rangeIds)),
      snapshotDone: (rangeId, to, ok) => this.defer(() => this.handler?.reportSnapshot(rangeId, to, ok)),
      peerInfo: (id, name, client) => this.notePeer(id, name, client),
      mayLog: (key) => this.mayLog(key),
      removedByPeer: (peer) => this.defer(() => this.o.onRemovedByPeer?.(peer)),
      snapshotBudget: (bytes) => this.snapshotRate.take(bytes),
    };
  }

  /** Rate-limits repeated errors (a misconfigured peer retries every backoff): one per key per interval. */
  mayLog(key: string): boolean {
    const now = performance.now();
    const last = this.lastLogged.get(key);
    if (last !== undefined && now - last < REPEATED_ERROR_LOG_INTERVAL_MS) return false;
    if (this.lastLogged.size >= MAX_THROTTLED_LOG_KEYS) this.lastLogged.clear();
    this.lastLogged.set(key, now);
    return true;
  }

  helloFrame(to: NodeId): MapFrame {
    const client = this.o.clientAddress?.();
    return { t: 'hello', v: PEER_PROTOCOL_VERSION, cluster: this.o.clusterId, from: this.o.nodeId, to, name: this.o.name, ...(client === undefined ? {} : { client }) };
  }

  welcomeFrame(): MapFrame {
    const client = this.o.clientAddress?.();
    return { t: 'welcome', from: this.o.nodeId, name: this.o.name, ...(client === undefined ? {} : { client }) };
  }
}

interface Assembly {
  readonly id: number;
  readonly rangeId: RangeId;
  readonly head: unknown;
  readonly total: number;
  readonly chunks: Uint8Array[];
  bytes: number;
  nextSeq: number;
}

/**
 * A connection a peer opened to send to us. The first frame must be a hello
 * naming our cluster and this node; then come batches and snapshot chunks.
 * We write back only the welcome (or a reject) and snapshot acks. Any bad
 * frame closes the connection with a logged error; the node goes on.
 */
class Inbound {
  private peer: NodeId | undefined;
  private refused = false;
  /** A join request is being checked; nothing more is read from this connection. */
  private joining = false;
  private assembly: Assembly | undefined;
  private readonly decoder: FrameDecoder;
  private readonly timer: NodeJS.Timeout;
  private readonly log: Logger;

  constructor(
    private readonly socket: Socket,
    private readonly t: PeerTransport,
    private readonly o: PeerTransportOptions,
    onClose: () => void,
  ) {
    this.log = o.logger;
    // Until the peer is known, a frame may be no larger than a hello or a join request needs.
    this.decoder = new FrameDecoder(t.limits.maxPreHelloFrameBytes);
    socket.setNoDelay(true);
    this.timer = setTimeout(() => this.refuse(new PeerError('handshake-timeout', `no hello within ${t.limits.handshakeTimeoutMs} ms`)), t.limits.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => this.log.debug({ peer: this.peer, err: error }, 'inbound peer connection error'));
    socket.on('close', () => {
      clearTimeout(this.timer);
      this.dropAssembly();
      onClose();
    });
  }

  get peerId(): NodeId | undefined {
    return this.peer;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Gives back the budget of a snapshot being reassembled, if any. */
  private dropAssembly(): void {
    if (this.assembly === undefined) return;
    this.t.releaseSnapshot(this.assembly.total);
    this.assembly = undefined;
  }

  private onData(chunk: Buffer): void {
    if (this.refused || this.joining) return;
    try {
      for (const payload of this.decoder.push(chunk)) {
        if (this.refused || this.joining) return;
        this.t.stats.framesReceived++;
        this.onFrame(decodeFrame(payload));
      }
    } catch (error) {
      this.failed(error);
    }
  }

  /**
   * Nothing escapes a socket handler (an exception there ends the process). Bad input is a
   * TesseraError and only closes this connection; anything else is a bug on this side.
   */
  private failed(error: unknown): void {
    if (error instanceof TesseraError) {
      this.refuse(error);
      return;
    }
    this.refuse(new PeerError('internal-error', `handling a frame from peer ${this.peer ?? '?'} failed: ${messageOf(error)}`));
    if (this.o.onInternalError !== undefined) this.o.onInternalError(error);
    else this.log.error({ err: error, peer: this.peer }, 'handling a peer frame failed');
  }

  private onFrame(frame: Frame): void {
    if (this.peer === undefined) {
      if (frame.t === 'join') {
        this.onJoin(frame);
        return;
      }
      if (frame.t !== 'hello') throw new PeerError('unexpected-frame', `first frame is '${frame.t}', not hello`);
      this.onHello(frame);
      return;
    }
    if (frame.t === 'msgs') this.t.deliver(this.peer, decodeMessages(frame.payload, this.peer, this.o.nodeId));
    else if (frame.t === 'snap') this.onChunk(frame);
    else if (frame.t === 'tso') this.t.deliverRevisions(this.peer, frame.m);
    else if (frame.t === 'alive') this.t.deliverLiveness(this.peer, frame.load);
    else if (frame.t === 'fwd') this.t.deliverForward(this.peer, frame.m);
    else throw new PeerError('unexpected-frame', `unexpected '${frame.t}' frame from peer ${this.peer}`);
  }

  private onHello(h: Extract<Frame, { t: 'hello' }>): void {
    if (h.v !== PEER_PROTOCOL_VERSION) throw new PeerError('protocol-version', `peer speaks protocol ${h.v}; this node speaks ${PEER_PROTOCOL_VERSION}`);
    if (h.cluster !== this.o.clusterId) throw new PeerError('cluster-mismatch', `peer ${h.name} (${h.from}) belongs to cluster ${h.cluster}, not ${this.o.clusterId}`);
    if (h.to !== this.o.nodeId) throw new PeerError('wrong-node', `peer ${h.name} dialed node ${h.to}, but this is node ${this.o.nodeId}`);
    if (h.from === this.o.nodeId) throw new PeerError('wrong-node', `peer claims this node's own id ${h.from}`);
    if (this.o.isRemovedMember?.(h.from) === true) throw new PeerError('member-removed', `peer ${h.name} (${h.from}) was removed from the cluster`);
    if (!this.t.isMember(h.from)) throw new PeerError('unknown-member', `peer ${h.name} (${h.from}) is not a member of this cluster`);
    clearTimeout(this.timer);
    this.peer = h.from;
    this.t.adopt(this, h.from);
    this.decoder.setMaxFrameBytes(this.t.limits.maxFrameBytes);
    this.t.notePeer(h.from, h.name, h.client);
    this.socket.write(encodeFrame(this.t.welcomeFrame()));
  }

  /** Answers a joining node with the member list, then hangs up: a join connection carries nothing else. */
  private onJoin(j: Extract<Frame, { t: 'join' }>): void {
    if (j.v !== PEER_PROTOCOL_VERSION) throw new PeerError('protocol-version', `joining node speaks protocol ${j.v}; this node speaks ${PEER_PROTOCOL_VERSION}`);
    const members = this.o.members?.();
    if (members === undefined) throw new PeerError('not-ready', 'this node does not know the cluster members yet; ask another member');
    // Only a node that was added first (etcd's member add) learns the cluster id and its members, and
    // only from the address it was added with (no TLS yet: the security issue binds identity to a certificate).
    const claimed = dialAddressOf(j.peer);
    const self = claimed === undefined ? undefined : members.find((m) => m.peerUrls.some((u) => dialAddressOf(u) === claimed));
    if (claimed === undefined || self === undefined) throw new PeerError('unknown-member', `no member has peer URL ${j.peer}; add it first (etcdctl member add)`);
    // A host name is resolved first; the handshake timeout bounds the wait.
    this.joining = true;
    fromHostOf(claimed, this.socket.remoteAddress)
      .then((ok) => this.answerJoin(j, members, ok))
      .catch((error: unknown) => this.failed(error));
  }

  private answerJoin(j: Extract<Frame, { t: 'join' }>, members: readonly JoinMember[], fromItsHost: boolean): void {
    if (this.refused || this.socket.destroyed) return; // timed out or closed meanwhile
    if (!fromItsHost) throw new PeerError('unknown-member', `a join for peer URL ${j.peer} came from ${this.socket.remoteAddress ?? '?'}`);
    clearTimeout(this.timer);
    this.refused = true; // nothing more is read from this connection
    this.log.info({ name: j.name, peer: j.peer }, 'a node asked to join; sent the member list');
    this.socket.end(encodeFrame({ t: 'members', cluster: this.o.clusterId, members }));
  }

  private onChunk(f: SnapChunkFrame): void {
    const limit = this.t.limits.maxSnapshotBytes;
    if (f.seq === 0) {
      this.dropAssembly(); // a new stream replaces an unfinished one (the sender gave up on it)
      const total = f.total ?? 0;
      if (total > limit) {
        this.log.warn({ peer: this.peer, rangeId: f.rangeId, total, limit }, 'snapshot above the size limit refused');
        this.ack(f.id, false);
        return;
      }
      if (!this.t.reserveSnapshot(total)) {
        // Raft sends it again later; meanwhile the node's memory stays bounded.
        this.log.warn({ peer: this.peer, rangeId: f.rangeId, total, budget: this.t.limits.maxSnapshotAssemblyBytes }, 'snapshot refused: the node-wide reassembly budget is spent');
        this.ack(f.id, false);
        return;
      }
      this.assembly = { id: f.id, rangeId: f.rangeId, head: f.head, total, chunks: [], bytes: 0, nextSeq: 0 };
    }
    const a = this.assembly;
    // A chunk of an abandoned or refused stream: the sender has already given up on it.
    if (a === undefined || a.id !== f.id || a.nextSeq !== f.seq) return;
    a.chunks.push(f.data);
    a.bytes += f.data.byteLength;
    a.nextSeq++;
    if (a.bytes > a.total) throw new PeerError('malformed-frame', `snapshot ${f.id} carries more than its declared ${a.total} bytes`);
    if (!f.last) return;
    this.dropAssembly();
    if (a.bytes !== a.total) throw new PeerError('malformed-frame', `snapshot ${f.id} ended at ${a.bytes} of ${a.total} bytes`);
    this.deliverSnapshot(a);
  }

  private deliverSnapshot(a: Assembly): void {
    const peer = this.peer as NodeId;
    const head = a.head as Record<string, unknown>;
    const snap = head['snapshot'] as Record<string, unknown> | undefined;
    const data = Buffer.concat(a.chunks, a.total);
    const problem = this.o.checkSnapshot?.(a.rangeId, data);
    if (problem !== undefined) throw new PeerError('malformed-frame', `snapshot ${a.id} for range ${a.rangeId} from peer ${peer}: ${problem}`);
    const message: Message = toMessage({ ...head, snapshot: { ...snap, data } }, peer, this.o.nodeId, true);
    this.t.stats.snapshotsReceived++;
    this.t.deliver(peer, [{ rangeId: a.rangeId, message }]);
    this.ack(a.id, true);
  }

  private ack(id: number, ok: boolean): void {
    this.socket.write(encodeFrame({ t: 'snapack', id, ok }));
  }

  private refuse(error: TesseraError): void {
    if (this.refused) return;
    this.refused = true;
    clearTimeout(this.timer);
    const reason = error instanceof PeerError ? error.reason : error.code;
    this.t.stats.rejectedInbound++;
    const level = this.t.mayLog(`in:${this.socket.remoteAddress}:${this.peer ?? '?'}:${reason}`) ? 'error' : 'debug';
    this.log[level]({ peer: this.peer, remote: this.socket.remoteAddress, code: error.code, reason }, `peer connection refused: ${messageOf(error)}`);
    // Tell the dialer why, so its operator sees the cause on that side too; then hang up.
    if (!this.socket.destroyed) this.socket.end(encodeFrame({ t: 'reject', reason, message: error.message }));
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }
}

/**
 * Whether a connection from `remote` may speak for `address`: it must come
 * from that IP, or from one its host name resolves to. (Only names a member
 * add recorded are looked up: the claimed address matched a member's first.)
 */
async function fromHostOf(address: string, remote: string | undefined): Promise<boolean> {
  if (remote === undefined) return false;
  const from = unmapped(remote);
  const { host } = parseHostPort(address);
  if (isIP(host) !== 0) return unmapped(host) === from;
  try {
    return (await lookup(host, { all: true })).some((a) => unmapped(a.address) === from);
  } catch {
    return false; // a name that does not resolve vouches for no address
  }
}

/** An IPv4 address as IPv6 sockets report it (::ffff:a.b.c.d) is compared as IPv4. */
function unmapped(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}
