import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

/**
 * The etcd v3 protos (proto/etcd, vendored) as grpc-js service definitions,
 * and the shapes proto-loader decodes them into with LOADER_OPTIONS.
 */

/** src/server/etcd and dist/server/etcd are both three levels below the package root. */
export const RPC_PROTO_PATH = fileURLToPath(new URL('../../../proto/etcd/rpc.proto', import.meta.url));

/**
 * Measured on this machine (Range at concurrency 64, server CPU per call):
 * these options and their alternatives (camelCase names, Long objects,
 * Number longs, defaults and oneof virtuals filled in) all cost 35-42 µs per
 * call, within noise; grpc-js's own work dominates. So the choice is made for
 * correctness: proto field names as in etcd's docs, int64 as exact decimal
 * strings (lease and member ids use all 64 bits), enums as numbers (no name
 * lookup), and absent fields left undefined (no default objects built).
 */
export const LOADER_OPTIONS: Options = { keepCase: true, longs: String, enums: Number, defaults: false, oneofs: false };

/** The byte length of the encoded request, set by the deserializer for the size limit. */
export const REQUEST_BYTES: unique symbol = Symbol('requestBytes');

export interface Sized {
  [REQUEST_BYTES]?: number;
}

let cached: PackageDefinition | undefined;

export function etcdPackage(): PackageDefinition {
  cached ??= loadSync(RPC_PROTO_PATH, LOADER_OPTIONS);
  return cached;
}

/** A service of package etcdserverpb, with each decoded request stamped with its encoded size. */
export function etcdService(name: 'KV' | 'Watch' | 'Lease' | 'Cluster' | 'Maintenance' | 'Auth'): ServiceDefinition {
  const def = etcdPackage()[`etcdserverpb.${name}`] as ServiceDefinition | undefined;
  if (def === undefined) throw new Error(`etcdserverpb.${name} missing from ${RPC_PROTO_PATH}`);
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [method, m] of Object.entries(def)) {
    const decode = m.requestDeserialize;
    out[method] = {
      ...m,
      requestDeserialize: (bytes: Buffer): unknown => {
        const request = decode(bytes) as Sized;
        request[REQUEST_BYTES] = bytes.length;
        return request;
      },
    };
  }
  return out;
}

/** int64/uint64 as proto-loader hands them over with longs: String. */
export type Int64 = string;
/** What we hand back: numbers below 2^53 or decimal strings (ids may use all 64 bits). */
export type Int64Out = number | string;

export interface WireKeyValue {
  key?: Uint8Array;
  create_revision?: Int64Out;
  mod_revision?: Int64Out;
  version?: Int64Out;
  value?: Uint8Array;
  lease?: Int64Out;
}

export interface WireResponseHeader {
  cluster_id?: Int64Out;
  member_id?: Int64Out;
  revision?: Int64Out;
  raft_term?: Int64Out;
}

export interface WireRangeRequest extends Sized {
  key?: Buffer;
  range_end?: Buffer;
  limit?: Int64;
  revision?: Int64;
  sort_order?: number;
  sort_target?: number;
  serializable?: boolean;
  keys_only?: boolean;
  count_only?: boolean;
  min_mod_revision?: Int64;
  max_mod_revision?: Int64;
  min_create_revision?: Int64;
  max_create_revision?: Int64;
}

export interface WireRangeResponse {
  header?: WireResponseHeader;
  kvs?: WireKeyValue[];
  more?: boolean;
  count?: Int64Out;
}

export interface WirePutRequest extends Sized {
  key?: Buffer;
  value?: Buffer;
  lease?: Int64;
  prev_kv?: boolean;
  ignore_value?: boolean;
  ignore_lease?: boolean;
}

export interface WirePutResponse {
  header?: WireResponseHeader;
  prev_kv?: WireKeyValue;
}

export interface WireDeleteRangeRequest extends Sized {
  key?: Buffer;
  range_end?: Buffer;
  prev_kv?: boolean;
}

export interface WireDeleteRangeResponse {
  header?: WireResponseHeader;
  deleted?: Int64Out;
  prev_kvs?: WireKeyValue[];
}

export interface WireCompare {
  result?: number;
  target?: number;
  key?: Buffer;
  version?: Int64;
  create_revision?: Int64;
  mod_revision?: Int64;
  value?: Buffer;
  lease?: Int64;
  range_end?: Buffer;
}

export interface WireRequestOp {
  request_range?: WireRangeRequest;
  request_put?: WirePutRequest;
  request_delete_range?: WireDeleteRangeRequest;
  request_txn?: WireTxnRequest;
}

export interface WireTxnRequest extends Sized {
  compare?: WireCompare[];
  success?: WireRequestOp[];
  failure?: WireRequestOp[];
}

export interface WireResponseOp {
  response_range?: WireRangeResponse;
  response_put?: WirePutResponse;
  response_delete_range?: WireDeleteRangeResponse;
  response_txn?: WireTxnResponse;
}

export interface WireTxnResponse {
  header?: WireResponseHeader;
  succeeded?: boolean;
  responses?: WireResponseOp[];
}

export interface WireCompactionRequest extends Sized {
  revision?: Int64;
  physical?: boolean;
}

export interface WireMember {
  ID: Int64Out;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner?: boolean;
}
