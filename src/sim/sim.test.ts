import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BUG_NAMES } from '../raft/sabotage.js';
import { runSeeds } from './runner.js';
import { runSeed, type SeedResult } from './simulation.js';
import { BUG_CAUGHT_BY } from './violation.js';

/** Seeds run in `npm test` with every fault on. */
const SEEDS_IN_TEST = 1000;
/** How far the search for a seed that catches a deliberate bug may go. */
const BUG_SEED_LIMIT = 1000;

test('sim: the same seed gives the same run (trace hash)', async () => {
  const a = await runSeed(7);
  const b = await runSeed(7);
  assert.equal(a.traceHash, b.traceHash);
  assert.equal(a.events, b.events);
  assert.equal(a.opsChecked, b.opsChecked);
  assert.notEqual((await runSeed(8)).traceHash, a.traceHash);
});

test('sim: a run injects faults and checks operations', async () => {
  const r = await runSeed(3);
  assert.ok(r.opsChecked > 50, `only ${r.opsChecked} operations`);
  const kinds = Object.keys(r.faults);
  assert.ok(kinds.length >= 4, `only ${kinds.join(',')} injected`);
  assert.deepEqual(r.violations, []);
});

test('sim: a seed whose linearizability check stays undecided fails', async () => {
  const r = await runSeed(3, { checkMaxSteps: 1 });
  assert.equal(r.checkVerdict, 'unknown');
  assert.ok(r.violations.some((v) => v.includes('undecided: the linearizability check gave up')), `violations: ${r.violations.join('; ')}`);
  const s = await runSeeds({ start: 3, count: 1, overrides: {}, stopOnFirstFailure: false, nowMs: () => 0 });
  assert.deepEqual(s.checkUnknown, []);
});

/**
 * Seeds found outside the range above, each with what it showed. 6498: a
 * candidate paused with vote responses of its term queued resumes after the
 * cluster reached term 8, counts them and leads term 6; entries of term 7
 * were applied already. Raft allows that (it can commit nothing); the leader
 * completeness oracle flagged it until it only required entries committed in
 * an earlier term than the new leader's. 282 (within the range above, pinned
 * for its story): a learner added again, replaying from the log the old
 * change that removed it, was dropped by replica GC before the meta table
 * listed it again, and never caught up (convergence); replica GC now asks
 * the range's leader. 322 (within the range above, pinned for its story,
 * found with load-based balancing, ADR 0015): a node's stale replica of a
 * left range, added back as a learner, replayed from the log the split
 * that made the right range (on other nodes) and the merge that took it
 * back; its merge gate waited for good for a right replica that never
 * caught up and that replica GC then dropped, and so did the range that
 * later took the left one over (convergence). A replica held at a merge
 * now asks its leader for a snapshot and installs it over its log. 685
 * (within the range above, pinned for its story; found once a write that
 * waited behind an in-flight revision request was stamped at once): a left
 * range split while its right neighbour was frozen for it, which ended the
 * merge, then was merged away itself before the unfreeze applied; its
 * record of the version it had left went with it, and the right range
 * stayed frozen for good (convergence). A merge now carries the taken-over
 * range's versions left without a merge into the survivor's record.
 */
const PINNED_SEEDS = [282, 322, 685, 6498];

