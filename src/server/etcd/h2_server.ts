import type { Socket } from 'node:net';
import { assert } from '../../base/index.js';
import { type HeaderField, HpackDecoder, HpackError } from './hpack.js';

/**
 * The server side of an HTTP/2 connection (RFC 9113), written for the etcd
 * API's gRPC traffic. ADR 0004's addendum measured grpc-js with Node's
 * HTTP/2 server at 60–85 µs of a node's CPU per unary call, more than a
 * whole etcd member spends on a put; this connection does the same work in
 * plain JavaScript on the socket (see ADR 0008).
 *
 * What it does: the preface and SETTINGS exchange, HPACK decoding of request
 * headers (hpack.ts; responses use literals only, so our encoder has no
 * state), flow control in both directions, PING answers, RST_STREAM and
 * GOAWAY both ways, stream concurrency, a handshake deadline and an idle
 * timeout. Frames produced in one turn of the event loop go out in one
 * socket write. Priority is ignored (it is advisory), and so is any
 * :authority: etcd's Go clients send a URL there, which Node's HTTP/2
 * server refused.
 *
 * Each connection's memory is bounded: a stream receives at most our stream
 * window before its handler gives credit back, and all streams together at
 * most MAX_BUFFERED_INBOUND_BYTES (a stream whose DATA would pass it is
 * refused with REFUSED_STREAM, which gRPC clients retry); a header block
 * at most MAX_HEADER_BLOCK_BYTES, frame headers counted. Work in progress
 * is bounded too: a stream the client resets while its handler runs keeps
 * its slot under SETTINGS_MAX_CONCURRENT_STREAMS until the handler is done
 * (the "rapid reset" attack). A response the client grants no window for
 * is dropped after STALLED_STREAM_TIMEOUT_MS.
 */

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** A header block (HEADERS and its CONTINUATIONs) larger than this closes the connection; also advertised as SETTINGS_MAX_HEADER_LIST_SIZE. */
export const MAX_HEADER_BLOCK_BYTES = 16 * 1024;
/** The connection-level receive window we grant (RFC 9113 §6.9.2); credited back as DATA arrives. */
export const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;
/**
 * DATA received on one connection and not yet consumed by handlers: the
 * stream whose DATA would pass this is refused (REFUSED_STREAM before its
 * handler started, so the client may retry; ENHANCE_YOUR_CALM after).
 */
export const MAX_BUFFERED_INBOUND_BYTES = 64 * 1024 * 1024;
/** Bytes queued on the socket (the client not reading) above this close the connection. */
export const MAX_BUFFERED_OUTBOUND_BYTES = 64 * 1024 * 1024;
/** A stream whose queued response has waited this long without the client granting any window is reset (CANCEL). */
export const STALLED_STREAM_TIMEOUT_MS = 60_000;
/** The largest frame payload we accept (SETTINGS_MAX_FRAME_SIZE's default; we never raise it). */
const MAX_FRAME_PAYLOAD = 16_384;
/** HPACK dynamic table size the client's encoder may use (the protocol default; we advertise no other). */
const HPACK_TABLE_BYTES = 4_096;
const MAX_WINDOW = 0x7fff_ffff;
const DEFAULT_WINDOW = 65_535;

const FRAME_HEADER_BYTES = 9;
const enum FrameType {
  DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9,
}
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** RFC 9113 §7 error codes. */
export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;

/** A connection error (RFC 9113 §5.4.1): GOAWAY with the code, then close. */
class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export interface H2ConnectionOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams past it are refused (REFUSED_STREAM). */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE: what one stream may send before its handler gives credit back. */
  readonly streamWindowBytes: number;
  /** From accept to the client's preface and its ACK of our SETTINGS; the connection is closed when missed. */
  readonly handshakeTimeoutMs: number;
  /** A connection with no open stream for this long is closed with GOAWAY. */
  readonly idleTimeoutMs: number;
  /** A client opened a stream (its request headers, decoded). */
  readonly onStream: (stream: H2Stream, headers: readonly HeaderField[]) => void;
  readonly onHandshakeTimeout?: () => void;
  /** Default STALLED_STREAM_TIMEOUT_MS. */
  readonly stalledStreamTimeoutMs?: number;
  /** An exception from a handler (a bug): the stream is reset, the connection and the process go on. */
  readonly onBug?: (error: unknown) => void;
}

