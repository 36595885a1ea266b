import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localityProblem } from '../kv/index.js';
import { BYTE_MOVE_COUNT_SLACK, PROMOTE_MAX_LAG_ENTRIES, chooseReplicas, diversity, learnerCaughtUp, nextStep } from './replica_reconciler.js';

type Role = 'voter' | 'learner';
const roles = (o: Record<number, Role>): Map<number, Role> => new Map(Object.entries(o).map(([k, v]) => [Number(k), v]));

function describe(step: ReturnType<typeof nextStep>): string {
  if (step === undefined) return 'none';
  if (step.kind === 'transfer') return `transfer ${step.to}`;
  return step.change.changes.map((c) => `${c.type} ${c.nodeId}`).join(',');
}

test('nextStep: a range follows range 1: add as learner, promote once caught up, remove the departed, never the leader itself before handing over', () => {
  const all = (): boolean => true;
  const none = (): boolean => false;
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), 1, all)), 'none');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), 1, all)), 'add-learner 4');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'voter' }), 1, none)), 'none', 'a learner behind waits');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'voter' }), 1, all)), 'add-node 4');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'voter' }), roles({ 1: 'voter', 2: 'voter', 4: 'voter' }), 1, all)), 'remove-node 3');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 2: 'voter', 3: 'voter' }), 1, all)), 'transfer 2', 'the leader hands over before it is removed');
  // Additions come before removals, so a replacement never leaves the range with fewer replicas than it had.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, all)), 'add-learner 5');
  // A voter leaves only once its replacement votes; a learner may leave any time.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, none)), 'none');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'learner', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, none)), 'remove-node 3');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'voter' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, none)), 'remove-node 3');
});

test('nextStep: a move swaps voters in one joint-consensus change once the learner is caught up; the leader that is to go hands over first', () => {
  const all = (): boolean => true;
  const swap = nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, all);
  assert.equal(describe(swap), 'add-node 5,remove-node 3');
  // Two changes under 'auto' enter a joint configuration and leave it automatically (Raft thesis §4.3).
  assert.equal(swap?.kind === 'change' ? swap.change.transition : undefined, 'auto');
  // The leader's own voter is to go: leadership moves to a voter that stays, and that leader swaps.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 2: 'voter', 3: 'voter', 5: 'voter' }), 1, all)), 'transfer 2');
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 3: 'voter', 5: 'learner' }), roles({ 2: 'voter', 3: 'voter', 5: 'voter' }), 2, all)), 'add-node 5,remove-node 1');
  // Growing (no voter to go): the learner is promoted alone.
  assert.equal(describe(nextStep(roles({ 1: 'voter', 2: 'voter', 5: 'learner' }), roles({ 1: 'voter', 2: 'voter', 5: 'voter' }), 1, all)), 'add-node 5');
});

const ids = (m: ReadonlyMap<number, Role>): string => [...m.keys()].sort((a, b) => a - b).join(',');
const load = (o: Record<number, number>): Map<number, number> => new Map(Object.entries(o).map(([k, v]) => [Number(k), v]));

