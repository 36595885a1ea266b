import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type HeaderField, HpackDecoder, encodeHeaderBlock } from './hpack.js';
import { CLIENT_HANDSHAKE_TIMEOUT_MS } from './limits.js';

/**
 * Why this exists: etcd's Go client, when it dials one endpoint directly
 * (etcdctl endpoint status / hashkv, defrag, move-leader, and every
 * `--cluster` command), sends the endpoint as written, scheme included, as
 * the HTTP/2 :authority — "http://127.0.0.1:2379". etcd's Go server ignores
 * it; nghttp2, under Node's HTTP/2 server, refuses the stream with
 * PROTOCOL_ERROR before grpc-js sees it, and Node offers no switch for that.
 *
 * So each connection is examined before it reaches the HTTP/2 server: we
 * answer the client preface with an empty SETTINGS frame (gRPC clients wait
 * for the server's SETTINGS before their first request), drop the client's
 * ACK of it, and read the first request's headers. A connection whose
 * authority is acceptable is then handed over as the raw socket, with the
 * bytes read so far put back, and costs nothing more. Only one that carries
 * a bad authority is wrapped for its lifetime: every header block is decoded
 * and re-encoded with the authority cleaned (see hpack.ts).
 */

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** How long a connection may take to send the preface and ACK our SETTINGS; then it is closed (the etcd API's limit, see limits.ts). */
export const HANDSHAKE_TIMEOUT_MS = CLIENT_HANDSHAKE_TIMEOUT_MS;
/** After the ACK, how long we wait for the first request before handing the connection over unexamined. */
export const FIRST_REQUEST_WAIT_MS = 1_000;
/**
 * Bytes we hold before the hand-over. The client may send at most the
 * initial flow-control window (64 KiB) of DATA before the server's window
 * updates, so an honest client stays far below this.
 */
export const MAX_HELD_BYTES = 256 * 1024;
/** A header block (HEADERS and its CONTINUATIONs) larger than this closes a rewritten connection. */
export const MAX_HEADER_BLOCK_BYTES = 256 * 1024;
/** The largest frame payload we accept or emit (SETTINGS_MAX_FRAME_SIZE's default: neither side raises it). */
const MAX_FRAME_PAYLOAD = 16_384;
/** The dynamic table bound we accept from a client; Node advertises the default 4096, this leaves room. */
const MAX_HPACK_TABLE = 65_536;

const FRAME_HEADER_BYTES = 9;
const TYPE_HEADERS = 0x1;
const TYPE_SETTINGS = 0x4;
const TYPE_CONTINUATION = 0x9;
const FLAG_ACK = 0x1;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0]);

/** nghttp2's check_authority: these characters only. */
const VALID_AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/;

export class H2ProtocolError extends Error {
  override readonly name = 'H2ProtocolError';
}

interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
  /** The frame as received, header included. */
  readonly raw: Buffer;
}

/** Cuts a byte stream into HTTP/2 frames (after the preface). */
class FrameSplitter {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Frame[] = [];
    let pos = 0;
    while (this.pending.length - pos >= FRAME_HEADER_BYTES) {
      const length = this.pending.readUIntBE(pos, 3);
      if (length > MAX_FRAME_PAYLOAD) throw new H2ProtocolError(`frame of ${length} bytes exceeds the maximum frame size`);
      const end = pos + FRAME_HEADER_BYTES + length;
      if (end > this.pending.length) break;
      const raw = this.pending.subarray(pos, end);
      frames.push({ type: raw[3] as number, flags: raw[4] as number, streamId: raw.readUInt32BE(5) & 0x7fff_ffff, payload: raw.subarray(FRAME_HEADER_BYTES), raw });
      pos = end;
    }
    this.pending = this.pending.subarray(pos);
    return frames;
  }

  /** Bytes of an incomplete frame. */
  get rest(): Buffer {
    return this.pending;
  }
}

