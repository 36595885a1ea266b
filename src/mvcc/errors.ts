/**
 * Operating errors of the MVCC layer and of etcd's KV request checks. Each
 * code carries etcd's exact message, so the gRPC layer can send the status
 * etcd sends and etcd clients recognise it (they match on the message text).
 * Messages are copied from etcd: server/storage/mvcc/kvstore.go (ErrCompacted,
 * ErrFutureRev) and api/v3rpc/rpctypes/error.go (the "etcdserver: " forms).
 */
export type MvccErrorCode =
  | 'COMPACTED'
  | 'FUTURE_REVISION'
  | 'EMPTY_KEY'
  | 'KEY_NOT_FOUND'
  | 'VALUE_PROVIDED'
  | 'LEASE_PROVIDED'
  | 'TOO_MANY_OPS'
  | 'DUPLICATE_KEY'
  | 'INVALID_SORT_OPTION'
  | 'LEASE_NOT_FOUND';

/** gRPC status names (google.rpc.Code) as etcd uses them for each error. */
export type GrpcStatusName = 'INVALID_ARGUMENT' | 'OUT_OF_RANGE' | 'NOT_FOUND';

interface ErrorSpec {
  /** The message etcd's mvcc or server package uses. */
  readonly message: string;
  /** The message etcd's gRPC layer sends (rpctypes). */
  readonly grpcMessage: string;
  readonly grpcStatus: GrpcStatusName;
}

export const MVCC_ERRORS: Readonly<Record<MvccErrorCode, ErrorSpec>> = {
  COMPACTED: {
    message: 'mvcc: required revision has been compacted',
    grpcMessage: 'etcdserver: mvcc: required revision has been compacted',
    grpcStatus: 'OUT_OF_RANGE',
  },
  FUTURE_REVISION: {
    message: 'mvcc: required revision is a future revision',
    grpcMessage: 'etcdserver: mvcc: required revision is a future revision',
    grpcStatus: 'OUT_OF_RANGE',
  },
  EMPTY_KEY: { message: 'etcdserver: key is not provided', grpcMessage: 'etcdserver: key is not provided', grpcStatus: 'INVALID_ARGUMENT' },
  KEY_NOT_FOUND: { message: 'etcdserver: key not found', grpcMessage: 'etcdserver: key not found', grpcStatus: 'INVALID_ARGUMENT' },
  VALUE_PROVIDED: { message: 'etcdserver: value is provided', grpcMessage: 'etcdserver: value is provided', grpcStatus: 'INVALID_ARGUMENT' },
  LEASE_PROVIDED: { message: 'etcdserver: lease is provided', grpcMessage: 'etcdserver: lease is provided', grpcStatus: 'INVALID_ARGUMENT' },
  TOO_MANY_OPS: {
    message: 'etcdserver: too many operations in txn request',
    grpcMessage: 'etcdserver: too many operations in txn request',
    grpcStatus: 'INVALID_ARGUMENT',
  },
  DUPLICATE_KEY: {
    message: 'etcdserver: duplicate key given in txn request',
    grpcMessage: 'etcdserver: duplicate key given in txn request',
    grpcStatus: 'INVALID_ARGUMENT',
  },
  INVALID_SORT_OPTION: {
    message: 'etcdserver: invalid sort option',
    grpcMessage: 'etcdserver: invalid sort option',
    grpcStatus: 'INVALID_ARGUMENT',
  },
  LEASE_NOT_FOUND: {
    message: 'lease not found',
    grpcMessage: 'etcdserver: requested lease not found',
    grpcStatus: 'NOT_FOUND',
  },
};

export class MvccError extends Error {
  override readonly name = 'MvccError';
  readonly code: MvccErrorCode;
  readonly grpcStatus: GrpcStatusName;
  readonly grpcMessage: string;

  constructor(code: MvccErrorCode) {
    const spec = MVCC_ERRORS[code];
    super(spec.message);
    this.code = code;
    this.grpcStatus = spec.grpcStatus;
    this.grpcMessage = spec.grpcMessage;
  }
}

export function isMvccError(value: unknown, code?: MvccErrorCode): value is MvccError {
  return value instanceof MvccError && (code === undefined || value.code === code);
}