test('chooseReplicas: places a range on the least loaded live members, keeps its current ones, replaces the dead, and balances one move at a time', () => {
  const candidates = [1, 2, 3, 4, 5];
  // A new range (its parent's three) keeps them.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), candidates, replicas: 3, load: load({ 1: 5, 2: 5, 3: 5, 4: 4, 5: 4 }), allowBalance: true })), '1,2,3');
  // Too few: the least loaded others join.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter' }), candidates, replicas: 3, load: load({ 1: 1, 2: 3, 3: 0, 4: 2, 5: 0 }), allowBalance: false })), '1,3,5');
  // A dead member (not a candidate) is replaced by the least loaded other.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'voter' }), candidates: [1, 2, 4, 5], replicas: 3, load: load({ 4: 9, 5: 1 }), allowBalance: false })), '1,2,5');
  // Too many (mid-move): the most loaded goes; a voter is kept over a learner on equal load.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'learner' }), candidates, replicas: 3, load: load({ 1: 2, 2: 2, 3: 7, 4: 3 }), allowBalance: true })), '1,2,4');
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter', 2: 'voter', 3: 'learner' }), candidates: [1, 2, 3], replicas: 2, load: load({ 1: 2, 2: 2, 3: 2 }), allowBalance: true })), '1,2');
  // Balance: the most loaded gives way only to one at least two replicas lighter, and only when allowed.
  const settled = roles({ 1: 'voter', 2: 'voter', 3: 'voter' });
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 6, 2: 5, 3: 5, 4: 4, 5: 5 }), allowBalance: true })), '2,3,4');
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 6, 2: 5, 3: 5, 4: 4, 5: 5 }), allowBalance: false })), '1,2,3');
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 5, 2: 5, 3: 5, 4: 4, 5: 4 }), allowBalance: true })), '1,2,3', 'one apart: no move');
  // Fewer candidates than replicas: all of them.
  assert.equal(ids(chooseReplicas({ current: roles({ 1: 'voter' }), candidates: [1, 2], replicas: 3, load: load({}), allowBalance: true })), '1,2');
});

test('learnerCaughtUp: only a learner that replicates and acknowledged the range\'s log is promoted, however short the log (seed 937)', () => {
  const log = (first: number, last: number) => ({ firstIndex: () => first, lastIndex: () => last });
  // A range just split: its log starts at 6 and ends at 9. A learner on a node that is down never answered.
  assert.equal(learnerCaughtUp({ state: 'probe', match: 0 }, log(6, 9)), false);
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 0 }, log(6, 9)), false);
  assert.equal(learnerCaughtUp({ state: 'snapshot', match: 0 }, log(6, 9)), false);
  assert.equal(learnerCaughtUp(undefined, log(6, 9)), false);
  // Acknowledged the log (or a snapshot at its start): caught up.
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 5 }, log(6, 9)), true);
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 9 }, log(6, 9)), true);
  // Behind the compacted start of the log (it needs a snapshot): not caught up.
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 3 }, log(100, 105)), false);
  // Lag counts in entries.
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 1000 }, log(1, 1000 + PROMOTE_MAX_LAG_ENTRIES)), true);
  assert.equal(learnerCaughtUp({ state: 'replicate', match: 1000 }, log(1, 1001 + PROMOTE_MAX_LAG_ENTRIES)), false);
});

