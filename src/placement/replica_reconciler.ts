import type { ConfChange, ConfState, NodeId } from '../raft/index.js';
import { type KvNode, META_RANGE, type RangeDescriptor, type RangeId } from '../kv/index.js';
import type { MergePlans } from './merge_queue.js';
import { DEFAULT_MIN_BYTES_IMBALANCE, type LoadFigures, MIN_MOVE_SHARE_OF_EXCESS, mayReceive, meanOver, overfull, underfull } from './load_balance.js';

/** A learner is promoted once its log is within this many entries of the leader's. */
export const PROMOTE_MAX_LAG_ENTRIES = 16;

export interface ReplicaReconcilerOptions {
  readonly kv: KvNode;
  /**
   * Replicas per range other than range 1 (`--replicas`); 0 or absent: every
   * member holds every range. Range 1 (the meta range) is always on every
   * member.
   */
  readonly replicas?: number;
  /** A member this node has not heard from for this many ticks is dead: its replicas are made again elsewhere (`--dead-after-ms`); 0 or absent: never. */
  readonly deadAfterTicks?: number;
  /** What merges want of placement (the MergeQueue, ADR 0014): right-hand ranges moved onto their left neighbour's voters, sides not balanced. */
  readonly merges?: MergePlans;
  /** Told of each membership change proposed for a range. */
  readonly observe?: (event: { readonly rangeId: RangeId; readonly change: string }) => void;
  /** Told of each balancing move chosen, and the rule that chose it (ADR 0015). */
  readonly observeBalance?: (event: { readonly rangeId: RangeId } & BalanceMove) => void;
  /** No node is byte-overfull by less than this above the mean (DEFAULT_MIN_BYTES_IMBALANCE); the simulator's ranges are small. */
  readonly minBytesImbalance?: number;
}

type Role = 'voter' | 'learner';

/**
 * Quiesced ranges (ADR 0010) are looked at whenever range 1's configuration
 * changes, and once every this many ticks as a safety net (a minute at the
 * default 100 ms tick); awake ones at every tick. A range cannot quiesce
 * while it lacks a change this reconciler would make: it is awake, and so
 * looked at every tick, until the change is proposed, and a pending change
 * or a lagging learner keeps it awake. What it lacks changes only with
 * range 1's configuration, or with its own leadership, which wakes it.
 */
export const RECONCILE_QUIESCED_EVERY_TICKS = 600;

/**
 * Keeps every range's replicas in step with the cluster's members (issue
 * 13). Until placement chooses replica sets, every range has the members of
 * range 1, whose configuration etcd's Cluster API changes: a member added
 * there is added to every range, as a learner first and a voter once it has
 * caught up (through a snapshot: the range's log starts at its split), and a
 * member removed there is removed from every range. Only a range's leader
 * changes it, one change at a time, each a single-member Raft change (no
 * joint configuration is needed for one voter). A leader that must itself
 * go hands its leadership to another voter first.
 */
export class ReplicaReconciler {
  private ticks = 0;
  private lastTarget = '';
  /** Decommissioned members whose removal from range 1 is in flight. */
  private readonly removing = new Set<NodeId>();
  private counts: ReadonlyMap<NodeId, number> | undefined;
  /** Ranges with a step of a change under way, looked at every tick even when quiesced. */
  private readonly followUp = new Set<RangeId>();
  /** The meta table `counts` were taken from (MetaTable.all: a new array on every change). */
  private countedFrom: readonly RangeDescriptor[] | undefined;
  private bytes: ReadonlyMap<NodeId, number> | undefined;
  private bytesAt = -1;
  private lastBalanceTick = -BALANCE_EVERY_TICKS;
  private lastAskTick = -BALANCE_EVERY_TICKS;
  private balancing = true;

  /** No more balancing moves from now on (repairs go on): the simulator's quiet period wants none. */
  stopBalancing(): void {
    this.balancing = false;
  }

  constructor(private readonly o: ReplicaReconcilerOptions) {}