type Outbound =
  | { readonly kind: 'data'; data: Buffer; readonly end: boolean; readonly written: ((error?: Error) => void) | undefined }
  | { readonly kind: 'headers'; readonly block: Buffer; readonly end: boolean };

/**
 * One request stream. The handler sets onData and onAbort, sends headers,
 * data and trailers, and gives receive credit back with credit() as it
 * consumes what arrived.
 */
export class H2Stream {
  /** DATA payloads as they arrive (padding removed); `end` on the client's END_STREAM. */
  onData: (data: Buffer, end: boolean) => void = () => {};
  /** The stream ended without our END_STREAM: the client reset it, or the connection is gone. */
  onAbort: () => void = () => {};
  /** @internal */ sendWindow: number;
  /** @internal */ recvWindow: number;
  /** @internal */ recvUnconsumed = 0;
  /** @internal */ creditPending = 0;
  /** @internal */ readonly queue: Outbound[] = [];
  /** @internal */ remoteClosed = false;
  /** @internal */ localClosed = false;
  /** @internal */ aborted = false;
  /** @internal A handler is working for this stream (see startWork). */
  working = false;
  /** @internal The client reset the stream while its handler worked. */
  abandoned = false;
  /** @internal RST_STREAM to send once our END_STREAM is out. */
  resetAfterEnd: number | undefined;
  /** @internal When the stream last sent DATA, or began waiting for window. */
  progressMs = 0;

  constructor(
    readonly id: number,
    private readonly connection: H2Connection,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** True once the stream is finished either way; sends are then dropped. */
  get closed(): boolean {
    return this.localClosed || this.aborted;
  }

  sendHeaders(block: Buffer, end: boolean): void {
    this.connection.enqueue(this, { kind: 'headers', block, end });
  }

  /** `written` is called once the bytes are handed to the socket, or with an error if the stream ends first. */
  sendData(data: Buffer, end: boolean, written?: (error?: Error) => void): void {
    this.connection.enqueue(this, { kind: 'data', data, end, written });
  }

  /**
   * Once the queued END_STREAM has gone out, RST_STREAM with `code` tells a
   * client still sending that we answered without reading the rest (RFC 9113 §8.1).
   */
  endThenReset(code: number): void {
    this.connection.endThenReset(this, code);
  }

  /** A handler works on the stream's request: until endWork, the stream counts against the concurrency limit even if the client resets it. */
  startWork(): void {
    this.working = true;
  }

  endWork(): void {
    this.connection.endWork(this);
  }

  /** Gives back receive window for `bytes` of DATA the handler has consumed. */
  credit(bytes: number): void {
    this.connection.creditStream(this, bytes);
  }
}

/** The server side of one HTTP/2 connection on `socket`. */
export class H2Connection {
  private readonly streams = new Map<number, H2Stream>();
  private readonly decoder = new HpackDecoder(HPACK_TABLE_BYTES);
  private pending: Buffer | undefined;
  private prefaceSeen = false;
  private lastStreamId = 0;
  /** The HEADERS awaiting CONTINUATION frames. */
  private headerBlock: { streamId: number; end: boolean; parts: Buffer[]; bytes: number } | undefined;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MAX_FRAME_PAYLOAD;
  private sendWindow = DEFAULT_WINDOW;
  private recvUncredited = 0;
  private bufferedInbound = 0;
  /** Streams with DATA waiting for window. */
  private readonly blocked = new Set<H2Stream>();
  private out: Buffer[] = [];
  private outBytes = 0;
  private outCallbacks: ((error?: Error) => void)[] = [];
  private flushScheduled = false;
  private goawaySent = false;
  private peerGoaway = false;
  private closed = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleSinceMs = Date.now();
  /** Streams reset by the client whose handlers still work. */
  private abandoned = 0;
  private readonly stallTimeoutMs: number;
  private stallTimer: NodeJS.Timeout | undefined;
  /** When any stream last sent DATA bytes. */
  private lastDataSentMs = 0;

