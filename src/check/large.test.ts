/**
 * The checker on large histories: speed, the memory bound, and `unknown`
 * when a budget is spent (issue 12: a 50-client kv history with a
 * violation used to exhaust a 4 GiB heap).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { SeededRng } from '../base/index.js';
import { MAX_MEMO_BYTES } from './budget.js';
import { formatEdnKvLog, generateKvHistory } from './generate.js';
import { type KvInput, type KvOutput, type Operation, checkOperations, kvModel, parseEdnKvLog } from './index.js';

type KvOp = Operation<KvInput, KvOutput>;
const clock = () => performance.now();

test('a 50-client kv history with violations in five keys is refuted quickly and within the memory bound', () => {
  // Seed 4 puts a violation in a key whose refutation takes millions of
  // steps first in line; searched one partition after another, this history
  // was still undecided after 20 M steps.
  const history = generateKvHistory(new SeededRng(4), { clients: 50, operations: 2000, keys: 10, violations: 5, effectAnywhere: true });
  const result = checkOperations(kvModel, history.ops, { maxSteps: 2_000_000, timeBudgetMs: 10_000, nowMs: clock });
  assert.equal(result.verdict, 'not-linearizable');
  assert.ok(result.peakMemoBytes <= MAX_MEMO_BYTES);
  const blocked = history.ops.indexOf(result.failure!.blocked);
  assert.ok(history.violated.includes(blocked), `blocked op ${blocked} is one of the falsified gets ${history.violated.join(', ')}`);
});

test('a 50-client kv history without violations is linearizable', () => {
  const history = generateKvHistory(new SeededRng(1), { clients: 50, operations: 2000, keys: 10 });
  const result = checkOperations(kvModel, history.ops, { maxSteps: 20_000_000 });
  assert.equal(result.verdict, 'linearizable');
  assert.equal(result.partitions, 10);
});

test('partitions are searched in turns: a cheap refutation does not wait behind an expensive one', () => {
  // Key "a": nine concurrent appends, then a read of a value none of their
  // orders gives; refuting it visits every order (about a million). Key "b":
  // a read that contradicts the write before it, refuted in a few steps.
  const ops: KvOp[] = [];
  for (let i = 0; i < 9; i++) ops.push(kv(i, { kind: 'append', key: 'a', value: `${i}` }, { kind: 'ok' }, 0, 100));
  ops.push(kv(9, { kind: 'get', key: 'a' }, { kind: 'ok', value: 'never' }, 101, 102));
  ops.push(kv(10, { kind: 'put', key: 'b', value: '1' }, { kind: 'ok' }, 0, 1));
  ops.push(kv(10, { kind: 'get', key: 'b' }, { kind: 'ok', value: '2' }, 2, 3));
  const result = checkOperations(kvModel, ops, { maxSteps: 200_000 });
  assert.equal(result.verdict, 'not-linearizable');
  assert.equal(result.failure?.partition, 1);
  assert.ok(result.steps < 50_000, `took ${result.steps} steps`);
});

test('reads go first: a slow read that took effect early is placed at once, not found at its return', () => {
  // The read of "a" overlaps an append called just before it. Placing the
  // append first leaves the read impossible, which shows only at its return
  // (time 1000); in between, ten groups of eight concurrent appends each end
  // in a put, so that wrong turn alone is a million configurations.
  const ops: KvOp[] = [
    kv(0, { kind: 'put', key: 'k', value: 'a' }, { kind: 'ok' }, 0, 1),
    kv(1, { kind: 'append', key: 'k', value: 'x' }, { kind: 'ok' }, 2, 3),
    kv(2, { kind: 'get', key: 'k' }, { kind: 'ok', value: 'a' }, 2.5, 1000),
  ];
  for (let g = 0; g < 10; g++) {
    const t = 10 + 20 * g;
    for (let i = 0; i < 8; i++) ops.push(kv(3 + i, { kind: 'append', key: 'k', value: `${g}.${i}` }, { kind: 'ok' }, t, t + 5));
    ops.push(kv(11, { kind: 'put', key: 'k', value: `p${g}` }, { kind: 'ok' }, t + 6, t + 7));
    ops.push(kv(12, { kind: 'get', key: 'k' }, { kind: 'ok', value: `p${g}` }, t + 8, t + 9));
  }
  const result = checkOperations(kvModel, ops, { maxSteps: 200_000 });
  assert.equal(result.verdict, 'linearizable');
  assert.ok(result.steps < 10_000, `took ${result.steps} steps`);
});

test('a spent memory budget answers unknown (memory-budget) and stays within it', () => {
  const history = generateKvHistory(new SeededRng(1), { clients: 50, operations: 2000, keys: 10 });
  const maxMemoBytes = 4 * 1024 * 1024;
  // One partition for the whole key space: far more configurations than fit.
  const result = checkOperations(kvModel, history.ops, { partition: false, maxMemoBytes, maxSteps: 20_000_000 });
  assert.equal(result.verdict, 'unknown');
  assert.equal(result.reason, 'memory-budget');
  assert.ok(result.peakMemoBytes <= maxMemoBytes, `peak ${result.peakMemoBytes}`);
  assert.ok(result.peakMemoBytes > maxMemoBytes / 2, `peak ${result.peakMemoBytes}: the memo did fill up`);
});

test('with a small heap, a hopeless search ends in unknown, not in an out-of-memory crash', () => {
  // The default bound is for a default heap; the bound scaled to a 128 MiB
  // heap must keep the process alive while the search would need gigabytes.
  const check = new URL('./index.js', import.meta.url).href;
  const generate = new URL('./generate.js', import.meta.url).href;
  const base = new URL('../base/index.js', import.meta.url).href;
  const script = `
    import { checkOperations, kvModel } from ${JSON.stringify(check)};
    import { generateKvHistory } from ${JSON.stringify(generate)};
    import { SeededRng } from ${JSON.stringify(base)};
    const h = generateKvHistory(new SeededRng(1), { clients: 50, operations: 2000, keys: 10 });
    const r = checkOperations(kvModel, h.ops, { partition: false, maxMemoBytes: 48 * 1024 * 1024 });
    console.log(r.verdict, r.reason);`;
  const child = spawnSync(process.execPath, ['--max-old-space-size=128', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr.slice(0, 400));
  assert.equal(child.stdout.trim(), 'unknown memory-budget');
});

test('generated histories survive the trip through the Porcupine kv text format', () => {
  const history = generateKvHistory(new SeededRng(7), { clients: 8, operations: 300, keys: 3, violations: 1, unknownShare: 0.1 });
  const parsed = parseEdnKvLog(formatEdnKvLog(history.ops), 'generated');
  assert.equal(parsed.length, history.ops.length);
  assert.equal(checkOperations(kvModel, parsed).verdict, 'not-linearizable');
  const clean = generateKvHistory(new SeededRng(7), { clients: 8, operations: 300, keys: 3, unknownShare: 0.1 });
  assert.equal(checkOperations(kvModel, parseEdnKvLog(formatEdnKvLog(clean.ops), 'generated')).verdict, 'linearizable');
});

function kv(clientId: number, input: KvInput, output: KvOutput, callMs: number, returnMs: number): KvOp {
  return { clientId, input, output, callMs, returnMs };
}
