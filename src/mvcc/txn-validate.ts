import { compareBytes, fromKeyString, toKeyString } from './bytes.js';
import { mvccError } from './errors.js';
import { SORT_ORDERS, SORT_TARGETS } from './range.js';
import { type RequestOp, type TxnRequest, DEFAULT_MAX_TXN_OPS } from './txn.js';

/**
 * etcd's request checks for Txn (server/etcdserver/api/v3rpc/key.go:
 * checkTxnRequest, then checkIntervals on each branch). The server runs them
 * before proposing; they depend only on the request.
 */
export function validateTxnRequest(request: TxnRequest, maxTxnOps: number = DEFAULT_MAX_TXN_OPS): void {
  checkTxnShape(request, maxTxnOps);
  checkIntervals(request.success);
  checkIntervals(request.failure);
}

function checkTxnShape(request: TxnRequest, maxTxnOps: number): void {
  const opc = Math.max(request.compare.length, request.success.length, request.failure.length);
  if (opc > maxTxnOps) throw mvccError('TOO_MANY_OPS');
  for (const c of request.compare) {
    if (c.key.length === 0) throw mvccError('EMPTY_KEY');
  }
  // As in etcd, a nested txn gets the budget its parent has left.
  for (const op of [...request.success, ...request.failure]) checkRequestOp(op, maxTxnOps - opc);
}

function checkRequestOp(op: RequestOp, maxTxnOps: number): void {
  switch (op.type) {
    case 'range':
      if (op.range.key.length === 0) throw mvccError('EMPTY_KEY');
      if (op.range.sortOrder !== undefined && !SORT_ORDERS.includes(op.range.sortOrder)) throw mvccError('INVALID_SORT_OPTION');
      if (op.range.sortTarget !== undefined && !SORT_TARGETS.includes(op.range.sortTarget)) throw mvccError('INVALID_SORT_OPTION');
      return;
    case 'put':
      if (op.put.key.length === 0) throw mvccError('EMPTY_KEY');
      if (op.put.ignoreValue === true && op.put.value.length !== 0) throw mvccError('VALUE_PROVIDED');
      if (op.put.ignoreLease === true && (op.put.lease ?? 0) !== 0) throw mvccError('LEASE_PROVIDED');
      return;
    case 'deleteRange':
      if (op.deleteRange.key.length === 0) throw mvccError('EMPTY_KEY');
      return;
    case 'txn':
      checkTxnShape(op.txn, maxTxnOps);
      return;
  }
}

/**
 * A deleted interval as etcd's interval tree sees it: [start, end), or the
 * single key `start` when end is undefined. etcd does not special-case
 * range_end "\0" here, so [key, "\0") overlaps nothing; we keep that, so the
 * same requests are accepted.
 */
interface DeletedInterval {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
}

function deletes(intervals: readonly DeletedInterval[], key: Uint8Array): boolean {
  return intervals.some((iv) =>
    iv.end === undefined ? compareBytes(iv.start, key) === 0 : compareBytes(iv.start, key) <= 0 && compareBytes(key, iv.end) < 0,
  );
}

/**
 * etcd's checkIntervals: within one branch no key may be put twice, or put
 * and deleted; puts in the then and else branches of one nested txn may
 * repeat each other (only one runs). Returns the branch's puts and deletes.
 */
function checkIntervals(ops: readonly RequestOp[]): { puts: Set<string>; dels: DeletedInterval[] } {
  const dels: DeletedInterval[] = [];
  for (const op of ops) {
    if (op.type !== 'deleteRange') continue;
    const end = op.deleteRange.rangeEnd;
    dels.push({ start: op.deleteRange.key, end: end === undefined || end.length === 0 ? undefined : end });
  }
  const puts = new Set<string>();
  for (const op of ops) {
    if (op.type !== 'txn') continue;
    const then = checkIntervals(op.txn.success);
    const otherwise = checkIntervals(op.txn.failure);
    for (const k of then.puts) addPut(puts, dels, k);
    for (const k of otherwise.puts) {
      if (puts.has(k) && !then.puts.has(k)) throw mvccError('DUPLICATE_KEY');
      if (!puts.has(k)) addPut(puts, dels, k);
      else if (deletes(dels, fromKeyString(k))) throw mvccError('DUPLICATE_KEY');
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (op.type === 'put') addPut(puts, dels, toKeyString(op.put.key));
  }
  return { puts, dels };
}

function addPut(puts: Set<string>, dels: readonly DeletedInterval[], keyString: string): void {
  if (puts.has(keyString) || deletes(dels, fromKeyString(keyString))) throw mvccError('DUPLICATE_KEY');
  puts.add(keyString);
}
