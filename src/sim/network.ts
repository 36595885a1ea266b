import type { Rng } from '../base/index.js';
import type { Message, NodeId } from '../raft/index.js';
import type { Scheduler } from './scheduler.js';

export type PartitionKind = 'isolate' | 'isolate-leader' | 'mute-leader' | 'majority-split' | 'one-way' | 'bridge' | 'ring';

export interface NetworkConditions {
  lossRate: number;
  dupRate: number;
  /** Chance that a message takes a long path (up to 10× the max delay): reorders across bursts. */
  slowRate: number;
  delayMs: readonly [number, number];
}

/**
 * Directed links between nodes with delay, loss, duplication and reordering,
 * and a set of blocked links for partitions.
 */
export class SimNetwork {
  private readonly blocked = new Set<string>();
  conditions: NetworkConditions;
  delivered = 0;
  dropped = 0;
  duplicated = 0;

  constructor(
    private readonly sched: Scheduler,
    private readonly rng: Rng,
    delayMs: readonly [number, number],
  ) {
    this.conditions = { lossRate: 0, dupRate: 0, slowRate: 0, delayMs };
  }

  block(from: NodeId, to: NodeId): void {
    this.blocked.add(`${from}>${to}`);
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.blocked.has(`${from}>${to}`);
  }

  healAll(): void {
    this.blocked.clear();
  }

  hasPartition(): boolean {
    return this.blocked.size > 0;
  }

  /** Applies a partition over `ids`; returns a description. */
  partition(kind: PartitionKind, ids: readonly NodeId[], leader: NodeId | undefined): string {
    this.healAll();
    const shuffled = shuffle(this.rng, ids);
    const cutBoth = (a: NodeId, b: NodeId): void => {
      this.block(a, b);
      this.block(b, a);
    };
    switch (kind) {
      case 'isolate':
      case 'isolate-leader': {
        const victim = kind === 'isolate-leader' && leader !== undefined ? leader : (shuffled[0] as NodeId);
        for (const o of ids) if (o !== victim) cutBoth(victim, o);
        return `${kind} ${victim}`;
      }
      case 'majority-split': {
        const cut = Math.floor(ids.length / 2);
        const minority = shuffled.slice(0, cut);
        const majority = shuffled.slice(cut);
        for (const a of minority) for (const b of majority) cutBoth(a, b);
        return `split [${minority.join(' ')}] | [${majority.join(' ')}]`;
      }
      case 'mute-leader': {
        // The leader hears everyone but nobody hears it: it keeps appending proposals it cannot replicate.
        const victim = leader ?? (shuffled[0] as NodeId);
        for (const o of ids) if (o !== victim) this.block(victim, o);
        return `mute-leader ${victim}`;
      }
      case 'one-way': {
        const a = shuffled[0] as NodeId;
        for (const o of ids) if (o !== a) this.block(o, a);
        return `one-way: ${a} sends but receives nothing`;
      }
      case 'bridge': {
        const half = Math.floor(ids.length / 2);
        const bridge = shuffled[0] as NodeId;
        const left = shuffled.slice(1, 1 + half);
        const right = shuffled.slice(1 + half);
        for (const a of left) for (const b of right) cutBoth(a, b);
        return `bridge ${bridge} between [${left.join(' ')}] and [${right.join(' ')}]`;
      }
      case 'ring': {
        // Each node reaches only its two ring neighbours: every node sees a majority in a 3- or
        // 5-node cluster, but no two see the same one.
        const n = shuffled.length;
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            const d = Math.min((i - j + n) % n, (j - i + n) % n);
            if (d > 1) this.block(shuffled[i] as NodeId, shuffled[j] as NodeId);
          }
        }
        return `ring ${shuffled.join('-')}`;
      }
    }
  }

  /**
   * Sends one message; `deliver` runs at the receiver after the delay, or
   * never if the message is lost. Returns false when dropped at once.
   */
  send(m: Message, deliver: (m: Message) => void, onDrop: (m: Message) => void): void {
    this.carry(m.from, m.to, () => deliver(m), () => onDrop(m));
  }

  /**
   * Carries any message from one node to another under the same delay, loss,
   * duplication and partitions as Raft's (the revision services' requests
   * and answers go this way too).
   */
  carry(from: NodeId, to: NodeId, deliver: () => void, onDrop: () => void): void {
    if (this.isBlocked(from, to) || this.rng.chance(this.conditions.lossRate)) {
      this.dropped++;
      onDrop();
      return;
    }
    this.sched.after(this.delay(), () => {
      // A link cut while the message was in flight loses it.
      if (this.isBlocked(from, to)) {
        this.dropped++;
        onDrop();
        return;
      }
      this.delivered++;
      deliver();
    });
    if (this.rng.chance(this.conditions.dupRate)) {
      this.duplicated++;
      this.sched.after(this.delay() * 3, () => {
        if (!this.isBlocked(from, to)) deliver();
      });
    }
  }

  private delay(): number {
    const [lo, hi] = this.conditions.delayMs;
    const d = lo + this.rng.float() * (hi - lo);
    return this.rng.chance(this.conditions.slowRate) ? d * (1 + this.rng.float() * 9) : d;
  }
}

export function shuffle<T>(rng: Rng, items: readonly T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.intBelow(i + 1);
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}
