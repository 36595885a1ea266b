import { type MethodDefinition, status as GrpcStatus } from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import type { EtcdStatus } from './errors.js';
import type { H2Stream } from './h2_server.js';
import type { HeaderField } from './hpack.js';
import { encodeHeaderBlock } from './hpack.js';
import { GRPC_MESSAGE_PREFIX_BYTES as MESSAGE_PREFIX_BYTES } from './limits.js';

/**
 * gRPC over our HTTP/2 connection (h2_server.ts), as the gRPC-over-HTTP/2
 * protocol document specifies it: a POST to /package.Service/Method with
 * content-type application/grpc, messages framed by a 5-byte prefix (a
 * compressed flag and a big-endian length), the response's headers, its
 * messages, and trailers carrying grpc-status and grpc-message. An error
 * before any message is a trailers-only response.
 *
 * Messages are encoded and decoded by the method definitions that
 * @grpc/proto-loader builds (proto.ts), the same codec grpc-js used here.
 * We serve no compression: etcd's clients send none, and a compressed
 * message gets UNIMPLEMENTED. Deadlines (grpc-timeout) are the client's to
 * enforce: it resets the stream when one passes, and the handler's answer
 * is then dropped.
 */

/** A request's metadata: the values of a (lower-case) header name. */
export interface RequestMetadata {
  get(key: string): string[];
}

/** A streaming call as the Watch, LeaseKeepAlive and Snapshot services use it. */
export interface GrpcServerCall<Request, Response> {
  /** The request of a server-streaming call; undefined for a bidirectional one. */
  readonly request: Request | undefined;
  readonly metadata: RequestMetadata;
  /** True once the client cancelled or the connection dropped. */
  readonly cancelled: boolean;
  /** `callback` runs once the message is handed to the socket, or with an error when the call ended first. */
  write(message: Response, callback?: (error?: Error | null) => void): boolean;
  /** Ends the call with OK after the messages written so far. */
  end(): void;
  /** Ends the call with `status`. */
  fail(status: EtcdStatus): void;
  /** Stops (and restarts) delivering requests; the client's flow-control window is not refilled meanwhile. */
  pause(): void;
  resume(): void;
  on(event: 'data', listener: (request: Request) => void): this;
  /** 'end': the client finished sending; 'cancelled': it reset the call or went away; 'close': the call is over, either way. */
  on(event: 'end' | 'cancelled' | 'close', listener: () => void): this;
}

export type UnaryHandler = (request: any, metadata: RequestMetadata) => Promise<unknown>;
export type StreamHandler = (call: GrpcServerCall<any, any>) => void;

export interface GrpcMethod {
  readonly definition: MethodDefinition<any, any>;
  /** Exactly one of unary and stream is set, as the definition's streaming flags say. */
  readonly unary?: UnaryHandler;
  readonly stream?: StreamHandler;
  /** The status for an error a unary handler threw. */
  readonly toStatus: (error: unknown) => EtcdStatus;
}

export interface GrpcRouterOptions {
  /** A request message above this is refused with RESOURCE_EXHAUSTED, as grpc-js refuses one over its receive limit. */
  readonly maxReceiveMessageBytes: number;
  /** A response that cannot be encoded is a bug: reported here, answered with INTERNAL. */
  readonly onBug: (error: unknown, method: string) => void;
}

const RESPONSE_HEADERS = encodeHeaderBlock([
  [':status', '200'],
  ['content-type', 'application/grpc'],
]);
const OK_TRAILERS = encodeHeaderBlock([['grpc-status', '0']]);
/** RST_STREAM NO_ERROR: we answered, the client may stop sending (RFC 9113 §8.1). */
const NO_ERROR = 0x0;
/** A response the codec could not encode: a bug, reported through onBug. */
const ENCODE_FAILED: EtcdStatus = { code: GrpcStatus.INTERNAL, details: 'tessera: the response could not be encoded' };

function deserializeFailed(error: unknown): EtcdStatus {
  return { code: GrpcStatus.INTERNAL, details: `Error deserializing request: ${(error as Error).message}` };
}

