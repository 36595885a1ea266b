/**
 * Transactional histories in the shape Jepsen and Elle write them: one
 * EDN map per operation, such as
 * `{:type :ok, :f :txn, :value [[:append 3 1] [:r 4 [1 2]]], :process 0, :index 7}`.
 * An invocation and its completion are paired by process (a process has
 * one operation in flight). `:ok` committed, `:fail` did not, `:info` (or
 * an invocation never completed) may have either way: its writes may have
 * happened, and its reads are unknown.
 */
import { TesseraError } from '../../base/index.js';
import { EdnSyntaxError } from '../parse/edn.js';
import { type EdnOperations, type EdnValue, isEdnMap, isKeyword, lineAndColumn, readEdnOperations } from './edn.js';

export type TxnStatus = 'ok' | 'fail' | 'info';
/** A key or an element value: histories use integers or strings. */
export type Scalar = number | string;

export type MicroOp =
  | { readonly f: 'append'; readonly key: Scalar; readonly value: Scalar }
  | { readonly f: 'w'; readonly key: Scalar; readonly value: Scalar }
  /** A read: a list (list-append), a value or null (rw-register); undefined when its result is not known. */
  | { readonly f: 'r'; readonly key: Scalar; readonly value: readonly Scalar[] | Scalar | null | undefined };

export interface Txn {
  /** Dense id, in order of invocation. */
  readonly id: number;
  readonly process: number;
  readonly status: TxnStatus;
  readonly ops: readonly MicroOp[];
  /** Positions of the invocation and completion in the history (completion Infinity when there is none). */
  readonly invokeAt: number;
  readonly completeAt: number;
  /** The completion's (or invocation's) `:index`, when the history gives one, for explanations. */
  readonly index: number | undefined;
}

/** Histories larger than this many operations are refused rather than read into memory. */
export const TXN_HISTORY_MAX_OPS = 5_000_000;

function parseError(source: string, line: number, message: string): TesseraError {
  return new TesseraError('PARSE_ERROR', `${source}: line ${line}: ${message}`);
}

function scalar(v: EdnValue | undefined): Scalar | undefined {
  return typeof v === 'number' || typeof v === 'string' ? v : undefined;
}

function microOp(v: EdnValue, fail: (m: string) => TesseraError, withReads: boolean): MicroOp {
  if (!Array.isArray(v) || v.length !== 3) throw fail('a micro-op is a vector [f key value]');
  const [f, k, value] = v as readonly EdnValue[];
  const key = scalar(k);
  if (key === undefined) throw fail('a micro-op key must be an integer or a string');
  if (isKeyword(f, 'append') || isKeyword(f, 'w')) {
    const x = scalar(value);
    if (x === undefined) throw fail(`a write's value must be an integer or a string`);
    return { f: isKeyword(f, 'append') ? 'append' : 'w', key, value: x };
  }
  if (!isKeyword(f, 'r')) throw fail('a micro-op is :append, :w or :r');
  if (!withReads) return { f: 'r', key, value: undefined };
  if (value === null) return { f: 'r', key, value: null };
  const one = scalar(value);
  if (one !== undefined) return { f: 'r', key, value: one };
  if (!Array.isArray(value)) throw fail('a read is nil, a value, or a vector of values');
  const list = (value as readonly EdnValue[]).map(scalar);
  if (list.some((x) => x === undefined)) throw fail('a read list holds integers or strings only');
  return { f: 'r', key, value: list as Scalar[] };
}

function ops(v: EdnValue | undefined, fail: (m: string) => TesseraError, withReads: boolean): MicroOp[] {
  if (!Array.isArray(v)) throw fail(':value of a :txn must be a vector of micro-ops');
  return (v as readonly EdnValue[]).map((m) => microOp(m, fail, withReads));
}

/** The operations of a history text (maps one after another, or one vector of them). */
function operationsOf(text: string, source: string): EdnOperations {
  let read: EdnOperations;
  try {
    read = readEdnOperations(text);
  } catch (error) {
    if (error instanceof EdnSyntaxError) throw new TesseraError('PARSE_ERROR', `${source}: ${error.message}`);
    throw error;
  }
  if (read.values.length > TXN_HISTORY_MAX_OPS) throw new TesseraError('PARSE_ERROR', `${source}: more than ${TXN_HISTORY_MAX_OPS} operations`);
  return read;
}

/** An :ok completion reports the micro-ops its invocation asked for, with the reads' results filled in. */
function sameRequest(invoked: readonly MicroOp[], completed: readonly MicroOp[]): string | undefined {
  if (completed.length !== invoked.length) return `the completion has ${completed.length} micro-ops, the invocation ${invoked.length}`;
  for (let i = 0; i < invoked.length; i++) {
    const a = invoked[i] as MicroOp;
    const b = completed[i] as MicroOp;
    if (a.f !== b.f || a.key !== b.key || (a.f !== 'r' && a.value !== b.value)) return `micro-op ${i + 1} of the completion is not the one invoked`;
  }
  return undefined;
}

/** Reads a transactional history; operations other than `:f :txn` of integer processes (a nemesis's) are skipped. */
export function parseTxnHistory(text: string, source = 'history'): Txn[] {
  const pending = new Map<number, { readonly ops: MicroOp[]; readonly at: number; readonly slot: number }>();
  const out: (Txn | undefined)[] = [];
  const { values, offsets } = operationsOf(text, source);
  for (let at = 0; at < values.length; at++) {
    // The line is counted only for a message: counting it for every operation would cost a pass over the text each.
    const fail = (m: string): TesseraError => parseError(source, lineAndColumn(text, offsets[at] as number).line, m);
    const op = values[at] as EdnValue;
    if (!isEdnMap(op)) throw fail('an operation must be a map');
    const process = op.get('process');
    if (!isKeyword(op.get('f'), 'txn') || typeof process !== 'number') continue;
    const type = op.get('type');
    const rawIndex = op.get('index');
    const index = typeof rawIndex === 'number' ? rawIndex : undefined;
    if (isKeyword(type, 'invoke')) {
      if (pending.has(process)) throw fail(`process ${process} invokes while an operation of its is in flight`);
      pending.set(process, { ops: ops(op.get('value'), fail, false), at, slot: out.length });
      out.push(undefined);
      continue;
    }
    if (!isKeyword(type, 'ok') && !isKeyword(type, 'fail') && !isKeyword(type, 'info')) throw fail(':type must be :invoke, :ok, :fail or :info');
    const open = pending.get(process);
    if (open === undefined) throw fail(`process ${process} completes an operation it never invoked`);
    pending.delete(process);
    const status: TxnStatus = type.keyword as TxnStatus;
    const txnOps = status === 'ok' ? ops(op.get('value'), fail, true) : open.ops;
    const mismatch = sameRequest(open.ops, txnOps);
    if (mismatch !== undefined) throw fail(mismatch);
    out[open.slot] = { id: open.slot, process, status, ops: txnOps, invokeAt: open.at, completeAt: status === 'info' ? Infinity : at, index };
  }
  // Never completed: indeterminate, like :info.
  for (const [process, open] of pending) out[open.slot] = { id: open.slot, process, status: 'info', ops: open.ops, invokeAt: open.at, completeAt: Infinity, index: undefined };
  return out as Txn[];
}
