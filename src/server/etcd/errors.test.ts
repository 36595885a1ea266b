/** The one mapping from tessera's error codes to etcd's gRPC statuses, and the layers it keeps gRPC out of. */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { TesseraError } from '../../base/index.js';
import { MVCC_ERROR_MESSAGES, type MvccErrorCode, mvccError } from '../../mvcc/index.js';
import { type EtcdStatus, toEtcdStatus } from './errors.js';

/**
 * What etcd sends for each MVCC refusal (api/v3rpc/rpctypes/error.go), and what
 * tessera sent when the statuses still lived in src/mvcc: etcd clients match
 * on these bytes, so they must never drift.
 */
const EXPECTED: Record<MvccErrorCode, EtcdStatus> = {
  COMPACTED: { code: status.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' },
  FUTURE_REVISION: { code: status.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision is a future revision' },
  EMPTY_KEY: { code: status.INVALID_ARGUMENT, details: 'etcdserver: key is not provided' },
  KEY_NOT_FOUND: { code: status.INVALID_ARGUMENT, details: 'etcdserver: key not found' },
  VALUE_PROVIDED: { code: status.INVALID_ARGUMENT, details: 'etcdserver: value is provided' },
  LEASE_PROVIDED: { code: status.INVALID_ARGUMENT, details: 'etcdserver: lease is provided' },
  TOO_MANY_OPS: { code: status.INVALID_ARGUMENT, details: 'etcdserver: too many operations in txn request' },
  DUPLICATE_KEY: { code: status.INVALID_ARGUMENT, details: 'etcdserver: duplicate key given in txn request' },
  INVALID_SORT_OPTION: { code: status.INVALID_ARGUMENT, details: 'etcdserver: invalid sort option' },
  LEASE_NOT_FOUND: { code: status.NOT_FOUND, details: 'etcdserver: requested lease not found' },
};

const noBug = (error: unknown): void => assert.fail(`reported as a bug: ${String(error)}`);

test('errors: every MVCC refusal maps to etcd\'s exact status and message', () => {
  assert.deepEqual(Object.keys(MVCC_ERROR_MESSAGES).sort(), Object.keys(EXPECTED).sort(), 'every MVCC code has an expected answer');
  for (const code of Object.keys(EXPECTED) as MvccErrorCode[]) {
    assert.deepEqual(toEtcdStatus(mvccError(code), noBug), EXPECTED[code], code);
  }
  // The message mvcc throws is etcd's mvcc (or server) text, not the rpctypes one.
  assert.equal(mvccError('COMPACTED').message, 'mvcc: required revision has been compacted');
  assert.equal(mvccError('LEASE_NOT_FOUND').message, 'lease not found');
});

test('errors: the status depends on the code alone, whatever message the refusal carries', () => {
  // A lease revoke's result and LeaseKeeper say 'etcdserver: requested lease not found'; a put's says 'lease not found'.
  for (const code of Object.keys(EXPECTED) as MvccErrorCode[]) {
    assert.deepEqual(toEtcdStatus(new TesseraError(code, 'some other text'), noBug), EXPECTED[code], code);
  }
});

test('errors: the generic codes keep their etcd answers', () => {
  const cases: [TesseraError, EtcdStatus][] = [
    [new TesseraError('NOT_LEADER', 'x'), { code: status.UNAVAILABLE, details: 'etcdserver: no leader' }],
    [new TesseraError('TIMEOUT', 'x'), { code: status.UNAVAILABLE, details: 'etcdserver: request timed out' }],
    [new TesseraError('CLOSED', 'x'), { code: status.UNAVAILABLE, details: 'etcdserver: server stopped' }],
    [new TesseraError('RESOURCE_EXHAUSTED', 'x'), { code: status.RESOURCE_EXHAUSTED, details: 'etcdserver: too many requests' }],
    [new TesseraError('ALREADY_EXISTS', 'x'), { code: status.FAILED_PRECONDITION, details: 'etcdserver: lease already exists' }],
    [new TesseraError('INVALID_ARGUMENT', 'etcdserver: too large lease TTL'), { code: status.INVALID_ARGUMENT, details: 'etcdserver: too large lease TTL' }],
    [new TesseraError('NOT_FOUND', 'gone'), { code: status.UNKNOWN, details: 'tessera: NOT_FOUND: gone' }],
    [new TesseraError('LOG_COMPACTED', 'old'), { code: status.UNKNOWN, details: 'tessera: LOG_COMPACTED: old' }],
  ];
  for (const [error, expected] of cases) assert.deepEqual(toEtcdStatus(error, noBug), expected, error.code);
});

test('errors: the layers below the server never name gRPC (its statuses are mapped only in src/server)', () => {
  const src = fileURLToPath(new URL('../../../src/', import.meta.url));
  const offenders: string[] = [];
  for (const layer of ['base', 'mvcc', 'kv']) {
    const dir = join(src, layer);
    for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      if (!name.endsWith('.ts')) continue;
      const lines = readFileSync(join(dir, name), 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (/grpc/i.test(line)) offenders.push(`src/${layer}/${name}:${i + 1}: ${line.trim()}`);
      });
    }
  }
  assert.deepEqual(offenders, []);
});
