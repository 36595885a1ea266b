/**
 * Bad input gets etcd's status and message, never a crash or a hang
 * (DESIGN.md "Bad input and faults"); each case is followed by a good
 * request to show the node still serves.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Client, type ServiceError, status } from '@grpc/grpc-js';
import { DEFAULT_MAX_REQUEST_BYTES, GRPC_OVERHEAD_BYTES } from './limits.js';
import { type TestEtcd, REFERENCE_ETCD, call, callError, rawClient, startTestEtcd } from './testing.testlib.js';

const b = (s: string): Buffer => Buffer.from(s);
const putOp = (key: string, value = 'v'): object => ({ request_put: { key: b(key), value: b(value) } });

describe('bad input to the etcd API', () => {
  let etcd: TestEtcd;
  let kv: Client;
  before(async () => {
    etcd = await startTestEtcd();
    kv = rawClient(etcd.address, 'KV');
  });
  after(async () => {
    kv?.close();
    await etcd?.close();
  });

  async function expectError(method: string, request: unknown, code: status, message: RegExp | string): Promise<void> {
    const error = await callError(kv, method, request);
    assert.equal(error.code, code, `${method}: got ${status[error.code]} ${error.details}`);
    if (typeof message === 'string') assert.equal(error.details, message);
    else assert.match(error.details, message);
  }

  async function stillServes(): Promise<void> {
    await call(kv, 'Put', { key: b('alive'), value: b('yes') });
    const r = await call<{ kvs: { value: Buffer }[] }>(kv, 'Range', { key: b('alive') });
    assert.equal(r.kvs[0]?.value.toString(), 'yes');
  }

  test('an empty key', async () => {
    const empty = 'etcdserver: key is not provided';
    await expectError('Range', {}, status.INVALID_ARGUMENT, empty);
    await expectError('Put', { value: b('v') }, status.INVALID_ARGUMENT, empty);
    await expectError('DeleteRange', { range_end: b('z') }, status.INVALID_ARGUMENT, empty);
    await expectError('Txn', { compare: [{ target: 0, result: 0 }] }, status.INVALID_ARGUMENT, empty);
    await expectError('Txn', { success: [{ request_put: { value: b('v') } }] }, status.INVALID_ARGUMENT, empty);
    await stillServes();
  });

  test('an inverted range is empty, not an error', async () => {
    await call(kv, 'Put', { key: b('inv/m'), value: b('v') });
    const r = await call<{ kvs?: unknown[]; count?: string }>(kv, 'Range', { key: b('inv/z'), range_end: b('inv/a') });
    assert.equal(r.kvs?.length ?? 0, 0);
    assert.equal(r.count ?? '0', '0');
  });

  test('a request over 1.5 MiB gets "request is too large"; past the gRPC limit, RESOURCE_EXHAUSTED', async () => {
    const justOver = Buffer.alloc(DEFAULT_MAX_REQUEST_BYTES + 1, 0x61);
    await expectError('Put', { key: b('big'), value: justOver }, status.INVALID_ARGUMENT, 'etcdserver: request is too large');
    await expectError('Txn', { success: [{ request_put: { key: b('big'), value: justOver } }] }, status.INVALID_ARGUMENT, 'etcdserver: request is too large');
    const pastGrpc = Buffer.alloc(DEFAULT_MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES + 1, 0x61);
    await expectError('Put', { key: b('big'), value: pastGrpc }, status.RESOURCE_EXHAUSTED, /larger than max/);
    await stillServes();
  });

  test('a value just under the limit is stored', async () => {
    const value = Buffer.alloc(DEFAULT_MAX_REQUEST_BYTES - 1024, 0x62);
    await call(kv, 'Put', { key: b('almost'), value });
    const r = await call<{ kvs: { value: Buffer }[] }>(kv, 'Range', { key: b('almost') });
    assert.equal(r.kvs[0]?.value.length, value.length);
  });

  test('too many operations in a txn', async () => {
    const ops = (n: number, prefix: string): object[] => Array.from({ length: n }, (_, i) => putOp(`${prefix}/${i}`));
    await expectError('Txn', { success: ops(129, 'ops') }, status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request');
    const compares = Array.from({ length: 129 }, () => ({ key: b('x'), target: 0, result: 0 }));
    await expectError('Txn', { compare: compares }, status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request');
    // A nested txn gets the budget its parent has left.
    await expectError('Txn', { success: [...ops(100, 'nest'), { request_txn: { success: ops(29, 'inner') } }] }, status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request');
    const ok = await call<{ succeeded: boolean }>(kv, 'Txn', { success: ops(128, 'ops') });
    assert.equal(ok.succeeded, true);
  });

  test('txns nested far too deep are refused by the decoder, and the node goes on', async () => {
    const error = await rawBytesCall(kv, '/etcdserverpb.KV/Txn', deepTxnBytes(100_000));
    assert.ok(error.code === status.INTERNAL || error.code === status.INVALID_ARGUMENT, `${status[error.code]} ${error.details}`);
    await stillServes();
  });

  test('duplicate keys in a txn', async () => {
    const dup = 'etcdserver: duplicate key given in txn request';
    await expectError('Txn', { success: [putOp('dup/a'), putOp('dup/a')] }, status.INVALID_ARGUMENT, dup);
    await expectError('Txn', { success: [{ request_delete_range: { key: b('dup/'), range_end: b('dup0') } }, putOp('dup/b')] }, status.INVALID_ARGUMENT, dup);
    await expectError('Txn', { success: [putOp('dup/c'), { request_txn: { success: [putOp('dup/c')] } }] }, status.INVALID_ARGUMENT, dup);
    // The same key in the then and else branches of one nested txn is fine: only one runs.
    const ok = await call<{ succeeded: boolean }>(kv, 'Txn', { success: [{ request_txn: { success: [putOp('dup/d')], failure: [putOp('dup/d')] } }] });
    assert.equal(ok.succeeded, true);
  });

  test('an empty request op', async () => {
    await expectError('Txn', { success: [{}] }, status.INVALID_ARGUMENT, 'etcdserver: key not found');
  });

  test('put options that contradict each other or need a missing key', async () => {
    await expectError('Put', { key: b('opt/k'), value: b('v'), ignore_value: true }, status.INVALID_ARGUMENT, 'etcdserver: value is provided');
    await expectError('Put', { key: b('opt/k'), lease: 5, ignore_lease: true }, status.INVALID_ARGUMENT, 'etcdserver: lease is provided');
    await expectError('Put', { key: b('opt/missing'), ignore_value: true }, status.INVALID_ARGUMENT, 'etcdserver: key not found');
  });

  test('an unknown lease, including ids past 2^53', async () => {
    const notFound = 'etcdserver: requested lease not found';
    await expectError('Put', { key: b('lease/k'), value: b('v'), lease: 12345 }, status.NOT_FOUND, notFound);
    await expectError('Put', { key: b('lease/k'), value: b('v'), lease: '9223372036854775807' }, status.NOT_FOUND, notFound);
    await expectError('Put', { key: b('lease/k'), value: b('v'), lease: '-5' }, status.NOT_FOUND, notFound);
    await expectError('Txn', { success: [{ request_put: { key: b('lease/k'), value: b('v'), lease: '1' } }] }, status.NOT_FOUND, notFound);
  });

  test('revisions out of range, including int64 extremes', async () => {
    const future = 'etcdserver: mvcc: required revision is a future revision';
    await expectError('Range', { key: b('rev'), revision: '9223372036854775807' }, status.OUT_OF_RANGE, future);
    await expectError('Compact', { revision: '9223372036854775807' }, status.OUT_OF_RANGE, future);
    await expectError('Compact', { revision: '-9223372036854775808' }, status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted');
    // Negative and huge limits and filters mean what they mean in etcd: no limit, no key passes.
    await call(kv, 'Put', { key: b('rev/k'), value: b('v') });
    const noLimit = await call<{ kvs: unknown[] }>(kv, 'Range', { key: b('rev/'), range_end: b('rev0'), limit: '-9223372036854775808' });
    assert.equal(noLimit.kvs.length, 1);
    const filtered = await call<{ kvs?: unknown[] }>(kv, 'Range', { key: b('rev/'), range_end: b('rev0'), max_mod_revision: '-9223372036854775808' });
    assert.equal(filtered.kvs?.length ?? 0, 0);
    await stillServes();
  });

  // protobufjs reads a varint cut short after 4 bytes as if zeros followed, so such garbage decodes; these do not.
  test('malformed protobuf gets an error status, and the node goes on', async () => {
    const garbage = [Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from([0x0a, 0x7f, 0x01]), Buffer.from([0x12, 0x05, 0x0a]), Buffer.from([0x08, 0x80])];
    for (const method of ['Range', 'Put', 'DeleteRange', 'Txn', 'Compact']) {
      for (const bytes of garbage) {
        const error = await rawBytesCall(kv, `/etcdserverpb.KV/${method}`, bytes);
        assert.equal(error.code, status.INTERNAL, `${method} with ${bytes.toString('hex')}: ${status[error.code]} ${error.details}`);
      }
    }
    await stillServes();
  });

  test('methods not served yet answer UNIMPLEMENTED and name themselves', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, async () => {
    const cluster = rawClient(etcd.address, 'Cluster');
    try {
      const error = await callError(cluster, 'MemberAdd', { peerURLs: ['http://127.0.0.1:1'] });
      assert.equal(error.code, status.UNIMPLEMENTED);
      assert.match(error.details, /Cluster\.MemberAdd is not implemented/);
    } finally {
      cluster.close();
    }
  });
});

/** A unary call whose request bytes go out as given: the serializer passes them through unchecked. */
function rawBytesCall(client: Client, path: string, bytes: Buffer): Promise<ServiceError> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      (error) => (error === null ? reject(new Error(`${path} accepted ${bytes.toString('hex')}`)) : resolve(error)),
    );
  });
}

/** A TxnRequest whose only success op is a txn, `depth` times over; written directly, as no encoder nests this deep. */
function deepTxnBytes(depth: number): Buffer {
  const varintLength = (n: number): number => (n < 0x80 ? 1 : 1 + varintLength(Math.floor(n / 128)));
  const txnLengths = [0];
  const opLengths: number[] = [];
  for (let i = 0; i < depth; i++) {
    const inner = txnLengths[i] as number;
    const op = 1 + varintLength(inner) + inner;
    opLengths.push(op);
    txnLengths.push(1 + varintLength(op) + op);
  }
  const out = Buffer.alloc(txnLengths[depth] as number);
  let pos = 0;
  const writeVarint = (n: number): void => {
    for (; n >= 0x80; n = Math.floor(n / 128)) out[pos++] = (n & 0x7f) | 0x80;
    out[pos++] = n;
  };
  for (let i = depth - 1; i >= 0; i--) {
    out[pos++] = 0x12; // TxnRequest.success, length-delimited
    writeVarint(opLengths[i] as number);
    out[pos++] = 0x22; // RequestOp.request_txn, length-delimited
    writeVarint(txnLengths[i] as number);
  }
  return out;
}