/**
 * Seeds under `--replicas 3` that found bugs of placement; each passed
 * after its fix (their traces change with any change, so they guard the
 * neighbourhood, not the exact run). 2003: every write forwarded first to a
 * removed leader, named by a stale leader hint. 5126: a replica made again
 * after replica GC, empty, granted its vote to a candidate lacking
 * committed entries (leader completeness). 5324: a range's new leader left
 * the meta table a repair interval behind its membership, and nodes routed
 * writes to a member it had removed (liveness). With merges under
 * placement (ADR 0014): 70, nodes moved off a right range before its merge
 * kept serving their replica of it; 121, a range frozen for a left range
 * that was merged away meanwhile stayed frozen; 162, a right range's
 * learner on a node the left range lacked was never retired (convergence).
 * With remote range feeds (ADR 0013): 86, a watch over a local and a remote
 * range had each range close past the other's close, for as long as it
 * waited; 12051, a feed's fetch whose reply settled the node's last call in
 * flight never went on (the scheduler ran its continuation only at an event
 * that left work in flight), and the watch stalled. 8294: a replica removed
 * while it lagged behind its range's unfreeze stayed frozen, and its keys
 * out of its node's routing, for good (replica GC kept frozen replicas).
 * 4079: a node woke the revision waiters of a replica still waiting for
 * its snapshot, read its store, and crashed (RANGE_UNAVAILABLE thrown out
 * of the apply loop).
 */
const PINNED_PLACEMENT_SEEDS = [70, 86, 121, 162, 2003, 4079, 5126, 5324, 8294, 12051];

test('sim: pinned seeds find no violation', async () => {
  for (const seed of PINNED_SEEDS) assert.deepEqual((await runSeed(seed)).violations, [], `seed ${seed}`);
  for (const seed of PINNED_PLACEMENT_SEEDS) assert.deepEqual((await runSeed(seed, { replicas: 3, splits: true })).violations, [], `seed ${seed} --replicas 3`);
});

/**
 * Seeds of the transactional workload (list-append Txns across ranges through the etcd API, checked by
 * src/check/txn) that found bugs: 10 (an intent count taken after the intent's delete went negative, so a
 * range's closed revision let a watch pass a commit not yet resolved), 4, 11, 12 (watch order within one
 * transaction's revision), 9 (a dead coordinator's intents held watches for longer than the run).
 */
const PINNED_TXN_SEEDS = [4, 9, 10, 11, 12];
/** Seeds of the transactional workload in the test, beside the pinned ones (some 0.8 s each here). */
const TXN_SEEDS_IN_TEST = 20;

test(`sim: transactions across ranges (3 clients of list-append Txns) under every fault: pinned seeds and ${TXN_SEEDS_IN_TEST} more, default and --replicas 3, find no violation and no anomaly`, async () => {
  let ok = 0;
  for (const seed of [...PINNED_TXN_SEEDS, ...Array.from({ length: TXN_SEEDS_IN_TEST }, (_, i) => 1001 + i)]) {
    const placement = seed > 1000 && seed % 3 === 0;
    const r = await runSeed(seed, { txnClients: 3, splits: true, ...(placement ? { replicas: 3 } : {}) });
    assert.deepEqual(r.violations, [], `seed ${seed}${placement ? ' --replicas 3' : ''}`);
    ok += r.faults['txn-ok'] ?? 0;
  }
  assert.ok(ok > 1000, `${ok} transactions committed`);
});

test(`sim: ${SEEDS_IN_TEST} seeds with all faults on find no violation`, async () => {
  const s = await runSeeds({ start: 1, count: SEEDS_IN_TEST, overrides: {}, stopOnFirstFailure: false, nowMs: () => performance.now() });
  const failed = s.failures.map((f) => `seed ${f.seed}: ${f.violations.join('; ')}`);
  assert.deepEqual(failed, []);
  assert.deepEqual(s.checkUnknown, [], 'seeds the linearizability check could not decide');
  assert.equal(s.seedsRun, SEEDS_IN_TEST);
  for (const fault of ['crash', 'pause', 'clock-drift', 'membership-change', 'leader-transfer', 'network-burst', 'partition-ring', 'partition-bridge', 'partition-one-way']) {
    assert.ok((s.faults[fault] ?? 0) > 0, `fault ${fault} was never injected`);
  }
  // The production request path runs here too (src/kv/requests.ts): drops retried while no leader
  // is known, deadlines that end with an unknown outcome, reads that time out.
  // So does etcd's Cluster API logic (src/kv/membership.ts): adds, promotions and removals that succeed.
  // And range splits and merges (issue 13): some succeed, some are refused, and clients are routed again after them.
  for (const reaction of ['request-retry', 'request-timeout-unknown', 'request-read-timeout', 'membership-api-add-ok', 'membership-api-promote-ok', 'membership-api-remove-ok', 'split-ok', 'split-refused', 'merge-ok', 'merge-applied', 'client-reroute']) {
    assert.ok((s.faults[reaction] ?? 0) > 0, `${reaction} never happened`);
  }
  console.log(`# ${SEEDS_IN_TEST} seeds: ${(s.seedsRun * 1000 / s.elapsedMs).toFixed(1)} seeds/s, ${Math.round(s.opsChecked / s.seedsRun)} ops checked per seed`);
});

