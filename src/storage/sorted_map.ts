import { compareBytes } from './bytes.js';

/**
 * A persistent (immutable, path-copying) ordered map from byte keys to
 * values: a treap. Every update returns a new map and shares all untouched
 * nodes with the old one, so a snapshot is just a kept reference (O(1)), and
 * the in-memory engine's durable image, live image and open snapshots share
 * their common structure.
 *
 * Priorities come from a xorshift sequence carried in the map value, not
 * from the keys, so clients cannot choose keys that unbalance the tree, and
 * the structure stays deterministic for the simulator (no Math.random).
 * Expected depth is O(log n); get/set/delete/deleteRange are O(log n) and a
 * scan of k entries is O(log n + k).
 */
interface Node<V> {
  readonly key: Uint8Array;
  readonly value: V;
  readonly priority: number;
  readonly left: Node<V> | undefined;
  readonly right: Node<V> | undefined;
}

export interface MapRange {
  /** Inclusive lower bound. */
  readonly start: Uint8Array;
  /** Exclusive upper bound; undefined means no upper bound. */
  readonly end?: Uint8Array | undefined;
  readonly reverse?: boolean | undefined;
}

/** Any non-zero seed works; this one is the xorshift32 reference seed. */
const INITIAL_SEED = 2463534242;

export class SortedMap<V> {
  private constructor(
    private readonly root: Node<V> | undefined,
    private readonly seed: number,
    /** Number of entries. */
    readonly size: number,
  ) {}

  static empty<V>(): SortedMap<V> {
    return new SortedMap<V>(undefined, INITIAL_SEED, 0);
  }

  get(key: Uint8Array): V | undefined {
    let node = this.root;
    while (node !== undefined) {
      const c = compareBytes(key, node.key);
      if (c === 0) return node.value;
      node = c < 0 ? node.left : node.right;
    }
    return undefined;
  }

  has(key: Uint8Array): boolean {
    let node = this.root;
    while (node !== undefined) {
      const c = compareBytes(key, node.key);
      if (c === 0) return true;
      node = c < 0 ? node.left : node.right;
    }
    return false;
  }

  set(key: Uint8Array, value: V): SortedMap<V> {
    const seed = xorshift32(this.seed);
    const [root, added] = insert(this.root, key, value, seed);
    return new SortedMap(root, seed, this.size + (added ? 1 : 0));
  }

  delete(key: Uint8Array): SortedMap<V> {
    if (!this.has(key)) return this;
    return new SortedMap(remove(this.root, key), this.seed, this.size - 1);
  }

  /** Removes every key in [start, end) in O(log n), by splitting the tree twice and joining the outer parts. */
  deleteRange(start: Uint8Array, end: Uint8Array): SortedMap<V> {
    if (compareBytes(start, end) >= 0) return this;
    const [below, rest] = split(this.root, start);
    const [inside, above] = split(rest, end);
    return new SortedMap(merge(below, above), this.seed, this.size - count(inside));
  }

  /** Entries in key order (or reverse), within the range. Iterates a fixed root, so later updates do not show. */
  *entries(range: MapRange): Generator<[Uint8Array, V]> {
    yield* range.reverse ? descend(this.root, range.start, range.end) : ascend(this.root, range.start, range.end);
  }
}

