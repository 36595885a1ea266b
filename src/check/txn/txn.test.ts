import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTesseraError } from '../../base/index.js';
import { type TxnCheckResult, type TxnModel, checkTxnHistory } from './check.js';
import { generateListAppend } from './generate.js';
import { type MicroOp, type Scalar, type Txn, parseTxnHistory } from './history.js';

/** A history from [process, completion type, invoked ops, completed ops] steps, each invoked and completed in turn unless `overlap`. */
function history(txns: readonly { p: number; type?: string; ops: string; done?: string }[], overlap = true): string {
  const lines: string[] = [];
  // Overlapping: all invoked first, then all completed, so no realtime order binds them.
  if (overlap) for (const t of txns) lines.push(`{:type :invoke, :f :txn, :value ${t.ops}, :process ${t.p}}`);
  for (const t of txns) {
    if (!overlap) lines.push(`{:type :invoke, :f :txn, :value ${t.ops}, :process ${t.p}}`);
    lines.push(`{:type :${t.type ?? 'ok'}, :f :txn, :value ${t.done ?? t.ops}, :process ${t.p}}`);
  }
  return lines.join('\n');
}

function check(text: string, model: TxnModel = 'list-append', realtime = true): TxnCheckResult {
  return checkTxnHistory(parseTxnHistory(text), { model, realtime });
}

function pick(r: TxnCheckResult): { valid: TxnCheckResult['valid']; reason: string | undefined } {
  return { valid: r.valid, reason: r.reason };
}

function assertFinds(r: TxnCheckResult, name: string): void {
  assert.equal(r.valid, false, `expected ${name}, got valid`);
  assert.ok(r.names.includes(name), `expected ${name}, found ${r.names.join(', ')}: ${r.anomalies.map((a) => a.explanation).join(' | ')}`);
}

test('txn check: list-append anomalies, one hand-made history each, named and explained', () => {
  const g0 = check(history([{ p: 0, ops: '[[:append 1 1] [:append 2 1]]' }, { p: 1, ops: '[[:append 1 2] [:append 2 2]]' }, { p: 2, ops: '[[:r 1 nil] [:r 2 nil]]', done: '[[:r 1 [1 2]] [:r 2 [2 1]]]' }]));
  assertFinds(g0, 'G0');
  assert.match(g0.anomalies.find((a) => a.anomaly === 'G0')?.explanation ?? '', /-ww->.*-ww->/);
  assertFinds(check(history([{ p: 0, type: 'fail', ops: '[[:append 1 5]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [5]]]' }])), 'G1a');
  assertFinds(check(history([{ p: 0, ops: '[[:append 1 1] [:append 1 2]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [1]]]' }])), 'G1b');
  assertFinds(check(history([{ p: 0, ops: '[[:append 1 1] [:r 2 nil]]', done: '[[:append 1 1] [:r 2 [1]]]' }, { p: 1, ops: '[[:append 2 1] [:r 1 nil]]', done: '[[:append 2 1] [:r 1 [1]]]' }])), 'G1c');
  const single = check(history([{ p: 0, ops: '[[:append 1 1] [:append 2 1]]' }, { p: 1, ops: '[[:r 1 nil] [:r 2 nil]]', done: '[[:r 1 []] [:r 2 [1]]]' }]));
  assertFinds(single, 'G-single');
  assert.match(single.anomalies.find((a) => a.anomaly === 'G-single')?.explanation ?? '', /-rw->.*read key 1 empty/);
  assertFinds(check(history([{ p: 0, ops: '[[:append 1 1] [:r 2 nil]]', done: '[[:append 1 1] [:r 2 []]]' }, { p: 1, ops: '[[:append 2 1] [:r 1 nil]]', done: '[[:append 2 1] [:r 1 []]]' }])), 'G2');
  assertFinds(check(history([{ p: 0, ops: '[[:append 1 1] [:r 1 nil]]', done: '[[:append 1 1] [:r 1 []]]' }])), 'internal');
  assertFinds(check(history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 1, ops: '[[:append 1 2]]' }, { p: 2, ops: '[[:r 1 nil]]', done: '[[:r 1 [1 2]]]' }, { p: 3, ops: '[[:r 1 nil]]', done: '[[:r 1 [2 1]]]' }])), 'incompatible-order');
  assertFinds(check(history([{ p: 0, ops: '[[:r 1 nil]]', done: '[[:r 1 [9]]]' }])), 'garbage-read');
  assertFinds(check(history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [1 1]]]' }])), 'duplicate-elements');
});