for (const bug of BUG_NAMES) {
  test(`sim: deliberate bug '${bug}' is caught by ${BUG_CAUGHT_BY[bug].join(' or ')}`, async () => {
    // The first seed whose first violation is one of the bug's own kinds: a seed that trips
    // another check first (a node that cannot converge after losing acknowledged entries) does
    // not count as the catch, and the run goes on.
    const own = (r: SeedResult): boolean => r.violationKinds[0] !== undefined && BUG_CAUGHT_BY[bug].includes(r.violationKinds[0]);
    // A bug of placement's forwarding shows only under placement (off in the default mix): every seed runs it, with splits.
    // So does the unfreeze without evidence: it needs a merge whose entry is still in flight two
    // timeouts after the freeze, on a node whose right replica lags; the default mix stopped
    // catching it within 1000 seeds (first catch 1118) once writes behind a revision request were
    // stamped at once, while under placement seed 677 catches it.
    const underPlacement = bug === 'forward-read-skips-barrier' || bug === 'unfreeze-without-abort';
    const overrides = underPlacement ? { bug, replicas: 3, splits: true } : { bug };
    const s = await runSeeds({ start: 1, count: BUG_SEED_LIMIT, overrides, stopOnFirstFailure: true, stopAt: own, nowMs: () => performance.now() });
    const caught = s.failures.find(own);
    const others = s.failures.filter((f) => !own(f)).map((f) => `${f.seed}:${f.violationKinds[0] ?? '?'}`);
    assert.ok(caught !== undefined, `bug ${bug} not caught by ${BUG_CAUGHT_BY[bug].join('/')} in ${BUG_SEED_LIMIT} seeds (other catches: ${others.join(', ') || 'none'})`);
    console.log(`# bug ${bug} caught by seed ${caught.seed}: [${caught.violationKinds[0]}] ${caught.violations[0]}${others.length > 0 ? ` (earlier seeds caught by other checks: ${others.join(', ')})` : ''}`);
  });
}

/** Seeds of the disk-fault run below. */
const DISK_FAULT_SEEDS = 150;

test(`sim: ${DISK_FAULT_SEEDS} seeds with disk faults and crashes find no violation`, async () => {
  const faults = new Set(['disk', 'crash', 'partition'] as const);
  const s = await runSeeds({ start: 1, count: DISK_FAULT_SEEDS, overrides: { faults }, stopOnFirstFailure: false, nowMs: () => performance.now() });
  assert.deepEqual(s.failures.map((f) => `seed ${f.seed}: ${f.violations.join('; ')}`), []);
  const injected = ['disk-sync-fails', 'disk-read-flip', 'disk-slow', 'crash-majority', 'crash-whole-cluster', 'crash-partial-record'];
  // And what they must lead to: a store that stopped serving, a node that refused to start, a torn tail dropped at restart.
  for (const fault of [...injected, 'storage-failed-stop', 'start-refused-corrupt', 'recovery-dropped-torn-entry']) assert.ok((s.faults[fault] ?? 0) > 0, `${fault} never happened`);
});
