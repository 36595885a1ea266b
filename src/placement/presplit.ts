import type { TesseraError } from '../base/index.js';
import type { KvNode, RangeId } from '../kv/index.js';
import { compareBytes } from '../mvcc/index.js';

/** Splits one node has in flight at most while pre-splitting. */
export const PRESPLIT_MAX_IN_FLIGHT = 16;
/** The prefix of the keys a pre-split cuts the key space at. */
export const PRESPLIT_KEY_PREFIX = 'presplit/';

/** The `ranges - 1` keys that cut the key space into `ranges` ranges, in order. */
export function presplitKeys(ranges: number): Uint8Array[] {
  const encoder = new TextEncoder();
  const width = String(ranges).length;
  return Array.from({ length: Math.max(0, ranges - 1) }, (_, i) => encoder.encode(`${PRESPLIT_KEY_PREFIX}${String(i + 1).padStart(width, '0')}`));
}

export interface PresplitterOptions {
  readonly kv: KvNode;
  /** How many ranges the key space should be cut into. */
  readonly ranges: number;
  readonly maxInFlight?: number;
  /** Told of each split that failed (it is tried again at a later tick). */
  readonly onFailure?: (rangeId: RangeId, error: TesseraError) => void;
}

/**
 * A development and benchmark aid (`--dev-presplit-ranges`): cuts the key
 * space into a fixed number of ranges at `presplitKeys`, so that many idle
 * ranges exist without writing data (the idle-cost benchmark of issue 13).
 * Each node splits the ranges it leads, at the middle pre-split key inside
 * each, several ranges at a time, through the ordinary split
 * (KvNode.splitRange); it stops for good once the node holds them all.
 */
export class Presplitter {
  private readonly keys: Uint8Array[];
  private readonly inFlight = new Set<RangeId>();
  private done = false;

  constructor(private readonly o: PresplitterOptions) {
    this.keys = presplitKeys(o.ranges);
  }

  /** Whether the node holds every range the pre-split makes. */
  finished(): boolean {
    return this.done;
  }

  tick(): void {
    if (this.done) return;
    const ids = this.o.kv.store.rangeIds();
    // Under --replicas a node holds some ranges only: the meta table lists them all.
    if (Math.max(ids.length, this.o.kv.stateMachine.metaTable?.all().length ?? 0) >= this.o.ranges) {
      this.done = true;
      return;
    }
    const max = this.o.maxInFlight ?? PRESPLIT_MAX_IN_FLIGHT;
    for (const rangeId of ids) {
      if (this.inFlight.size >= max) return;
      if (this.inFlight.has(rangeId) || this.o.kv.store.replica(rangeId)?.raw.raft.state !== 'leader') continue;
      const key = this.middleKeyIn(rangeId);
      if (key === undefined) continue;
      this.inFlight.add(rangeId);
      this.o.kv.splitRange(rangeId, key, (outcome) => {
        this.inFlight.delete(rangeId);
        if (outcome instanceof Error) this.o.onFailure?.(rangeId, outcome);
      });
    }
  }

  /** The middle one of the pre-split keys strictly inside the range's bounds, if any. */
  private middleKeyIn(rangeId: RangeId): Uint8Array | undefined {
    const d = this.o.kv.stateMachineOf(rangeId).descriptor;
    if (d === undefined) return undefined;
    const lo = this.firstAbove(d.start, false);
    const hi = d.end === undefined ? this.keys.length : this.firstAbove(d.end, true);
    return lo < hi ? this.keys[(lo + hi) >> 1] : undefined;
  }

  /** The index of the first key above `bound` (or at it, with `inclusive`). */
  private firstAbove(bound: Uint8Array, inclusive: boolean): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = compareBytes(this.keys[mid] as Uint8Array, bound);
      if (c > 0 || (inclusive && c === 0)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