test('txn check: future reads, split appends, and the unseen appends of an :info transaction that took effect', () => {
  // A transaction that reads what it appends only later.
  assertFinds(check(history([{ p: 0, ops: '[[:r 1 nil] [:append 1 1]]', done: '[[:r 1 [1]] [:append 1 1]]' }])), 'future-read');
  assertFinds(check(history([{ p: 0, ops: '[[:r 1 nil] [:w 1 1]]', done: '[[:r 1 1] [:w 1 1]]' }]), 'rw-register'), 'future-read');
  // T0 appended 1 and 2 to key 1 in one transaction: no read may show 2 without 1 right before it, or 1 then something else.
  const split = check(history([{ p: 0, ops: '[[:append 1 1] [:append 1 2]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [2]]]' }]));
  assertFinds(split, 'incompatible-order');
  assert.match(split.anomalies.find((a) => a.anomaly === 'incompatible-order')?.explanation ?? '', /holds 2 without T0 .*'s 1 right before it/);
  assertFinds(check(history([{ p: 0, ops: '[[:append 1 1] [:append 1 2]]' }, { p: 1, ops: '[[:append 1 3]]' }, { p: 2, ops: '[[:r 1 nil]]', done: '[[:r 1 [1 3 2]]]' }])), 'incompatible-order');
  // T0 is :info, but T1 read its append to key 2, so its append to key 1 happened too, after the [] T1 read: a cycle.
  const info = history([{ p: 0, type: 'info', ops: '[[:append 1 1] [:append 2 1]]' }, { p: 1, ops: '[[:r 1 nil] [:r 2 nil]]', done: '[[:r 1 []] [:r 2 [1]]]' }]);
  const unseen = check(info);
  assertFinds(unseen, 'G-single');
  assert.match(unseen.anomalies.find((a) => a.anomaly === 'G-single')?.explanation ?? '', /T1 -rw-> T0: T1 read key 1 empty, before T0's append 1, which no read shows/);
  // Nothing read shows an :info transaction's writes: they may never have happened, and the history is valid.
  assert.equal(check(history([{ p: 0, type: 'info', ops: '[[:append 1 1] [:append 2 1]]' }, { p: 1, ops: '[[:r 1 nil] [:r 2 nil]]', done: '[[:r 1 []] [:r 2 []]]' }])).valid, true);
});

test('txn check: the valid twins of those histories come back valid', () => {
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1] [:append 2 1]]' }, { p: 1, ops: '[[:append 1 2] [:append 2 2]]' }, { p: 2, ops: '[[:r 1 nil] [:r 2 nil]]', done: '[[:r 1 [1 2]] [:r 2 [1 2]]]' }])).valid, true);
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1] [:append 2 1]]' }, { p: 1, ops: '[[:r 1 nil] [:r 2 nil]]', done: '[[:r 1 [1]] [:r 2 [1]]]' }])).valid, true);
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1] [:r 2 nil]]', done: '[[:append 1 1] [:r 2 []]]' }, { p: 1, ops: '[[:append 2 1] [:r 1 nil]]', done: '[[:append 2 1] [:r 1 [1]]]' }])).valid, true);
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1] [:r 1 nil]]', done: '[[:append 1 1] [:r 1 [1]]]' }])).valid, true);
  // G1a's twin: the append read committed.
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 5]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [5]]]' }])).valid, true);
  // G1b's twin: the read shows both appends of the writer.
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1] [:append 1 2]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [1 2]]]' }])).valid, true);
  // G1c's twin: T1 sees T0's append, T0 does not see T1's.
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1] [:r 2 nil]]', done: '[[:append 1 1] [:r 2 []]]' }, { p: 1, ops: '[[:append 2 1] [:r 1 nil]]', done: '[[:append 2 1] [:r 1 [1]]]' }])).valid, true);
  // incompatible-order's twin: one read a prefix of the other.
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 1, ops: '[[:append 1 2]]' }, { p: 2, ops: '[[:r 1 nil]]', done: '[[:r 1 [1 2]]]' }, { p: 3, ops: '[[:r 1 nil]]', done: '[[:r 1 [1]]]' }])).valid, true);
  // The realtime twin: the read is invoked after the append completes, and sees it.
  assert.equal(check(history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [1]]]' }], false)).valid, true);
  // An :info append that someone read took effect; one nobody read constrains nothing.
  assert.equal(check(history([{ p: 0, type: 'info', ops: '[[:append 1 1]]' }, { p: 1, type: 'info', ops: '[[:append 1 2]]' }, { p: 2, ops: '[[:r 1 nil]]', done: '[[:r 1 [1]]]' }])).valid, true);
});