  constructor(
    private readonly socket: Socket,
    private readonly options: H2ConnectionOptions,
  ) {
    this.stallTimeoutMs = options.stalledStreamTimeoutMs ?? STALLED_STREAM_TIMEOUT_MS;
    assert(options.streamWindowBytes > 0 && options.streamWindowBytes <= MAX_WINDOW, () => `stream window ${options.streamWindowBytes} out of range`);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => socket.destroy());
    // A FIN from a gRPC client means it is gone (gRPC never half-closes TCP): waiting to answer its streams
    // would keep a departed client's watches open until something failed to write.
    socket.on('end', () => socket.destroy());
    socket.on('close', () => this.teardown());
    this.handshakeTimer = setTimeout(() => {
      this.options.onHandshakeTimeout?.();
      this.socket.destroy();
    }, options.handshakeTimeoutMs);
    this.armIdle();
    // The server's preface is its SETTINGS, which may go out before the client's (RFC 9113 §3.4).
    this.writeFrame(FrameType.SETTINGS, 0, 0, settingsPayload([
      [SETTING.ENABLE_PUSH, 0],
      [SETTING.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams],
      [SETTING.INITIAL_WINDOW_SIZE, options.streamWindowBytes],
      [SETTING.MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK_BYTES],
    ]));
    this.writeFrame(FrameType.WINDOW_UPDATE, 0, 0, uint31(CONNECTION_WINDOW_BYTES - DEFAULT_WINDOW));
  }

  /** Open streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /**
   * Graceful close: GOAWAY tells the client which streams we will still
   * answer; the socket ends once they are done.
   */
  shutdown(): void {
    if (this.closed) return;
    if (!this.goawaySent) this.goaway(H2_ERROR.NO_ERROR);
    if (this.streams.size === 0) this.endSocket();
  }