  /**
   * On range 1's leader: a member being decommissioned that no other range
   * still has in its configuration (on this node, or in the meta table) is
   * removed from range 1, which takes it out of the cluster; it stops once it
   * learns so. Until every range has dropped it, its vote may be needed there.
   */
  private finishDecommissions(leadsMeta: boolean): void {
    if (!leadsMeta) return;
    const kv = this.o.kv;
    const self = kv.store.replica(META_RANGE)?.raw.raft.id;
    for (const m of kv.stateMachine.members.all()) {
      // Never itself: a leader that commits its own removal and stops at once may leave the others
      // without the commit index, and without its vote (its Drainer hands the leadership over first).
      if (m.decommissioning !== true || m.id === self || this.removing.has(m.id)) continue;
      // The ranges here, and those only other nodes hold, as the meta table lists them (placement, ADR 0012).
      const listed = (kv.stateMachine.metaTable?.all() ?? []).some((d) => d.rangeId !== META_RANGE && d.replicas.some((r) => r.nodeId === m.id));
      const held = listed || kv.store.rangeIds().some((rangeId) => {
        if (rangeId === META_RANGE) return false;
        const cs = kv.store.replica(rangeId)?.currentConfState();
        return cs !== undefined && [...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext].includes(m.id);
      });
      if (held) continue;
      this.removing.add(m.id);
      const id = m.id;
      kv.membership.remove(id, (o) => {
        this.removing.delete(id);
        this.o.observe?.({ rangeId: META_RANGE, change: o.ok ? `removed decommissioned member ${id}` : `removing decommissioned member ${id} failed: ${o.error.message}` });
      });
    }
  }

  private isDead(id: NodeId): boolean {
    const after = this.o.deadAfterTicks ?? 0;
    return after > 0 && this.o.kv.store.silentTicksOf(id) >= after;
  }

  /** The bytes each node reported (ADR 0015), taken once per tick. */
  private nodeBytes(): ReadonlyMap<NodeId, number> {
    if (this.bytes !== undefined && this.bytesAt === this.ticks) return this.bytes;
    this.bytes = new Map([...this.o.kv.nodeLoads()].map(([id, load]) => [id, load.bytes]));
    this.bytesAt = this.ticks;
    return this.bytes;
  }

  /** Replicas per node in the meta table, counted again when the table changed (at 10,000 ranges a recount every second was a twentieth of an idle node's CPU). */
  private replicaCounts(): ReadonlyMap<NodeId, number> {
    const table = this.o.kv.stateMachine.metaTable?.all() ?? [];
    if (this.counts !== undefined && this.countedFrom === table) return this.counts;
    const counts = new Map<NodeId, number>();
    for (const d of table) for (const r of d.replicas) counts.set(r.nodeId, (counts.get(r.nodeId) ?? 0) + 1);
    this.counts = counts;
    this.countedFrom = table;
    return counts;
  }

  /**
   * chooseReplicas for a range, balancing moves one at a time per node: at
   * most one every BALANCE_EVERY_TICKS, so the meta table's counts (which a
   * move changes a repair later) catch up before the next one is chosen.
   */
  private placementGoal(rangeId: RangeId, current: ReadonlyMap<NodeId, Role>, candidates: readonly NodeId[], self: NodeId): Map<NodeId, Role> {
    const replicas = this.o.replicas ?? 0;
    const relocation = relocationGoal(this.o.merges?.relocationGoal(rangeId), candidates, replicas);
    if (relocation !== undefined) return relocation;
    const allowBalance = this.balancing && this.ticks - this.lastBalanceTick >= BALANCE_EVERY_TICKS && this.o.merges?.holdsBalance(rangeId) !== true;
    const members = this.o.kv.stateMachine.members;
    // Each node's bytes as its load reports say (ADR 0015), with this range's own size, which its leader knows;
    // also while balancing waits: a byte move under way needs them to drop the member it relieves.
    const bytes = { perNode: this.nodeBytes(), minImbalance: this.o.minBytesImbalance ?? DEFAULT_MIN_BYTES_IMBALANCE, range: this.o.kv.stateMachineOf(rangeId).approxBytes };
    const goal = chooseReplicas({
      current,
      candidates,
      replicas,
      load: this.replicaCounts(),
      allowBalance,
      localityOf: (id) => members.get(id)?.locality,
      bytes,
      onBalance: (move) => this.o.observeBalance?.({ rangeId, ...move }),
      self,
    });
    const wasSettled = current.size === replicas && [...current].every(([id, role]) => role === 'voter' && candidates.includes(id));
    if (wasSettled && [...goal.keys()].some((id) => !current.has(id))) this.lastBalanceTick = this.ticks;
    return goal;
  }

