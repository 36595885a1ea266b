import { status as GrpcStatus } from '@grpc/grpc-js';
import {
  COMPARE_RESULTS,
  COMPARE_TARGETS,
  mvccError,
  SORT_ORDERS,
  SORT_TARGETS,
  type Compare,
  type DeleteRangeRequest,
  type KeyValue,
  type PutRequest,
  type RangeOptions,
  type RangeResult,
  type RequestOp,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from '../../mvcc/index.js';
import { EtcdApiError } from './errors.js';
import type {
  Int64,
  WireCompare,
  WireDeleteRangeRequest,
  WireDeleteRangeResponse,
  WireKeyValue,
  WirePutRequest,
  WirePutResponse,
  WireRangeRequest,
  WireRangeResponse,
  WireRequestOp,
  WireResponseHeader,
  WireResponseOp,
  WireTxnRequest,
  WireTxnResponse,
} from './proto.js';

/**
 * Translation between etcd's protobuf messages (as proto-loader decodes them)
 * and the MVCC layer's requests and results. Requests are rebuilt field by
 * field with only the fields that are set: they are encoded into the Raft log,
 * and nothing the client sent beyond the known fields may reach it.
 */

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const EMPTY = new Uint8Array(0);

/**
 * A lease id that no tessera lease can have: tessera grants ids in (0, 2^53),
 * so a wire id outside that range is not found, but it must still count as
 * "a lease is given" for etcd's ignore_lease check, which comes first.
 */
export const UNKNOWN_LEASE_ID = -1;

/**
 * An int64 from the wire, clamped into the safe integers. Revisions are below
 * 2^53 (DESIGN.md decision 3), so clamping keeps the outcome of every use:
 * a revision above them all is still a future revision, a limit still no
 * limit, and a filter bound still passes or rejects the same keys.
 */
export function safeInt(value: Int64 | undefined): number {
  if (value === undefined) return 0;
  const n = Number(value);
  if (Number.isSafeInteger(n)) return n;
  if (Number.isNaN(n)) throw new EtcdApiError({ code: GrpcStatus.INVALID_ARGUMENT, details: `tessera: malformed integer ${value}` });
  return n > 0 ? Number.MAX_SAFE_INTEGER : -Number.MAX_SAFE_INTEGER;
}

function leaseId(value: Int64 | undefined): number {
  if (value === undefined || value === '0') return 0;
  const n = Number(value);
  return Number.isSafeInteger(n) && n > 0 ? n : UNKNOWN_LEASE_ID;
}

function enumName<T extends string>(names: readonly T[], value: number | undefined, onUnknown: () => Error): T | undefined {
  if (value === undefined) return undefined;
  const name = names[value];
  if (name === undefined) throw onUnknown();
  return name;
}

function invalid(details: string): EtcdApiError {
  return new EtcdApiError({ code: GrpcStatus.INVALID_ARGUMENT, details });
}

export function toRangeOptions(r: WireRangeRequest): RangeOptions {
  const o: Mutable<RangeOptions> = { key: r.key ?? EMPTY };
  if (r.range_end !== undefined && r.range_end.length > 0) o.rangeEnd = r.range_end;
  if (r.revision !== undefined) o.revision = safeInt(r.revision);
  if (r.limit !== undefined) o.limit = safeInt(r.limit);
  const sortOrder = enumName(SORT_ORDERS, r.sort_order, () => mvccError('INVALID_SORT_OPTION'));
  if (sortOrder !== undefined) o.sortOrder = sortOrder;
  const sortTarget = enumName(SORT_TARGETS, r.sort_target, () => mvccError('INVALID_SORT_OPTION'));
  if (sortTarget !== undefined) o.sortTarget = sortTarget;
  if (r.keys_only === true) o.keysOnly = true;
  if (r.count_only === true) o.countOnly = true;
  if (r.serializable === true) o.serializable = true;
  if (r.min_mod_revision !== undefined) o.minModRevision = safeInt(r.min_mod_revision);
  if (r.max_mod_revision !== undefined) o.maxModRevision = safeInt(r.max_mod_revision);
  if (r.min_create_revision !== undefined) o.minCreateRevision = safeInt(r.min_create_revision);
  if (r.max_create_revision !== undefined) o.maxCreateRevision = safeInt(r.max_create_revision);
  return o;
}

export function toPutRequest(r: WirePutRequest): PutRequest {
  const o: Mutable<PutRequest> = { key: r.key ?? EMPTY, value: r.value ?? EMPTY };
  const lease = leaseId(r.lease);
  if (lease !== 0) o.lease = lease;
  if (r.prev_kv === true) o.prevKv = true;
  if (r.ignore_value === true) o.ignoreValue = true;
  if (r.ignore_lease === true) o.ignoreLease = true;
  return o;
}

export function toDeleteRangeRequest(r: WireDeleteRangeRequest): DeleteRangeRequest {
  const o: Mutable<DeleteRangeRequest> = { key: r.key ?? EMPTY };
  if (r.range_end !== undefined && r.range_end.length > 0) o.rangeEnd = r.range_end;
  if (r.prev_kv === true) o.prevKv = true;
  return o;
}

export function toCompare(c: WireCompare): Compare {
  const target = enumName(COMPARE_TARGETS, c.target, () => invalid(`tessera: unknown compare target ${c.target}`)) ?? 'VERSION';
  const result = enumName(COMPARE_RESULTS, c.result, () => invalid(`tessera: unknown compare result ${c.result}`)) ?? 'EQUAL';
  const o: Mutable<Compare> = { key: c.key ?? EMPTY, target, result };
  if (c.range_end !== undefined && c.range_end.length > 0) o.rangeEnd = c.range_end;
  // The operand is the union member the target names; an absent one is protobuf's zero.
  switch (target) {
    case 'VALUE':
      o.value = c.value ?? EMPTY;
      break;
    case 'VERSION':
      o.operand = safeInt(c.version);
      break;
    case 'CREATE':
      o.operand = safeInt(c.create_revision);
      break;
    case 'MOD':
      o.operand = safeInt(c.mod_revision);
      break;
    case 'LEASE':
      o.operand = safeInt(c.lease);
      break;
  }
  return o;
}

/**
 * A Txn request, nested txns included. Past `maxTxnOps` ops on one level, or
 * nesting deeper than `maxTxnOps`, it cannot pass etcd's checks (each level
 * spends at least one op of its parent's budget), so it is refused before
 * more of it is converted.
 */
export function toTxnRequest(t: WireTxnRequest, maxTxnOps: number, depth = 0): TxnRequest {
  const compare = t.compare ?? [];
  const success = t.success ?? [];
  const failure = t.failure ?? [];
  if (depth > maxTxnOps || Math.max(compare.length, success.length, failure.length) > maxTxnOps) throw mvccError('TOO_MANY_OPS');
  return {
    compare: compare.map(toCompare),
    success: success.map((op) => toRequestOp(op, maxTxnOps, depth)),
    failure: failure.map((op) => toRequestOp(op, maxTxnOps, depth)),
  };
}

function toRequestOp(op: WireRequestOp, maxTxnOps: number, depth: number): RequestOp {
  if (op.request_range !== undefined) return { type: 'range', range: toRangeOptions(op.request_range) };
  if (op.request_put !== undefined) return { type: 'put', put: toPutRequest(op.request_put) };
  if (op.request_delete_range !== undefined) return { type: 'deleteRange', deleteRange: toDeleteRangeRequest(op.request_delete_range) };
  if (op.request_txn !== undefined) return { type: 'txn', txn: toTxnRequest(op.request_txn, maxTxnOps, depth + 1) };
  // etcd's checkRequestOp answers an empty op with "key not found".
  throw mvccError('KEY_NOT_FOUND');
}

/** True if some put on any branch names a lease id no tessera lease can have. */
export function hasUnknownLeaseId(request: TxnRequest): boolean {
  return [...request.success, ...request.failure].some(
    (op) => (op.type === 'put' && op.put.lease === UNKNOWN_LEASE_ID) || (op.type === 'txn' && hasUnknownLeaseId(op.txn)),
  );
}

export function toWireKeyValue(kv: KeyValue): WireKeyValue {
  // As gogoproto does, zero fields stay off the wire.
  const out: WireKeyValue = { key: kv.key, create_revision: kv.createRevision, mod_revision: kv.modRevision, version: kv.version };
  if (kv.value.length > 0) out.value = kv.value;
  if (kv.lease !== 0) out.lease = kv.lease;
  return out;
}

/** Headers of responses nested in a Txn carry only the revision, as in etcd. */
function revisionHeader(revision: number): WireResponseHeader {
  return { revision };
}

/** etcd leaves the header of a nested Txn's response empty (only the top level gets the txn's revision). */
const NESTED_TXN_HEADER: WireResponseHeader = {};

export function toWireRangeResponse(r: RangeResult, header: WireResponseHeader): WireRangeResponse {
  const out: WireRangeResponse = { header, kvs: r.kvs.map(toWireKeyValue), count: r.count };
  if (r.more) out.more = true;
  return out;
}

export function toWireTxnResponse(r: TxnResponse, header: WireResponseHeader): WireTxnResponse {
  const out: WireTxnResponse = { header, responses: r.responses.map(toWireResponseOp) };
  if (r.succeeded) out.succeeded = true;
  return out;
}

function toWireResponseOp(op: ResponseOp): WireResponseOp {
  switch (op.type) {
    case 'range':
      return { response_range: toWireRangeResponse(op.range, revisionHeader(op.range.revision)) };
    case 'put': {
      const put: WirePutResponse = { header: revisionHeader(op.put.revision) };
      if (op.put.prevKv !== undefined) put.prev_kv = toWireKeyValue(op.put.prevKv);
      return { response_put: put };
    }
    case 'deleteRange': {
      const d = op.deleteRange;
      const del: WireDeleteRangeResponse = { header: revisionHeader(d.revision), deleted: d.deleted, prev_kvs: d.prevKvs.map(toWireKeyValue) };
      return { response_delete_range: del };
    }
    case 'txn':
      return { response_txn: toWireTxnResponse(op.txn, NESTED_TXN_HEADER) };
  }
}