test('txn check: a stale read after a completed write is a realtime anomaly, serializable without realtime order', () => {
  const stale = history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 []]]' }], false);
  assertFinds(check(stale), 'G-single-realtime');
  assert.equal(check(stale, 'list-append', false).valid, true);
  // Other transactions between the two: the realtime order runs through several time nodes, and is shown as one step between transactions.
  const between = history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 2, ops: '[[:r 2 nil]]', done: '[[:r 2 []]]' }, { p: 3, ops: '[[:append 2 1]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 []]]' }], false);
  const r = check(between);
  // T3 -rw-> T0 -rt-> T1 -rw-> T2 -rt-> T3 is a G2-realtime cycle as well.
  assert.deepEqual(r.names, ['G-single-realtime', 'G2-realtime']);
  assert.match(r.anomalies.find((a) => a.anomaly === 'G-single-realtime')?.explanation ?? '', /^cycle T3 \(process 1\) -> T0 \(process 0\) -> T3; T3 -rw-> T0: .*; T0 -realtime-> T3: T0 completed before T3 was invoked$/);
});

test('txn check: realtime order takes O(n) edges, however many clients run at once', () => {
  for (const processes of [4, 200]) {
    const txns = parseTxnHistory(generateListAppend({ seed: 7, txns: 5000, processes, keys: 50 }));
    const extra = checkTxnHistory(txns, { model: 'list-append' }).edges - checkTxnHistory(txns, { model: 'list-append', realtime: false }).edges;
    assert.ok(extra <= 3 * txns.length, `${processes} processes: ${extra} realtime edges for ${txns.length} transactions`);
  }
});

test('txn check: rw-register anomalies and a valid history', () => {
  assertFinds(check(history([{ p: 0, ops: '[[:w 1 1] [:r 2 nil]]', done: '[[:w 1 1] [:r 2 1]]' }, { p: 1, ops: '[[:w 2 1] [:r 1 nil]]', done: '[[:w 2 1] [:r 1 1]]' }]), 'rw-register'), 'G1c');
  assertFinds(check(history([{ p: 0, ops: '[[:w 1 1] [:w 2 1]]' }, { p: 1, ops: '[[:r 1 nil] [:r 2 nil]]', done: '[[:r 1 nil] [:r 2 1]]' }]), 'rw-register'), 'G-single');
  assertFinds(check(history([{ p: 0, ops: '[[:r 1 nil] [:w 1 1]]' }, { p: 1, ops: '[[:r 1 nil] [:w 1 2]]' }]), 'rw-register'), 'G2');
  assertFinds(check(history([{ p: 0, type: 'fail', ops: '[[:w 1 7]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 7]]' }]), 'rw-register'), 'G1a');
  assertFinds(check(history([{ p: 0, ops: '[[:w 1 1] [:w 1 2]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 1]]' }]), 'rw-register'), 'G1b');
  assertFinds(check(history([{ p: 0, ops: '[[:w 1 1] [:r 1 nil]]', done: '[[:w 1 1] [:r 1 nil]]' }]), 'rw-register'), 'internal');
  assert.equal(check(history([{ p: 0, ops: '[[:r 1 nil] [:w 1 1]]' }, { p: 1, ops: '[[:r 1 nil] [:w 1 2]]', done: '[[:r 1 1] [:w 1 2]]' }], false), 'rw-register').valid, true);
});

