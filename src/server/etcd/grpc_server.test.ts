/**
 * gRPC framing and statuses of the etcd API's server, spoken by hand with
 * Node's HTTP/2 client, for what real gRPC clients rarely or never send.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { MessageReader, percentEncode } from './grpc_server.js';
import { etcdService } from './proto.js';
import { type TestEtcd, startTestEtcd } from './testing.testlib.js';

interface Answer {
  readonly httpStatus: number;
  readonly grpcStatus: number | undefined;
  readonly grpcMessage: string | undefined;
  readonly body: Buffer;
}

function frame(message: Buffer, compressed = false): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed ? 1 : 0;
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** One call: `parts` are written one DATA write each, and the stream is ended separately (an empty DATA frame with END_STREAM). */
function rawCall(session: http2.ClientHttp2Session, path: string, parts: readonly Buffer[], method = 'POST'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let httpStatus = 0;
    let grpcStatus: number | undefined;
    let grpcMessage: string | undefined;
    const body: Buffer[] = [];
    const take = (headers: http2.IncomingHttpHeaders): void => {
      if (headers['grpc-status'] !== undefined) grpcStatus = Number(headers['grpc-status']);
      if (headers['grpc-message'] !== undefined) grpcMessage = decodeURIComponent(String(headers['grpc-message']));
    };
    req.on('response', (headers) => {
      httpStatus = Number(headers[':status']);
      take(headers);
    });
    req.on('trailers', take);
    req.on('data', (chunk: Buffer) => body.push(chunk));
    req.on('end', () => resolve({ httpStatus, grpcStatus, grpcMessage, body: Buffer.concat(body) }));
    req.on('error', reject);
    for (const part of parts) req.write(part);
    setImmediate(() => req.end());
  });
}

describe('gRPC on our HTTP/2 server', () => {
  let etcd: TestEtcd;
  let session: http2.ClientHttp2Session;
  const range = etcdService('KV')['Range']!;
  before(async () => {
    etcd = await startTestEtcd();
    session = http2.connect(`http://${etcd.address}`);
  });
  after(async () => {
    session.close();
    await etcd.close();
  });

  test('a unary request whose END_STREAM comes in its own empty DATA frame is answered', async () => {
    const answer = await rawCall(session, range.path, [frame(range.requestSerialize({ key: Buffer.from('k') }))]);
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.grpcStatus, 0);
    const response = range.responseDeserialize(answer.body.subarray(5)) as { header?: { revision?: string } };
    assert.ok(response.header !== undefined, 'a RangeResponse with a header');
  });

  test('a request message split across DATA frames is reassembled', async () => {
    const whole = frame(range.requestSerialize({ key: Buffer.from('split-key'), limit: 3 }));
    const answer = await rawCall(session, range.path, [whole.subarray(0, 2), whole.subarray(2, 9), whole.subarray(9)]);
    assert.equal(answer.grpcStatus, 0);
  });

  test('an unknown method gets UNIMPLEMENTED naming it, as a trailers-only response', async () => {
    const answer = await rawCall(session, '/etcdserverpb.KV/Nope', [frame(Buffer.alloc(0))]);
    assert.equal(answer.httpStatus, 200);
    assert.equal(answer.grpcStatus, 12);
    assert.match(answer.grpcMessage ?? '', /\/etcdserverpb\.KV\/Nope/);
    assert.equal(answer.body.length, 0);
  });

  test('a compressed message gets UNIMPLEMENTED (no compression is served)', async () => {
    const answer = await rawCall(session, range.path, [frame(Buffer.from([0x0a, 0x01, 0x6b]), true)]);
    assert.equal(answer.grpcStatus, 12);
  });

  test('a message above the receive limit gets RESOURCE_EXHAUSTED from its prefix alone', async () => {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(64 * 1024 * 1024, 1);
    const answer = await rawCall(session, range.path, [prefix]);
    assert.equal(answer.grpcStatus, 8);
    assert.match(answer.grpcMessage ?? '', /larger than max/);
  });

  test('two messages in a unary call, or none, are refused', async () => {
    const one = frame(range.requestSerialize({ key: Buffer.from('k') }));
    assert.equal((await rawCall(session, range.path, [one, one])).grpcStatus, 12);
    assert.equal((await rawCall(session, range.path, [])).grpcStatus, 13);
  });

  test('not a POST, or not application/grpc: an HTTP error status', async () => {
    assert.equal((await rawCall(session, range.path, [], 'GET')).httpStatus, 405);
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':method': 'POST', ':path': range.path, 'content-type': 'text/plain' });
      req.on('response', (headers) => resolve(Number(headers[':status'])));
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 415);
  });

  test('grpc-message is percent-encoded UTF-8, and decodes back', () => {
    for (const text of ['etcdserver: request is too large', 'key "ключ" 100% gone', 'tab\there', '']) {
      const encoded = percentEncode(text);
      assert.match(encoded, /^[\x20-\x7e]*$/);
      assert.equal(decodeURIComponent(encoded), text);
    }
  });
});

describe('gRPC message reader', () => {
  test('messages come out whole and unchanged however DATA splits them, 1-byte frames and empty messages included', () => {
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const messages = Array.from({ length: 1 + random(5) }, (_, i) => Buffer.alloc([0, 1, 4, 5, 6, 100, 17_000][random(7)]!, round + i));
      const wire = Buffer.concat(messages.map((m) => frame(m)));
      const reader = new MessageReader(1 << 20);
      const out: Buffer[] = [];
      for (let pos = 0; pos < wire.length; ) {
        const n = random(4) === 0 ? 1 : 1 + random(20_000);
        const got = reader.push(wire.subarray(pos, pos + n));
        assert.ok(Array.isArray(got));
        out.push(...got.map((m) => Buffer.from(m)));
        pos += n;
      }
      assert.equal(out.length, messages.length, `round ${round}`);
      for (const [i, m] of messages.entries()) assert.ok(out[i]!.equals(m), `round ${round} message ${i}`);
      assert.equal(reader.partial, false);
    }
  });

  test('a message fed one byte at a time is read with work linear in its size', () => {
    // 200 KiB in 1-byte pushes: a reader that re-joined what it held on every push would copy about 20 GB.
    const body = Buffer.alloc(200 * 1024, 9);
    const wire = frame(body);
    const reader = new MessageReader(1 << 20);
    let out: Buffer[] = [];
    for (let i = 0; i < wire.length; i++) {
      const got = reader.push(wire.subarray(i, i + 1));
      assert.ok(Array.isArray(got));
      if (got.length > 0) out = got;
    }
    assert.equal(out.length, 1);
    assert.ok(out[0]!.equals(body));
  });
});
