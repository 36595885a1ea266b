import { status as GrpcStatus } from '@grpc/grpc-js';
import { isTesseraError } from '../../base/index.js';
import { MvccError } from '../../mvcc/index.js';

/**
 * The gRPC statuses the etcd API answers with. etcd clients recognise errors
 * by their exact message (clientv3's rpctypes matches on the text), so each
 * message is copied from etcd's api/v3rpc/rpctypes/error.go; MVCC's own
 * errors carry theirs in MvccError.grpcMessage.
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
  if (error instanceof MvccError) return { code: GrpcStatus[error.grpcStatus], details: error.grpcMessage };
  if (isTesseraError(error)) {
    switch (error.code) {
      // A dropped proposal or a refused ReadIndex: nobody leads, etcd's retryable "no leader".
      case 'NOT_LEADER':
        return ETCD_STATUS.NO_LEADER;
      // The outcome is unknown: etcd's timeout, which clients must not read as "failed".
      case 'TIMEOUT':
        return ETCD_STATUS.TIMEOUT;
      case 'CLOSED':
        return ETCD_STATUS.STOPPED;
      case 'RESOURCE_EXHAUSTED':
        return ETCD_STATUS.TOO_MANY_REQUESTS;
      case 'ALREADY_EXISTS':
        return ETCD_STATUS.LEASE_EXIST;
      case 'INVALID_ARGUMENT':
        return { code: GrpcStatus.INVALID_ARGUMENT, details: error.message };
      default:
        return { code: GrpcStatus.UNKNOWN, details: `tessera: ${error.code}: ${error.message}` };
    }
  }
  onBug(error);
  return { code: GrpcStatus.UNKNOWN, details: 'tessera: internal error' };
}