/** Routes each new HTTP/2 stream to its method by :path. */
export function grpcRouter(methods: ReadonlyMap<string, GrpcMethod>, options: GrpcRouterOptions): (stream: H2Stream, headers: readonly HeaderField[]) => void {
  return (stream, headers) => {
    let path: string | undefined;
    let method: string | undefined;
    let contentType: string | undefined;
    for (const [name, value] of headers) {
      if (name === ':path') path = value;
      else if (name === ':method') method = value;
      else if (name === 'content-type') contentType = value;
    }
    if (method !== 'POST') return httpError(stream, '405');
    if (contentType === undefined || !contentType.startsWith('application/grpc')) return httpError(stream, '415');
    const m = path === undefined ? undefined : methods.get(path);
    if (m === undefined) {
      return refuse(stream, { code: GrpcStatus.UNIMPLEMENTED, details: `The server does not implement the method ${path ?? '(none)'}` });
    }
    if (m.unary !== undefined) serveUnary(stream, headers, m, m.unary, options);
    else new ServerCall(stream, headers, m, options).start();
  };
}

/**
 * Cuts length-prefixed messages out of DATA as it arrives, in linear time
 * however the frames split them: a message wholly inside one DATA payload
 * is a view of it; one that spans payloads is copied into a buffer that
 * doubles as bytes arrive (never sized by the prefix alone, which a client
 * could inflate), so what it holds is at most twice what arrived.
 */
export class MessageReader {
  private readonly prefix = Buffer.alloc(MESSAGE_PREFIX_BYTES);
  private prefixBytes = 0;
  /** The declared length of the message being read, once its prefix is in. */
  private length = -1;
  private body: Buffer = Buffer.alloc(0);
  private bodyBytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** The messages completed by `data`, or the status that refuses the call. */
  push(data: Buffer): Buffer[] | EtcdStatus {
    const messages: Buffer[] = [];
    let pos = 0;
    while (pos < data.length) {
      if (this.length < 0) {
        const n = Math.min(MESSAGE_PREFIX_BYTES - this.prefixBytes, data.length - pos);
        data.copy(this.prefix, this.prefixBytes, pos, pos + n);
        this.prefixBytes += n;
        pos += n;
        if (this.prefixBytes < MESSAGE_PREFIX_BYTES) break;
        if (this.prefix[0] !== 0) return { code: GrpcStatus.UNIMPLEMENTED, details: 'compressed messages are not supported' };
        this.length = this.prefix.readUInt32BE(1);
        if (this.length > this.maxBytes) return { code: GrpcStatus.RESOURCE_EXHAUSTED, details: `Received message larger than max (${this.length} vs. ${this.maxBytes})` };
      }
      if (this.bodyBytes === 0 && data.length - pos >= this.length) {
        messages.push(data.subarray(pos, pos + this.length));
        pos += this.length;
      } else {
        const n = Math.min(this.length - this.bodyBytes, data.length - pos);
        this.reserve(this.bodyBytes + n);
        data.copy(this.body, this.bodyBytes, pos, pos + n);
        this.bodyBytes += n;
        pos += n;
        if (this.bodyBytes < this.length) break;
        messages.push(this.body.subarray(0, this.length));
        this.body = Buffer.alloc(0);
        this.bodyBytes = 0;
      }
      this.length = -1;
      this.prefixBytes = 0;
    }
    return messages;
  }

  get partial(): boolean {
    return this.prefixBytes > 0;
  }

  private reserve(bytes: number): void {
    if (bytes <= this.body.length) return;
    const next = Buffer.allocUnsafe(Math.min(this.length, Math.max(bytes, this.body.length * 2, 1024)));
    this.body.copy(next, 0, 0, this.bodyBytes);
    this.body = next;
  }
}

function serveUnary(stream: H2Stream, headers: readonly HeaderField[], m: GrpcMethod, handler: UnaryHandler, options: GrpcRouterOptions): void {
  const reader = new MessageReader(options.maxReceiveMessageBytes);
  let message: Buffer | undefined;
  let held = 0;
  let refused = false;
  stream.onData = (data, end) => {
    // The stream window holds a whole request, so its bytes are credited only once the request is read (or refused).
    held += data.length;
    if (refused) return;
    const out = reader.push(data);
    if (!Array.isArray(out) || (message !== undefined && out.length > 0) || out.length > 1) {
      refused = true;
      stream.credit(held);
      return refuse(stream, Array.isArray(out) ? { code: GrpcStatus.UNIMPLEMENTED, details: 'a unary call carries one request message' } : out);
    }
    if (out.length === 1) message = out[0];
    if (!end) return;
    stream.credit(held);
    if (message === undefined || reader.partial) return sendStatus(stream, { code: GrpcStatus.INTERNAL, details: 'the call ended without a whole request message' }, false);
    dispatchUnary(stream, headers, m, handler, message, options);
  };
}