function xorshift32(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

function node<V>(key: Uint8Array, value: V, priority: number, left: Node<V> | undefined, right: Node<V> | undefined): Node<V> {
  return { key, value, priority, left, right };
}

/** Returns the new subtree and whether a key was added (false: an existing key's value was replaced). */
function insert<V>(t: Node<V> | undefined, key: Uint8Array, value: V, priority: number): [Node<V>, boolean] {
  if (t === undefined) return [node(key, value, priority, undefined, undefined), true];
  const c = compareBytes(key, t.key);
  if (c === 0) return [node(t.key, value, t.priority, t.left, t.right), false];
  if (c < 0) {
    const [l, added] = insert(t.left, key, value, priority);
    // Rotate right when the new child outranks its parent (max-heap on priority).
    if (l.priority > t.priority) return [node(l.key, l.value, l.priority, l.left, node(t.key, t.value, t.priority, l.right, t.right)), added];
    return [node(t.key, t.value, t.priority, l, t.right), added];
  }
  const [r, added] = insert(t.right, key, value, priority);
  if (r.priority > t.priority) return [node(r.key, r.value, r.priority, node(t.key, t.value, t.priority, t.left, r.left), r.right), added];
  return [node(t.key, t.value, t.priority, t.left, r), added];
}

function remove<V>(t: Node<V> | undefined, key: Uint8Array): Node<V> | undefined {
  if (t === undefined) return undefined;
  const c = compareBytes(key, t.key);
  if (c === 0) return merge(t.left, t.right);
  if (c < 0) return node(t.key, t.value, t.priority, remove(t.left, key), t.right);
  return node(t.key, t.value, t.priority, t.left, remove(t.right, key));
}

/** Splits into keys < `key` and keys >= `key`. */
function split<V>(t: Node<V> | undefined, key: Uint8Array): [Node<V> | undefined, Node<V> | undefined] {
  if (t === undefined) return [undefined, undefined];
  if (compareBytes(t.key, key) < 0) {
    const [l, r] = split(t.right, key);
    return [node(t.key, t.value, t.priority, t.left, l), r];
  }
  const [l, r] = split(t.left, key);
  return [l, node(t.key, t.value, t.priority, r, t.right)];
}

/** Joins two trees where every key of `a` is below every key of `b`. */
function merge<V>(a: Node<V> | undefined, b: Node<V> | undefined): Node<V> | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  if (a.priority > b.priority) return node(a.key, a.value, a.priority, a.left, merge(a.right, b));
  return node(b.key, b.value, b.priority, merge(a, b.left), b.right);
}

function count<V>(t: Node<V> | undefined): number {
  // Only deleteRange calls this, on the removed part, so the cost is paid by the keys it removes.
  let n = 0;
  const stack: Node<V>[] = [];
  let cur = t;
  while (cur !== undefined || stack.length > 0) {
    while (cur !== undefined) {
      stack.push(cur);
      cur = cur.left;
    }
    const top = stack.pop() as Node<V>;
    n++;
    cur = top.right;
  }
  return n;
}

function* ascend<V>(root: Node<V> | undefined, start: Uint8Array, end: Uint8Array | undefined): Generator<[Uint8Array, V]> {
  // The stack holds the nodes >= start whose own key and right subtree are still to visit.
  const stack: Node<V>[] = [];
  let cur = root;
  while (cur !== undefined) {
    if (compareBytes(cur.key, start) >= 0) {
      stack.push(cur);
      cur = cur.left;
    } else cur = cur.right;
  }
  while (stack.length > 0) {
    const top = stack.pop() as Node<V>;
    if (end !== undefined && compareBytes(top.key, end) >= 0) return;
    yield [top.key, top.value];
    for (let n = top.right; n !== undefined; n = n.left) stack.push(n);
  }
}

function* descend<V>(root: Node<V> | undefined, start: Uint8Array, end: Uint8Array | undefined): Generator<[Uint8Array, V]> {
  // Mirror of ascend: the stack holds nodes < end whose key and left subtree are still to visit.
  const stack: Node<V>[] = [];
  let cur = root;
  while (cur !== undefined) {
    if (end === undefined || compareBytes(cur.key, end) < 0) {
      stack.push(cur);
      cur = cur.right;
    } else cur = cur.left;
  }
  while (stack.length > 0) {
    const top = stack.pop() as Node<V>;
    if (compareBytes(top.key, start) < 0) return;
    yield [top.key, top.value];
    for (let n = top.left; n !== undefined; n = n.right) stack.push(n);
  }
}