test('chooseReplicas: with --locality, a range\'s replicas spread across localities before load counts; moves make a range more diverse, and balance never makes it less', () => {
  const zones: Record<number, string> = { 1: 'zone=a', 2: 'zone=a', 3: 'zone=b', 4: 'zone=b', 5: 'zone=c' };
  const localityOf = (id: number): string | undefined => zones[id];
  const load = (entries: [number, number][]): Map<number, number> => new Map(entries);
  const ids = (m: Map<number, unknown>): number[] => [...m.keys()].sort((a, b) => a - b);
  // A new range: one replica per zone, the least loaded in each.
  const fresh = chooseReplicas({ current: new Map(), candidates: [1, 2, 3, 4, 5], replicas: 3, load: load([[1, 5], [2, 1], [3, 0], [4, 2], [5, 9]]), allowBalance: false, localityOf });
  assert.deepEqual(ids(fresh), [2, 3, 5]);
  // Without localities, the three least loaded.
  assert.deepEqual(ids(chooseReplicas({ current: new Map(), candidates: [1, 2, 3, 4, 5], replicas: 3, load: load([[1, 5], [2, 1], [3, 0], [4, 2], [5, 9]]), allowBalance: false })), [2, 3, 4]);
  // Two replicas in zone a: the more loaded gives way to zone c, once balancing is allowed.
  const crowded = new Map<number, 'voter'>([[1, 'voter'], [2, 'voter'], [3, 'voter']]);
  const loads = load([[1, 3], [2, 2], [3, 2], [4, 2], [5, 4]]);
  assert.deepEqual(ids(chooseReplicas({ current: crowded, candidates: [1, 2, 3, 4, 5], replicas: 3, load: loads, allowBalance: false, localityOf })), [1, 2, 3]);
  assert.deepEqual(ids(chooseReplicas({ current: crowded, candidates: [1, 2, 3, 4, 5], replicas: 3, load: loads, allowBalance: true, localityOf })), [2, 3, 5]);
  // Spread already: the loaded member in zone a gives way only within zone a (node 2), never to zone b's idle node 4.
  const spread = new Map<number, 'voter'>([[1, 'voter'], [3, 'voter'], [5, 'voter']]);
  assert.deepEqual(ids(chooseReplicas({ current: spread, candidates: [1, 2, 3, 4, 5], replicas: 3, load: load([[1, 9], [2, 5], [3, 1], [4, 0], [5, 1]]), allowBalance: true, localityOf })), [2, 3, 5]);
  assert.deepEqual(ids(chooseReplicas({ current: spread, candidates: [1, 3, 4, 5], replicas: 3, load: load([[1, 9], [3, 1], [4, 0], [5, 1]]), allowBalance: true, localityOf })), [1, 3, 5]);
  // Tiers: another region before another zone of the same region.
  const tiered: Record<number, string> = { 1: 'region=x,zone=1', 2: 'region=x,zone=2', 3: 'region=y,zone=1' };
  assert.deepEqual(ids(chooseReplicas({ current: new Map([[1, 'voter']]), candidates: [1, 2, 3], replicas: 2, load: load([[3, 5]]), allowBalance: false, localityOf: (id) => tiered[id] })), [1, 3]);
  assert.equal(diversity([['region=x', 'zone=1'], ['region=x', 'zone=2']]), 1);
  assert.equal(diversity([['region=x', 'zone=1'], ['region=y', 'zone=1']]), 2);
  assert.equal(diversity([[], []]), 0);
});

test('localityProblem: --locality is comma-separated key=value tiers, each key once, within its limits', () => {
  assert.equal(localityProblem(''), undefined);
  assert.equal(localityProblem('zone=a'), undefined);
  assert.equal(localityProblem('region=us-east1,zone=us-east1-b,rack=r:12'), undefined);
  for (const bad of ['zone', 'zone=', '=a', 'zone=a,zone=b', 'zone=a b', 'zone=a,', `zone=${'x'.repeat(300)}`, Array.from({ length: 9 }, (_, i) => `t${i}=v`).join(',')]) {
    assert.equal(typeof localityProblem(bad), 'string', bad);
  }
});

const MiB = 1024 * 1024;
const figures = (o: Record<number, number>, unit = MiB): Map<number, number> => new Map(Object.entries(o).map(([k, v]) => [Number(k), v * unit]));

