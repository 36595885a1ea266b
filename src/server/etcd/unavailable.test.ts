/** A node that cannot serve answers with etcd's retryable UNAVAILABLE statuses, never a hang or a crash. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { REFERENCE_ETCD, call, callError, rawClient, startTestEtcd } from './testing.testlib.js';
import { toEtcdStatus } from './errors.js';
import { TesseraError } from '../../base/index.js';

const b = (s: string): Buffer => Buffer.from(s);
/**
 * Short, so a timed-out request fails fast; long enough that on a loaded CI
 * machine a put is stamped and appended before its deadline (its revision
 * request gets a fifth of it: 400 ms left 80 ms, and one CI run timed out there).
 */
const REQUEST_TIMEOUT_MS = 1_500;

test('errors map to etcd statuses; bugs are reported and answered UNKNOWN', () => {
  const bugs: unknown[] = [];
  const onBug = (e: unknown): void => void bugs.push(e);
  assert.deepEqual(toEtcdStatus(new TesseraError('COMPACTED', 'mvcc: required revision has been compacted'), onBug), { code: status.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' });
  assert.deepEqual(toEtcdStatus(new TesseraError('NOT_LEADER', 'x'), onBug), { code: status.UNAVAILABLE, details: 'etcdserver: no leader' });
  assert.deepEqual(toEtcdStatus(new TesseraError('TIMEOUT', 'x'), onBug), { code: status.UNAVAILABLE, details: 'etcdserver: request timed out' });
  assert.deepEqual(toEtcdStatus(new TesseraError('CLOSED', 'x'), onBug), { code: status.UNAVAILABLE, details: 'etcdserver: server stopped' });
  assert.equal(bugs.length, 0);
  const bug = new TypeError('oops');
  assert.deepEqual(toEtcdStatus(bug, onBug), { code: status.UNKNOWN, details: 'tessera: internal error' });
  assert.deepEqual(bugs, [bug]);
});

describe('a node that cannot serve', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, () => {
  test('without a leader: "no leader" for linearizable reads and writes; serializable reads are served', async () => {
    const etcd = await startTestEtcd({}, { elect: false, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    const kv = rawClient(etcd.address, 'KV');
    try {
      for (const [method, request] of [['Range', { key: b('k') }], ['Put', { key: b('k'), value: b('v') }], ['Txn', { success: [{ request_put: { key: b('k') } }] }]] as const) {
        const error = await callError(kv, method, request);
        assert.equal(error.code, status.UNAVAILABLE, `${method}: ${error.details}`);
        assert.equal(error.details, 'etcdserver: no leader');
      }
      const r = await call<{ kvs?: unknown[] }>(kv, 'Range', { key: b('k'), serializable: true });
      assert.equal(r.kvs?.length ?? 0, 0);
    } finally {
      kv.close();
      await etcd.close();
    }
  });

  test('a write whose outcome is unknown gets "request timed out", and may still commit', async () => {
    const etcd = await startTestEtcd({}, { requestTimeoutMs: REQUEST_TIMEOUT_MS });
    const kv = rawClient(etcd.address, 'KV');
    try {
      // Every attempt must be answered "request timed out"; that it "may still commit" is shown by one
      // that does. One may not: a put still waiting for its revision stamp when the deadline passes never
      // reaches the log (its outcome is still unknown to the client, and reported as such).
      const committed: string[] = [];
      for (let attempt = 0; attempt < 3 && committed.length === 0; attempt++) {
        const key = `unknown-${attempt}`;
        etcd.node?.pauseSync(true);
        const error: ServiceError = await callError(kv, 'Put', { key: b(key), value: b('v') });
        assert.equal(error.code, status.UNAVAILABLE);
        assert.equal(error.details, 'etcdserver: request timed out');
        etcd.node?.pauseSync(false);
        const deadline = Date.now() + 5_000;
        while (committed.length === 0 && Date.now() < deadline) {
          const r = await call<{ kvs?: unknown[] }>(kv, 'Range', { key: b(key) });
          if ((r.kvs?.length ?? 0) > 0) committed.push(key);
        }
      }
      assert.equal(committed.length, 1, 'a timed-out put committed once the disk synced');
    } finally {
      kv.close();
      await etcd.close();
    }
  });
});
