import { assert } from '../base/index.js';
import { type KeyInterval, compareBytes, keyInterval } from './bytes.js';
import { isMvccRefusal, mvccError } from './errors.js';
import type { KeyValue, RangeOptions, RangeResult } from './range.js';
import type { DeleteRangeResult, PutResult, WriteTxn } from './write-txn.js';

/**
 * etcd's Txn RPC evaluated over one write transaction, so the server only
 * translates protobuf. Steps, as in etcd's server/etcdserver/txn/txn.go:
 * 1. every compare on the taken path, nested ones included, is evaluated on
 *    the state before the transaction;
 * 2. the operations on that path are checked (read revisions, ignore_value /
 *    ignore_lease need the key, leases must exist) — a failure aborts before
 *    anything is written;
 * 3. the operations run in order; later ones see earlier writes.
 * Request validation (empty keys, op counts, duplicate keys) is
 * `validateTxnRequest`, which the server runs before proposing.
 */

/** etcd's default --max-txn-ops. */
export const DEFAULT_MAX_TXN_OPS = 128;

export const COMPARE_RESULTS = ['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL'] as const;
export const COMPARE_TARGETS = ['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE'] as const;
export type CompareResult = (typeof COMPARE_RESULTS)[number];
export type CompareTarget = (typeof COMPARE_TARGETS)[number];

/** etcd's Compare. `value` is the operand for VALUE, `operand` for the numeric targets; absent means empty / 0. */
export interface Compare {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array | undefined;
  readonly target: CompareTarget;
  readonly result: CompareResult;
  readonly value?: Uint8Array | undefined;
  readonly operand?: number | undefined;
}

export interface PutRequest {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly lease?: number | undefined;
  readonly prevKv?: boolean | undefined;
  readonly ignoreValue?: boolean | undefined;
  readonly ignoreLease?: boolean | undefined;
}

export interface DeleteRangeRequest {
  readonly key: Uint8Array;
  readonly rangeEnd?: Uint8Array | undefined;
  readonly prevKv?: boolean | undefined;
}

export interface TxnRequest {
  readonly compare: readonly Compare[];
  readonly success: readonly RequestOp[];
  readonly failure: readonly RequestOp[];
}

export type RequestOp =
  | { readonly type: 'range'; readonly range: RangeOptions }
  | { readonly type: 'put'; readonly put: PutRequest }
  | { readonly type: 'deleteRange'; readonly deleteRange: DeleteRangeRequest }
  | { readonly type: 'txn'; readonly txn: TxnRequest };

export type ResponseOp =
  | { readonly type: 'range'; readonly range: RangeResult }
  | { readonly type: 'put'; readonly put: PutResult }
  | { readonly type: 'deleteRange'; readonly deleteRange: DeleteRangeResult }
  | { readonly type: 'txn'; readonly txn: TxnResponse };

export interface TxnResponse {
  readonly succeeded: boolean;
  readonly responses: ResponseOp[];
  /** Header revision: the transaction's revision if it changed anything, else the current one. */
  readonly revision: number;
}

export interface TxnOptions {
  /** The lease owner's answer to "does this lease exist?"; absent: every lease is accepted. */
  readonly leaseExists?: ((lease: number) => boolean) | undefined;
}

/**
 * What executing a txn works on: a write transaction, or for a read-only txn
 * a read view of the current state (ReadTxn), so both run this same code and
 * answer alike.
 */
export type TxnTarget = Pick<WriteTxn, 'viewRevision' | 'compactedRevision' | 'changeCount' | 'range' | 'put' | 'deleteRange'>;

/** The branch each (nested) transaction takes, decided before any write. */
interface TxnPath {
  readonly succeeded: boolean;
  /** One entry per nested txn op in the taken branch, in order. */
  readonly nested: TxnPath[];
}

/** Runs `request` inside `txn`; the caller begins and ends the transaction. Throws a TesseraError refusal (errors.ts) from the checks, before any write. */
export function executeTxn(txn: TxnTarget, request: TxnRequest, options: TxnOptions = {}): TxnResponse {
  assert(txn.changeCount === 0, 'executeTxn needs a fresh write transaction: compares read the state before it');
  const path = decidePath(txn, request);
  checkPath(txn, request, path, options);
  return runPath(txn, request, path);
}

function decidePath(txn: TxnTarget, request: TxnRequest): TxnPath {
  const succeeded = request.compare.every((c) => applyCompare(txn, c));
  const nested: TxnPath[] = [];
  for (const op of succeeded ? request.success : request.failure) {
    if (op.type === 'txn') nested.push(decidePath(txn, op.txn));
  }
  return { succeeded, nested };
}

/** etcd's applyCompare: every key in the range must satisfy it; an empty range compares a zero KeyValue, except VALUE, which fails. */
export function applyCompare(txn: Pick<WriteTxn, 'range'>, compare: Compare): boolean {
  let kvs: KeyValue[];
  try {
    kvs = txn.range({ key: compare.key, rangeEnd: compare.rangeEnd }).kvs;
  } catch (error) {
    if (isMvccRefusal(error)) return false;
    throw error;
  }
  if (kvs.length === 0) {
    if (compare.target === 'VALUE') return false;
    return compareKeyValue(compare, { key: compare.key, value: new Uint8Array(0), createRevision: 0, modRevision: 0, version: 0, lease: 0 });
  }
  return kvs.every((kv) => compareKeyValue(compare, kv));
}

