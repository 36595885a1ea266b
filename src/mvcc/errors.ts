import { TesseraError, type TesseraErrorCode } from '../base/index.js';

/**
 * The refusals of the MVCC layer and of etcd's KV request checks: the
 * TesseraError codes this layer throws. Each carries etcd's own message for it
 * (server/storage/mvcc/kvstore.go for ErrCompacted and ErrFutureRev,
 * server/etcdserver/errors.go and api/v3rpc/rpctypes for the request checks,
 * server/lease for ErrLeaseNotFound). How a client protocol answers each code
 * is the server's business (src/server/etcd/errors.ts), not this layer's.
 */
export const MVCC_ERROR_MESSAGES = {
  COMPACTED: 'mvcc: required revision has been compacted',
  FUTURE_REVISION: 'mvcc: required revision is a future revision',
  EMPTY_KEY: 'etcdserver: key is not provided',
  KEY_NOT_FOUND: 'etcdserver: key not found',
  VALUE_PROVIDED: 'etcdserver: value is provided',
  LEASE_PROVIDED: 'etcdserver: lease is provided',
  TOO_MANY_OPS: 'etcdserver: too many operations in txn request',
  DUPLICATE_KEY: 'etcdserver: duplicate key given in txn request',
  INVALID_SORT_OPTION: 'etcdserver: invalid sort option',
  LEASE_NOT_FOUND: 'lease not found',
} as const satisfies Partial<Record<TesseraErrorCode, string>>;

/** The codes this layer refuses with: the keys of the table above, each a TesseraErrorCode. */
export type MvccErrorCode = keyof typeof MVCC_ERROR_MESSAGES;

/** The refusal `code`, with etcd's message for it. */
export function mvccError(code: MvccErrorCode): TesseraError {
  return new TesseraError(code, MVCC_ERROR_MESSAGES[code]);
}

export function isMvccErrorCode(code: string): code is MvccErrorCode {
  return Object.hasOwn(MVCC_ERROR_MESSAGES, code);
}

/**
 * True for a request this layer refused, as opposed to a storage failure
 * (IO_ERROR, CORRUPT_DATA) or a bug: a refusal is deterministic, so a state
 * machine may return it as the command's result on every replica.
 */
export function isMvccRefusal(value: unknown): value is TesseraError & { readonly code: MvccErrorCode } {
  return value instanceof TesseraError && isMvccErrorCode(value.code);
}
