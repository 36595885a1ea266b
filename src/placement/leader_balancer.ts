import type { Timers } from '../base/index.js';
import { type KvNode, META_RANGE, type RangeId } from '../kv/index.js';
import type { NodeId } from '../raft/index.js';
import { DEFAULT_MIN_QPS_IMBALANCE, type LoadFigures, mayReceive, meanOver, overfull } from './load_balance.js';

/** How often a node looks at how many ranges each node leads, and gives one away if it leads too many. */
export const LEADER_BALANCE_INTERVAL_MS = 2_000;
/** A node leads at most this many ranges above the mean before it hands one to the node that leads fewest. */
export const LEADER_BALANCE_SLACK = 1;

export interface LeaderBalancerOptions {
  readonly kv: KvNode;
  readonly timers: Timers;
  readonly intervalMs?: number;
  /** Told of each leadership transfer started, and the rule that chose it. */
  readonly observe?: (event: { readonly rangeId: RangeId; readonly from: NodeId; readonly to: NodeId; readonly reason: 'count' | 'qps' }) => void;
  /** A range's requests per second as this node meters them (SplitQueue.qps); absent: leader counts only. */
  readonly qps?: (rangeId: RangeId) => number;
  /** No node is QPS-overfull by less than this above the mean (DEFAULT_MIN_QPS_IMBALANCE). */
  readonly minQpsImbalance?: number;
}

/** One range as the balancer sees it on this node: its leader as this replica knows it, and voters that could take over. */
export interface LeaderView {
  readonly rangeId: RangeId;
  readonly leader: NodeId;
  /** Voters caught up with the leader's log (only known on the leader itself; empty elsewhere). */
  readonly readyVoters: readonly NodeId[];
}

/** A range's QPS and each node's leaders' QPS (load reports, ADR 0015), for the QPS rule of chooseLeaderTransfer. */
export interface LeaderQps extends LoadFigures {
  readonly ofRange: (rangeId: RangeId) => number;
}

/**
 * The transfer a node should start to even out leadership, or undefined.
 * Never the metadata range, whose leader runs the TSO: moving it costs a
 * failover. Two rules, the first that finds a move wins:
 * 1. count: when `self` leads more than the mean over `nodes` plus
 *    LEADER_BALANCE_SLACK, it hands one of its ranges to the caught-up
 *    voter that leads fewest, if that one leads at least two fewer, and
 *    (with QPS figures) the range's QPS would not make it QPS-overfull;
 * 2. QPS (ADR 0015): when the ranges `self` leads serve more than
 *    OVERFULL_RATIO times the mean QPS, and at least the minimum imbalance
 *    above it, it hands its hottest range that fits to the caught-up voter
 *    whose leaders serve least: one that ends at most RECEIVER_MAX_RATIO
 *    times the mean with it (hysteresis), and leads no more ranges than
 *    `self` (the count spread between the two ends at two at most).
 * Pure: the same views give the same answer.
 */
export function chooseLeaderTransfer(
  self: NodeId,
  nodes: readonly NodeId[],
  views: readonly LeaderView[],
  qps?: LeaderQps,
  reportedLeaders?: ReadonlyMap<NodeId, number>,
): { readonly rangeId: RangeId; readonly to: NodeId; readonly reason: 'count' | 'qps' } | undefined {
  if (nodes.length < 2) return undefined;
  const led = new Map<NodeId, number>(nodes.map((n) => [n, 0]));
  for (const v of views) if (led.has(v.leader)) led.set(v.leader, (led.get(v.leader) as number) + 1);
  // Other nodes' own counts, when every one reported: this node's replicas show only the leaders of
  // the ranges it holds, and two nodes that each saw themselves ahead of the other on their own
  // partial counts handed one range back and forth every round (placement_process.test, 4 nodes).
  // This node's count stays its own: every range it leads is here.
  if (reportedLeaders !== undefined && nodes.every((n) => n === self || reportedLeaders.has(n))) {
    for (const n of nodes) if (n !== self) led.set(n, reportedLeaders.get(n) as number);
  }
  const total = [...led.values()].reduce((a, b) => a + b, 0);
  const mean = total / nodes.length;
  const mine = led.get(self) ?? 0;
  const meanQps = qps === undefined ? undefined : meanOver(qps, nodes);
  const qpsOf = (id: NodeId): number => qps?.perNode.get(id) ?? 0;
  const wouldOverfill = (to: NodeId, rangeId: RangeId): boolean => qps !== undefined && meanQps !== undefined && overfull(qpsOf(to) + qps.ofRange(rangeId), meanQps, qps.minImbalance);
  if (mine > mean + LEADER_BALANCE_SLACK) {
    let best: { rangeId: RangeId; to: NodeId; count: number } | undefined;
    for (const v of views) {
      if (v.leader !== self || v.rangeId === META_RANGE) continue;
      for (const to of v.readyVoters) {
        const count = led.get(to);
        // At least two fewer than this node: the move narrows the spread whatever the mean (under
        // placement a node's counts come from its own ranges only, and no voter of the ranges it
        // leads may lead fewer than the mean: bench:scale's 6 nodes stayed at 3/3/3/5/6/4 for 300 s).
        if (to === self || count === undefined || count > mine - 2 || wouldOverfill(to, v.rangeId)) continue;
        if (best === undefined || count < best.count || (count === best.count && (to < best.to || (to === best.to && v.rangeId < best.rangeId)))) best = { rangeId: v.rangeId, to, count };
      }
    }
    if (best !== undefined) return { rangeId: best.rangeId, to: best.to, reason: 'count' };
  }
  if (qps === undefined || meanQps === undefined || !overfull(qpsOf(self), meanQps, qps.minImbalance)) return undefined;
  let hot: { rangeId: RangeId; to: NodeId; rangeQps: number } | undefined;
  for (const v of views) {
    if (v.leader !== self || v.rangeId === META_RANGE) continue;
    const rangeQps = qps.ofRange(v.rangeId);
    if (rangeQps <= 0) continue;
    for (const to of v.readyVoters) {
      const count = led.get(to);
      if (to === self || count === undefined || count > mine || !qps.perNode.has(to) || !mayReceive(qpsOf(to) + rangeQps, meanQps)) continue;
      const better =
        hot === undefined ||
        rangeQps > hot.rangeQps ||
        (rangeQps === hot.rangeQps && (v.rangeId < hot.rangeId || (v.rangeId === hot.rangeId && (qpsOf(to) < qpsOf(hot.to) || (qpsOf(to) === qpsOf(hot.to) && to < hot.to)))));
      if (better) hot = { rangeId: v.rangeId, to, rangeQps };
    }
  }
  return hot === undefined ? undefined : { rangeId: hot.rangeId, to: hot.to, reason: 'qps' };
}

