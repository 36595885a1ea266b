/**
 * The transactional checker against a brute-force oracle on tiny random
 * histories. The oracle tries every order of the transactions that took
 * effect (the committed ones, and any choice of the :info ones), keeping
 * realtime order when asked, and asks whether one explains every committed
 * read. A history some order explains must come back valid, whatever the
 * model; for list-append, where reads reveal each key's order, one that
 * no order explains must come back invalid. (rw-register is incomplete,
 * as Elle's is: blind writes leave version orders unknown.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type TxnModel, checkTxnHistory } from './check.js';
import { parseTxnHistory } from './history.js';

type Value = number[] | number | null;
interface Op {
  readonly f: 'write' | 'r';
  readonly key: number;
  /** A write's value (unique in the history); a read's result once executed. */
  value: Value;
}
interface Txn {
  readonly ops: Op[];
  readonly status: 'ok' | 'fail' | 'info';
  /** Invocation and completion times; an :info completion is written only if `infoCompletes`. */
  readonly start: number;
  readonly end: number;
  readonly infoCompletes: boolean;
}

const txnShape = fc.record({
  ops: fc.array(fc.record({ write: fc.boolean(), key: fc.integer({ min: 0, max: 2 }) }), { minLength: 1, maxLength: 3 }),
  status: fc.constantFrom<Txn['status']>('ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'fail', 'info'),
  start: fc.integer({ min: 0, max: 8 }),
  length: fc.integer({ min: 1, max: 4 }),
  infoCompletes: fc.boolean(),
  /** Where the transaction falls in the serial execution that produces the reads, and whether an :info one took effect there. */
  rank: fc.double({ min: 0, max: 1, noNaN: true }),
  infoApplied: fc.boolean(),
});
const historyShape = fc.record({
  txns: fc.array(txnShape, { minLength: 2, maxLength: 5 }),
  /** Then one read corrupted (or none): which, and how. */
  corrupt: fc.option(fc.record({ txn: fc.nat(), op: fc.nat(), how: fc.constantFrom('drop', 'add', 'swap', 'nil') })),
});

type HistoryShape = typeof historyShape extends fc.Arbitrary<infer T> ? T : never;

/** Builds the history: writes get unique values, reads what one serial execution gives them, then the corruption. */
function build(shape: HistoryShape, list: boolean): Txn[] {
  let next = 0;
  const txns: Txn[] = shape.txns.map((t) => ({
    ops: t.ops.map((o): Op => ({ f: o.write ? 'write' : 'r', key: o.key, value: o.write ? ++next : null })),
    status: t.status,
    start: t.start,
    end: t.start + t.length,
    infoCompletes: t.infoCompletes,
  }));
  const store = new Map<number, Value>();
  const order = shape.txns.map((t, i) => ({ t, i })).sort((a, b) => a.t.rank - b.t.rank);
  for (const { t, i } of order) {
    const local = new Map(store);
    for (const op of (txns[i] as Txn).ops) {
      const cur = local.get(op.key) ?? null;
      if (op.f === 'r') op.value = list ? [...((cur as number[] | null) ?? [])] : cur;
      else local.set(op.key, list ? [...((cur as number[] | null) ?? []), op.value as number] : op.value);
    }
    if (t.status === 'ok' || (t.status === 'info' && t.infoApplied)) for (const [k, v] of local) store.set(k, v);
  }
  const c = shape.corrupt;
  const reads = txns.flatMap((t) => t.ops.filter((o) => o.f === 'r' && t.status === 'ok'));
  if (c !== null && reads.length > 0) {
    const op = reads[c.op % reads.length] as Op;
    const other = 1 + (c.txn % Math.max(1, next));
    if (!list) op.value = c.how === 'nil' ? null : other;
    else {
      const l = [...(op.value as number[])];
      if (c.how === 'drop') l.pop();
      else if (c.how === 'add') l.push(other);
      else if (c.how === 'swap' && l.length >= 2) l.reverse();
      else l.length = 0;
      op.value = l;
    }
  }
  return txns;
}

function edn(txns: readonly Txn[], list: boolean): string {
  const ops = (t: Txn, results: boolean): string =>
    `[${t.ops.map((o) => (o.f === 'r' ? `[:r ${o.key} ${results ? show(o.value) : 'nil'}]` : `[:${list ? 'append' : 'w'} ${o.key} ${show(o.value)}]`)).join(' ')}]`;
  const events: { at: number; line: string }[] = [];
  txns.forEach((t, p) => {
    // Times interleave so that a completion at time x comes before an invocation at x.
    events.push({ at: 2 * t.start + 1, line: `{:type :invoke, :f :txn, :value ${ops(t, false)}, :process ${p}}` });
    if (t.status !== 'info' || t.infoCompletes) events.push({ at: 2 * t.end, line: `{:type :${t.status}, :f :txn, :value ${ops(t, t.status === 'ok')}, :process ${p}}` });
  });
  return events
    .sort((a, b) => a.at - b.at)
    .map((e) => e.line)
    .join('\n');
}

function show(v: Value): string {
  return v === null ? 'nil' : Array.isArray(v) ? `[${v.join(' ')}]` : String(v);
}

/** Whether some serial order of the committed transactions and some of the :info ones explains every committed read. */
function explainable(txns: readonly Txn[], list: boolean, realtime: boolean): boolean {
  const info = txns.map((_, i) => i).filter((i) => (txns[i] as Txn).status === 'info');
  const ok = txns.map((_, i) => i).filter((i) => (txns[i] as Txn).status === 'ok');
  // y must come before x when y completed before x was invoked (only :ok transactions complete).
  const before = (y: number, x: number): boolean => realtime && (txns[y] as Txn).status === 'ok' && (txns[y] as Txn).end <= (txns[x] as Txn).start;
  const search = (rest: readonly number[], store: ReadonlyMap<number, Value>): boolean => {
    if (rest.length === 0) return true;
    return rest.some((x) => {
      if (rest.some((y) => y !== x && before(y, x))) return false;
      const after = run(txns[x] as Txn, store, list);
      return after !== undefined && search(rest.filter((y) => y !== x), after);
    });
  };
  for (let mask = 0; mask < 1 << info.length; mask++) {
    if (search([...ok, ...info.filter((_, j) => (mask & (1 << j)) !== 0)], new Map())) return true;
  }
  return false;
}

/** The store after `t`, or undefined if `t` is committed and one of its reads disagrees. */
function run(t: Txn, store: ReadonlyMap<number, Value>, list: boolean): Map<number, Value> | undefined {
  const out = new Map(store);
  for (const op of t.ops) {
    const cur = out.get(op.key) ?? null;
    if (op.f === 'write') out.set(op.key, list ? [...((cur as number[] | null) ?? []), op.value as number] : op.value);
    else if (t.status === 'ok' && show(list ? (cur ?? []) : cur) !== show(list ? (op.value ?? []) : op.value)) return undefined;
  }
  return out;
}

for (const model of ['list-append', 'rw-register'] as TxnModel[]) {
  for (const realtime of [true, false]) {
    test(`txn oracle: ${model}${realtime ? '' : ' without realtime'}: valid exactly when some serial order explains the reads${model === 'rw-register' ? ' (never invalid when one does)' : ''}`, () => {
      const list = model === 'list-append';
      fc.assert(
        fc.property(historyShape, (shape) => {
          const txns = build(shape, list);
          const text = edn(txns, list);
          const r = checkTxnHistory(parseTxnHistory(text), { model, realtime });
          const expected = explainable(txns, list, realtime);
          const found = `${r.valid}: ${r.anomalies.map((a) => `${a.anomaly}: ${a.explanation}`).join(' | ')}\n${text}`;
          if (expected) assert.equal(r.valid, true, found);
          else if (list) assert.equal(r.valid, false, `no serial order explains the reads, but ${found}`);
        }),
        { numRuns: Number(process.env['TXN_ORACLE_RUNS'] ?? 1500), seed: Number(process.env['TXN_ORACLE_SEED'] ?? 14) },
      );
    });
  }
}