function dispatchUnary(stream: H2Stream, headers: readonly HeaderField[], m: GrpcMethod, handler: UnaryHandler, message: Buffer, options: GrpcRouterOptions): void {
  let request: unknown;
  try {
    request = m.definition.requestDeserialize(message);
  } catch (error) {
    return sendStatus(stream, deserializeFailed(error), false);
  }
  // The call holds its slot under the stream limit until the handler is done, even if the client resets it.
  stream.startWork();
  let pending: Promise<unknown>;
  try {
    pending = Promise.resolve(handler(request, metadataOf(headers)));
  } catch (error) {
    pending = Promise.reject(error);
  }
  pending
    .finally(() => stream.endWork())
    .then(
      (response) => {
        if (stream.closed) return;
        let bytes: Buffer;
        try {
          bytes = m.definition.responseSerialize(response);
        } catch (error) {
          options.onBug(error, m.definition.path);
          return sendStatus(stream, ENCODE_FAILED, false);
        }
        stream.sendHeaders(RESPONSE_HEADERS, false);
        stream.sendData(frameMessage(bytes), false);
        stream.sendHeaders(OK_TRAILERS, true);
      },
      (error: unknown) => sendStatus(stream, m.toStatus(error), false),
    )
    .catch((bug: unknown) => options.onBug(bug, m.definition.path));
}

/** A streaming call (bidirectional, or server-streaming with its one request). */
class ServerCall extends EventEmitter implements GrpcServerCall<unknown, unknown> {
  request: unknown = undefined;
  cancelled = false;
  readonly metadata: RequestMetadata;
  private readonly reader: MessageReader;
  private headersSent = false;
  private finished = false;
  private paused = false;
  private clientEnded = false;
  /** The client's end has been acted on ('end' emitted, or the server-streaming handler started). */
  private endSeen = false;
  /** Whole request messages not yet delivered (the call is paused). */
  private readonly queued: Buffer[] = [];
  /** DATA bytes received and not yet given back to the client's window. */
  private uncredited = 0;
  private readonly bidi: boolean;

  constructor(
    private readonly stream: H2Stream,
    headers: readonly HeaderField[],
    private readonly m: GrpcMethod,
    private readonly options: GrpcRouterOptions,
  ) {
    super();
    this.metadata = metadataOf(headers);
    this.reader = new MessageReader(options.maxReceiveMessageBytes);
    this.bidi = m.definition.requestStream;
  }

  start(): void {
    // A bidirectional call holds its slot under the stream limit from now until it is over, even if the client
    // resets it; a server-streaming one from when its handler starts (until then its request may be refused and retried).
    if (this.bidi) this.stream.startWork();
    this.stream.onData = (data, end) => this.onData(data, end);
    this.stream.onAbort = () => {
      if (this.finished) return;
      this.finished = true;
      this.cancelled = true;
      this.guarded(() => this.emit('cancelled'));
      this.guarded(() => this.emit('close'));
      this.stream.endWork();
    };
    // A bidirectional handler starts at once and hears requests as they come; a server-streaming one once its request is in.
    if (this.bidi) this.guarded(() => this.m.stream?.(this));
  }

  /** Runs service code; an exception ends the call with its status (a bug is reported by toStatus), never the process. */
  private guarded(action: () => void): void {
    try {
      action();
    } catch (error) {
      this.fail(this.m.toStatus(error));
    }
  }