test('txn check: bad input is a PARSE_ERROR naming the operation, never a crash', () => {
  const bad = ['{:type :ok, :f :txn, :value [[:r 1 nil]], :process 0}', '{:type :invoke, :f :txn, :value [[:bogus 1 2]], :process 0}', '{:type :invoke :f', '[[[[', '{:type :invoke, :f :txn, :value 3, :process 0}', `${'['.repeat(100)}${']'.repeat(100)}`];
  for (const text of bad) assert.throws(() => parseTxnHistory(text), (e: unknown) => isTesseraError(e, 'PARSE_ERROR'), text.slice(0, 40));
  // Two appends of one value to one key cannot be told apart.
  assert.throws(() => check(history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 1, ops: '[[:append 1 1]]' }])), (e: unknown) => isTesseraError(e, 'PARSE_ERROR'));
  // A nemesis's operations are skipped.
  assert.equal(parseTxnHistory('{:type :info, :f :start-partition, :process :nemesis}\n{:type :invoke, :f :txn, :value [[:r 1 nil]], :process 0}\n{:type :ok, :f :txn, :value [[:r 1 nil]], :process 0}').length, 1);
});

test('txn check: a mangled history is checked or refused with a PARSE_ERROR, never a crash', () => {
  const base = generateListAppend({ seed: 1, txns: 20, processes: 3, keys: 3 });
  const pieces = ['{', '}', '[', ']', '(', ')', ':', 'nil', ' ', '\n', '"', '\\', ';', ',', '1', '-5', 'N', ':ok', ':r', ':w', ':append', ':info', ':invoke', ':process', '99999999999999999999', 'é'];
  fc.assert(
    fc.property(fc.array(fc.record({ at: fc.nat(), cut: fc.nat(5), put: fc.constantFrom(...pieces) }), { maxLength: 4 }), fc.constantFrom<TxnModel>('list-append', 'rw-register'), (edits, model) => {
      let text = base;
      for (const e of edits) {
        const at = e.at % (text.length + 1);
        text = text.slice(0, at) + e.put + text.slice(at + e.cut);
      }
      try {
        checkTxnHistory(parseTxnHistory(text), { model });
      } catch (error) {
        if (!isTesseraError(error, 'PARSE_ERROR')) throw error;
      }
    }),
    { numRuns: 500, seed: 5 },
  );
});

test('txn check: parse errors name the line; completions must match their invocations; each model has its own micro-ops', () => {
  const fails = (text: string, pattern: RegExp, model?: TxnModel): void => {
    assert.throws(() => (model === undefined ? parseTxnHistory(text, 'h.edn') : check(text, model)), (e: unknown) => isTesseraError(e, 'PARSE_ERROR') && pattern.test((e as Error).message), text);
  };
  const invoke = '{:type :invoke, :f :txn, :value [[:append 1 1] [:r 2 nil]], :process 0}';
  fails(`${invoke}\n\n{:type :ok, :f :txn, :value [[:append 1 1] [:r 2 [1 {]]], :process 0}`, /^h\.edn: line 3, column 54: unexpected '\]'/);
  fails(`${invoke}\n{:type :ok, :f :txn, :value [[:append 1 1] [:r 2 [:x]]], :process 0}`, /^h\.edn: line 2: a read list holds integers or strings only/);
  fails(`${invoke}\n{:type :ok, :f :txn, :value [[:append 1 2] [:r 2 []]], :process 0}`, /^h\.edn: line 2: micro-op 1 of the completion is not the one invoked/);
  fails(`${invoke}\n{:type :ok, :f :txn, :value [[:append 1 1] [:r 3 []]], :process 0}`, /line 2: micro-op 2 /);
  fails(`[${invoke}\n {:type :ok, :f :txn, :value [[:append 1 1]], :process 0}]`, /^h\.edn: line 2: the completion has 1 micro-ops, the invocation 2/);
  fails(`[${invoke}] {:type :ok}`, /text after the vector of operations/);
  fails('{:type :invoke, :f :txn, :value [[:w 1 1]], :process 0}', /:w micro-op, which list-append histories do not/, 'list-append');
  fails('{:type :invoke, :f :txn, :value [[:append 1 1]], :process 0}', /:append micro-op, which rw-register/, 'rw-register');
  fails('{:type :invoke, :f :txn, :value [[:r 1 nil]], :process 0}\n{:type :ok, :f :txn, :value [[:r 1 [1]]], :process 0}', /reads are single values/, 'rw-register');
  fails('{:type :invoke, :f :txn, :value [[:r 1 nil]], :process 0}\n{:type :ok, :f :txn, :value [[:r 1 1]], :process 0}', /reads are lists/, 'list-append');
  // A vector (or list) of maps spanning lines reads as the same history as one map per line.
  const lines = [invoke, '{:type :ok, :f :txn, :value [[:append 1 1] [:r 2 nil]], :process 0}'];
  assert.deepEqual(parseTxnHistory(`[${lines.join('\n')}]`), parseTxnHistory(lines.join('\n')));
  assert.deepEqual(parseTxnHistory(`(${lines.join(',\n')})`), parseTxnHistory(lines.join('\n')));
});