  tick(): void {
    const meta = this.o.kv.store.replica(META_RANGE);
    if (meta === undefined) return;
    const target = rolesOf(meta.currentConfState());
    // Mid-change on range 1 (a joint configuration): wait until the members are settled.
    if (target === undefined) return;
    // A member being decommissioned leaves every other range first (range 1 removes it last: finishDecommissions).
    const members = this.o.kv.stateMachine.members;
    for (const id of [...target.keys()]) if (members.get(id)?.decommissioning === true) target.delete(id);
    this.finishDecommissions(meta.raw.raft.state === 'leader');
    const placing = (this.o.replicas ?? 0) > 0;
    const self = meta.raw.raft.id;
    const candidates = placing ? [...target].filter(([id, role]) => role === 'voter' && (id === self || !this.isDead(id))).map(([id]) => id).sort((a, b) => a - b) : [];
    const targetKey = `${[...target].map(([id, role]) => `${id}:${role}`).sort().join(',')}/${candidates.join(',')}`;
    // The tick is counted first: the counter also paces balancing and recounts, so a tick whose target changed counts too.
    this.ticks++;
    const all = targetKey !== this.lastTarget || this.ticks % RECONCILE_QUIESCED_EVERY_TICKS === 0;
    this.lastTarget = targetKey;
    const store = this.o.kv.store;
    // Ranges this reconciler changed are looked at until they need nothing more: a range may
    // quiesce the tick its change applies, before the next step of a move (add, promote, remove).
    for (const id of this.o.merges?.takeChanged() ?? []) this.followUp.add(id);
    const visit = all ? store.rangeIds() : [...new Set([...store.awakeRangeIds(), ...this.followUp])];
    for (const rangeId of visit) {
      if (rangeId === META_RANGE) continue;
      const replica = this.o.kv.store.replica(rangeId);
      const raft = replica?.raw.raft;
      if (replica === undefined || raft === undefined || raft.state !== 'leader') {
        this.followUp.delete(rangeId);
        continue;
      }
      // One change at a time: Raft refuses a second while one is unapplied.
      if (raft.pendingConfIndex > replica.appliedIndex()) continue;
      // From a freeze until its merge applies or is aborted, neither side moves (ADR 0014): a frozen
      // range refuses the change, and one to the left side makes the merge refused.
      if (this.o.kv.mergePinned(rangeId)) continue;
      const current = rolesOf(replica.currentConfState());
      if (current === undefined) {
        // A split copies its parent's configuration, a joint one too (range 1 mid-change, left by
        // an explicit command there only): this range leaves it itself, or it could never change.
        const res = this.o.kv.store.proposeConfChange(rangeId, { transition: 'explicit', changes: [] });
        if (res.kind !== 'dropped') this.o.observe?.({ rangeId, change: 'leave the joint configuration' });
        continue;
      }
      const goal = placing ? this.placementGoal(rangeId, current, candidates, raft.id) : target;
      const step = nextStep(current, goal, raft.id, (id) => learnerCaughtUp(raft.trk.progress.get(id), raft.raftLog));
      if (step === undefined) {
        this.followUp.delete(rangeId);
        continue;
      }
      this.followUp.add(rangeId);
      if (step.kind === 'transfer') {
        this.o.kv.store.transferLeader(rangeId, step.to);
        this.o.observe?.({ rangeId, change: `transfer leadership to ${step.to} before leaving` });
        continue;
      }
      const res = this.o.kv.store.proposeConfChange(rangeId, step.change);
      if (res.kind !== 'dropped') this.o.observe?.({ rangeId, change: step.change.changes.map((c) => `${c.type} ${c.nodeId}`).join(', ') });
    }
    if (placing) this.askToShed(candidates, self);
  }