/**
 * Evens out how many ranges each node leads (issue 13: "leader count is
 * balanced across live nodes"), so that every node's CPU serves writes.
 * Each node runs one: every LEADER_BALANCE_INTERVAL_MS it counts the
 * leaders its replicas know of and, if it leads too many, starts one Raft
 * leadership transfer (thesis §3.10) to a caught-up voter that leads few.
 * Nodes decide alone, one transfer per round each, so the counts converge
 * without coordination. Leaders are counted alike wherever each node holds
 * every range; a node's view may lag, which only delays a transfer.
 */
export class LeaderBalancer {
  private nextMs: number;
  /**
   * What the last round that chose nothing saw: the store's changeSeq and
   * the other nodes' reported leader counts. Without QPS figures the answer
   * follows from those alone, so a round that sees the same skips the walk
   * over every range (a tenth of an idle node's CPU at 10,000 ranges).
   */
  private idleSeen: string | undefined;

  constructor(private readonly o: LeaderBalancerOptions) {
    this.nextMs = o.timers.nowMs() + (o.intervalMs ?? LEADER_BALANCE_INTERVAL_MS);
  }

  tick(): void {
    const nowMs = this.o.timers.nowMs();
    if (nowMs < this.nextMs) return;
    this.nextMs = nowMs + (this.o.intervalMs ?? LEADER_BALANCE_INTERVAL_MS);
    const store = this.o.kv.store;
    const meta = store.replica(META_RANGE);
    if (meta === undefined) return;
    const self = meta.raw.raft.id;
    const loads = this.o.kv.nodeLoads();
    const quietQps = this.o.qps === undefined || [...loads.values()].every((l) => l.leaderQps === 0);
    const seen = quietQps ? `${store.changeSeq}|${[...loads].map(([id, l]) => `${id}:${l.leaders ?? '-'}`).join(',')}` : undefined;
    if (seen !== undefined && seen === this.idleSeen) return;
    this.idleSeen = undefined;
    const views: LeaderView[] = [];
    for (const rangeId of store.rangeIds()) {
      const raft = store.replica(rangeId)?.raw.raft;
      if (raft === undefined || raft.lead === 0) continue;
      views.push({ rangeId, leader: raft.lead, readyVoters: raft.state === 'leader' ? readyVoters(raft) : [] });
    }
    const ofRange = this.o.qps;
    const qps = ofRange === undefined ? undefined : { ofRange, perNode: new Map([...this.o.kv.nodeLoads()].map(([id, load]) => [id, load.leaderQps])), minImbalance: this.o.minQpsImbalance ?? DEFAULT_MIN_QPS_IMBALANCE };
    const reported = new Map<NodeId, number>();
    for (const [id, load] of this.o.kv.nodeLoads()) if (load.leaders !== undefined) reported.set(id, load.leaders);
    const choice = chooseLeaderTransfer(self, meta.currentConfState().voters, views, qps, reported);
    if (choice === undefined) {
      this.idleSeen = seen;
      return;
    }
    store.transferLeader(choice.rangeId, choice.to);
    this.o.observe?.({ rangeId: choice.rangeId, from: self, to: choice.to, reason: choice.reason });
  }
}

export type LeaderRaft = NonNullable<ReturnType<KvNode['store']['replica']>>['raw']['raft'];

/** The voters whose log matches the leader's last entry and that answered recently: a transfer to them completes at once. */
export function readyVoters(raft: LeaderRaft): NodeId[] {
  // Mid membership change (a joint configuration): leave the leader where it is.
  if (raft.trk.config.voters[1].size > 0) return [];
  const last = raft.raftLog.lastIndex();
  const out: NodeId[] = [];
  for (const id of raft.trk.config.voters[0]) {
    const p = raft.trk.progress.get(id);
    if (id !== raft.id && p !== undefined && p.match === last && p.recentActive) out.push(id);
  }
  return out;
}
