/**
 * The HTTP/2 server connection against Node's own HTTP/2 client (nghttp2,
 * an implementation we did not write) and against raw frames for what a
 * well-behaved client never sends.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { H2_ERROR, H2_PREFACE, H2Connection, type H2ConnectionOptions, type H2Stream } from './h2_server.js';
import type { HeaderField } from './hpack.js';
import { encodeHeaderBlock } from './hpack.js';

const MiB = 1024 * 1024;
const STREAM_WINDOW = 256 * 1024;

interface Harness {
  readonly port: number;
  /** Exceptions handlers threw, as the connection reported them. */
  readonly bugs: unknown[];
  readonly connections: H2Connection[];
  /** Per path: how the test server answers. */
  readonly routes: Map<string, (stream: H2Stream, headers: readonly HeaderField[]) => void>;
  close(): Promise<void>;
}

async function startHarness(options: Partial<H2ConnectionOptions> = {}): Promise<Harness> {
  const routes = new Map<string, (stream: H2Stream, headers: readonly HeaderField[]) => void>();
  const connections: H2Connection[] = [];
  const bugs: unknown[] = [];
  const server: Server = createServer((socket) => {
    connections.push(
      new H2Connection(socket, {
        maxConcurrentStreams: 8,
        streamWindowBytes: STREAM_WINDOW,
        handshakeTimeoutMs: 2_000,
        idleTimeoutMs: 60_000,
        onStream: (stream, headers) => {
          const path = headers.find(([n]) => n === ':path')?.[1] ?? '';
          const route = routes.get(path);
          if (route === undefined) stream.sendHeaders(encodeHeaderBlock([[':status', '404']]), true);
          else route(stream, headers);
        },
        onBug: (error) => bugs.push(error),
        ...options,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    bugs,
    connections,
    routes,
    close: async () => {
      for (const c of connections) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const OK_HEADERS = encodeHeaderBlock([[':status', '200']]);

/** Answers with the whole request body once it has arrived, crediting as it reads. */
function echo(stream: H2Stream): void {
  const parts: Buffer[] = [];
  stream.onData = (data, end) => {
    parts.push(Buffer.from(data));
    stream.credit(data.length);
    if (!end) return;
    stream.sendHeaders(OK_HEADERS, false);
    stream.sendData(Buffer.concat(parts), true);
  };
}

function request(session: http2.ClientHttp2Session, path: string, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path });
    const parts: Buffer[] = [];
    let status = 0;
    req.on('response', (headers) => (status = Number(headers[':status'])));
    req.on('data', (chunk: Buffer) => parts.push(chunk));
    req.on('end', () => resolve({ status, body: Buffer.concat(parts) }));
    req.on('error', reject);
    req.end(body);
  });
}

function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Reads raw frames from a socket: [type, flags, streamId, payload]. */
function frameReader(socket: Socket): { frames: [number, number, number, Buffer][]; closed: Promise<void> } {
  const frames: [number, number, number, Buffer][] = [];
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      frames.push([pending[3]!, pending[4]!, pending.readUInt32BE(5) & 0x7fffffff, pending.subarray(9, 9 + length)]);
      pending = pending.subarray(9 + length);
    }
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => {});
  return { frames, closed };
}

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

async function rawConnect(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  return socket;
}

async function until(what: string, check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('HTTP/2 server connection', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    h.routes.set('/echo', echo);
  });
  after(() => h.close());

  test('requests and responses far larger than every window arrive whole, many streams at once', async () => {
    // Node's client starts with 64 KiB windows: 3 MiB each way needs our WINDOW_UPDATEs and theirs.
    const session = http2.connect(`http://127.0.0.1:${h.port}`);
    try {
      const bodies = [0, 1, 2, 3, 4, 5].map((i) => pattern(i === 0 ? 0 : (3 * MiB) / i + i, i));
      const answers = await Promise.all(bodies.map((body) => request(session, '/echo', body)));
      for (const [i, answer] of answers.entries()) {
        assert.equal(answer.status, 200);
        assert.ok(answer.body.equals(bodies[i]!), `body ${i} of ${bodies[i]!.length} bytes came back changed (${answer.body.length} bytes)`);
      }
    } finally {
      session.close();
    }
  });

  test('a URL as :authority is served (etcd clients send one; Node refuses it)', async () => {
    const session = http2.connect(`http://127.0.0.1:${h.port}`);
    try {
      const answer = await new Promise<number>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': '/echo', ':authority': 'http://127.0.0.1:2379' });
        req.on('response', (headers) => resolve(Number(headers[':status'])));
        req.on('error', reject);
        req.end(Buffer.from('x'));
      });
      assert.equal(answer, 200);
    } finally {
      session.close();
    }
  });

  test('PING is answered', async () => {
    const session = http2.connect(`http://127.0.0.1:${h.port}`);
    try {
      await new Promise<void>((resolve) => session.once('connect', () => resolve()));
      const rtt = await new Promise<number>((resolve, reject) => session.ping((error, ms) => (error === null ? resolve(ms) : reject(error))));
      assert.ok(rtt >= 0);
    } finally {
      session.close();
    }
  });

  test('a stream whose handler gives no credit receives at most its window', async () => {
    let received = 0;
    let held: H2Stream | undefined;
    h.routes.set('/hold', (stream) => {
      held = stream;
      stream.onData = (data) => (received += data.length);
    });
    const session = http2.connect(`http://127.0.0.1:${h.port}`);
    try {
      const req = session.request({ ':method': 'POST', ':path': '/hold' });
      req.on('error', () => {});
      req.write(pattern(2 * MiB, 7));
      await until('the window to fill', () => received >= STREAM_WINDOW);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(received, STREAM_WINDOW, 'the client may send exactly one stream window');
      held?.credit(received);
      await until('more data after credit', () => received > STREAM_WINDOW);
      req.close();
    } finally {
      session.close();
    }
  });

  test('a client reset aborts the stream; its pending write callbacks report an error', async () => {
    let aborted = false;
    let writeError: Error | undefined;
    h.routes.set('/slow', (stream) => {
      stream.onAbort = () => (aborted = true);
      // More than the client's 64 KiB window: the rest waits for credit that never comes.
      stream.sendHeaders(OK_HEADERS, false);
      stream.sendData(pattern(1 * MiB, 1), false, (error) => (writeError = error));
    });
    const session = http2.connect(`http://127.0.0.1:${h.port}`, { settings: { initialWindowSize: 65_535 } });
    try {
      const req = session.request({ ':method': 'POST', ':path': '/slow' });
      req.on('error', () => {});
      req.pause();
      await new Promise((resolve) => req.once('response', resolve));
      req.close(http2.constants.NGHTTP2_CANCEL);
      await until('the abort', () => aborted);
      await until('the write callback', () => writeError !== undefined);
    } finally {
      session.close();
    }
  });

  test('shutdown answers in-flight streams, refuses new ones with GOAWAY, then closes', async () => {
    let release: (() => void) | undefined;
    h.routes.set('/wait', (stream) => {
      stream.onData = (_data, end) => {
        if (end) release = () => {
          stream.sendHeaders(OK_HEADERS, false);
          stream.sendData(Buffer.from('done'), true);
        };
      };
    });
    const session = http2.connect(`http://127.0.0.1:${h.port}`);
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)));
    const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
    session.on('error', () => {});
    const inflight = request(session, '/wait', Buffer.from('q'));
    await until('the request to arrive', () => release !== undefined);
    const connection = h.connections.at(-1)!;
    connection.shutdown();
    assert.equal(await goaway, H2_ERROR.NO_ERROR);
    release?.();
    const answer = await inflight;
    assert.equal(answer.body.toString(), 'done');
    await closed;
    assert.equal(connection.streamCount, 0);
  });
});