function compareKeyValue(compare: Compare, kv: KeyValue): boolean {
  const operand = compare.operand ?? 0;
  let result: number;
  switch (compare.target) {
    case 'VALUE':
      result = compareBytes(kv.value, compare.value ?? new Uint8Array(0));
      break;
    case 'CREATE':
      result = kv.createRevision - operand;
      break;
    case 'MOD':
      result = kv.modRevision - operand;
      break;
    case 'VERSION':
      result = kv.version - operand;
      break;
    case 'LEASE':
      result = kv.lease - operand;
      break;
  }
  switch (compare.result) {
    case 'EQUAL':
      return result === 0;
    case 'NOT_EQUAL':
      return result !== 0;
    case 'GREATER':
      return result > 0;
    case 'LESS':
      return result < 0;
  }
}

/** etcd's checkTxn along the taken path. */
function checkPath(txn: TxnTarget, request: TxnRequest, path: TxnPath, options: TxnOptions): void {
  let nested = 0;
  for (const op of path.succeeded ? request.success : request.failure) {
    switch (op.type) {
      case 'range': {
        const rev = op.range.revision ?? 0;
        if (rev > txn.viewRevision) throw mvccError('FUTURE_REVISION');
        if (rev > 0 && rev < txn.compactedRevision) throw mvccError('COMPACTED');
        break;
      }
      case 'put':
        checkPutOp(txn, op.put, options);
        break;
      case 'deleteRange':
        break;
      case 'txn':
        checkPath(txn, op.txn, path.nested[nested++]!, options);
        break;
    }
  }
}

function checkPutOp(txn: TxnTarget, put: PutRequest, options: TxnOptions): void {
  const lease = put.lease ?? 0;
  if (lease !== 0 && options.leaseExists !== undefined && !options.leaseExists(lease)) throw mvccError('LEASE_NOT_FOUND');
  if (put.ignoreValue === true || put.ignoreLease === true) {
    if (txn.range({ key: put.key }).kvs.length === 0) throw mvccError('KEY_NOT_FOUND');
  }
}

function runPath(txn: TxnTarget, request: TxnRequest, path: TxnPath): TxnResponse {
  const responses: ResponseOp[] = [];
  let nested = 0;
  for (const op of path.succeeded ? request.success : request.failure) {
    responses.push(runOp(txn, op, () => path.nested[nested++]!));
  }
  return { succeeded: path.succeeded, responses, revision: txn.viewRevision };
}

function runOp(txn: TxnTarget, op: RequestOp, nextNested: () => TxnPath): ResponseOp {
  switch (op.type) {
    case 'range':
      return { type: 'range', range: txn.range(op.range) };
    case 'put': {
      const p = op.put;
      const options = { leaseId: p.lease, prevKv: p.prevKv, ignoreValue: p.ignoreValue, ignoreLease: p.ignoreLease };
      return { type: 'put', put: txn.put(p.key, p.value, options) };
    }
    case 'deleteRange': {
      const d = op.deleteRange;
      return { type: 'deleteRange', deleteRange: txn.deleteRange(d.key, d.rangeEnd, { prevKv: d.prevKv }) };
    }
    case 'txn':
      return { type: 'txn', txn: runPath(txn, op.txn, nextNested()) };
  }
}

/**
 * True if every op on both branches is a Range, nested txns included (etcd's
 * isTxnReadonly, which counts any nested txn as a write): such a txn changes
 * nothing whichever branch it takes, so it can be served as a read.
 */
export function isTxnReadOnly(request: TxnRequest): boolean {
  return [...request.success, ...request.failure].every((op) => op.type === 'range' || (op.type === 'txn' && isTxnReadOnly(op.txn)));
}

/**
 * True if a read-only txn may be served from this node's state without a
 * read barrier: every Range in it, nested ones included, asks for a
 * serializable read. etcd's isTxnSerializable says yes to a txn with no
 * Range at all (compares only); we say no, so a txn that only compares is
 * linearizable, as the proposed txn it stands for would be.
 */
export function isTxnSerializable(request: TxnRequest): boolean {
  const ranges = rangesOf(request);
  return isTxnReadOnly(request) && ranges.length > 0 && ranges.every((r) => r.serializable === true);
}

function rangesOf(request: TxnRequest): RangeOptions[] {
  return [...request.success, ...request.failure].flatMap((op) => (op.type === 'range' ? [op.range] : op.type === 'txn' ? rangesOf(op.txn) : []));
}

/**
 * Every key interval a txn names, nested txns included: its compares and the
 * keys of its ops on both branches (etcd's form, see keyInterval). A txn
 * whose intervals all lie in one range can be served by that range alone.
 */
export function txnIntervals(request: TxnRequest): KeyInterval[] {
  const out: KeyInterval[] = request.compare.map((c) => keyInterval(c.key, c.rangeEnd));
  for (const op of [...request.success, ...request.failure]) {
    if (op.type === 'range') out.push(keyInterval(op.range.key, op.range.rangeEnd));
    else if (op.type === 'put') out.push(keyInterval(op.put.key));
    else if (op.type === 'deleteRange') out.push(keyInterval(op.deleteRange.key, op.deleteRange.rangeEnd));
    else out.push(...txnIntervals(op.txn));
  }
  return out;
}