  write(message: unknown, callback?: (error?: Error | null) => void): boolean {
    if (this.finished) {
      if (callback !== undefined) process.nextTick(callback, new Error('the call has ended'));
      return false;
    }
    let bytes: Buffer;
    try {
      bytes = this.m.definition.responseSerialize(message);
    } catch (error) {
      this.options.onBug(error, this.m.definition.path);
      this.fail(ENCODE_FAILED);
      if (callback !== undefined) process.nextTick(callback, error as Error);
      return false;
    }
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.sendHeaders(RESPONSE_HEADERS, false);
    }
    this.stream.sendData(frameMessage(bytes), false, callback === undefined ? undefined : (error) => callback(error ?? null));
    return true;
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    if (!this.headersSent) sendStatus(this.stream, { code: GrpcStatus.OK, details: '' }, false);
    else this.stream.sendHeaders(OK_TRAILERS, true);
    this.afterFinish();
  }

  fail(status: EtcdStatus): void {
    if (this.finished) return;
    this.finished = true;
    sendStatus(this.stream, status, this.headersSent);
    this.afterFinish();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.deliverQueued();
  }

  private afterFinish(): void {
    // A client still sending to a finished call is told to stop, once our status is out.
    this.stream.endThenReset(NO_ERROR);
    this.guarded(() => this.emit('close'));
    this.stream.endWork();
  }

  private onData(data: Buffer, end: boolean): void {
    this.uncredited += data.length;
    if (end) this.clientEnded = true;
    if (this.finished) return this.creditAll();
    const out = this.reader.push(data);
    if (!Array.isArray(out)) {
      this.fail(out);
      return this.creditAll();
    }
    for (const message of out) this.queued.push(message);
    this.deliverQueued();
  }

  /**
   * The client's window is refilled only while requests are being delivered:
   * a paused call holds at most one stream window of them.
   */
  private creditAll(): void {
    if (this.uncredited === 0) return;
    this.stream.credit(this.uncredited);
    this.uncredited = 0;
  }

  private deliverQueued(): void {
    while (!this.paused && !this.finished && this.queued.length > 0) {
      const message = this.queued.shift()!;
      let request: unknown;
      try {
        request = this.m.definition.requestDeserialize(message);
      } catch (error) {
        this.fail(deserializeFailed(error));
        break;
      }
      if (!this.bidi) {
        if (this.request !== undefined) {
          this.fail({ code: GrpcStatus.UNIMPLEMENTED, details: 'a server-streaming call carries one request message' });
          break;
        }
        this.request = request;
        continue;
      }
      this.guarded(() => this.emit('data', request));
    }
    if (!this.paused || this.finished) this.creditAll();
    if (this.paused || this.finished || this.queued.length > 0 || !this.clientEnded || this.endSeen) return;
    this.endSeen = true;
    if (this.bidi) this.guarded(() => this.emit('end'));
    else if (this.request === undefined) this.fail({ code: GrpcStatus.INTERNAL, details: 'the call ended without a request message' });
    else {
      this.stream.startWork();
      this.guarded(() => this.m.stream?.(this));
    }
  }
}

function frameMessage(bytes: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(MESSAGE_PREFIX_BYTES + bytes.length);
  framed[0] = 0;
  framed.writeUInt32BE(bytes.length, 1);
  bytes.copy(framed, MESSAGE_PREFIX_BYTES);
  return framed;
}

/** Refuses a call whose request may still be arriving: the status, then (if the client is still sending) a reset so it stops. */
function refuse(stream: H2Stream, status: EtcdStatus): void {
  sendStatus(stream, status, false);
  stream.endThenReset(NO_ERROR);
}

/** The call's status: trailers after a response's headers, or a trailers-only response. */
function sendStatus(stream: H2Stream, status: EtcdStatus, headersSent: boolean): void {
  const fields: HeaderField[] = headersSent ? [] : [[':status', '200'], ['content-type', 'application/grpc']];
  fields.push(['grpc-status', String(status.code)]);
  if (status.details !== '') fields.push(['grpc-message', percentEncode(status.details)]);
  stream.sendHeaders(encodeHeaderBlock(fields), true);
}

function httpError(stream: H2Stream, httpStatus: string): void {
  stream.sendHeaders(encodeHeaderBlock([[':status', httpStatus]]), true);
  stream.endThenReset(NO_ERROR);
}

/** grpc-message is percent-encoded UTF-8: bytes outside printable ASCII, and '%', as %XX. */
export function percentEncode(text: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(text)) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function metadataOf(headers: readonly HeaderField[]): RequestMetadata {
  return {
    get(key: string): string[] {
      const out: string[] = [];
      for (const [name, value] of headers) if (name === key) out.push(value);
      return out;
    },
  };
}
