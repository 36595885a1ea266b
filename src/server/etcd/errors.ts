import { status as GrpcStatus } from '@grpc/grpc-js';
import { type TesseraErrorCode, isTesseraError } from '../../base/index.js';

/**
 * The gRPC statuses the etcd API answers with. etcd clients recognise errors
 * by their exact message (clientv3's rpctypes matches on the text), so each
 * message is copied from etcd's api/v3rpc/rpctypes/error.go. This file is the
 * one place that turns tessera's error codes into them: the layers below
 * throw TesseraError codes and know nothing of gRPC.
 */
export interface EtcdStatus {
  readonly code: GrpcStatus;
  readonly details: string;
}

export const ETCD_STATUS = {
  REQUEST_TOO_LARGE: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: request is too large' },
  TOO_MANY_REQUESTS: { code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'etcdserver: too many requests' },
  NO_LEADER: { code: GrpcStatus.UNAVAILABLE, details: 'etcdserver: no leader' },
  TIMEOUT: { code: GrpcStatus.UNAVAILABLE, details: 'etcdserver: request timed out' },
  STOPPED: { code: GrpcStatus.UNAVAILABLE, details: 'etcdserver: server stopped' },
  LEASE_EXIST: { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: lease already exists' },
  NOT_LEADER: { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: not leader' },
  BAD_LEADER_TRANSFEREE: { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: bad leader transferee' },
} as const satisfies Record<string, EtcdStatus>;

/**
 * How the etcd API answers each TesseraError code: a fixed status, the
 * error's own message under INVALID_ARGUMENT ('message': its text is already
 * etcd's), or UNKNOWN naming the code ('unknown': no etcd error matches, and
 * clients treat it as a failure). Every code must be decided here, so a new
 * code cannot reach a client unmapped by accident.
 */
const ETCD_ANSWER: { readonly [C in TesseraErrorCode]: EtcdStatus | 'message' | 'precondition' | 'unknown' } = {
  // The MVCC refusals: etcd's ErrGRPC* of rpctypes. The two revision errors are
  // OUT_OF_RANGE and their message gains the "etcdserver: " prefix; a lease that
  // does not exist is NOT_FOUND with the rpctypes wording, not the lease package's.
  COMPACTED: { code: GrpcStatus.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision has been compacted' },
  FUTURE_REVISION: { code: GrpcStatus.OUT_OF_RANGE, details: 'etcdserver: mvcc: required revision is a future revision' },
  EMPTY_KEY: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: key is not provided' },
  KEY_NOT_FOUND: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: key not found' },
  VALUE_PROVIDED: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: value is provided' },
  LEASE_PROVIDED: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: lease is provided' },
  TOO_MANY_OPS: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: too many operations in txn request' },
  DUPLICATE_KEY: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: duplicate key given in txn request' },
  INVALID_SORT_OPTION: { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: invalid sort option' },
  LEASE_NOT_FOUND: { code: GrpcStatus.NOT_FOUND, details: 'etcdserver: requested lease not found' },
  // A dropped proposal or a refused ReadIndex: nobody leads, etcd's retryable "no leader".
  NOT_LEADER: ETCD_STATUS.NO_LEADER,
  // The outcome is unknown: etcd's timeout, which clients must not read as "failed".
  TIMEOUT: ETCD_STATUS.TIMEOUT,
  CLOSED: ETCD_STATUS.STOPPED,
  RESOURCE_EXHAUSTED: ETCD_STATUS.TOO_MANY_REQUESTS,
  ALREADY_EXISTS: ETCD_STATUS.LEASE_EXIST,
  INVALID_ARGUMENT: 'message',
  INVALID_CONFIG: 'unknown',
  NOT_FOUND: 'unknown',
  PROPOSAL_DROPPED: 'unknown',
  LOG_COMPACTED: 'unknown',
  LOG_UNAVAILABLE: 'unknown',
  SNAPSHOT_OUT_OF_DATE: 'unknown',
  SNAPSHOT_TEMPORARILY_UNAVAILABLE: 'unknown',
  CONF_CHANGE_PENDING: 'unknown',
  PARSE_ERROR: 'unknown',
  CORRUPT_DATA: 'unknown',
  IO_ERROR: 'unknown',
  STORAGE_FAILED: 'unknown',
  // Internal to routing: the node that routed the request refreshes its range
  // descriptor and retries (ADR 0009 §5), so a client never sees it. If one
  // leaks it is a bug, and UNKNOWN with the message makes it visible rather
  // than a retryable status that would hide it behind client retries.
  RANGE_MISMATCH: 'unknown',
  // etcd has no such refusal; FAILED_PRECONDITION with the reason, which clients do not retry.
  CROSS_RANGE: 'precondition',
  // A cross-range transaction that gave up took no effect: ABORTED, gRPC's "retry at a higher level".
  TXN_ABORTED: { code: GrpcStatus.ABORTED, details: 'tessera: transaction aborted by conflicting transactions; retry' },
  // The outcome is unknown, as for a request that timed out: etcd's own answer to that.
  TXN_OUTCOME_UNKNOWN: ETCD_STATUS.TIMEOUT,
  // Transient, like an election: etcd's retryable "no leader".
  RANGE_UNAVAILABLE: ETCD_STATUS.NO_LEADER,
};

/** The etcd status for a TesseraError with `code` and `message`. */
export function etcdStatusOf(code: TesseraErrorCode, message: string): EtcdStatus {
  const answer = ETCD_ANSWER[code];
  if (answer === 'message') return { code: GrpcStatus.INVALID_ARGUMENT, details: message };
  if (answer === 'precondition') return { code: GrpcStatus.FAILED_PRECONDITION, details: `tessera: ${message}` };
  if (answer === 'unknown') return { code: GrpcStatus.UNKNOWN, details: `tessera: ${code}: ${message}` };
  return answer;
}

/** A request the etcd layer itself refuses, with the status to send. */
export class EtcdApiError extends Error {
  override readonly name = 'EtcdApiError';
  readonly code: GrpcStatus;

  constructor(status: EtcdStatus) {
    super(status.details);
    this.code = status.code;
  }
}

/** Not yet served: etcd has the method, tessera does not answer it yet. */
export function unimplemented(method: string): EtcdStatus {
  return { code: GrpcStatus.UNIMPLEMENTED, details: `tessera: ${method} is not implemented yet` };
}

/**
 * The status for an error a handler threw. Unknown errors are bugs: they get
 * UNKNOWN (what grpc-go sends for a plain Go error) and are reported to
 * `onBug`, but never take the node down.
 */
export function toEtcdStatus(error: unknown, onBug: (error: unknown) => void): EtcdStatus {
  if (error instanceof EtcdApiError) return { code: error.code, details: error.message };
  if (isTesseraError(error)) return etcdStatusOf(error.code, error.message);
  onBug(error);
  return { code: GrpcStatus.UNKNOWN, details: 'tessera: internal error' };
}