  /**
   * Count and byte moves take only the deciding leader's own replica away
   * (chooseReplicas' `self`), so a node with load to shed must lead a range
   * it can shed it from. When balancing is due and this node started no
   * move, it looks at the settled ranges it follows and asks the leader of
   * the first one it would give way in for the leadership (a follower's
   * transfer request, as etcd's raft takes it); once it leads, its next
   * look moves its replica. At most one ask every BALANCE_EVERY_TICKS: a
   * cluster whose leaderships sit still (the leader counts balanced) would
   * otherwise keep counts or bytes unbalanced for good (the model test
   * found counts stuck at 22/22/21/15/14/14 without it).
   */
  private askToShed(candidates: readonly NodeId[], self: NodeId): void {
    const replicas = this.o.replicas ?? 0;
    if (!this.balancing || this.ticks - this.lastBalanceTick < BALANCE_EVERY_TICKS || this.ticks - this.lastAskTick < BALANCE_EVERY_TICKS) return;
    this.lastAskTick = this.ticks;
    // Only settled ranges are looked at below, and one holds `replicas` of the candidates: with no more
    // candidates than that, each holds them all, and no move can take this node's replica anywhere.
    // (At 10,000 ranges on 3 nodes, the walk below was an eighth of an idle node's CPU.)
    if (candidates.length <= replicas) return;
    const store = this.o.kv.store;
    const members = this.o.kv.stateMachine.members;
    for (const rangeId of store.rangeIds()) {
      if (rangeId === META_RANGE) continue;
      const replica = store.replica(rangeId);
      const raft = replica?.raw.raft;
      if (replica === undefined || raft === undefined || raft.state !== 'follower' || raft.lead === 0 || !candidates.includes(raft.lead)) continue;
      if (this.o.kv.mergePinned(rangeId) || this.o.merges?.holdsBalance(rangeId) === true || this.o.merges?.relocationGoal(rangeId) !== undefined) continue;
      const current = rolesOf(replica.currentConfState());
      if (current === undefined || current.size !== replicas || current.get(self) !== 'voter' || ![...current].every(([id, role]) => role === 'voter' && candidates.includes(id))) continue;
      const goal = chooseReplicas({
        current,
        candidates,
        replicas,
        load: this.replicaCounts(),
        allowBalance: true,
        localityOf: (id) => members.get(id)?.locality,
        bytes: { perNode: this.nodeBytes(), minImbalance: this.o.minBytesImbalance ?? DEFAULT_MIN_BYTES_IMBALANCE, range: this.o.kv.stateMachineOf(rangeId).approxBytes },
        self,
      });
      if (goal.has(self)) continue;
      store.transferLeader(rangeId, self);
      this.o.observe?.({ rangeId, change: `ask for the leadership, to move this node's replica away (balance)` });
      return;
    }
  }
}

/** Ticks between two balancing moves started by one node (5 s at the default 100 ms tick). */
export const BALANCE_EVERY_TICKS = 50;

/**
 * The replicas a range should have under `--replicas` (issue 13,
 * placement): its current members that are still candidates (voters of
 * range 1, not decommissioning, not dead), at most `replicas` of them; then
 * other candidates until there are `replicas`. Each pick keeps the set as
 * diverse as it can be across `--locality` tiers (`diversity`, as
 * CockroachDB's allocator does), then takes the least loaded. Once the
 * range has its count, one move at a time (balanceMove): first one that
 * makes the set more diverse, else one that balances replica counts, else
 * one that balances bytes (ADR 0015), never making the set less diverse.
 * Load is the number of replicas a node holds; ties go to current voters,
 * then to lower ids, so every leader decides alike. With byte figures, a
 * byte-overfull member is the first to go from a range with too many (the
 * second half of a byte move: the member it relieves leaves, whoever the
 * range's leader is by then).
 */