test('chooseReplicas by bytes (ADR 0015): a byte-overfull member gives a big enough range to the node with fewest bytes, only within the thresholds', () => {
  const candidates = [1, 2, 3, 4, 5];
  const settled = roles({ 1: 'voter', 2: 'voter', 3: 'voter' });
  const counts = load({ 1: 3, 2: 3, 3: 3, 4: 3, 5: 3 });
  // Node 1 holds 60 MiB against a mean of 24 (over 1.2× and 4 MiB above it); node 4 holds fewest.
  const perNode = figures({ 1: 60, 2: 20, 3: 20, 4: 5, 5: 15 });
  const moves: string[] = [];
  const choose = (o: { range: number; perNode?: Map<number, number>; load?: Map<number, number>; minImbalance?: number; allowBalance?: boolean }): string =>
    ids(
      chooseReplicas({
        current: settled,
        candidates,
        replicas: 3,
        load: o.load ?? counts,
        allowBalance: o.allowBalance ?? true,
        bytes: { perNode: o.perNode ?? perNode, range: o.range * MiB, minImbalance: o.minImbalance ?? 4 * MiB },
        onBalance: (m) => moves.push(`${m.reason} ${m.out}->${m.into}`),
      }),
    );
  assert.equal(choose({ range: 12 }), '2,3,4');
  assert.deepEqual(moves, ['bytes 1->4']);
  assert.equal(choose({ range: 12, allowBalance: false }), '1,2,3', 'damped like every balancing move');
  // Node 4 ends at 17 MiB, within 1.1× the mean (26.4); a 22 MiB range would take it to 27: node 5 cannot take it either.
  assert.equal(choose({ range: 22 }), '1,2,3', 'no receiver stays under 1.1× the mean');
  // The floor is the smaller of node 1's average replica (20 MiB) and an eighth of its excess (4.5 MiB).
  assert.equal(choose({ range: 4 }), '1,2,3', 'too small to be worth a move');
  assert.equal(choose({ range: 5 }), '2,3,4');
  // Within 1.2× the mean, or less than the minimum imbalance above it: nothing.
  assert.equal(choose({ range: 12, perNode: figures({ 1: 28, 2: 24, 3: 24, 4: 20, 5: 24 }) }), '1,2,3');
  assert.equal(choose({ range: 12, minImbalance: 40 * MiB }), '1,2,3');
  // A node without a load report: the mean is unknown, so bytes weigh nothing.
  assert.equal(choose({ range: 12, perNode: figures({ 1: 60, 2: 20, 3: 20, 4: 5 }) }), '1,2,3');
  // A receiver holding more than BYTE_MOVE_COUNT_SLACK replicas above node 1 is passed over: node 5 takes it.
  assert.equal(choose({ range: 10, load: load({ 1: 3, 2: 3, 3: 3, 4: 3 + BYTE_MOVE_COUNT_SLACK + 1, 5: 3 }) }), '2,3,5');
  assert.equal(choose({ range: 10, load: load({ 1: 3, 2: 3, 3: 3, 4: 3 + BYTE_MOVE_COUNT_SLACK, 5: 3 }) }), '2,3,4');
});

test('chooseReplicas by bytes: counts come first, never at the price of a byte-overfull receiver; diversity before either', () => {
  const candidates = [1, 2, 3, 4, 5];
  const settled = roles({ 1: 'voter', 2: 'voter', 3: 'voter' });
  // Counts say node 1 (5 replicas) gives way to node 4 (3): with 12 MiB more node 4 would be overfull (41 > 1.2 × 27.4); node 5 (3) takes it.
  const bytes = { perNode: figures({ 1: 30, 2: 30, 3: 30, 4: 29, 5: 10 }), range: 12 * MiB, minImbalance: 4 * MiB };
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 5, 2: 4, 3: 4, 4: 3, 5: 3 }), allowBalance: true, bytes })), '2,3,5');
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: load({ 1: 5, 2: 4, 3: 4, 4: 3, 5: 4 }), allowBalance: true, bytes })), '1,2,3');
  // Localities: node 1 is alone in zone a; the only light node is in zone b with node 2: no byte move.
  const zones: Record<number, string> = { 1: 'zone=a', 2: 'zone=b', 3: 'zone=c', 4: 'zone=b', 5: 'zone=c' };
  const heavy = { perNode: figures({ 1: 60, 2: 20, 3: 20, 4: 5, 5: 15 }), range: 12 * MiB, minImbalance: 4 * MiB };
  const counts = load({ 1: 3, 2: 3, 3: 3, 4: 3, 5: 3 });
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: counts, allowBalance: true, bytes: heavy, localityOf: (id) => zones[id] })), '1,2,3');
  assert.equal(ids(chooseReplicas({ current: settled, candidates, replicas: 3, load: counts, allowBalance: true, bytes: heavy })), '2,3,4');
});