test('txn check: generated strictly serializable histories come back valid; injected anomalies are found', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const text = generateListAppend({ seed, txns: 300, processes: 6, keys: 6 });
    const r = check(text);
    assert.equal(r.valid, true, `seed ${seed}: ${r.anomalies.slice(0, 2).map((a) => `${a.anomaly}: ${a.explanation}`).join(' | ')}`);
    const lines = text.split('\n');
    // Aborted read: an ok read that shows a failed transaction's append.
    const failed = lines.findIndex((l) => l.startsWith('{:type :fail') && l.includes(':append'));
    const reader = lines.findIndex((l) => l.startsWith('{:type :ok') && /\[:r (\d+) \[[\d ]+\]\]/.test(l));
    if (failed >= 0 && reader >= 0) {
      const [, key, value] = /\[:append (\d+) (\d+)\]/.exec(lines[failed] as string) as RegExpExecArray;
      const poisoned = [...lines];
      poisoned[reader] = `${(lines[reader] as string).replace(/\]\], :process/, `] [:r ${key} [${value}]]], :process`)}`;
      // The reader's invocation needs the same number of micro-ops.
      const proc = /:process (\d+)/.exec(lines[reader] as string)?.[1];
      const inv = poisoned.slice(0, reader).map((l, i) => ({ l, i })).filter(({ l }) => l.startsWith('{:type :invoke') && l.endsWith(`:process ${proc}}`)).pop();
      if (inv !== undefined) {
        poisoned[inv.i] = inv.l.replace(/\]\], :process/, `] [:r ${key} nil]], :process`);
        assertFinds(check(poisoned.join('\n')), 'G1a');
      }
    }
  }
});

/** Adds micro-ops to a transaction of a generated history (one operation per line): `invoked` to its invocation, `done` to its completion. */
function addOps(lines: string[], t: Txn, invoked: string, done: string): void {
  lines[t.invokeAt] = (lines[t.invokeAt] as string).replace(/\]\], :process/, `] ${invoked}], :process`);
  lines[t.completeAt] = (lines[t.completeAt] as string).replace(/\]\], :process/, `] ${done}], :process`);
}

test('txn check: two generated transactions made to read each other\'s appends are G1c', () => {
  for (let seed = 1; seed <= 10; seed++) {
    const text = generateListAppend({ seed, txns: 300, processes: 6, keys: 6 });
    const lines = text.split('\n');
    const ok = parseTxnHistory(text).filter((t) => t.status === 'ok');
    const a = ok[seed * 7] as Txn;
    const b = ok[seed * 13] as Txn;
    // Keys no generated transaction touches.
    addOps(lines, a, '[:append 1000000 1] [:r 1000001 nil]', '[:append 1000000 1] [:r 1000001 [1]]');
    addOps(lines, b, '[:append 1000001 1] [:r 1000000 nil]', '[:append 1000001 1] [:r 1000000 [1]]');
    // Other cycles through A and B may be reported beside it: they are real too, once A and B are tied.
    assertFinds(check(lines.join('\n')), 'G1c');
  }
});