export function chooseReplicas(o: {
  readonly current: ReadonlyMap<NodeId, Role>;
  readonly candidates: readonly NodeId[];
  readonly replicas: number;
  readonly load: ReadonlyMap<NodeId, number>;
  /** Whether a balancing move may be chosen now (repairs always may). */
  readonly allowBalance: boolean;
  /** A node's `--locality` (absent or empty: none; every such node counts as one locality). */
  readonly localityOf?: (id: NodeId) => string | undefined;
  /** The bytes each node holds (its load reports, ADR 0015) and this range's approximate size; absent: counts only. */
  readonly bytes?: LoadFigures & { readonly range: number };
  /** Told which rule chose the balancing move, if one was chosen. */
  readonly onBalance?: (move: BalanceMove) => void;
  /**
   * The deciding leader's node: count and byte moves only take its own
   * replica away (absent: any member's). Each node sheds its own load, one
   * move per damping interval, as CockroachDB's store rebalancer does, so
   * leaders deciding at once on the same figures do not all move load off
   * one node and overshoot.
   */
  readonly self?: NodeId;
}): Map<NodeId, Role> {
  const loadOf = (id: NodeId): number => o.load.get(id) ?? 0;
  const rank = (id: NodeId): number => (o.current.get(id) === 'voter' ? 0 : 1);
  const meanBytes = o.bytes === undefined ? undefined : meanOver(o.bytes, o.candidates);
  const bytes = o.bytes === undefined || meanBytes === undefined ? undefined : { ...o.bytes, mean: meanBytes };
  const bytesOf = (id: NodeId): number => bytes?.perNode.get(id) ?? 0;
  const heavy = (id: NodeId): number => (bytes !== undefined && overfull(bytesOf(id), bytes.mean, bytes.minImbalance) ? 1 : 0);
  const order = (a: NodeId, b: NodeId): number => loadOf(a) - loadOf(b) || rank(a) - rank(b) || a - b;
  const tiers = new Map<NodeId, readonly string[]>();
  const tiersOf = (id: NodeId): readonly string[] => {
    let t = tiers.get(id);
    if (t === undefined) tiers.set(id, (t = splitLocality(o.localityOf?.(id))));
    return t;
  };
  const score = (set: readonly NodeId[]): number => diversity(set.map(tiersOf));
  const live = new Set(o.candidates);
  const pick = (from: NodeId[], into: NodeId[]): void => {
    // The most diverse addition; among equals, the first in `order`.
    let best = -1;
    let bestScore = -1;
    for (let i = 0; i < from.length; i++) {
      const sc = score([...into, from[i] as NodeId]);
      if (sc > bestScore) [best, bestScore] = [i, sc];
    }
    into.push(from.splice(best, 1)[0] as NodeId);
  };
  // A byte-overfull member is kept last, so it is the one a range with too many drops.
  const kept = [...o.current.keys()].filter((id) => live.has(id)).sort((a, b) => heavy(a) - heavy(b) || order(a, b));
  const chosen: NodeId[] = [];
  while (chosen.length < o.replicas && kept.length > 0) pick(kept, chosen);
  const others = o.candidates.filter((id) => !o.current.has(id)).sort(order);
  while (chosen.length < o.replicas && others.length > 0) pick(others, chosen);
  const settled = chosen.length === o.replicas && o.current.size === o.replicas && chosen.every((id) => o.current.get(id) === 'voter');
  if (o.allowBalance && settled && others.length > 0) {
    const move = balanceMove(chosen, others, { order, loadOf, score, ...(bytes === undefined ? {} : { bytes }), ...(o.self === undefined ? {} : { self: o.self }) });
    if (move !== undefined) o.onBalance?.(move);
  }
  return new Map(chosen.map((id) => [id, 'voter' as Role]));
}

