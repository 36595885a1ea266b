import { Packr } from 'msgpackr';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { FRAME_HEADER_BYTES, FrameDecoder } from '../../server/wire.js';

/**
 * A minimal native protocol for the protocol benchmark (ADR 0004): msgpackr
 * payloads in the peer transport's 4-byte length-prefixed frames, over one
 * TCP connection, pipelined by request id. A request is [id, method, body];
 * an answer is [id, 0, body] or [id, code, message].
 */

/** Frames larger than this close the connection; the bench sends a few hundred bytes. */
export const MAX_FRAME_BYTES = 2 * 1024 * 1024;

// Maps, not records, as the peer wire does: a frame decodes without state shared with the sender.
const packr = new Packr({ useRecords: false, moreTypes: false });

export type MsgpackHandler = (method: string, body: unknown) => Promise<unknown>;

export interface MsgpackServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startMsgpackServer(
  handler: MsgpackHandler,
  statusOf: (error: unknown) => { code: number; details: string },
  host: string,
  port: number,
): Promise<MsgpackServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serveConnection(socket, handler, statusOf);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function serveConnection(socket: Socket, handler: MsgpackHandler, statusOf: (error: unknown) => { code: number; details: string }): void {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  const decoder = new FrameDecoder(MAX_FRAME_BYTES);
  const writer = new CorkedWriter(socket);
  socket.on('data', (chunk: Buffer) => {
    let payloads: Buffer[];
    try {
      payloads = decoder.push(chunk);
    } catch {
      socket.destroy();
      return;
    }
    for (const payload of payloads) {
      const request = decodeRequest(payload);
      if (request === undefined) {
        // A frame we cannot read leaves the stream out of step: close the connection, never the process.
        socket.destroy();
        return;
      }
      const [id, method, body] = request;
      handler(method, body).then(
        (response) => writer.write(encodeFrame([id, 0, response])),
        (error: unknown) => {
          const status = statusOf(error);
          writer.write(encodeFrame([id, status.code, status.details]));
        },
      );
    }
  });
}

function decodeRequest(payload: Buffer): [id: number, method: string, body: unknown] | undefined {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length !== 3 || !Number.isSafeInteger(value[0]) || typeof value[1] !== 'string') return undefined;
  return [value[0] as number, value[1], value[2]];
}

/** The payload codec alone, for the benchmark's codec line. */
export function packPayload(value: unknown): Buffer {
  return packr.pack(value);
}

export function unpackPayload(payload: Buffer): unknown {
  return packr.unpack(payload);
}

function encodeFrame(value: unknown): Buffer {
  const payload = packr.pack(value);
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.byteLength);
  out.writeUInt32BE(payload.byteLength, 0);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Frames written in one turn of the event loop leave in one write: under
 * pipelining that is one syscall for many requests, which is the point of
 * the protocol (nghttp2 batches its frames the same way).
 */
class CorkedWriter {
  private corked = false;

  constructor(private readonly socket: Socket) {}

  write(frame: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frame);
  }
}

export class MsgpackRemoteError extends Error {
  override readonly name = 'MsgpackRemoteError';

  constructor(
    readonly code: number,
    details: string,
  ) {
    super(details);
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** One pipelined connection; `call` may be used by any number of concurrent callers. */
export class MsgpackClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly writer: CorkedWriter;

  private constructor(private readonly socket: Socket) {
    this.writer = new CorkedWriter(socket);
    const decoder = new FrameDecoder(MAX_FRAME_BYTES);
    socket.on('data', (chunk: Buffer) => {
      for (const payload of decoder.push(chunk)) {
        const [id, code, body] = packr.unpack(payload) as [number, number, unknown];
        const p = this.pending.get(id);
        if (p === undefined) continue;
        this.pending.delete(id);
        if (code === 0) p.resolve(body);
        else p.reject(new MsgpackRemoteError(code, String(body)));
      }
    });
    socket.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
    });
  }

  static connect(host: string, port: number): Promise<MsgpackClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        socket.on('error', () => {});
        resolve(new MsgpackClient(socket));
      });
    });
  }

  call(method: string, body: unknown): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.writer.write(encodeFrame([id, method, body]));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