test('txn check: a generated read made to miss one transaction\'s appends to a key, while it sees its append to another, is G-single', () => {
  let injected = 0;
  for (let seed = 1; seed <= 30 && injected < 8; seed++) {
    const text = generateListAppend({ seed, txns: 300, processes: 6, keys: 4, failShare: 0, infoShare: 0 });
    const txns = parseTxnHistory(text);
    const found = missedWriter(txns);
    if (found === undefined) continue;
    const { reader, key, list, from } = found;
    const lines = text.split('\n');
    const kept = list.slice(0, from);
    lines[reader.completeAt] = (lines[reader.completeAt] as string).replace(`[:r ${key} [${list.join(' ')}]]`, `[:r ${key} [${kept.join(' ')}]]`);
    // Without realtime order: the cycle is made of the reads alone.
    const r = check(lines.join('\n'), 'list-append', false);
    assertFinds(r, 'G-single');
    injected++;
  }
  assert.ok(injected >= 5, `only ${injected} reads injected`);
});

/** A reader R and a writer W that appended to two keys, where R's reads of both show W's appends: the read of the second, and where W's appends start in it. */
function missedWriter(txns: readonly Txn[]): { reader: Txn; key: Scalar; list: Scalar[]; from: number } | undefined {
  const writerOf = new Map<string, Txn>();
  for (const t of txns) for (const op of t.ops) if (op.f === 'append') writerOf.set(`${op.key}/${op.value}`, t);
  for (const reader of txns) {
    const reads = reader.ops.filter((o): o is Extract<MicroOp, { f: 'r' }> => o.f === 'r' && Array.isArray(o.value));
    for (const r1 of reads) {
      for (const r2 of reads) {
        if (r1.key === r2.key) continue;
        const l1 = r1.value as Scalar[];
        const l2 = r2.value as Scalar[];
        const from = l2.findIndex((v) => {
          const w = writerOf.get(`${r2.key}/${v}`);
          return w !== undefined && w !== reader && l1.some((x) => writerOf.get(`${r1.key}/${x}`) === w);
        });
        if (from >= 0) return { reader, key: r2.key, list: l2, from };
      }
    }
  }
  return undefined;
}

test('txn check: a stale read injected into a generated history is found as a realtime anomaly', () => {
  let injected = 0;
  for (let seed = 1; seed <= 20 && injected < 5; seed++) {
    const lines = generateListAppend({ seed, txns: 200, processes: 4, keys: 4, failShare: 0, infoShare: 0 }).split('\n');
    // A read of a non-empty list, by a transaction invoked after the last element's writer completed.
    for (let i = 0; i < lines.length; i++) {
      const m = /^\{:type :ok, :f :txn, :value \[\[:r (\d+) \[([\d ]+)\]\]\], :process (\d+)\}$/.exec(lines[i] as string);
      if (m === null) continue;
      const [, key, list] = m;
      const last = (list as string).split(' ').pop();
      const writer = lines.findIndex((l) => l.startsWith('{:type :ok') && l.includes(`[:append ${key} ${last}]`));
      const invoke = lines.slice(0, i).map((l, j) => ({ l, j })).filter(({ l }) => l.startsWith('{:type :invoke') && l.endsWith(`:process ${m[3]}}`)).pop();
      if (writer < 0 || invoke === undefined || writer > invoke.j) continue;
      const stale = [...lines];
      stale[i] = (lines[i] as string).replace(`[${list}]`, (list as string).split(' ').length === 1 ? '[]' : `[${(list as string).split(' ').slice(0, -1).join(' ')}]`);
      const r = check(stale.join('\n'));
      assert.equal(r.valid, false, `seed ${seed}: a stale read at line ${i} went unnoticed`);
      assert.ok(r.names.some((n) => n.endsWith('-realtime') || n.startsWith('G')), r.names.join(','));
      injected++;
      break;
    }
  }
  assert.ok(injected >= 3, `only ${injected} stale reads injected`);
});

