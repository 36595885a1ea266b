import { status as GrpcStatus } from '@grpc/grpc-js';
import { type ClientHttp2Session, connect, constants as h2, createServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';

/**
 * gRPC unary calls served directly on `node:http2`, for the protocol
 * benchmark (ADR 0004). It is the least a real gRPC client accepts: one
 * length-prefixed message in, response HEADERS + one message + trailers
 * out, or a trailers-only answer carrying the error. Deliberately missing,
 * because the measurement is about what they would cost to add back:
 * streaming calls, compression, `grpc-timeout` deadlines, metadata, and
 * any flow-control or keep-alive tuning beyond Node's defaults.
 */

/** gRPC's message prefix: a compressed flag byte and a 4-byte big-endian length. */
export const GRPC_PREFIX_BYTES = 5;

export interface UnaryMethod {
  readonly decode: (message: Buffer) => unknown;
  readonly encode: (response: unknown) => Buffer;
  readonly handle: (request: unknown) => Promise<unknown>;
}

export interface GrpcStatusAnswer {
  readonly code: number;
  readonly details: string;
}

export interface H2GrpcServerOptions {
  /** Methods by path, "/package.Service/Method". Any other path answers UNIMPLEMENTED. */
  readonly methods: ReadonlyMap<string, UnaryMethod>;
  /** Maps a handler's error to a status (the etcd API's own mapping, so errors read as etcd's). */
  readonly statusOf: (error: unknown) => GrpcStatusAnswer;
  /** A request message above this is refused with RESOURCE_EXHAUSTED, as grpc-js does. */
  readonly maxRequestBytes: number;
  readonly host: string;
  readonly port: number;
}

export interface H2GrpcServer {
  readonly port: number;
  close(): Promise<void>;
}

const RESPONSE_HEADERS = { [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc+proto' };
const OK_TRAILERS = { 'grpc-status': '0' };

export async function startH2GrpcServer(options: H2GrpcServerOptions): Promise<H2GrpcServer> {
  const server = createServer();
  server.on('stream', (stream, headers) => onStream(stream, headers, options));
  // A client that resets or breaks a session must not take the process down.
  server.on('sessionError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, o: H2GrpcServerOptions): void {
  stream.on('error', () => {});
  const path = headers[h2.HTTP2_HEADER_PATH];
  const method = typeof path === 'string' ? o.methods.get(path) : undefined;
  if (method === undefined) {
    respondStatus(stream, { code: GrpcStatus.UNIMPLEMENTED, details: `unknown method ${String(path)}` });
    return;
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  let refused = false;
  stream.on('data', (chunk: Buffer) => {
    if (refused) return;
    bytes += chunk.byteLength;
    // NB: the prefix counts toward the limit too; a few bytes of slack are harmless here.
    if (bytes > o.maxRequestBytes + GRPC_PREFIX_BYTES) {
      refused = true;
      respondStatus(stream, { code: GrpcStatus.RESOURCE_EXHAUSTED, details: `received message larger than max (${bytes} vs. ${o.maxRequestBytes})` });
      return;
    }
    chunks.push(chunk);
  });
  stream.on('end', () => {
    if (refused) return;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, bytes);
    const message = unframe(body);
    if (typeof message === 'string') {
      respondStatus(stream, { code: GrpcStatus.INTERNAL, details: message });
      return;
    }
    void answer(stream, method, message, o);
  });
}

/** The one message of a unary request or response, or why it is not one. */
function unframe(body: Buffer): Buffer | string {
  if (body.byteLength < GRPC_PREFIX_BYTES) return 'no complete gRPC message';
  // We advertise no grpc-accept-encoding, so a conforming client never compresses.
  if (body[0] !== 0) return 'compressed messages are not supported';
  const length = body.readUInt32BE(1);
  if (body.byteLength !== GRPC_PREFIX_BYTES + length) return 'a unary call carries exactly one message';
  return body.subarray(GRPC_PREFIX_BYTES);
}

async function answer(stream: ServerHttp2Stream, method: UnaryMethod, message: Buffer, o: H2GrpcServerOptions): Promise<void> {
  let payload: Buffer;
  try {
    payload = method.encode(await method.handle(method.decode(message)));
  } catch (error) {
    respondStatus(stream, o.statusOf(error));
    return;
  }
  if (stream.destroyed || stream.closed) return;
  const framed = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + payload.byteLength);
  framed[0] = 0;
  framed.writeUInt32BE(payload.byteLength, 1);
  framed.set(payload, GRPC_PREFIX_BYTES);
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
  stream.end(framed);
}

/** A trailers-only response: gRPC's way to fail a call before any message. */
function respondStatus(stream: ServerHttp2Stream, status: GrpcStatusAnswer): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    { ...RESPONSE_HEADERS, 'grpc-status': String(status.code), 'grpc-message': encodeURIComponent(status.details) },
    { endStream: true },
  );
}

/**
 * A unary gRPC client on `node:http2` with the same minimal framing: it
 * shows what the HTTP/2 layer costs without grpc-js's channel, call stack
 * and interceptors on the client side (the `h2-raw` row of ADR 0004).
 */
export class H2GrpcClient {
  private constructor(
    private readonly session: ClientHttp2Session,
    private readonly authority: string,
  ) {}

  static connect(host: string, port: number): Promise<H2GrpcClient> {
    return new Promise((resolve, reject) => {
      const authority = `${host}:${port}`;
      const session = connect(`http://${authority}`);
      session.once('error', reject);
      session.once('connect', () => {
        session.off('error', reject);
        session.on('error', () => {});
        resolve(new H2GrpcClient(session, authority));
      });
    });
  }

  /** Sends one message to `path`; resolves with the one response message, or rejects with the call's status. */
  unary(path: string, message: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({
        [h2.HTTP2_HEADER_METHOD]: 'POST',
        [h2.HTTP2_HEADER_PATH]: path,
        [h2.HTTP2_HEADER_AUTHORITY]: this.authority,
        [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc+proto',
        te: 'trailers',
      });
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let details = '';
      const take = (headers: IncomingHttpHeaders): void => {
        const s = headers['grpc-status'];
        if (typeof s === 'string') status = s;
        const m = headers['grpc-message'];
        if (typeof m === 'string') details = decodeURIComponent(m);
      };
      stream.on('response', take);
      stream.on('trailers', take);
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', reject);
      stream.on('end', () => {
        if (status !== '0') {
          reject(new Error(`grpc-status ${status ?? 'missing'}: ${details}`));
          return;
        }
        const body = unframe(Buffer.concat(chunks));
        if (typeof body === 'string') reject(new Error(body));
        else resolve(body);
      });
      const framed = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + message.byteLength);
      framed[0] = 0;
      framed.writeUInt32BE(message.byteLength, 1);
      framed.set(message, GRPC_PREFIX_BYTES);
      stream.end(framed);
    });
  }

  close(): void {
    this.session.close();
  }
}