test('chooseReplicas by bytes: mid-move, the byte-overfull member is the one that goes, whatever the counts say', () => {
  // A byte move from node 1 to node 4 added node 4; node 2 holds most replicas, but node 1 is overfull.
  const moving = roles({ 1: 'voter', 2: 'voter', 3: 'voter', 4: 'voter' });
  const counts = load({ 1: 3, 2: 4, 3: 3, 4: 4, 5: 3 });
  const perNode = figures({ 1: 60, 2: 20, 3: 20, 4: 17, 5: 15 });
  assert.equal(ids(chooseReplicas({ current: moving, candidates: [1, 2, 3, 4, 5], replicas: 3, load: counts, allowBalance: false, bytes: { perNode, range: 12 * MiB, minImbalance: 4 * MiB } })), '2,3,4');
  // Counts alone would drop node 4 (the receiver, tied with node 2 on count and higher by id), undoing the move.
  assert.equal(ids(chooseReplicas({ current: moving, candidates: [1, 2, 3, 4, 5], replicas: 3, load: counts, allowBalance: false })), '1,2,3');
});

/** A small deterministic generator (tests stay repeatable without Math.random). */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

test('chooseReplicas by bytes: rounds of decisions taken at once on stale figures even out bytes and counts, then stop moving', () => {
  const nodes = [1, 2, 3, 4, 5, 6];
  // grow: 36 ranges, a third of them big, all on nodes 1-3 (a cluster that grew from three nodes);
  // swap: 12 big ranges on nodes 1-3 and 12 small ones on nodes 4-6 (counts even, bytes not);
  // random: 24 ranges, half of them big, each on three nodes drawn at random.
  for (const layout of ['grow', 'swap', 'random'] as const) {
    // Leaderships that rotate every round, or that never move but when a node asks for one (askToShed).
    for (const leaders of ['rotating', 'still'] as const) {
      for (const seed of [1, 2, 3, 4, 5, 6]) {
        const rand = lcg(seed);
        const count = layout === 'grow' ? 36 : 24;
        const big = (i: number): boolean => (layout === 'grow' ? i % 3 === 0 : i < 12);
        const sizes = Array.from({ length: count }, (_, i) => (big(i) ? 30 + Math.floor(rand() * 30) : 1 + Math.floor(rand() * 8)) * MiB);
        const drawn = (): number[] => {
          const set: number[] = [];
          while (set.length < 3) {
            const n = 1 + Math.floor(rand() * nodes.length);
            if (!set.includes(n)) set.push(n);
          }
          return set;
        };
        const placed = sizes.map((_, i) => (layout === 'random' ? drawn() : layout === 'swap' && !big(i) ? [4, 5, 6] : [1, 2, 3]));
        const asked = new Map<number, number>();
        const leaderOf = (i: number, round: number): number => {
          const set = placed[i] as number[];
          const a = asked.get(i);
          if (a !== undefined && set.includes(a)) return a;
          return leaders === 'rotating' ? (set[(i + round) % 3] as number) : ([...set].sort((x, y) => ((x * 7 + i) % 5) - ((y * 7 + i) % 5) || x - y)[0] as number);
        };
        const tally = (): { bytes: Map<number, number>; counts: Map<number, number> } => {
          const bytes = new Map(nodes.map((n) => [n, 0]));
          const counts = new Map(nodes.map((n) => [n, 0]));
          placed.forEach((set, i) => set.forEach((n) => (bytes.set(n, (bytes.get(n) as number) + (sizes[i] as number)), counts.set(n, (counts.get(n) as number) + 1))));
          return { bytes, counts };
        };
        const goalOf = (i: number, self: number, f: ReturnType<typeof tally>, onBalance?: (m: { reason: string }) => void): number[] => [
          ...chooseReplicas({
            current: new Map((placed[i] as number[]).map((n) => [n, 'voter' as Role])),
            candidates: nodes,
            replicas: 3,
            load: f.counts,
            allowBalance: true,
            bytes: { perNode: f.bytes, range: sizes[i] as number, minImbalance: 4 * MiB },
            self,
            ...(onBalance === undefined ? {} : { onBalance }),
          }).keys(),
        ];
        let lastMoveRound = -1;
        let moves = 0;
        const byReason = new Map<string, number>();
        for (let round = 0; round < 300; round++) {
          // Every leader decides on the figures of the round's start (the worst case: no decision sees
          // another's effect), one move per leader node per round (BALANCE_EVERY_TICKS).
          const figures = tally();
          const busy = new Set<number>();
          placed.forEach((set, i) => {
            const leader = leaderOf(i, round);
            if (busy.has(leader)) return;
            const next = goalOf(i, leader, figures, (m) => byReason.set(m.reason, (byReason.get(m.reason) ?? 0) + 1));
            if (next.every((n) => set.includes(n))) return;
            busy.add(leader);
            placed[i] = next;
            asked.delete(i);
            lastMoveRound = round;
            moves++;
          });
          // A node that started no move asks for the leadership of the first range it would give way in.
          const now = tally();
          for (const node of nodes) {
            if (busy.has(node)) continue;
            const i = placed.findIndex((set, j) => set.includes(node) && leaderOf(j, round) !== node && !goalOf(j, node, now).includes(node));
            if (i >= 0) asked.set(i, node);
          }
        }
        const { bytes, counts } = tally();
        const b = [...bytes.values()];
        const mean = b.reduce((x, y) => x + y, 0) / nodes.length;
        const c = [...counts.values()];
        const what = `${layout}, leaders ${leaders}, seed ${seed}: bytes per node ${b.map((x) => Math.round(x / MiB)).join('/')} MiB, replicas ${c.join('/')}, ${moves} moves (${[...byReason].join(' ')}), the last in round ${lastMoveRound}`;
        assert.ok(lastMoveRound < 100, `still moving: ${what}`);
        assert.ok(Math.max(...b) <= 1.2 * mean + 4 * MiB && Math.min(...b) >= 0.8 * mean - 4 * MiB, `bytes not within 0.8-1.2x the mean: ${what}`);
        assert.ok(Math.max(...c) - Math.min(...c) <= 2, `counts spread: ${what}`);
        // No back and forth: at most one move per replica of the layout, about.
        assert.ok(moves <= count * 3, `too many moves: ${what}`);
        if (layout === 'swap') assert.ok((byReason.get('bytes') ?? 0) > 0, `no byte move: ${what}`);
      }
    }
  }
});

