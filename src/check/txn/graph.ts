/**
 * The dependency graph between transactions (Adya's ww, wr and rw, plus
 * realtime order) and the search for its cycles, classified as in Adya's
 * thesis and the Elle paper (Kingsbury and Alvaro, VLDB 2020): G0 (ww
 * only), G1c (ww and wr), G-single (exactly one rw), G2 (two or more rw);
 * a cycle that needs a realtime edge is the same anomaly "-realtime", a
 * violation of strict serializability only. Each kind is searched for on
 * its own edges, so the weakest anomaly a component holds is the one named.
 */
import type { Budget } from '../budget.js';
import type { Scalar, Txn } from './history.js';

export type Dep = 'ww' | 'wr' | 'rw' | 'rt';
const BIT: Readonly<Record<Dep, number>> = { ww: 1, wr: 2, rw: 4, rt: 8 };
/** The label an edge with several shows in a cycle, weakest dependency first. */
const PREFERENCE: readonly Dep[] = ['ww', 'wr', 'rt', 'rw'];

/** Why an edge holds: the key, and the values that show it (read and written). */
export interface EdgeWhy {
  readonly dep: Dep;
  readonly key?: Scalar;
  /** The earlier value (written or read), null for a key's initial state. */
  readonly from?: Scalar | null;
  /** The later value. */
  readonly to?: Scalar | null;
  /** A read of a list (list-append) rather than a register. */
  readonly list?: boolean;
  /** The later value is an append no read shows: it came after the earlier one, but not necessarily right after. */
  readonly unseen?: boolean;
}

/** Every realtime edge has the same reason: shared, not allocated per edge. */
export const REALTIME: EdgeWhy = { dep: 'rt' };

/** An edge and the first reason seen for each dependency it holds (fields, not an array: a million edges is common). */
interface Edge {
  readonly to: number;
  mask: number;
  ww: EdgeWhy | undefined;
  wr: EdgeWhy | undefined;
  rw: EdgeWhy | undefined;
}

function whyOf(e: Edge, dep: Dep): EdgeWhy {
  const why = dep === 'rt' ? REALTIME : e[dep];
  if (why === undefined || (e.mask & BIT[dep]) === 0) throw new Error(`whyOf: the edge holds no ${dep} dependency`);
  return why;
}

/** Out-edges of one transaction past this many are also indexed by target; fewer are scanned, which is cheaper. */
const SCAN_MAX_EDGES = 16;

/**
 * Nodes 0 to txns.length - 1 are the transactions; past them are time nodes
 * (addTimeNode), which stand for moments of the history so that realtime
 * order takes O(n) edges whatever the concurrency: a path through time
 * nodes from one transaction to another is one realtime edge between them.
 */
export class DepGraph {
  private readonly out: Edge[][];
  /** Per node with more than SCAN_MAX_EDGES out-edges, those edges by target. */
  private readonly byTarget: (Map<number, Edge> | undefined)[];
  edgeCount = 0;
  /** Set once an edge was left out because the graph held `maxEdges`: its cycles are still real, but some may be missing. */
  truncated = false;

  constructor(
    readonly txns: readonly Txn[],
    private readonly maxEdges = Infinity,
  ) {
    this.out = txns.map(() => []);
    this.byTarget = new Array<Map<number, Edge> | undefined>(txns.length);
  }

  /** Transactions and time nodes. */
  get size(): number {
    return this.out.length;
  }

  isTxn(node: number): boolean {
    return node < this.txns.length;
  }

  /** A new time node, with no edges yet. */
  addTimeNode(): number {
    this.out.push([]);
    this.byTarget.push(undefined);
    return this.out.length - 1;
  }

  add(from: number, to: number, why: EdgeWhy): void {
    if (from === to) return;
    let e = this.edgeTo(from, to);
    if (e === undefined) {
      if (this.edgeCount >= this.maxEdges) {
        this.truncated = true;
        return;
      }
      e = { to, mask: 0, ww: undefined, wr: undefined, rw: undefined };
      const edges = this.out[from] as Edge[];
      edges.push(e);
      if (edges.length === SCAN_MAX_EDGES + 1) this.byTarget[from] = new Map(edges.map((x) => [x.to, x]));
      else this.byTarget[from]?.set(to, e);
      this.edgeCount++;
    }
    if ((e.mask & BIT[why.dep]) === 0 && why.dep !== 'rt') e[why.dep] = why;
    e.mask |= BIT[why.dep];
  }

  edgesOf(from: number): readonly Edge[] {
    return this.out[from] as Edge[];
  }