/** An :authority nghttp2 accepts: the host:port inside a URL, or as given when it is fine already. */
export function cleanAuthority(value: string): string {
  if (VALID_AUTHORITY.test(value)) return value;
  const hostPort = value.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, '').replace(/[/?#].*$/, '');
  return hostPort.length > 0 && VALID_AUTHORITY.test(hostPort) ? hostPort : 'localhost';
}

function authorityOf(fields: readonly HeaderField[]): string | undefined {
  return fields.find(([name]) => name === ':authority')?.[1];
}

/** The header block fragment of a HEADERS frame, without padding and priority fields. */
function headersFragment(f: Frame): Buffer {
  let start = 0;
  let end = f.payload.length;
  if (f.flags & FLAG_PADDED) {
    const pad = f.payload[0];
    if (pad === undefined || pad >= end) throw new H2ProtocolError('HEADERS padding exceeds the frame');
    start = 1;
    end -= pad;
  }
  if (f.flags & FLAG_PRIORITY) start += 5;
  if (start > end) throw new H2ProtocolError('HEADERS frame too short');
  return f.payload.subarray(start, end);
}

/** Frames a header block as HEADERS plus CONTINUATIONs of at most MAX_FRAME_PAYLOAD bytes. */
function headerFrames(streamId: number, endStream: boolean, block: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let pos = 0, first = true; first || pos < block.length; first = false) {
    const piece = block.subarray(pos, pos + MAX_FRAME_PAYLOAD);
    pos += piece.length;
    const last = pos >= block.length;
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header.writeUIntBE(piece.length, 0, 3);
    header[3] = first ? TYPE_HEADERS : TYPE_CONTINUATION;
    header[4] = (last ? FLAG_END_HEADERS : 0) | (first && endStream ? FLAG_END_STREAM : 0);
    header.writeUInt32BE(streamId, 5);
    out.push(header, piece);
  }
  return out;
}

/**
 * Collects each header block a client sends and decodes it with one HPACK
 * decoder per connection. With `rewrite`, returns the bytes to forward in
 * place of each frame (blocks re-encoded, authority cleaned); priority
 * information in HEADERS is dropped (it is advisory).
 */
class HeaderBlocks {
  private readonly decoder = new HpackDecoder(MAX_HPACK_TABLE);
  private fragments: Buffer[] = [];
  private bytes = 0;
  private streamId = 0;
  private endStream = false;
  /** The :authority of the first complete block: undefined before it, null if it had none. */
  firstAuthority: string | null | undefined;

  frame(f: Frame, rewrite: boolean): Buffer[] {
    const open = this.fragments.length > 0;
    if (f.type === TYPE_HEADERS && !open) {
      this.streamId = f.streamId;
      this.endStream = (f.flags & FLAG_END_STREAM) !== 0;
      return this.add(headersFragment(f), f.flags, rewrite);
    }
    if (f.type === TYPE_CONTINUATION && open && f.streamId === this.streamId) return this.add(f.payload, f.flags, rewrite);
    if (open || f.type === TYPE_CONTINUATION) throw new H2ProtocolError('header block interrupted');
    return [f.raw];
  }

  private add(fragment: Buffer, flags: number, rewrite: boolean): Buffer[] {
    this.fragments.push(fragment);
    this.bytes += fragment.length;
    if (this.bytes > MAX_HEADER_BLOCK_BYTES) throw new H2ProtocolError(`header block over ${MAX_HEADER_BLOCK_BYTES} bytes`);
    if ((flags & FLAG_END_HEADERS) === 0) return [];
    const fields = this.decoder.decode(Buffer.concat(this.fragments));
    this.fragments = [];
    this.bytes = 0;
    if (this.firstAuthority === undefined) this.firstAuthority = authorityOf(fields) ?? null;
    if (!rewrite) return [];
    const cleaned = fields.map(([name, value]): HeaderField => (name === ':authority' ? [name, cleanAuthority(value)] : [name, value]));
    return headerFrames(this.streamId, this.endStream, encodeHeaderBlock(cleaned));
  }
}

/** A connection that needs rewriting, as the HTTP/2 server sees it: client bytes pass through HeaderBlocks. */
class RewritingConnection extends Duplex {
  private readonly splitter = new FrameSplitter();
  private readonly blocks = new HeaderBlocks();

  constructor(
    private readonly socket: Socket,
    afterPreface: Buffer,
  ) {
    super();
    this.push(H2_PREFACE);
    this.process(afterPreface);
    socket.on('data', (chunk: Buffer) => this.process(chunk));
    socket.on('end', () => this.push(null));
    socket.on('close', () => this.destroy());
    socket.on('error', (error) => this.destroy(error));
  }

