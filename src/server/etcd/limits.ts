import { DEFAULT_MAX_TXN_OPS } from '../../mvcc/index.js';

/**
 * Request limits of the etcd API, with etcd 3.4's defaults so that clients
 * tuned against etcd meet the same walls here.
 */
export interface EtcdLimits {
  /** etcd's --max-request-bytes: a write whose request is larger gets "etcdserver: request is too large". */
  readonly maxRequestBytes: number;
  /** etcd's --max-txn-ops: compares, success ops and failure ops each count up to this. */
  readonly maxTxnOps: number;
}

/** 1.5 MiB, etcd's default --max-request-bytes. */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;

/**
 * etcd lets gRPC receive this much beyond max-request-bytes (grpcOverheadBytes
 * in etcd's embed package), so that a request just above the limit is refused
 * with etcd's own message and only a much larger one by gRPC's frame check.
 */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;

export const DEFAULT_ETCD_LIMITS: EtcdLimits = {
  maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
  maxTxnOps: DEFAULT_MAX_TXN_OPS,
};

/** The version Maintenance.Status reports: the etcd API level we serve, tagged so tools can tell us apart. */
export const ETCD_API_VERSION = '3.4.0-tessera';