test('chooseReplicas: with self, only that node\'s own replica gives way for counts or bytes', () => {
  const settled = roles({ 1: 'voter', 2: 'voter', 3: 'voter' });
  const counts = load({ 1: 3, 2: 3, 3: 3, 4: 3, 5: 3 });
  const bytes = { perNode: figures({ 1: 60, 2: 20, 3: 20, 4: 5, 5: 15 }), range: 12 * MiB, minImbalance: 4 * MiB };
  assert.equal(ids(chooseReplicas({ current: settled, candidates: [1, 2, 3, 4, 5], replicas: 3, load: counts, allowBalance: true, bytes, self: 1 })), '2,3,4');
  assert.equal(ids(chooseReplicas({ current: settled, candidates: [1, 2, 3, 4, 5], replicas: 3, load: counts, allowBalance: true, bytes, self: 2 })), '1,2,3');
  const heavyCounts = load({ 1: 6, 2: 5, 3: 5, 4: 3, 5: 5 });
  assert.equal(ids(chooseReplicas({ current: settled, candidates: [1, 2, 3, 4, 5], replicas: 3, load: heavyCounts, allowBalance: true, self: 1 })), '2,3,4');
  assert.equal(ids(chooseReplicas({ current: settled, candidates: [1, 2, 3, 4, 5], replicas: 3, load: heavyCounts, allowBalance: true, self: 3 })), '1,2,3');
});
