import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TXN_BUG_NAMES, type TxnBugName } from '../txn/sabotage.js';
import { type TxnModelOptions, runTxnModel } from './txn_model.js';

/** The mixes every seed range runs: the default, and one hot and faulty (3 keys, 8 clients, many crashes, lost and held messages). */
const MIXES: readonly { readonly name: string; readonly seeds: number; readonly options: Omit<TxnModelOptions, 'seed'> }[] = [
  { name: 'default (6 keys, 3 ranges, 5 clients)', seeds: 40, options: {} },
  { name: 'hot (3 keys, 8 clients, 20% crashes, 5% loss, 5% pauses)', seeds: 15, options: { keys: 3, clients: 8, crashChance: 0.2, lossChance: 0.05, pauseChance: 0.05 } },
  { name: 'wide (12 keys, 6 ranges)', seeds: 15, options: { keys: 12, ranges: 6, clients: 6, crashChance: 0.1 } },
];

for (const mix of MIXES) {
  test(`txn model: list-append across ranges with crashed coordinators and lost messages checks valid, and recovery leaves no intent (${mix.name}, ${mix.seeds} seeds)`, async () => {
    let committed = 0;
    let unknown = 0;
    let longestRead = 0;
    for (let seed = 1; seed <= mix.seeds; seed++) {
      const r = await runTxnModel({ seed, ...mix.options });
      assert.deepEqual(r.problems, [], `seed ${seed}`);
      assert.equal(r.check.valid, true, `seed ${seed}: ${r.check.anomalies.map((a) => a.explanation).join('\n')}`);
      committed += r.committed;
      unknown += r.unknown;
      for (const t of r.history) for (const op of t.ops) if (op.f === 'r' && Array.isArray(op.value)) longestRead = Math.max(longestRead, op.value.length);
    }
    // The histories carry something to check: commits, crashed transactions, and reads of lists that grew.
    assert.ok(committed > mix.seeds * 30, `${committed} commits`);
    assert.ok(unknown > 0, 'some coordinators crashed');
    assert.ok(longestRead >= 5, `longest list read: ${longestRead}`);
  });
}

test('txn model: a seed gives the same run every time', async () => {
  const a = await runTxnModel({ seed: 7, keys: 3, clients: 6, crashChance: 0.2 });
  const b = await runTxnModel({ seed: 7, keys: 3, clients: 6, crashChance: 0.2 });
  assert.deepEqual(a.history, b.history);
  assert.equal(a.modelMs, b.modelMs);
});

/** What each deliberate bug must be caught as (issue 14): the anomalies it can produce in a list-append history. */
const EXPECTED: Readonly<Record<TxnBugName, readonly string[]>> = {
  // Write skew: two transactions each read what the other writes.
  'txn-skips-read-validation': ['G2', 'G2-realtime', 'G-single', 'G-single-realtime'],
  // A half-applied transaction, run again: its elements appear twice, or its writes are seen without it.
  'txn-commits-secondaries-first': ['duplicate-elements', 'G1a', 'G0', 'G1c', 'incompatible-order'],
  // Read skew: a read between two of the transaction's revisions sees half of it.
  'txn-resolves-at-fresh-revisions': ['G-single', 'G-single-realtime', 'G2', 'G2-realtime'],
  // A stale read, and the lost update built on it.
  'txn-reader-ignores-intents': ['G-single', 'G-single-realtime', 'G2', 'G2-realtime', 'incompatible-order', 'G0', 'G1c'],
};

for (const bug of TXN_BUG_NAMES) {
  test(`txn model: deliberate bug '${bug}' is caught by the checker within 100 seeds`, async () => {
    for (let seed = 1; seed <= 100; seed++) {
      const r = await runTxnModel({ seed, bugs: [bug] });
      if (r.check.valid === true && r.problems.length === 0) continue;
      const expected = r.check.names.filter((n) => EXPECTED[bug].includes(n));
      assert.ok(expected.length > 0, `seed ${seed} found ${r.check.names.join(', ')} ${r.problems.join('; ')}, none of ${EXPECTED[bug].join(', ')}`);
      console.log(`# '${bug}' caught by seed ${seed}: ${r.check.names.join(', ')}`);
      return;
    }
    assert.fail(`'${bug}' not caught in 100 seeds`);
  });
}

test('txn model: bank transfers across ranges under crashes and lost messages keep the total, and no balance goes below zero (30 seeds)', async () => {
  let reads = 0;
  for (let seed = 1; seed <= 30; seed++) {
    const r = await runTxnModel({ seed, workload: 'bank' });
    assert.deepEqual(r.problems.slice(0, 3), [], `seed ${seed}`);
    reads += r.history.filter((t) => t.status === 'ok' && t.ops.every((op) => op.f === 'r')).length;
    assert.ok(r.committed > 30, `seed ${seed}: ${r.committed} commits`);
  }
  assert.ok(reads > 100, `${reads} reads of every account`);
});

// A transfer writes every key it reads, so skipping read validation changes nothing here; the other three show as partial transfers.
for (const bug of ['txn-commits-secondaries-first', 'txn-resolves-at-fresh-revisions', 'txn-reader-ignores-intents'] as const) {
  test(`txn model: deliberate bug '${bug}' breaks the bank's total within 100 seeds`, async () => {
    for (let seed = 1; seed <= 100; seed++) {
      const r = await runTxnModel({ seed, bugs: [bug], workload: 'bank' });
      if (r.problems.length === 0) continue;
      assert.match(r.problems[0]!, /read a total of \d+, not 600: it saw part of a transfer/);
      console.log(`# '${bug}' breaks the bank at seed ${seed}: ${r.problems[0]}`);
      return;
    }
    assert.fail(`'${bug}' not caught in 100 seeds`);
  });
}
