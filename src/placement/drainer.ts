import type { Timers } from '../base/index.js';
import { type KvNode, META_RANGE, type RangeId, encodeCommand } from '../kv/index.js';
import type { NodeId } from '../raft/index.js';
import { readyVoters } from './leader_balancer.js';

/** How long the drainer waits before it asks again to be marked as decommissioning. */
export const DRAIN_RETRY_MS = 2_000;

export type DrainState = 'serving' | 'draining' | 'removing';

export interface DrainerOptions {
  readonly kv: KvNode;
  readonly timers: Timers;
  readonly observe?: (event: { readonly kind: 'transfer'; readonly rangeId: RangeId; readonly to: NodeId } | { readonly kind: 'mark'; readonly error?: string }) => void;
}

/**
 * `tessera node decommission` (issue 13): drains this node, then takes it
 * out of the cluster, in an order that never leaves a range without a
 * quorum. It marks its member record `decommissioning` in range 1; every
 * range's leader then drops it from that range (the ReplicaReconciler
 * follows range 1's members, less those being decommissioned), and once no
 * other range has it, range 1's leader removes it from the cluster
 * (ReplicaReconciler.finishDecommissions); the node, told it was removed,
 * stops. Meanwhile the drainer hands the leadership of every range it leads
 * to a caught-up voter on every tick (a Raft leadership transfer, thesis
 * §3.10, so no range waits for an election; other nodes' leader balancers
 * may still hand it one). While every node holds every range nothing has
 * to be copied: the other nodes hold all of it already.
 */
export class Drainer {
  private drainState: DrainState = 'serving';
  private nextMarkMs = 0;
  private marking = false;

  constructor(private readonly o: DrainerOptions) {}

  get state(): DrainState {
    return this.drainState;
  }

  /** Starts draining (idempotent). */
  start(): void {
    if (this.drainState === 'serving') this.drainState = 'draining';
  }

  tick(): void {
    if (this.drainState === 'serving') return;
    this.handOverLeaderships();
    if (this.drainState === 'draining') this.markSelf();
  }

  private handOverLeaderships(): void {
    const store = this.o.kv.store;
    for (const rangeId of store.rangeIds()) {
      const raft = store.replica(rangeId)?.raw.raft;
      if (raft?.state !== 'leader') continue;
      const to = readyVoters(raft)[0];
      if (to === undefined) continue;
      store.transferLeader(rangeId, to);
      this.o.observe?.({ kind: 'transfer', rangeId, to });
    }
  }

  /** Marks this member `decommissioning` in range 1, asked again every DRAIN_RETRY_MS until it is. */
  private markSelf(): void {
    const kv = this.o.kv;
    const self = kv.store.replica(META_RANGE)?.raw.raft.id;
    if (self === undefined) return;
    if (kv.stateMachine.members.get(self)?.decommissioning === true) {
      this.drainState = 'removing';
      return;
    }
    const nowMs = this.o.timers.nowMs();
    if (this.marking || nowMs < this.nextMarkMs) return;
    this.marking = true;
    this.nextMarkMs = nowMs + DRAIN_RETRY_MS;
    kv.requests.propose(
      (requestId) => encodeCommand({ kind: 'member-decommission', requestId, id: self }),
      (outcome) => {
        this.marking = false;
        this.o.observe?.({ kind: 'mark', ...(outcome.kind === 'failed' ? { error: outcome.error.message } : {}) });
      },
      META_RANGE,
    );
  }
}