  private process(chunk: Buffer): void {
    try {
      for (const frame of this.splitter.push(chunk)) {
        for (const out of this.blocks.frame(frame, true)) if (!this.push(out)) this.socket.pause();
      }
    } catch (error) {
      this.destroy(error as Error);
    }
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.socket.write(chunk, done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.socket.end(done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.socket.destroy();
    done(error);
  }
}

export interface GateHooks {
  /** Gives the connection to the HTTP/2 server: the socket itself, or a rewriting wrapper. */
  readonly inject: (connection: Duplex) => void;
  /** Default HANDSHAKE_TIMEOUT_MS. The deadline is from accept, not from the last byte: a slow drip does not extend it. */
  readonly handshakeTimeoutMs?: number;
  /** Told when a connection is closed for missing the handshake deadline. */
  readonly onHandshakeTimeout?: () => void;
}

/** Examines one fresh client connection and hands it to the HTTP/2 server (see the file comment). */
export function gateConnection(socket: Socket, hooks: GateHooks): void {
  new ConnectionGate(socket, hooks).start();
}

class ConnectionGate {
  private preface = Buffer.alloc(0);
  private prefaceDone = false;
  private readonly splitter = new FrameSplitter();
  private readonly blocks = new HeaderBlocks();
  private readonly kept: Buffer[] = [];
  private held = 0;
  private ackSeen = false;
  private settled = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  private readonly onGone = (): void => this.finish(() => socketGone(this.socket));

  constructor(
    private readonly socket: Socket,
    private readonly hooks: GateHooks,
  ) {}

  start(): void {
    this.socket.on('data', this.onData);
    this.socket.on('end', this.onGone);
    this.socket.on('error', this.onGone);
    this.socket.on('close', this.onGone);
    this.timer = setTimeout(() => {
      this.hooks.onHandshakeTimeout?.();
      this.finish(() => this.socket.destroy());
    }, this.hooks.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
  }

  private data(chunk: Buffer): void {
    try {
      this.held += chunk.length;
      if (!this.prefaceDone) chunk = this.readPreface(chunk);
      if (this.settled || chunk.length === 0) return;
      for (const frame of this.splitter.push(chunk)) this.frame(frame);
      if (this.held > MAX_HELD_BYTES) {
        if (this.ackSeen) this.handOver(false);
        else this.finish(() => this.socket.destroy());
        return;
      }
      this.maybeHandOver();
    } catch {
      // Malformed HTTP/2 (or HPACK): nghttp2 would refuse it too.
      this.finish(() => this.socket.destroy());
    }
  }

  /** Consumes preface bytes; returns what follows. A connection that is not HTTP/2 goes to the server as it is. */
  private readPreface(chunk: Buffer): Buffer {
    const need = H2_PREFACE.length - this.preface.length;
    this.preface = Buffer.concat([this.preface, chunk.subarray(0, need)]);
    if (!H2_PREFACE.subarray(0, this.preface.length).equals(this.preface)) {
      this.finish(() => this.giveRaw(Buffer.concat([this.preface, chunk.subarray(need)])));
      return Buffer.alloc(0);
    }
    if (this.preface.length < H2_PREFACE.length) return Buffer.alloc(0);
    this.prefaceDone = true;
    // Our SETTINGS comes first; the HTTP/2 server's own follows at hand-over, which HTTP/2 allows.
    this.socket.write(EMPTY_SETTINGS);
    return chunk.subarray(need);
  }

  private frame(f: Frame): void {
    // The first SETTINGS ACK answers our SETTINGS; the HTTP/2 server never sent it, so it must not see it.
    if (!this.ackSeen && f.type === TYPE_SETTINGS && (f.flags & FLAG_ACK) !== 0) {
      this.ackSeen = true;
      return;
    }
    this.kept.push(f.raw);
    if (this.blocks.firstAuthority === undefined && (f.type === TYPE_HEADERS || f.type === TYPE_CONTINUATION)) this.blocks.frame(f, false);
  }

  private maybeHandOver(): void {
    if (!this.ackSeen) return;
    const authority = this.blocks.firstAuthority;
    if (authority !== undefined) {
      this.handOver(authority !== null && !VALID_AUTHORITY.test(authority));
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.handOver(false), FIRST_REQUEST_WAIT_MS);
  }

  private handOver(rewrite: boolean): void {
    const afterPreface = Buffer.concat([...this.kept, this.splitter.rest]);
    this.finish(() => {
      if (rewrite) this.hooks.inject(new RewritingConnection(this.socket, afterPreface));
      else this.giveRaw(Buffer.concat([H2_PREFACE, afterPreface]));
    });
  }

  /** The socket itself, with the bytes read so far put back (Node's HTTP/2 server reads them first). */
  private giveRaw(bytes: Buffer): void {
    if (bytes.length > 0) this.socket.unshift(bytes);
    this.hooks.inject(this.socket);
  }

  private finish(action: () => void): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onGone);
    this.socket.off('error', this.onGone);
    this.socket.off('close', this.onGone);
    action();
  }
}

function socketGone(socket: Socket): void {
  socket.destroy();
}
