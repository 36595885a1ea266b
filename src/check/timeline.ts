import type { Operation } from './types.js';

/** End of list. */
export const NIL = -1;

/**
 * The history as a doubly linked list of call and return entries in time
 * order, stored in typed arrays (no per-entry objects for the GC to chase).
 *
 * Node `k` is the k-th entry in time order; node `head` (= 2n) is a sentinel
 * in front. Linearizing an operation "lifts" its call and return out of the
 * list; backtracking relinks them. Because lifts are undone in exact reverse
 * order (a stack), relinking from the saved prev/next pointers is valid.
 */
export class Timeline {
  readonly head: number;
  readonly next: Int32Array;
  readonly prev: Int32Array;
  /** Operation index of each node. */
  readonly op: Int32Array;
  /** For a call node, its return node; for a return node, NIL. */
  readonly match: Int32Array;

  constructor(ops: readonly Operation<unknown, unknown>[]) {
    const n = ops.length;
    this.head = 2 * n;
    this.next = new Int32Array(2 * n + 1);
    this.prev = new Int32Array(2 * n + 1);
    this.op = new Int32Array(2 * n);
    this.match = new Int32Array(2 * n).fill(NIL);
    const order = sortEntries(ops);
    const returnNode = new Int32Array(n);
    for (let node = 0; node < order.length; node++) {
      const e = order[node]!;
      this.op[node] = e < n ? e : e - n;
      if (e >= n) returnNode[e - n] = node;
    }
    for (let node = 0; node < order.length; node++) {
      if (order[node]! < n) this.match[node] = returnNode[order[node]!]!;
    }
    this.linkAll(2 * n);
  }

  private linkAll(count: number): void {
    let last = this.head;
    this.prev[this.head] = NIL;
    for (let node = 0; node < count; node++) {
      this.next[last] = node;
      this.prev[node] = last;
      last = node;
    }
    this.next[last] = NIL;
  }

  first(): number {
    return this.next[this.head]!;
  }

  isCall(node: number): boolean {
    return this.match[node]! !== NIL;
  }

  /** Unlinks a call node and its return node. */
  lift(call: number): void {
    this.unlink(call);
    this.unlink(this.match[call]!);
  }

  /** Undoes `lift(call)`; must mirror it in reverse order. */
  unlift(call: number): void {
    this.relink(this.match[call]!);
    this.relink(call);
  }

  private unlink(node: number): void {
    const p = this.prev[node]!;
    const nx = this.next[node]!;
    this.next[p] = nx;
    if (nx !== NIL) this.prev[nx] = p;
  }

  private relink(node: number): void {
    const p = this.prev[node]!;
    const nx = this.next[node]!;
    this.next[p] = node;
    if (nx !== NIL) this.prev[nx] = node;
  }
}

/**
 * Entry ids in time order: `i` is the call of op i, `n + i` its return.
 * On equal times calls go first, so operations that touch at one instant
 * count as concurrent (closed intervals). Remaining ties by op index keep
 * the result deterministic.
 */
function sortEntries(ops: readonly Operation<unknown, unknown>[]): Int32Array {
  const n = ops.length;
  const time = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    time[i] = ops[i]!.callMs;
    time[n + i] = ops[i]!.returnMs;
  }
  const order = new Int32Array(2 * n);
  for (let e = 0; e < 2 * n; e++) order[e] = e;
  return order.sort((a, b) => {
    const ta = time[a]!;
    const tb = time[b]!;
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ka = a < n ? 0 : 1;
    const kb = b < n ? 0 : 1;
    if (ka !== kb) return ka - kb;
    return (a < n ? a : a - n) - (b < n ? b : b - n);
  });
}
