import type { Applied, CommandResult, RangeDescriptor, RangeId } from '../kv/index.js';
import type { NodeId } from '../raft/index.js';
import { compareBytes } from '../mvcc/index.js';
import { describeBounds, type SimStoreNode } from './store_node.js';
import type { ViolationKind } from './violation.js';

interface Bounded {
  readonly rangeId: RangeId;
  readonly bounds: { readonly start: Uint8Array; readonly end: Uint8Array | undefined };
}

/**
 * The range descriptors' oracles (issue 13). Every replica of a range must
 * give it the same bounds at each epoch version (a split applies at one log
 * position, and a snapshot carries the descriptor it was made at); no two
 * initialized replicas on one node may overlap at any time (a key has one
 * range on a node, or a write could land in a range that no longer owns
 * it); and after convergence each node's ranges must partition the key
 * space, with no gap and no overlap.
 */
export class RangeOracle {
  /** `range:version` → the bounds the first replica applied there, and which node it was. */
  private readonly boundsAt = new Map<string, { readonly bounds: string; readonly node: NodeId }>();
  /** Per `node:range`, the descriptor last looked at: the state machine keeps the same object until it changes. */
  private readonly seen = new Map<string, RangeDescriptor>();

  /** `range:version` of every merge some replica applied: counted once each. */
  private readonly merged = new Set<string>();

  constructor(
    private readonly violation: (kind: ViolationKind, what: string) => void,
    private readonly count?: (what: string) => void,
  ) {}

  /** After node `id` applied an entry of range `rangeId`. */
  onApplied(id: NodeId, node: SimStoreNode, rangeId: RangeId, a: Applied): void {
    const result = a.result as CommandResult | undefined;
    if (result?.kind === 'split') {
      this.record(id, result.left);
      this.record(id, result.right);
    }
    if (result?.kind === 'merge') {
      this.record(id, result.merged);
      const key = `${result.merged.rangeId}:${result.merged.epoch.version}`;
      if (!this.merged.has(key)) {
        this.merged.add(key);
        this.count?.('merge-applied');
      }
    }
    if (this.looked(id, node, rangeId)) this.checkDisjoint(id, node);
  }

  /** A snapshot was installed on node `id`: any of its replicas' bounds may have changed. */
  onBoundsMayChange(id: NodeId, node: SimStoreNode): void {
    let changed = false;
    for (const rangeId of node.rangeIds()) changed = this.looked(id, node, rangeId) || changed;
    if (changed) this.checkDisjoint(id, node);
  }

  /** Records the replica's descriptor if it changed since last looked at; true if it did. */
  private looked(id: NodeId, node: SimStoreNode, rangeId: RangeId): boolean {
    if (node.store.replica(rangeId) === undefined) return false;
    const d = node.kv.stateMachineOf(rangeId).descriptor;
    const key = `${id}:${rangeId}`;
    if (d === undefined || this.seen.get(key) === d) return false;
    this.seen.set(key, d);
    this.record(id, d);
    return true;
  }

  /** Bounds per (range, epoch version): the first replica's are the reference. */
  private record(id: NodeId, d: RangeDescriptor): void {
    const key = `${d.rangeId}:${d.epoch.version}`;
    const bounds = describeBounds(d);
    const prev = this.boundsAt.get(key);
    if (prev === undefined) this.boundsAt.set(key, { bounds, node: id });
    else if (prev.bounds !== bounds) {
      this.violation('range-epoch', `range epoch: node ${id} has range ${d.rangeId} at version ${d.epoch.version} over ${bounds}, node ${prev.node} had it over ${prev.bounds}`);
    }
  }

  /** No two initialized replicas on node `id` overlap. */
  checkDisjoint(id: NodeId, node: SimStoreNode): void {
    const list: Bounded[] = [];
    for (const rangeId of node.rangeIds()) {
      const d = node.kv.stateMachineOf(rangeId).descriptor;
      if (d !== undefined) list.push({ rangeId, bounds: d });
    }
    list.sort((a, b) => compareBytes(a.bounds.start, b.bounds.start));
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1] as Bounded;
      const cur = list[i] as Bounded;
      if (prev.bounds.end === undefined || compareBytes(prev.bounds.end, cur.bounds.start) > 0) {
        this.violation('range-partition', `range partition: on node ${id}, range ${prev.rangeId} ${describeBounds(prev.bounds)} overlaps range ${cur.rangeId} ${describeBounds(cur.bounds)}`);
        return;
      }
    }
  }

  /**
   * After convergence: node `id`'s ranges (its router's list) cover the key
   * space, each key once: those it holds, and under placement (`placed`)
   * those only other nodes hold, from its meta table.
   */
  checkPartition(id: NodeId, node: SimStoreNode, placed = false): void {
    const list = placed ? node.kv.router.list() : node.kv.router.local();
    let at: Uint8Array | undefined = new Uint8Array(0);
    for (const r of list) {
      if (at === undefined || compareBytes(r.bounds.start, at) !== 0) {
        const what = at === undefined ? 'after the end of the key space' : compareBytes(r.bounds.start, at) > 0 ? 'after a gap' : 'overlapping the one before';
        this.violation('range-partition', `range partition: on node ${id}, range ${r.rangeId} ${describeBounds(r.bounds)} starts ${what} (${list.map((x) => `${x.rangeId}${describeBounds(x.bounds)}`).join(' ')})`);
        return;
      }
      at = r.bounds.end;
    }
    const table = placed ? `; meta table ${(node.kv.stateMachine.metaTable?.all() ?? []).map((d) => `${d.rangeId}${describeBounds(d)}v${d.epoch.version}.${d.epoch.confVersion}`).join(' ')}` : '';
    if (at !== undefined) this.violation('range-partition', `range partition: on node ${id}, no range holds the keys from ${describeBounds({ start: at, end: undefined })} (${list.map((x) => `${x.rangeId}${describeBounds(x.bounds)}`).join(' ')})${table}`);
  }

  /**
   * After convergence: node `id`'s meta table partitions the key space (the
   * table asserts that at every update) and lists its ranges as they are.
   * Returns whether it does (after a quiet period longer than
   * META_REPAIR_INTERVAL_MS, every lost update has been repaired).
   */
  metaTableMatches(node: SimStoreNode, placed = false): boolean {
    const table = node.kv.stateMachine.metaTable?.all() ?? [];
    const list = node.kv.router.local();
    // Under placement the node holds some of the ranges: each must be in the table as it is.
    if (placed) return list.every((r) => table.some((e) => e.rangeId === r.rangeId && describeBounds(e) === describeBounds(r.bounds)));
    if (table.length !== list.length) return false;
    return list.every((r, i) => {
      const e = table[i] as (typeof table)[number];
      return e.rangeId === r.rangeId && describeBounds(e) === describeBounds(r.bounds);
    });
  }
}