describe('HTTP/2 server connection: what clients must not send', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ handshakeTimeoutMs: 300, idleTimeoutMs: 400, maxConcurrentStreams: 2 });
    h.routes.set('/hold', () => {});
  });
  after(() => h.close());

  test('bytes that are not the HTTP/2 preface close the connection', async () => {
    const socket = await rawConnect(h.port);
    const r = frameReader(socket);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await r.closed;
  });

  test('a client that never completes the handshake is closed at the deadline', async () => {
    const socket = await rawConnect(h.port);
    const r = frameReader(socket);
    const started = Date.now();
    socket.write(H2_PREFACE.subarray(0, 10));
    await r.closed;
    assert.ok(Date.now() - started >= 250, `closed after ${Date.now() - started} ms`);
  });

  test('DATA on stream 0 is a connection error: GOAWAY PROTOCOL_ERROR', async () => {
    const socket = await rawConnect(h.port);
    const r = frameReader(socket);
    socket.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0), frame(0, 0, 0, Buffer.from('x'))]));
    await r.closed;
    const goaway = r.frames.find(([type]) => type === 7);
    assert.ok(goaway !== undefined, 'a GOAWAY');
    assert.equal(goaway[3].readUInt32BE(4), H2_ERROR.PROTOCOL_ERROR);
  });

  test('a header block that is not valid HPACK is a COMPRESSION_ERROR', async () => {
    const socket = await rawConnect(h.port);
    const r = frameReader(socket);
    socket.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0), frame(1, 0x5, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))]));
    await r.closed;
    assert.equal(r.frames.find(([type]) => type === 7)?.[3].readUInt32BE(4), H2_ERROR.COMPRESSION_ERROR);
  });

  test('streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused with REFUSED_STREAM', async () => {
    const socket = await rawConnect(h.port);
    const r = frameReader(socket);
    const headers = encodeHeaderBlock([[':method', 'POST'], [':path', '/hold'], [':scheme', 'http']]);
    socket.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0), frame(1, 0x4, 1, headers), frame(1, 0x4, 3, headers), frame(1, 0x4, 5, headers)]));
    await until('a RST_STREAM', () => r.frames.some(([type]) => type === 3));
    const rst = r.frames.filter(([type]) => type === 3);
    assert.deepEqual(
      rst.map(([, , id, p]) => [id, p.readUInt32BE(0)]),
      [[5, H2_ERROR.REFUSED_STREAM]],
    );
    socket.destroy();
  });

  test('a connection without streams is closed with GOAWAY after the idle timeout', async () => {
    const socket = await rawConnect(h.port);
    const r = frameReader(socket);
    socket.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0)]));
    await until('our SETTINGS', () => r.frames.some(([type, flags]) => type === 4 && flags === 0));
    socket.write(frame(4, 1, 0));
    const started = Date.now();
    await r.closed;
    assert.ok(Date.now() - started >= 300, `closed after ${Date.now() - started} ms`);
    assert.equal(r.frames.find(([type]) => type === 7)?.[3].readUInt32BE(4), H2_ERROR.NO_ERROR);
  });
});