  private edgeTo(from: number, to: number): Edge | undefined {
    const index = this.byTarget[from];
    if (index !== undefined) return index.get(to);
    for (const e of this.out[from] as Edge[]) if (e.to === to) return e;
    return undefined;
  }
}

/** One step of a cycle: the edge from `from` to `to`, shown as `why`. */
export interface CycleStep {
  readonly from: number;
  readonly to: number;
  readonly why: EdgeWhy;
}

export interface FoundCycle {
  readonly anomaly: string;
  readonly steps: readonly CycleStep[];
}

/** Strongly connected components of the edges with a bit of `mask`, as a component id per node (-1: alone). Tarjan's algorithm, iterative. */
export function components(g: DepGraph, mask: number, within?: Int32Array, withinId?: number): Int32Array {
  const n = g.size;
  const comp = new Int32Array(n).fill(-1);
  const order = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  let counter = 0;
  let nextComp = 0;
  const allowed = (v: number): boolean => within === undefined || within[v] === withinId;
  for (let root = 0; root < n; root++) {
    if (order[root] !== -1 || !allowed(root)) continue;
    const work: { v: number; i: number }[] = [{ v: root, i: 0 }];
    order[root] = low[root] = counter++;
    stack.push(root);
    onStack[root] = 1;
    while (work.length > 0) {
      const top = work[work.length - 1] as { v: number; i: number };
      const edges = g.edgesOf(top.v);
      if (top.i < edges.length) {
        const e = edges[top.i++] as Edge;
        if ((e.mask & mask) === 0 || !allowed(e.to)) continue;
        if (order[e.to] === -1) {
          order[e.to] = low[e.to] = counter++;
          stack.push(e.to);
          onStack[e.to] = 1;
          work.push({ v: e.to, i: 0 });
        } else if (onStack[e.to] === 1) low[top.v] = Math.min(low[top.v] as number, order[e.to] as number);
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low[parent.v] = Math.min(low[parent.v] as number, low[top.v] as number);
      if (low[top.v] !== order[top.v]) continue;
      const members: number[] = [];
      for (;;) {
        const w = stack.pop() as number;
        onStack[w] = 0;
        members.push(w);
        if (w === top.v) break;
      }
      if (members.length > 1) {
        for (const w of members) comp[w] = nextComp;
        nextComp++;
      }
    }
  }
  return comp;
}

function labelOf(e: Edge, allowed: number): EdgeWhy {
  for (const dep of PREFERENCE) {
    if ((e.mask & allowed & BIT[dep]) !== 0) return whyOf(e, dep);
  }
  throw new Error('labelOf: no allowed dependency on the edge');
}

/** The shortest path from `from` to `to` over edges with a bit of `mask`, inside component `compId` of `comp`, as steps; undefined if none. */
function shortestPath(g: DepGraph, from: number, to: number, mask: number, comp: Int32Array, compId: number, budget: Budget): CycleStep[] | undefined {
  const prev = new Map<number, { node: number; edge: Edge }>();
  const queue = [from];
  const seen = new Set([from]);
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head] as number;
    if (!budget.tick()) return undefined;
    for (const e of g.edgesOf(v)) {
      if ((e.mask & mask) === 0 || comp[e.to] !== compId || seen.has(e.to)) continue;
      seen.add(e.to);
      prev.set(e.to, { node: v, edge: e });
      if (e.to === to) {
        const steps: CycleStep[] = [];
        for (let at = to; at !== from; ) {
          const p = prev.get(at) as { node: number; edge: Edge };
          steps.unshift({ from: p.node, to: at, why: labelOf(p.edge, mask) });
          at = p.node;
        }
        return steps;
      }
      queue.push(e.to);
    }
  }
  return undefined;
}

const M = { ww: BIT.ww, wwwr: BIT.ww | BIT.wr, all: BIT.ww | BIT.wr | BIT.rw, rt: BIT.rt };
/** Edges tried per kind of anomaly in one component: enough to find a cycle, bounded so a huge component cannot take the budget alone. */
const TRIES_PER_COMPONENT = 256;

/**
 * A cycle through edge `start` (its `first` dependency) closed by a path
 * over `pathMask`, inside the component of `comp`; undefined if none.
 */
function cycleThrough(g: DepGraph, a: number, e: Edge, first: Dep, pathMask: number, comp: Int32Array, budget: Budget): CycleStep[] | undefined {
  const back = shortestPath(g, e.to, a, pathMask, comp, comp[a] as number, budget);
  if (back === undefined) return undefined;
  return overTime(g, [{ from: a, to: e.to, why: whyOf(e, first) }, ...back]);
}