  /** Immediate close: every open stream is aborted. */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- inbound ----

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    let buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    try {
      if (!this.prefaceSeen) {
        const n = Math.min(buf.length, H2_PREFACE.length);
        if (!buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'not an HTTP/2 client preface');
        if (n < H2_PREFACE.length) {
          this.pending = buf;
          return;
        }
        this.prefaceSeen = true;
        buf = buf.subarray(H2_PREFACE.length);
      }
      let pos = 0;
      while (buf.length - pos >= FRAME_HEADER_BYTES && !this.closed) {
        const length = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
        if (length > MAX_FRAME_PAYLOAD) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        const end = pos + FRAME_HEADER_BYTES + length;
        if (end > buf.length) break;
        const streamId = buf.readUInt32BE(pos + 5) & MAX_WINDOW;
        this.frame(buf[pos + 3]!, buf[pos + 4]!, streamId, buf.subarray(pos + FRAME_HEADER_BYTES, end));
        pos = end;
      }
      if (pos < buf.length) this.pending = Buffer.from(buf.subarray(pos));
    } catch (error) {
      if (error instanceof ConnectionError) this.fail(error.code);
      else if (error instanceof HpackError) this.fail(H2_ERROR.COMPRESSION_ERROR);
      else {
        // A bug of ours: never the process's end.
        this.options.onBug?.(error);
        this.fail(H2_ERROR.INTERNAL_ERROR);
      }
    }
    this.maybeStopReading();
  }

  private frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.headerBlock !== undefined && type !== FrameType.CONTINUATION) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'expected CONTINUATION');
    switch (type) {
      case FrameType.DATA:
        return this.data(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.headers(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.continuation(flags, streamId, payload);
      case FrameType.SETTINGS:
        return this.settings(flags, streamId, payload);
      case FrameType.WINDOW_UPDATE:
        return this.windowUpdate(streamId, payload);
      case FrameType.RST_STREAM:
        return this.rstStream(streamId, payload);
      case FrameType.PING:
        if (streamId !== 0 || payload.length !== 8) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'bad PING');
        if ((flags & FLAG_ACK) === 0) this.writeFrame(FrameType.PING, FLAG_ACK, 0, Buffer.from(payload));
        return;
      case FrameType.GOAWAY:
        this.peerGoaway = true;
        if (this.streams.size === 0) this.endSocket();
        return;
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case FrameType.PRIORITY:
        if (streamId === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        return;
      default:
        // Unknown frame types are ignored (RFC 9113 §4.1).
        return;
    }
  }

  private data(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'DATA on stream 0');
    if (streamId > this.lastStreamId) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'DATA on an idle stream');
    // Flow control counts the whole payload, padding included (RFC 9113 §6.9).
    this.recvUncredited += payload.length;
    if (this.recvUncredited > CONNECTION_WINDOW_BYTES) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'connection window exceeded');
    if (this.recvUncredited >= CONNECTION_WINDOW_BYTES / 2) {
      this.writeFrame(FrameType.WINDOW_UPDATE, 0, 0, uint31(this.recvUncredited));
      this.recvUncredited = 0;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined || stream.remoteClosed) {
      // A stream we already finished (the client may not have seen our END_STREAM or RST yet).
      return;
    }
    const body = unpad(flags, payload);
    if (payload.length > stream.recvWindow) {
      this.resetStream(stream, H2_ERROR.FLOW_CONTROL_ERROR);
      return;
    }
    if (this.bufferedInbound + body.length > MAX_BUFFERED_INBOUND_BYTES) {
      // Too much unconsumed data on this connection. A request no handler has worked on yet is refused so that the client may retry it.
      this.resetStream(stream, stream.working ? H2_ERROR.ENHANCE_YOUR_CALM : H2_ERROR.REFUSED_STREAM);
      return;
    }
    stream.recvWindow -= payload.length;
    const padding = payload.length - body.length;
    if (padding > 0 && (flags & FLAG_END_STREAM) === 0) {
      // Padding is consumed at once; the body when the handler says so.
      stream.recvWindow += padding;
      this.writeFrame(FrameType.WINDOW_UPDATE, 0, stream.id, uint31(padding));
    }
    stream.recvUnconsumed += body.length;
    this.bufferedInbound += body.length;
    const end = (flags & FLAG_END_STREAM) !== 0;
    if (end) stream.remoteClosed = true;
    this.callHandler(stream, () => stream.onData(body, end));
    if (end) this.maybeForget(stream);
  }

  private headers(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
    const body = unpad(flags, payload);
    // The priority fields (stream dependency and weight) are advisory and skipped.
    const priorityBytes = flags & FLAG_PRIORITY ? 5 : 0;
    if (priorityBytes > body.length) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'HEADERS too short for its priority fields');
    const fragment = Buffer.from(body.subarray(priorityBytes));
    this.headerBlock = { streamId, end: (flags & FLAG_END_STREAM) !== 0, parts: [fragment], bytes: FRAME_HEADER_BYTES + payload.length };
    if (flags & FLAG_END_HEADERS) this.headerBlockDone();
    else this.checkHeaderBlockSize();
  }

  private continuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.headerBlock;
    if (block === undefined || block.streamId !== streamId) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'unexpected CONTINUATION');
    // Frame headers count too, so a flood of empty CONTINUATIONs reaches the limit; pieces are copied, not kept as views of socket chunks.
    block.parts.push(Buffer.from(payload));
    block.bytes += FRAME_HEADER_BYTES + payload.length;
    this.checkHeaderBlockSize();
    if (flags & FLAG_END_HEADERS) this.headerBlockDone();
  }

  private checkHeaderBlockSize(): void {
    if ((this.headerBlock?.bytes ?? 0) > MAX_HEADER_BLOCK_BYTES) throw new ConnectionError(H2_ERROR.ENHANCE_YOUR_CALM, 'header block too large');
  }

  private headerBlockDone(): void {
    const block = this.headerBlock;
    assert(block !== undefined, 'a header block to finish');
    this.headerBlock = undefined;
    // Every block is decoded, even one we ignore: the HPACK table is shared by the whole connection.
    const fields = this.decoder.decode(block.parts.length === 1 ? block.parts[0]! : Buffer.concat(block.parts));
    const existing = this.streams.get(block.streamId);
    if (block.streamId <= this.lastStreamId) {
      // Trailers from the client end its side; gRPC clients send none, so their content is ignored.
      if (existing === undefined || existing.remoteClosed) return;
      if (!block.end) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'trailers without END_STREAM');
      existing.remoteClosed = true;
      this.callHandler(existing, () => existing.onData(Buffer.alloc(0), true));
      this.maybeForget(existing);
      return;
    }
    this.lastStreamId = block.streamId;
    if (this.goawaySent || this.peerGoaway) return;
    if (this.streams.size + this.abandoned >= this.options.maxConcurrentStreams) {
      this.writeFrame(FrameType.RST_STREAM, 0, block.streamId, uint32(H2_ERROR.REFUSED_STREAM));
      return;
    }
    const stream = new H2Stream(block.streamId, this, this.peerInitialWindow, this.options.streamWindowBytes);
    this.streams.set(stream.id, stream);
    if (block.end) stream.remoteClosed = true;
    this.callHandler(stream, () => this.options.onStream(stream, fields));
    if (block.end && !stream.closed) this.callHandler(stream, () => stream.onData(Buffer.alloc(0), true));
    this.maybeForget(stream);
  }

  private settings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & FLAG_ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      // Our SETTINGS acknowledged: the handshake is complete.
      clearTimeout(this.handshakeTimer);
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'SETTINGS length');
    for (let pos = 0; pos < payload.length; pos += 6) {
      const id = payload.readUInt16BE(pos);
      const value = payload.readUInt32BE(pos + 2);
      if (id === SETTING.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) {
          stream.sendWindow += delta;
          if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'stream window overflow');
        }
      } else if (id === SETTING.MAX_FRAME_SIZE) {
        if (value < MAX_FRAME_PAYLOAD || value > 0xff_ffff) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      } else if (id === SETTING.ENABLE_PUSH && value > 1) {
        throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'ENABLE_PUSH out of range');
      }
      // HEADER_TABLE_SIZE: our encoder never indexes, so any table size suits it. The rest are advisory.
    }
    this.writeFrame(FrameType.SETTINGS, FLAG_ACK, 0, Buffer.alloc(0));
    this.drainBlocked();
  }

  private windowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'connection window overflow');
      this.drainBlocked();
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    if (increment === 0) return this.resetStream(stream, H2_ERROR.PROTOCOL_ERROR);
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) return this.resetStream(stream, H2_ERROR.FLOW_CONTROL_ERROR);
    this.drain(stream);
  }

  private rstStream(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'RST_STREAM length');
    if (streamId === 0 || streamId > this.lastStreamId) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    const stream = this.streams.get(streamId);
    if (stream !== undefined) this.abort(stream);
  }

  // ---- streams ----

  /** @internal */
  creditStream(stream: H2Stream, bytes: number): void {
    // A stream already dropped had its unconsumed bytes released then.
    if (this.streams.get(stream.id) !== stream) return;
    assert(bytes >= 0 && bytes <= stream.recvUnconsumed, () => `credit of ${bytes} with ${stream.recvUnconsumed} unconsumed`);
    stream.recvUnconsumed -= bytes;
    this.bufferedInbound -= bytes;
    if (stream.remoteClosed || stream.closed) return;
    stream.creditPending += bytes;
    // Credit goes back in quarter-window steps, so a stream of small messages costs few frames.
    if (stream.creditPending >= this.options.streamWindowBytes / 4 || stream.recvWindow < this.options.streamWindowBytes / 2) {
      stream.recvWindow += stream.creditPending;
      this.writeFrame(FrameType.WINDOW_UPDATE, 0, stream.id, uint31(stream.creditPending));
      stream.creditPending = 0;
    }
  }

  /** @internal */
  endThenReset(stream: H2Stream, code: number): void {
    // A client that has finished sending needs no reset.
    if (stream.remoteClosed || stream.aborted) return;
    stream.resetAfterEnd = code;
    if (stream.queue.length === 0 && stream.localClosed) this.sendResetAfterEnd(stream);
  }

  /** @internal */
  endWork(stream: H2Stream): void {
    if (!stream.working) return;
    stream.working = false;
    if (stream.abandoned) {
      stream.abandoned = false;
      this.abandoned--;
    }
  }

  /** Runs a handler's code for `stream`; an exception is a bug, reported, and resets the stream. */
  private callHandler(stream: H2Stream, action: () => void): void {
    try {
      action();
    } catch (error) {
      this.options.onBug?.(error);
      this.resetStream(stream, H2_ERROR.INTERNAL_ERROR);
    }
  }

  /** Calls write callbacks; one that throws is a bug, reported, and the others still run. */
  private notify(callbacks: readonly ((error?: Error) => void)[], error: Error | undefined): void {
    for (const cb of callbacks) {
      try {
        cb(error);
      } catch (bug) {
        this.options.onBug?.(bug);
      }
    }
  }

  /** @internal */
  enqueue(stream: H2Stream, item: Outbound): void {
    if (stream.closed || this.closed) {
      if (item.kind === 'data' && item.written !== undefined) this.notify([item.written], new Error('stream closed'));
      return;
    }
    if (item.end) stream.localClosed = true;
    stream.queue.push(item);
    if (stream.queue.length === 1) this.drain(stream);
  }

  /** @internal */
  resetStream(stream: H2Stream, code: number): void {
    if (stream.aborted || !this.streams.has(stream.id)) return;
    this.writeFrame(FrameType.RST_STREAM, 0, stream.id, uint32(code));
    this.abort(stream);
  }

  /**
   * Sends what the windows allow of a stream's queue, in order. `budget.frames`
   * bounds the DATA frames sent, so that streams sharing the connection window take turns.
   */
  private drain(stream: H2Stream, budget = { frames: Infinity }): void {
    while (stream.queue.length > 0) {
      const item = stream.queue[0]!;
      if (item.kind === 'headers') {
        this.writeHeaders(stream.id, item.block, item.end);
      } else {
        if (!this.sendDataItem(stream, item, budget)) {
          if (!this.blocked.has(stream)) {
            this.blocked.add(stream);
            stream.progressMs = Date.now();
            this.armStallCheck();
          }
          return;
        }
        if (item.written !== undefined) this.outCallbacks.push(item.written);
      }
      stream.queue.shift();
    }
    this.blocked.delete(stream);
    if (stream.resetAfterEnd !== undefined && stream.localClosed) this.sendResetAfterEnd(stream);
    else if (stream.localClosed) this.maybeForget(stream);
  }

  private sendResetAfterEnd(stream: H2Stream): void {
    const code = stream.resetAfterEnd ?? H2_ERROR.NO_ERROR;
    stream.resetAfterEnd = undefined;
    // A client that finished sending meanwhile has a closed stream now: no frame may follow (RFC 9113 §5.1).
    if (!stream.remoteClosed) this.writeFrame(FrameType.RST_STREAM, 0, stream.id, uint32(code));
    // Both sides are done now: our END_STREAM is out, and the reset ends the client's.
    stream.remoteClosed = true;
    this.maybeForget(stream);
  }

  /** While streams wait for window, checks for ones that waited stallTimeoutMs without any, and resets them. */
  private armStallCheck(): void {
    if (this.stallTimer !== undefined || this.closed) return;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      const now = Date.now();
      for (const stream of [...this.blocked]) {
        // Stalled: no DATA of its own for the timeout, and no window of its own or none on the connection either.
        const starved = stream.sendWindow <= 0 || now - this.lastDataSentMs >= this.stallTimeoutMs;
        if (now - stream.progressMs >= this.stallTimeoutMs && starved) this.resetStream(stream, H2_ERROR.CANCEL);
      }
      if (this.blocked.size > 0) this.armStallCheck();
    }, this.stallTimeoutMs / 4);
    this.stallTimer.unref();
  }

  /** Writes a DATA item as far as the windows allow; false when some is left. An empty item is one empty frame (RFC 9113 §6.9.1 counts payload only). */
  private sendDataItem(stream: H2Stream, item: Outbound & { kind: 'data' }, budget: { frames: number }): boolean {
    do {
      if (budget.frames <= 0) return false;
      const n = item.data.length === 0 ? 0 : Math.min(item.data.length, this.peerMaxFrame, this.sendWindow, stream.sendWindow);
      if (n <= 0 && item.data.length > 0) return false;
      const last = n === item.data.length;
      this.writeFrame(FrameType.DATA, last && item.end ? FLAG_END_STREAM : 0, stream.id, item.data.subarray(0, n));
      budget.frames--;
      item.data = item.data.subarray(n);
      this.sendWindow -= n;
      stream.sendWindow -= n;
      if (n > 0) stream.progressMs = this.lastDataSentMs = Date.now();
    } while (item.data.length > 0);
    return true;
  }

  /** Connection window arrived: waiting streams take turns, a frame each per round, while it lasts. */
  private drainBlocked(): void {
    let progress = true;
    while (progress && this.sendWindow > 0 && this.blocked.size > 0) {
      progress = false;
      for (const stream of [...this.blocked]) {
        if (this.sendWindow <= 0) return;
        const before = this.sendWindow;
        this.drain(stream, { frames: 1 });
        if (this.sendWindow < before || !this.blocked.has(stream)) progress = true;
        if (this.sendWindow < before && this.blocked.delete(stream)) {
          // It had its turn: to the back of the line, so the next window update starts with the others.
          this.blocked.add(stream);
        }
      }
    }
  }

  /** Drops a stream both sides have finished. */
  private maybeForget(stream: H2Stream): void {
    if (!(stream.remoteClosed && stream.localClosed && stream.queue.length === 0) && !stream.aborted) return;
    this.forget(stream);
  }

  private forget(stream: H2Stream): void {
    if (!this.streams.delete(stream.id)) return;
    this.blocked.delete(stream);
    this.bufferedInbound -= stream.recvUnconsumed;
    stream.recvUnconsumed = 0;
    if (this.streams.size === 0) {
      this.idleSinceMs = Date.now();
      if (this.goawaySent || this.peerGoaway) this.endSocket();
    }
  }

  private abort(stream: H2Stream): void {
    if (stream.aborted) return;
    stream.aborted = true;
    if (stream.working) {
      stream.abandoned = true;
      this.abandoned++;
    }
    const callbacks: ((error?: Error) => void)[] = [];
    for (const item of stream.queue) if (item.kind === 'data' && item.written !== undefined) callbacks.push(item.written);
    stream.queue.length = 0;
    this.forget(stream);
    // The handler hears of the abort before its write callbacks fail, so it does not act on the call again.
    if (!stream.localClosed) this.callHandler(stream, () => stream.onAbort());
    this.notify(callbacks, new Error('stream reset'));
  }

  // ---- outbound ----

  private writeHeaders(streamId: number, block: Buffer, end: boolean): void {
    for (let pos = 0, first = true; first || pos < block.length; first = false) {
      const piece = block.subarray(pos, pos + this.peerMaxFrame);
      pos += piece.length;
      const flags = (pos >= block.length ? FLAG_END_HEADERS : 0) | (first && end ? FLAG_END_STREAM : 0);
      this.writeFrame(first ? FrameType.HEADERS : FrameType.CONTINUATION, flags, streamId, piece);
    }
  }

  private writeFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.closed) return;
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    header[0] = payload.length >>> 16;
    header[1] = (payload.length >>> 8) & 0xff;
    header[2] = payload.length & 0xff;
    header[3] = type;
    header[4] = flags;
    header.writeUInt32BE(streamId, 5);
    this.out.push(header);
    if (payload.length > 0) this.out.push(payload);
    this.outBytes += FRAME_HEADER_BYTES + payload.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the current turn's microtasks: responses resolved together leave in one write.
      process.nextTick(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    const callbacks = this.outCallbacks;
    this.out = [];
    this.outCallbacks = [];
    const bytes = this.outBytes;
    this.outBytes = 0;
    if (this.closed || this.socket.destroyed) {
      this.notify(callbacks, new Error('connection closed'));
      return;
    }
    const done =
      callbacks.length === 0
        ? undefined
        : (error?: Error | null): void => {
            // A failed write means the socket is gone: calls hear of it before their callbacks fail.
            if (error) this.abortAll();
            this.notify(callbacks, error ?? undefined);
          };
    if (bytes <= 64 * 1024) this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out, bytes), done);
    else {
      this.socket.cork();
      for (let i = 0; i < out.length - 1; i++) this.socket.write(out[i]!);
      this.socket.write(out[out.length - 1]!, done);
      this.socket.uncork();
    }
    if (this.socket.writableLength > MAX_BUFFERED_OUTBOUND_BYTES) this.socket.destroy();
  }

  /** While the socket holds much unsent data, stop reading requests (they would only add responses). */
  private maybeStopReading(): void {
    // Reading resumes when the socket drains; small backlogs are left to the client's flow control.
    if (this.socket.writableLength > MAX_BUFFERED_OUTBOUND_BYTES / 4 && !this.socket.isPaused()) {
      this.socket.pause();
      this.socket.once('drain', () => this.socket.resume());
    }
  }

  private goaway(code: number): void {
    this.goawaySent = true;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(this.lastStreamId, 0);
    payload.writeUInt32BE(code, 4);
    this.writeFrame(FrameType.GOAWAY, 0, 0, payload);
  }

  /** A connection error: GOAWAY, then close once it is written. */
  private fail(code: number): void {
    if (this.closed) return;
    if (this.prefaceSeen) this.goaway(code);
    this.endSocket();
    this.abortAll();
  }

  /** Writes what is queued and ends our side. */
  private endSocket(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.socket.end();
    // A client that does not close its side is cut off after the grace of one handshake timeout.
    setTimeout(() => this.socket.destroy(), this.options.handshakeTimeoutMs).unref();
  }

  private armIdle(): void {
    const wait = Math.max(1, this.idleSinceMs + this.options.idleTimeoutMs - Date.now());
    this.idleTimer = setTimeout(() => {
      if (this.closed) return;
      if (this.streams.size === 0 && Date.now() - this.idleSinceMs >= this.options.idleTimeoutMs) this.shutdown();
      else {
        if (this.streams.size > 0) this.idleSinceMs = Date.now();
        this.armIdle();
      }
    }, wait);
    this.idleTimer.unref();
  }

  private abortAll(): void {
    for (const stream of [...this.streams.values()]) this.abort(stream);
  }

  private teardown(): void {
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.stallTimer);
    const callbacks = this.outCallbacks;
    this.outCallbacks = [];
    // Calls hear of the end before their write callbacks fail.
    this.abortAll();
    this.notify(callbacks, new Error('connection closed'));
  }
}

function unpad(flags: number, payload: Buffer): Buffer {
  if ((flags & FLAG_PADDED) === 0) return payload;
  const pad = payload[0] ?? 0;
  if (pad >= payload.length) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'padding exceeds the frame');
  return payload.subarray(1, payload.length - pad);
}

function settingsPayload(settings: readonly (readonly [number, number])[]): Buffer {
  const payload = Buffer.alloc(settings.length * 6);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return payload;
}

function uint31(value: number): Buffer {
  assert(value > 0 && value <= MAX_WINDOW, () => `window increment ${value} out of range`);
  return uint32(value);
}

function uint32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value, 0);
  return b;
}