/** Connects, sends the preface with `settings`, and ACKs our SETTINGS. */
async function handshake(port: number, settings: Buffer = Buffer.alloc(0)): Promise<{ socket: Socket; r: ReturnType<typeof frameReader> }> {
  const socket = await rawConnect(port);
  const r = frameReader(socket);
  socket.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, settings), frame(4, 1, 0)]));
  return { socket, r };
}

function setting(id: number, value: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt16BE(id, 0);
  b.writeUInt32BE(value, 2);
  return b;
}

/** Answers at once, while the client is still sending, then asks for the reset that stops it. */
function answerEarly(stream: H2Stream): void {
  stream.sendHeaders(OK_HEADERS, false);
  stream.sendData(pattern(1000, 3), false);
  stream.sendHeaders(encodeHeaderBlock([['grpc-status', '0']]), true);
  stream.endThenReset(H2_ERROR.NO_ERROR);
}

const REQUEST_HEADERS = (path: string): Buffer => encodeHeaderBlock([[':method', 'POST'], [':path', path], [':scheme', 'http']]);

describe('HTTP/2 server connection: hostile and unlucky clients', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ maxConcurrentStreams: 2, stalledStreamTimeoutMs: 400 });
  });
  after(() => h.close());

  test('a flood of empty CONTINUATION frames hits the header block limit (frame headers count)', async () => {
    const { socket, r } = await handshake(h.port);
    const empty = frame(9, 0, 1);
    socket.write(frame(1, 0, 1, Buffer.alloc(0)));
    for (let i = 0; i < 4_000 && !socket.destroyed; i++) socket.write(empty);
    await r.closed;
    assert.equal(r.frames.find(([type]) => type === 7)?.[3].readUInt32BE(4), H2_ERROR.ENHANCE_YOUR_CALM);
  });

  test('an exception in a handler resets its stream, is reported, and the connection goes on serving', async () => {
    h.routes.set('/throws', () => {
      throw new Error('handler bug');
    });
    h.routes.set('/echo', echo);
    const { socket, r } = await handshake(h.port);
    socket.write(frame(1, 0x5, 1, REQUEST_HEADERS('/throws')));
    socket.write(frame(1, 0x5, 3, REQUEST_HEADERS('/echo')));
    await until('the echo answer', () => r.frames.some(([type, flags, id]) => type === 0 && id === 3 && (flags & 1) !== 0));
    const rst = r.frames.find(([type, , id]) => type === 3 && id === 1);
    assert.equal(rst?.[3].readUInt32BE(0), H2_ERROR.INTERNAL_ERROR);
    assert.ok(h.bugs.some((e) => e instanceof Error && e.message === 'handler bug'));
    socket.destroy();
  });

  test('streams reset while their handler works keep their slot until it is done (rapid reset)', async () => {
    const working: H2Stream[] = [];
    h.routes.set('/work', (stream) => {
      stream.startWork();
      working.push(stream);
    });
    const { socket, r } = await handshake(h.port);
    const rst = (id: number): Buffer => frame(3, 0, id, Buffer.from([0, 0, 0, 8]));
    // Two calls started and reset at once: with a limit of 2, the third is refused while both handlers work.
    socket.write(Buffer.concat([frame(1, 0x5, 1, REQUEST_HEADERS('/work')), rst(1), frame(1, 0x5, 3, REQUEST_HEADERS('/work')), rst(3)]));
    await until('two handlers', () => working.length === 2);
    socket.write(frame(1, 0x5, 5, REQUEST_HEADERS('/work')));
    await until('a refusal', () => r.frames.some(([type, , id]) => type === 3 && id === 5));
    assert.equal(r.frames.find(([type, , id]) => type === 3 && id === 5)?.[3].readUInt32BE(0), H2_ERROR.REFUSED_STREAM);
    assert.equal(working.length, 2);
    working[0]!.endWork();
    socket.write(frame(1, 0x5, 7, REQUEST_HEADERS('/work')));
    await until('a third handler once one finished', () => working.length === 3);
    socket.destroy();
  });

  test('trailers queued behind DATA waiting for window go out before the reset that follows them', async () => {
    h.routes.set('/answer-early', answerEarly);
    const { socket, r } = await handshake(h.port, setting(4, 0));
    socket.write(frame(1, 0x4, 1, REQUEST_HEADERS('/answer-early')));
    await until('the response headers', () => r.frames.some(([type, , id]) => type === 1 && id === 1));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(!r.frames.some(([type]) => type === 3), 'no RST while the data waits for window');
    socket.write(frame(8, 0, 1, Buffer.from([0, 0, 0x10, 0])));
    await until('the reset', () => r.frames.some(([type]) => type === 3));
    const kinds = r.frames.filter(([, , id]) => id === 1).map(([type, flags]) => `${type}:${flags}`);
    assert.deepEqual(kinds, ['1:4', '0:0', '1:5', '3:0'], 'HEADERS, DATA, trailers with END_STREAM, then RST_STREAM');
    socket.destroy();
  });

  test('no RST_STREAM follows our END_STREAM when the client finished sending meanwhile', async () => {
    h.routes.set('/answer-early', answerEarly);
    const { socket, r } = await handshake(h.port, setting(4, 0));
    socket.write(frame(1, 0x4, 1, REQUEST_HEADERS('/answer-early')));
    await until('the response headers', () => r.frames.some(([type, , id]) => type === 1 && id === 1));
    socket.write(frame(0, 0x1, 1, Buffer.from('end')));
    socket.write(frame(8, 0, 1, Buffer.from([0, 0, 0x10, 0])));
    await until('the trailers', () => r.frames.some(([type, flags, id]) => type === 1 && id === 1 && (flags & 1) !== 0));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(!r.frames.some(([type]) => type === 3), 'no RST_STREAM on a stream closed both ways');
    socket.destroy();
  });

  test('streams waiting for the connection window take turns', async () => {
    h.routes.set('/large', (stream) => {
      stream.sendHeaders(OK_HEADERS, false);
      stream.sendData(pattern(300_000, 6), true);
    });
    h.routes.set('/small', (stream) => {
      stream.sendHeaders(OK_HEADERS, false);
      stream.sendData(pattern(100, 7), true);
    });
    // Stream windows of 1 MiB, the connection's 64 KiB: the large answer takes it all, then both wait for more.
    const { socket, r } = await handshake(h.port, setting(4, 1 << 20));
    socket.write(frame(1, 0x5, 1, REQUEST_HEADERS('/large')));
    await until('the large answer to fill the window', () => r.frames.filter(([type, , id]) => type === 0 && id === 1).length >= 4);
    socket.write(frame(1, 0x5, 3, REQUEST_HEADERS('/small')));
    await until('the small answer headers', () => r.frames.some(([type, , id]) => type === 1 && id === 3));
    // Window updates of one frame each, as grpc-go sends them: the small answer must not wait behind the large one.
    socket.write(frame(8, 0, 0, Buffer.from([0, 0, 0x40, 0])));
    await new Promise((resolve) => setTimeout(resolve, 20));
    socket.write(frame(8, 0, 0, Buffer.from([0, 0, 0x40, 0])));
    await until('the small answer', () => r.frames.some(([type, , id]) => type === 0 && id === 3), 2_000);
    socket.destroy();
  });

  test('a stalled stream is reset even while the client keeps sending SETTINGS', async () => {
    h.routes.set('/big2', (stream) => {
      stream.sendHeaders(OK_HEADERS, false);
      stream.sendData(pattern(100_000, 8), true);
    });
    const { socket, r } = await handshake(h.port, setting(4, 0));
    socket.write(frame(1, 0x5, 1, REQUEST_HEADERS('/big2')));
    const timer = setInterval(() => socket.write(frame(4, 0, 0)), 50);
    try {
      await until('the stall reset', () => r.frames.some(([type, , id]) => type === 3 && id === 1), 3_000);
    } finally {
      clearInterval(timer);
    }
    socket.destroy();
  });

  test('a response the client grants no window for is reset after the stall timeout', async () => {
    let aborted = false;
    h.routes.set('/big', (stream) => {
      stream.onAbort = () => (aborted = true);
      stream.sendHeaders(OK_HEADERS, false);
      stream.sendData(pattern(100_000, 5), true);
    });
    const { socket, r } = await handshake(h.port, setting(4, 0));
    socket.write(frame(1, 0x5, 1, REQUEST_HEADERS('/big')));
    await until('the stall reset', () => r.frames.some(([type, , id]) => type === 3 && id === 1), 3_000);
    assert.equal(r.frames.find(([type, , id]) => type === 3 && id === 1)?.[3].readUInt32BE(0), H2_ERROR.CANCEL);
    assert.ok(aborted || h.connections.every((c) => c.streamCount === 0));
    socket.destroy();
  });

  test('padding is credited back at once', async () => {
    h.routes.set('/quiet', () => {});
    const { socket, r } = await handshake(h.port);
    socket.write(frame(1, 0x4, 1, REQUEST_HEADERS('/quiet')));
    // PADDED: pad length 200, 3 bytes of body, 200 of padding.
    socket.write(frame(0, 0x8, 1, Buffer.concat([Buffer.from([200]), Buffer.from('abc'), Buffer.alloc(200)])));
    await until('a WINDOW_UPDATE for the stream', () => r.frames.some(([type, , id]) => type === 8 && id === 1));
    assert.equal(r.frames.find(([type, , id]) => type === 8 && id === 1)?.[3].readUInt32BE(0), 201);
    socket.destroy();
  });
});