/** The steps of a cycle with each run through time nodes made one realtime step between the transactions at its ends. */
function overTime(g: DepGraph, steps: readonly CycleStep[]): CycleStep[] {
  const out: CycleStep[] = [];
  let from: number | undefined;
  for (const s of steps) {
    if (g.isTxn(s.from) && g.isTxn(s.to)) out.push(s);
    else if (g.isTxn(s.from)) from = s.from;
    else if (g.isTxn(s.to)) out.push({ from: from as number, to: s.to, why: REALTIME });
  }
  return out;
}

function count(steps: readonly CycleStep[], dep: Dep): number {
  return steps.filter((s) => s.why.dep === dep).length;
}

interface Kind {
  readonly name: string;
  /** The dependency that defines the kind: every cycle of it has one, so the search starts from such edges. */
  readonly first: Dep;
  readonly pathMask: number;
  readonly comp: Int32Array;
  readonly accept: (s: CycleStep[]) => boolean;
}

function kindsOf(g: DepGraph): { plain: Kind[]; realtime: Kind[] } {
  const base = [
    { name: 'G0', first: 'ww' as Dep, pathMask: M.ww, accept: (_: CycleStep[]) => true },
    { name: 'G1c', first: 'wr' as Dep, pathMask: M.wwwr, accept: (_: CycleStep[]) => true },
    { name: 'G-single', first: 'rw' as Dep, pathMask: M.wwwr, accept: (_: CycleStep[]) => true },
    // A shortest path may take one rw only where a G-single exists, which is then the anomaly named.
    { name: 'G2', first: 'rw' as Dep, pathMask: M.all, accept: (s: CycleStep[]) => count(s, 'rw') >= 2 },
  ];
  const compOf = new Map<number, Int32Array>();
  const comp = (mask: number): Int32Array => compOf.get(mask) ?? (compOf.set(mask, components(g, mask)).get(mask) as Int32Array);
  const scope = (k: (typeof base)[number]): number => (k.name === 'G0' ? M.ww : k.name === 'G1c' ? M.wwwr : M.all);
  return {
    plain: base.map((k) => ({ ...k, comp: comp(scope(k)) })),
    realtime: base.map((k) => ({ ...k, name: `${k.name}-realtime`, pathMask: k.pathMask | M.rt, comp: comp(scope(k) | M.rt), accept: (s: CycleStep[]) => k.accept(s) && count(s, 'rt') >= 1 })),
  };
}

/**
 * For each kind of anomaly, up to `perKind` cycles, each from a different
 * component of the graph over every dependency; realtime kinds only where
 * the component holds no cycle without realtime edges.
 */
export function findCycles(g: DepGraph, budget: Budget, perKind: number): FoundCycle[] {
  const found: FoundCycle[] = [];
  const counts = new Map<string, number>();
  const full = components(g, M.all | M.rt);
  const byComp = new Map<number, number[]>();
  for (let v = 0; v < full.length; v++) {
    const c = full[v] as number;
    if (c < 0) continue;
    const members = byComp.get(c);
    if (members === undefined) byComp.set(c, [v]);
    else members.push(v);
  }
  if (byComp.size === 0) return found;
  const { plain, realtime } = kindsOf(g);
  for (const members of byComp.values()) {
    let any = false;
    for (const set of [plain, realtime]) {
      if (any) break;
      for (const k of set) {
        if ((counts.get(k.name) ?? 0) >= perKind || budget.reason !== undefined) continue;
        const steps = searchKind(g, members, k, budget);
        if (steps === undefined) continue;
        counts.set(k.name, (counts.get(k.name) ?? 0) + 1);
        found.push({ anomaly: k.name, steps });
        any = true;
      }
    }
  }
  return found;
}

function searchKind(g: DepGraph, members: readonly number[], k: Kind, budget: Budget): CycleStep[] | undefined {
  let tries = 0;
  for (const a of members) {
    if ((k.comp[a] as number) < 0) continue;
    for (const e of g.edgesOf(a)) {
      if ((e.mask & BIT[k.first]) === 0 || k.comp[e.to] !== k.comp[a]) continue;
      // An rw edge that is also ww or wr is taken as that: a cycle through it is the weaker anomaly, searched for first.
      if (k.first === 'rw' && (e.mask & M.wwwr) !== 0) continue;
      if (++tries > TRIES_PER_COMPONENT || budget.reason !== undefined) return undefined;
      const steps = cycleThrough(g, a, e, k.first, k.pathMask, k.comp, budget);
      if (steps !== undefined && k.accept(steps)) return steps;
    }
  }
  return undefined;
}