/**
 * A byte move's receiver holds at most this many more replicas than the
 * member it relieves. With none, counts and bytes can hold each other
 * still: a node low on bytes but one replica up would never receive, and
 * the count rule would not move small ranges to it either (the model test
 * in replica_reconciler.test.ts found both on seeds of a grown cluster).
 * The count rule then hands small ranges back.
 */
export const BYTE_MOVE_COUNT_SLACK = 2;

/** A balancing move chosen for a settled range: which rule chose it, and the member that gives way to another node. */
export interface BalanceMove {
  readonly reason: 'diversity' | 'count' | 'bytes';
  readonly out: NodeId;
  readonly into: NodeId;
}

/**
 * One move on a settled range, made in place on `chosen`; the first rule
 * that finds one wins:
 * 1. diversity: the swap that makes the set most diverse;
 * 2. count: the member holding most replicas, if above the mean of the
 *    nodes that could replace it, gives way to the least loaded of those
 *    below that mean and holding at least two fewer (so the two never trade
 *    places), unless this range is at least the member's average replica
 *    and the receiver would end above RECEIVER_MAX_RATIO times the mean
 *    bytes, or the range would make the receiver byte-overfull (a node
 *    overfull already takes a smaller range: the other half of a swap);
 * 3. bytes (ADR 0015): the member holding most bytes, if byte-overfull
 *    (or above the mean while some node is underfull), gives way to the
 *    candidate holding fewest bytes that ends below it, if this range is at
 *    least the average size of that member's replicas or an eighth of its
 *    excess (MIN_MOVE_SHARE_OF_EXCESS: big ranges first), the receiver
 *    ends at most RECEIVER_MAX_RATIO times the mean bytes (hysteresis),
 *    and the receiver holds at most BYTE_MOVE_COUNT_SLACK more replicas
 *    than the member (the count rule then moves small ranges back, but
 *    never a big one into a byte-overfull node).
 * Rules 2 and 3 never make the set less diverse, and with `self` only
 * take self's replica away.
 */
