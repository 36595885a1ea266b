import { TesseraError, latin1String } from '../base/index.js';
import {
  type DeleteRangeResult,
  type KeyValue,
  type PutOptions,
  type PutResult,
  type RangeOptions,
  type RangeResult,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
  type TxnTarget,
  executeTxn,
  mvccError,
  txnIntervals,
} from '../mvcc/index.js';
import type { TxnPlan, TxnWrite } from './coordinator.js';

/**
 * An etcd Txn as a transaction across ranges (ADR 0017): its compares and
 * both branches' operations are run by mvcc's executeTxn over the keys'
 * versions at the read revision S, with the writes kept aside instead of
 * applied; the coordinator then writes them at C. etcd's Txn is not
 * interactive, so the whole transaction is known before it starts.
 */

/**
 * Why `request` cannot yet run as a transaction across ranges, or
 * undefined. Every key must be a single key (a key range needs span locks,
 * ADR 0017 §3, not built yet), with no historical read and no lease (a lease
 * is checked on the meta range first; not yet done for these).
 */
export function crossRangeTxnProblem(request: TxnRequest): string | undefined {
  if (txnIntervals(request).some((i) => i.end !== undefined)) return 'the request touches a key range (range_end) in more than one range: transactions across ranges over key ranges are not supported yet (issue 14); name single keys';
  const ops = flatOps(request);
  for (const op of ops) {
    if (op.type === 'range' && ((op.range.revision ?? 0) !== 0 || (op.range.minModRevision ?? 0) !== 0 || (op.range.maxModRevision ?? 0) !== 0 || (op.range.minCreateRevision ?? 0) !== 0 || (op.range.maxCreateRevision ?? 0) !== 0)) {
      return 'a transaction across ranges with a historical or filtered read is not supported yet';
    }
    if (op.type === 'put' && (op.put.lease ?? 0) !== 0) return 'a transaction across ranges that attaches a lease is not supported yet';
  }
  return undefined;
}

function flatOps(request: TxnRequest): TxnRequest['success'][number][] {
  const out: TxnRequest['success'][number][] = [];
  for (const op of [...request.success, ...request.failure]) {
    out.push(op);
    if (op.type === 'txn') out.push(...flatOps(op.txn));
  }
  return out;
}

const keyString = (key: Uint8Array): string => latin1String(key);

/** The plan of an etcd Txn (see crossRangeTxnProblem): it reads every key it names, and answers etcd's TxnResponse. */
export function etcdTxnPlan(request: TxnRequest): TxnPlan<TxnResponse> {
  const reads = new Map<string, Uint8Array>();
  for (const i of txnIntervals(request)) reads.set(keyString(i.start), i.start);
  return {
    reads: [...reads.values()],
    decide(kvOf) {
      const target = new PlanTarget(kvOf);
      const result = executeTxn(target, request);
      return { writes: target.writeList(), result };
    },
  };
}

/** The response with every revision in it set to the transaction's: C, or S if it wrote nothing. */
export function atRevision(response: TxnResponse, revision: number): TxnResponse {
  return { succeeded: response.succeeded, revision, responses: response.responses.map((r) => responseAt(r, revision)) };
}

function responseAt(r: ResponseOp, revision: number): ResponseOp {
  switch (r.type) {
    case 'range':
      return { type: 'range', range: { ...r.range, revision } };
    case 'put':
      return { type: 'put', put: { ...r.put, revision } };
    case 'deleteRange':
      return { type: 'deleteRange', deleteRange: { ...r.deleteRange, revision } };
    case 'txn':
      return { type: 'txn', txn: atRevision(r.txn, revision) };
  }
}

/**
 * executeTxn's target over the keys' versions at S (`kvOf`), with its
 * writes kept aside: a read after a write in the transaction sees it, as
 * in etcd. Revisions in what it answers are patched to C afterwards.
 */
class PlanTarget implements TxnTarget {
  readonly viewRevision = 0;
  readonly compactedRevision = 0;
  private readonly writes = new Map<string, TxnWrite>();

  constructor(private readonly kvOf: (key: Uint8Array) => KeyValue | undefined) {}

  get changeCount(): number {
    return this.writes.size;
  }

  writeList(): TxnWrite[] {
    return [...this.writes.values()];
  }

  private current(key: Uint8Array): KeyValue | undefined {
    const w = this.writes.get(keyString(key));
    if (w === undefined) return this.kvOf(key);
    if (w.value === null) return undefined;
    const before = this.kvOf(key);
    return { key, value: w.value, createRevision: before?.createRevision ?? 0, modRevision: 0, version: (before?.version ?? 0) + 1, lease: w.lease ?? 0 };
  }

  range(options: RangeOptions): RangeResult {
    if (options.rangeEnd !== undefined && options.rangeEnd.byteLength > 0) throw new TesseraError('CROSS_RANGE', 'a key range in a transaction across ranges');
    const kv = this.current(options.key);
    const kvs = kv === undefined || options.countOnly === true ? [] : [options.keysOnly === true ? { ...kv, value: new Uint8Array(0) } : kv];
    return { kvs, more: false, count: kv === undefined ? 0 : 1, revision: 0 };
  }

  put(key: Uint8Array, value: Uint8Array, options: PutOptions = {}): PutResult {
    const prev = this.current(key);
    if ((options.ignoreValue === true || options.ignoreLease === true) && prev === undefined) throw mvccError('KEY_NOT_FOUND');
    this.writes.set(keyString(key), { key, value: options.ignoreValue === true ? prev!.value : value, lease: options.ignoreLease === true ? prev!.lease : (options.leaseId ?? 0) });
    return { revision: 0, prevKv: options.prevKv === true ? prev : undefined };
  }

  deleteRange(key: Uint8Array, rangeEnd?: Uint8Array, options: { prevKv?: boolean | undefined } = {}): DeleteRangeResult {
    if (rangeEnd !== undefined && rangeEnd.byteLength > 0) throw new TesseraError('CROSS_RANGE', 'a key range in a transaction across ranges');
    const prev = this.current(key);
    if (prev !== undefined) this.writes.set(keyString(key), { key, value: null });
    return { deleted: prev === undefined ? 0 : 1, revision: 0, prevKvs: options.prevKv === true && prev !== undefined ? [prev] : [] };
  }
}