test('txn check: a spent budget answers unknown, never a false invalid; anomalies found are still reported', () => {
  const g2 = parseTxnHistory(history([{ p: 0, ops: '[[:append 1 1] [:r 2 nil]]', done: '[[:append 1 1] [:r 2 []]]' }, { p: 1, ops: '[[:append 2 1] [:r 1 nil]]', done: '[[:append 2 1] [:r 1 []]]' }]));
  assert.deepEqual(pick(checkTxnHistory(g2, { model: 'list-append', maxSteps: 0 })), { valid: 'unknown', reason: 'step-budget' });
  // A clock that jumps a second each time it is read: the budget is spent before the search starts.
  let t = 0;
  const jumpy = { nowMs: () => (t += 1000), timeBudgetMs: 10 };
  assert.deepEqual(pick(checkTxnHistory(g2, { model: 'list-append', ...jumpy })), { valid: 'unknown', reason: 'time-budget' });
  assert.deepEqual(pick(checkTxnHistory(g2, { model: 'list-append', maxEdges: 1 })), { valid: 'unknown', reason: 'edge-budget' });
  // An aborted read needs no search: found with the budget spent all the same.
  const g1a = parseTxnHistory(history([{ p: 0, type: 'fail', ops: '[[:append 1 5]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [5]]]' }]));
  assert.deepEqual(pick(checkTxnHistory(g1a, { model: 'list-append', ...jumpy })), { valid: false, reason: 'time-budget' });
  assert.throws(() => checkTxnHistory(g2, { model: 'list-append', timeBudgetMs: 10 }), (e: unknown) => isTesseraError(e, 'INVALID_ARGUMENT'));
  // Generated valid histories under budgets of every size: valid or unknown, never invalid.
  for (let seed = 1; seed <= 30; seed++) {
    const txns = parseTxnHistory(generateListAppend({ seed, txns: 200, processes: 5, keys: 4 }));
    const r = checkTxnHistory(txns, { model: 'list-append', maxSteps: (seed * 37) % 400, maxEdges: (seed * 101) % 900 });
    assert.notEqual(r.valid, false, `seed ${seed}: ${r.names.join(', ')}`);
  }
});

test('txn check: a 100,000-transaction history is checked in under a minute', () => {
  const text = generateListAppend({ seed: 99, txns: 100_000, processes: 16, keys: 200 });
  const t0 = performance.now();
  const txns = parseTxnHistory(text);
  const r = checkTxnHistory(txns, { model: 'list-append', nowMs: () => performance.now(), timeBudgetMs: 60_000 });
  const ms = performance.now() - t0;
  console.log(`# 100,000 transactions: parsed and checked in ${ms.toFixed(0)} ms, ${r.edges} edges, ${r.valid}`);
  assert.equal(r.valid, true);
  assert.ok(ms < 60_000, `${ms} ms`);
});

test('txn check: the CLI prints anomalies, then valid or invalid: names, and exits 0, 1 or 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'check-txn-'));
  try {
    const cli = join(import.meta.dirname, '..', '..', 'cli', 'check-txn.js');
    const run = (file: string, ...extra: string[]): { code: number | null; lines: string[] } => {
      const r = spawnSync(process.execPath, [cli, '--model', 'list-append', ...extra, file], { encoding: 'utf8' });
      return { code: r.status, lines: r.stdout.trim().split('\n') };
    };
    writeFileSync(join(dir, 'ok.edn'), history([{ p: 0, ops: '[[:append 1 1]]' }, { p: 1, ops: '[[:r 1 nil]]', done: '[[:r 1 [1]]]' }]));
    writeFileSync(join(dir, 'bad.edn'), history([{ p: 0, ops: '[[:append 1 1] [:r 2 nil]]', done: '[[:append 1 1] [:r 2 []]]' }, { p: 1, ops: '[[:append 2 1] [:r 1 nil]]', done: '[[:append 2 1] [:r 1 []]]' }]));
    writeFileSync(join(dir, 'garbled.edn'), '{:type :ok');
    const ok = run(join(dir, 'ok.edn'));
    assert.deepEqual([ok.code, ok.lines.at(-1)], [0, 'valid']);
    const bad = run(join(dir, 'bad.edn'));
    assert.deepEqual([bad.code, bad.lines.at(-1)], [1, 'invalid: G2']);
    assert.ok(bad.lines[0]?.startsWith('G2: cycle'), bad.lines[0]);
    writeFileSync(join(dir, 'many.edn'), generateListAppend({ seed: 3, txns: 500 }));
    const spent = run(join(dir, 'many.edn'), '--time-budget-ms', '0');
    assert.deepEqual([spent.code, spent.lines.at(-1), spent.lines.at(-2)], [2, 'unknown', '# budget exhausted: time-budget']);
    assert.equal(run(join(dir, 'garbled.edn')).code, 2);
    assert.equal(run(join(dir, 'missing.edn')).code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