function balanceMove(
  chosen: NodeId[],
  others: readonly NodeId[],
  f: {
    readonly order: (a: NodeId, b: NodeId) => number;
    readonly loadOf: (id: NodeId) => number;
    readonly score: (set: readonly NodeId[]) => number;
    readonly bytes?: LoadFigures & { readonly range: number; readonly mean: number };
    readonly self?: NodeId;
  },
): BalanceMove | undefined {
  const now = f.score(chosen);
  const swapped = (out: NodeId, into: NodeId): NodeId[] => chosen.map((id) => (id === out ? into : id));
  const apply = (reason: BalanceMove['reason'], out: NodeId, into: NodeId): BalanceMove => {
    chosen.splice(chosen.indexOf(out), 1, into);
    return { reason, out, into };
  };
  // More diverse first: the best gain; among equals, the most loaded member out and the least loaded candidate in.
  let gain: { out: NodeId; into: NodeId; score: number } | undefined;
  for (const out of [...chosen].sort(f.order).reverse()) {
    for (const into of others) {
      const sc = f.score(swapped(out, into));
      if (sc > now && (gain === undefined || sc > gain.score)) gain = { out, into, score: sc };
    }
  }
  if (gain !== undefined) return apply('diversity', gain.out, gain.into);
  const b = f.bytes;
  const bytesOf = (id: NodeId): number => b?.perNode.get(id) ?? 0;
  const most = [...chosen].sort(f.order).at(-1) as NodeId;
  // A count move of a big range (at least the sender's average replica) leaves its receiver within
  // RECEIVER_MAX_RATIO of the mean bytes, as a byte move does: else it carries big ranges back towards
  // overfull and byte moves take them away again (the model test found that cycle). A smaller range may go
  // anywhere it does not make overfull, and to a node overfull already (it gave a big range away in a byte
  // move, and holds fewer replicas since): the other half of that swap.
  const blockedByBytes = (id: NodeId): boolean => {
    if (b === undefined) return false;
    const after = bytesOf(id) + b.range;
    const small = b.range * f.loadOf(most) < bytesOf(most);
    // Nor does a big range end above both the mean and what its sender keeps: that undoes a byte move.
    if (!small) return !mayReceive(after, b.mean) || after > Math.max(b.mean, bytesOf(most) - b.range);
    return overfull(after, b.mean, b.minImbalance) && !overfull(bytesOf(id), b.mean, b.minImbalance);
  };
  // Hysteresis against moves chosen at once by several leaders on the same counts: the member is above
  // the mean and the receiver below it, the mean of the nodes that could take the member's place without
  // making the set less diverse (CockroachDB compares a store with its equivalence class likewise).
  const comparable = [most, ...others.filter((id) => f.score(swapped(most, id)) >= now)];
  const meanLoad = comparable.reduce((sum, id) => sum + f.loadOf(id), 0) / comparable.length;
  const ownMove = (out: NodeId): boolean => f.self === undefined || f.self === out;
  const least = !ownMove(most) ? undefined : comparable.slice(1).find((id) => f.loadOf(most) - f.loadOf(id) >= 2 && f.loadOf(most) > meanLoad && f.loadOf(id) < meanLoad && !blockedByBytes(id));
  if (least !== undefined) return apply('count', most, least);
  if (b === undefined || b.range <= 0) return undefined;
  const heaviest = [...chosen].sort((x, y) => bytesOf(x) - bytesOf(y) || f.order(x, y)).at(-1) as NodeId;
  const held = f.loadOf(heaviest);
  const giver = bytesOf(heaviest);
  const lightest = [...others].sort((x, y) => bytesOf(x) - bytesOf(y) || f.order(x, y));
  // Overfull, or above the mean while another node is underfull (CockroachDB's rebalancing thresholds).
  const sheds = overfull(giver, b.mean, b.minImbalance) || (giver > b.mean && lightest.some((id) => underfull(bytesOf(id), b.mean, b.minImbalance)));
  if (!ownMove(heaviest) || !sheds || held <= 0) return undefined;
  if (b.range < Math.min(giver / held, Math.abs(giver - b.mean) * MIN_MOVE_SHARE_OF_EXCESS)) return undefined;
  // The receiver ends below the giver (the pair's spread shrinks, so bytes squared over the nodes fall with every move).
  const into = lightest.find((id) => f.score(swapped(heaviest, id)) >= now && mayReceive(bytesOf(id) + b.range, b.mean) && bytesOf(id) + b.range <= giver - b.range && f.loadOf(id) <= held + BYTE_MOVE_COUNT_SLACK);
  return into === undefined ? undefined : apply('bytes', heaviest, into);
}

/** A locality's tiers, outermost first (`region=x,zone=y` → ['region=x', 'zone=y']). */
function splitLocality(locality: string | undefined): readonly string[] {
  return locality === undefined || locality === '' ? [] : locality.split(',');
}

/**
 * How spread out a set of localities is: for every pair, the tiers they do
 * not share from the outermost one in (two nodes in different regions differ
 * in every tier; in one region and different zones, in all but the first).
 * Nodes without a locality share all of it.
 */
export function diversity(localities: readonly (readonly string[])[]): number {
  let sum = 0;
  for (let i = 0; i < localities.length; i++) {
    for (let j = i + 1; j < localities.length; j++) {
      const a = localities[i] as readonly string[];
      const b = localities[j] as readonly string[];
      let shared = 0;
      while (shared < a.length && shared < b.length && a[shared] === b[shared]) shared++;
      sum += Math.max(a.length, b.length) - shared;
    }
  }
  return sum;
}

/**
 * The goal of a range a merge wants moved onto its left neighbour's voters
 * (ADR 0014): those voters, if they are as many as `--replicas` and all
 * candidates (a dead or leaving one is replaced on the left range first,
 * and the relocation follows); else undefined, and placement goes on as
 * usual.
 */
export function relocationGoal(voters: readonly NodeId[] | undefined, candidates: readonly NodeId[], replicas: number): Map<NodeId, Role> | undefined {
  if (voters === undefined || voters.length !== replicas || !voters.every((id) => candidates.includes(id))) return undefined;
  return new Map(voters.map((id) => [id, 'voter' as Role]));
}

/** Node → role, or undefined for a joint configuration. */
function rolesOf(cs: ConfState): Map<NodeId, Role> | undefined {
  if (cs.votersOutgoing.length > 0 || cs.learnersNext.length > 0) return undefined;
  const roles = new Map<NodeId, Role>();
  for (const id of cs.voters) roles.set(id, 'voter');
  for (const id of cs.learners) roles.set(id, 'learner');
  return roles;
}

type Step = { readonly kind: 'change'; readonly change: ConfChange } | { readonly kind: 'transfer'; readonly to: NodeId };

/**
 * Whether a learner may be promoted: it replicates (it acknowledged entries of
 * this range, so it holds the range's state, from a snapshot or the split)
 * and lags the leader's log by at most PROMOTE_MAX_LAG_ENTRIES. The lag
 * alone is not enough: a range just split has a short log, and a learner
 * that never answered (match 0, on a node that is down) would count as
 * caught up; promoted, it is a voter that cannot vote (seed 937 left a
 * range with two such voters of four, and no leader for good).
 */
export function learnerCaughtUp(
  progress: { readonly state: string; readonly match: number } | undefined,
  log: { firstIndex(): number; lastIndex(): number },
): boolean {
  if (progress === undefined || progress.state !== 'replicate') return false;
  if (progress.match === 0 || progress.match < log.firstIndex() - 1) return false;
  return log.lastIndex() - progress.match <= PROMOTE_MAX_LAG_ENTRIES;
}

/**
 * The next change that brings `current` towards `target`: add a missing
 * member as a learner; promote a caught-up learner that is to vote, in one
 * joint-consensus change with the removal of a voter that is to go, if
 * there is one (Raft thesis §4.3; the range never has more voters than it
 * is to have, so a move never leaves it needing three of four); then
 * remove members range 1 no longer has. A leader that is to go hands its
 * leadership to a voter that stays first. Ids are taken in order, so
 * every leader would pick the same step.
 */
export function nextStep(current: ReadonlyMap<NodeId, Role>, target: ReadonlyMap<NodeId, Role>, self: NodeId, caughtUp: (id: NodeId) => boolean): Step | undefined {
  const single = (type: ConfChange['changes'][number]['type'], nodeId: NodeId): Step => ({ kind: 'change', change: { transition: 'auto', changes: [{ type, nodeId }] } });
  const ids = (m: ReadonlyMap<NodeId, Role>): NodeId[] => [...m.keys()].sort((a, b) => a - b);
  const staying = (): NodeId | undefined => ids(current).find((v) => v !== self && current.get(v) === 'voter' && target.get(v) === 'voter');
  for (const id of ids(target)) if (!current.has(id)) return single('add-learner', id);
  const leaving = ids(current).filter((id) => !target.has(id) && current.get(id) === 'voter');
  for (const id of ids(target)) {
    if (target.get(id) !== 'voter' || current.get(id) !== 'learner' || !caughtUp(id)) continue;
    const out = leaving.find((v) => v !== self);
    if (out !== undefined) return { kind: 'change', change: { transition: 'auto', changes: [{ type: 'add-node', nodeId: id }, { type: 'remove-node', nodeId: out }] } };
    if (leaving.length === 0) return single('add-node', id);
    // Only this node's voter is to go: it leads, and hands over first (the next leader makes the swap).
    const other = staying();
    return other === undefined ? single('add-node', id) : { kind: 'transfer', to: other };
  }
  // A voter goes only once every voter-to-be votes: a replacement never leaves the range with fewer voters.
  const promoting = ids(target).some((id) => target.get(id) === 'voter' && current.get(id) !== 'voter');
  for (const id of ids(current)) {
    if (target.has(id)) continue;
    if (promoting && current.get(id) === 'voter') continue;
    if (id !== self) return single('remove-node', id);
    const other = staying();
    if (other !== undefined) return { kind: 'transfer', to: other };
  }
  return undefined;
}
