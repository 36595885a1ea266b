/**
 * Dependencies inferred from what transactions read (the Elle paper, §4):
 * list-append histories give each key's version order outright (every
 * read is a prefix of the longest), rw-register histories give what a
 * read-then-write within one transaction shows. Anomalies that need no
 * cycle are found here: aborted reads (G1a), intermediate reads (G1b),
 * reads inconsistent with the transaction's own writes (internal), reads
 * of what the transaction writes only later (future-read), reads that
 * disagree on a key's order or split one transaction's appends
 * (incompatible-order), duplicates, and values nobody wrote (garbage-read).
 */
import { TesseraError } from '../../base/index.js';
import { DepGraph, REALTIME } from './graph.js';
import type { MicroOp, Scalar, Txn } from './history.js';

export interface PlainAnomaly {
  readonly anomaly: string;
  readonly explanation: string;
}

export interface Inference {
  readonly graph: DepGraph;
  readonly anomalies: PlainAnomaly[];
}

export function show(x: Scalar | null | undefined): string {
  return x === null || x === undefined ? 'nil' : typeof x === 'number' ? String(x) : JSON.stringify(x);
}

/** A read's value as EDN shows it: `[1 2]`, `3` or `nil`. */
export function showRead(value: readonly Scalar[] | Scalar | null | undefined): string {
  return Array.isArray(value) ? `[${(value as readonly Scalar[]).map(show).join(' ')}]` : show(value as Scalar | null | undefined);
}

export function txnName(t: Txn): string {
  return `T${t.id} (process ${t.process}${t.index === undefined ? '' : `, index ${t.index}`}${t.status === 'ok' ? '' : `, ${t.status}`})`;
}

interface Written {
  readonly txn: Txn;
  readonly value: Scalar;
  /** The transaction's write of the key just before this one, if any. */
  readonly prev: Scalar | undefined;
  /** Its write of the key just after this one, if any (so a read ending here is intermediate). */
  next: Scalar | undefined;
}

/** Each key's written values → who wrote them; a value written twice to one key is refused (the checker needs them unique). */
function writesOf(txns: readonly Txn[], f: 'append' | 'w'): Map<Scalar, Map<Scalar, Written>> {
  const byKey = new Map<Scalar, Map<Scalar, Written>>();
  for (const t of txns) {
    let lastOf: Map<Scalar, Written> | undefined;
    for (const op of t.ops) {
      if (op.f !== f) continue;
      let values = byKey.get(op.key);
      if (values === undefined) byKey.set(op.key, (values = new Map()));
      if (values.has(op.value)) throw new TesseraError('PARSE_ERROR', `value ${show(op.value)} is written to key ${show(op.key)} twice (T${values.get(op.value)?.txn.id} and T${t.id}); the checker needs each key's written values unique`);
      lastOf ??= new Map();
      const prev = lastOf.get(op.key);
      const w: Written = { txn: t, value: op.value, prev: prev?.value, next: undefined };
      if (prev !== undefined) prev.next = op.value;
      lastOf.set(op.key, w);
      values.set(op.value, w);
    }
  }
  return byKey;
}

/** The reads a committed transaction made of a key before writing it itself: what others' writes decide. */
function externalReads(t: Txn): { op: Extract<MicroOp, { f: 'r' }>; at: number }[] {
  const written = new Set<Scalar>();
  const out: { op: Extract<MicroOp, { f: 'r' }>; at: number }[] = [];
  t.ops.forEach((op, at) => {
    if (op.f === 'r' && !written.has(op.key) && op.value !== undefined) out.push({ op, at });
    if (op.f !== 'r') written.add(op.key);
  });
  return out;
}

function sameList(a: readonly Scalar[], b: readonly Scalar[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Reads inconsistent with the transaction's own earlier reads and writes of the key. */
function internalAnomalies(t: Txn, list: boolean): PlainAnomaly[] {
  const out: PlainAnomaly[] = [];
  const known = new Map<Scalar, { value: readonly Scalar[] | Scalar | null | undefined; wrote: Scalar[] }>();
  for (const op of t.ops) {
    const k = op.key;
    const state = known.get(k);
    if (op.f !== 'r') {
      if (state === undefined) known.set(k, { value: undefined, wrote: [op.value] });
      else state.wrote.push(op.value);
      continue;
    }
    if (op.value === undefined) continue;
    let expected: string | undefined;
    if (list && state !== undefined) {
      const got = Array.isArray(op.value) ? (op.value as readonly Scalar[]) : op.value === null ? [] : [op.value as Scalar];
      if (state.value !== undefined) {
        const before = Array.isArray(state.value) ? (state.value as readonly Scalar[]) : state.value === null ? [] : [state.value as Scalar];
        const want = [...before, ...state.wrote];
        if (!sameList(got, want)) expected = `[${want.map(show).join(' ')}]`;
      } else if (!sameList(got.slice(got.length - state.wrote.length), state.wrote)) expected = `a list ending in its own appends [${state.wrote.map(show).join(' ')}]`;
    } else if (!list && state !== undefined) {
      const want = state.wrote.length > 0 ? state.wrote[state.wrote.length - 1] : state.value;
      if (want !== undefined && op.value !== want) expected = show(want as Scalar | null);
    }
    if (expected !== undefined) {
      out.push({ anomaly: 'internal', explanation: `${txnName(t)} read key ${show(op.key)} = ${showRead(op.value)} where its own earlier reads and writes give ${expected}` });
    }
    known.set(k, { value: op.value, wrote: [] });
  }
  return out;
}

/** Reads that show a value the transaction itself writes to the key only later (Elle's future read). */
function futureReads(t: Txn): PlainAnomaly[] {
  const out: PlainAnomaly[] = [];
  // Walking backwards: the values the transaction writes after the current micro-op, by key.
  let later: Map<Scalar, Set<Scalar>> | undefined;
  for (let i = t.ops.length - 1; i >= 0; i--) {
    const op = t.ops[i] as MicroOp;
    if (op.f !== 'r') {
      later ??= new Map();
      const values = later.get(op.key);
      if (values === undefined) later.set(op.key, new Set([op.value]));
      else values.add(op.value);
      continue;
    }
    const values = later?.get(op.key);
    if (values === undefined) continue;
    const future = asList(op.value).find((v) => values.has(v));
    if (future !== undefined) out.push({ anomaly: 'future-read', explanation: `${txnName(t)} read key ${show(op.key)} = ${showRead(op.value)}, which holds ${show(future)}, a value it writes itself only later` });
  }
  return out.reverse();
}

/** A committed transaction's read of a list. */
interface ListRead {
  readonly txn: Txn;
  readonly key: Scalar;
  readonly list: readonly Scalar[];
}

/** What the reads of one key show together. */
interface KeyOrder {
  readonly key: Scalar;
  readonly reads: readonly ListRead[];
  /** The longest read: its list is the key's version order as far as anyone saw. */
  readonly longest: ListRead;
  readonly written: ReadonlyMap<Scalar, Written> | undefined;
  /** The final appends no read shows, of transactions that took effect: they come after all of the order, since appends only add at the end. */
  readonly unseen: readonly [Scalar, Txn][];
}

function asList(value: readonly Scalar[] | Scalar | null | undefined): readonly Scalar[] {
  return Array.isArray(value) ? (value as readonly Scalar[]) : value === null || value === undefined ? [] : [value as Scalar];
}

/** Every committed read, by key, with what they show together. */
function keyOrders(committed: readonly Txn[], appends: ReadonlyMap<Scalar, ReadonlyMap<Scalar, Written>>): Map<Scalar, KeyOrder> {
  const reads = new Map<Scalar, ListRead[]>();
  for (const t of committed) {
    for (const op of t.ops) {
      if (op.f !== 'r' || op.value === undefined) continue;
      const k = op.key;
      const r: ListRead = { txn: t, key: op.key, list: asList(op.value) };
      const rs = reads.get(k);
      if (rs === undefined) reads.set(k, [r]);
      else rs.push(r);
    }
  }
  const longestOf = new Map<Scalar, ListRead>();
  // Transactions some read shows a write of took effect, :info ones included. (Reads that are no prefix of the
  // longest are reported; what they alone show is left out, which only loses edges.)
  const tookEffect = new Set<Txn>();
  for (const [k, rs] of reads) {
    let longest = rs[0] as ListRead;
    for (const r of rs) if (r.list.length > longest.list.length) longest = r;
    longestOf.set(k, longest);
    const written = appends.get(k);
    for (const v of longest.list) {
      const w = written?.get(v);
      if (w !== undefined && w.txn.status !== 'fail') tookEffect.add(w.txn);
    }
  }
  const out = new Map<Scalar, KeyOrder>();
  for (const [k, rs] of reads) {
    const longest = longestOf.get(k) as ListRead;
    const written = appends.get(k);
    out.set(k, { key: longest.key, reads: rs, longest, written, unseen: unseenAppends(written, longest.list, tookEffect) });
  }
  return out;
}

/** ww edges: consecutive elements of the order, then its last element before each append nobody saw. */
function addWriteOrder(graph: DepGraph, ko: KeyOrder): void {
  const { key, written } = ko;
  const order = ko.longest.list;
  for (let i = 0; i + 1 < order.length; i++) {
    const a = written?.get(order[i] as Scalar);
    const b = written?.get(order[i + 1] as Scalar);
    if (a !== undefined && b !== undefined && a.txn.status !== 'fail' && b.txn.status !== 'fail') graph.add(a.txn.id, b.txn.id, { dep: 'ww', key, from: a.value, to: b.value, list: true });
  }
  const last = order[order.length - 1];
  const w = last === undefined ? undefined : written?.get(last);
  if (w === undefined || w.txn.status === 'fail') return;
  for (const [value, u] of ko.unseen) graph.add(w.txn.id, u.id, { dep: 'ww', key, from: w.value, to: value, list: true, unseen: true });
}

/** A read's wr edge from the writer of its last element, and rw edges to the writers of what came next. */
function addReadEdges(graph: DepGraph, t: Txn, list: readonly Scalar[], ko: KeyOrder): void {
  const { key, written } = ko;
  const order = ko.longest.list;
  const last = list[list.length - 1];
  const w = last === undefined ? undefined : written?.get(last);
  if (w !== undefined && w.txn.status !== 'fail') graph.add(w.txn.id, t.id, { dep: 'wr', key, from: w.value, list: true });
  // The version after the one read, if the order is known that far (a read that is no prefix of it is reported already).
  if (!isPrefix(list, order)) return;
  const next = order[list.length];
  const n = next === undefined ? undefined : written?.get(next);
  if (n !== undefined && n.txn.status !== 'fail') graph.add(t.id, n.txn.id, { dep: 'rw', key, from: last ?? null, to: n.value, list: true });
  // A read of everything anyone saw comes before every committed append nobody saw.
  if (next === undefined) for (const [value, u] of ko.unseen) graph.add(t.id, u.id, { dep: 'rw', key, from: last ?? null, to: value, list: true, unseen: true });
}

function isPrefix(prefix: readonly Scalar[], list: readonly Scalar[]): boolean {
  if (prefix.length > list.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== list[i]) return false;
  return true;
}

/** list-append: version orders from the longest read of each key, then ww, wr and rw edges. */
export function inferListAppend(txns: readonly Txn[], maxEdges = Infinity): Inference {
  const graph = new DepGraph(txns, maxEdges);
  const anomalies: PlainAnomaly[] = [];
  const appends = writesOf(txns, 'append');
  const committed = txns.filter((t) => t.status === 'ok');
  for (const t of committed) anomalies.push(...internalAnomalies(t, true), ...futureReads(t));
  const orders = keyOrders(committed, appends);
  for (const ko of orders.values()) {
    for (const r of ko.reads) anomalies.push(...readAnomalies(r, ko.longest, ko.written));
    addWriteOrder(graph, ko);
  }
  for (const t of committed) {
    for (const { op } of externalReads(t)) addReadEdges(graph, t, asList(op.value), orders.get(op.key) as KeyOrder);
  }
  return { graph, anomalies };
}

/**
 * The final appends to a key that no read shows, of transactions that took
 * effect: committed ones, and :info ones a read shows another write of (a
 * transaction takes effect whole or not at all).
 */
function unseenAppends(written: ReadonlyMap<Scalar, Written> | undefined, order: readonly Scalar[], tookEffect: ReadonlySet<Txn>): [Scalar, Txn][] {
  if (written === undefined) return [];
  const seen = new Set(order);
  const out: [Scalar, Txn][] = [];
  for (const [v, w] of written) {
    if ((w.txn.status !== 'ok' && !tookEffect.has(w.txn)) || w.next !== undefined || seen.has(v)) continue;
    out.push([w.value, w.txn]);
  }
  return out;
}

/** What one read of a list shows alone, against the key's longest read and its appends. */
function readAnomalies(r: ListRead, longest: ListRead, written: ReadonlyMap<Scalar, Written> | undefined): PlainAnomaly[] {
  const out: PlainAnomaly[] = [];
  const read = `${txnName(r.txn)} read key ${show(r.key)} = ${showRead(r.list)}`;
  if (!isPrefix(r.list, longest.list)) {
    out.push({ anomaly: 'incompatible-order', explanation: `${read}, which is not a prefix of ${showRead(longest.list)} that ${txnName(longest.txn)} read` });
  }
  const split = splitAppends(r, written);
  if (split !== undefined) out.push({ anomaly: 'incompatible-order', explanation: `${read}, which holds ${split}; one transaction's appends to a key are adjacent, in its order` });
  const seen = new Set<Scalar>();
  for (const v of r.list) {
    if (seen.has(v)) out.push({ anomaly: 'duplicate-elements', explanation: `${read}, which holds ${show(v)} twice` });
    seen.add(v);
    const w = written?.get(v);
    if (w === undefined) out.push({ anomaly: 'garbage-read', explanation: `${read}, which holds ${show(v)}, which no transaction appended` });
    else if (w.txn.status === 'fail') out.push({ anomaly: 'G1a', explanation: `${read}, which holds ${show(v)}, appended by ${txnName(w.txn)}, which aborted` });
  }
  const last = r.list[r.list.length - 1];
  const w = last === undefined ? undefined : written?.get(last);
  if (w !== undefined && w.next !== undefined && w.txn !== r.txn) {
    out.push({ anomaly: 'G1b', explanation: `${read}, ending in ${show(last)}, an intermediate append of ${txnName(w.txn)}, which appended ${show(w.next)} to the key after it` });
  }
  return out;
}

/**
 * A transaction's appends to a key take effect together and in its order,
 * so in any read each follows the one before it directly, and each but the
 * last read is followed by the one after it. The first that is not, told.
 */
function splitAppends(r: ListRead, written: ReadonlyMap<Scalar, Written> | undefined): string | undefined {
  for (let i = 0; i < r.list.length; i++) {
    const w = written?.get(r.list[i] as Scalar);
    // The reader's own appends are its internal consistency; an aborted one is G1a already.
    if (w === undefined || w.txn === r.txn || w.txn.status === 'fail') continue;
    if (w.prev !== undefined && r.list[i - 1] !== w.prev) return `${show(w.value)} without ${txnName(w.txn)}'s ${show(w.prev)} right before it`;
    const after = r.list[i + 1];
    if (w.next !== undefined && after !== undefined && after !== w.next) return `${show(w.value)} followed by ${show(after)}, not by ${txnName(w.txn)}'s next append ${show(w.next)}`;
  }
  return undefined;
}

/** rw-register: wr from unique written values; ww and rw where a transaction read a key and then wrote it. */
export function inferRwRegister(txns: readonly Txn[], maxEdges = Infinity): Inference {
  const graph = new DepGraph(txns, maxEdges);
  const anomalies: PlainAnomaly[] = [];
  const writes = writesOf(txns, 'w');
  const committed = txns.filter((t) => t.status === 'ok');
  for (const t of committed) anomalies.push(...internalAnomalies(t, false), ...futureReads(t));
  // Who read each version (external reads of committed transactions), and who was seen to write after it.
  const readersOf = new Map<Scalar, Map<Scalar | null, { txn: Txn; key: Scalar }[]>>();
  const observed = new Set<Txn>(committed);
  for (const t of committed) {
    for (const { op } of externalReads(t)) {
      const v = op.value as Scalar | null;
      const k = op.key;
      const byValue = readersOf.get(k) ?? (readersOf.set(k, new Map()).get(k) as Map<Scalar | null, { txn: Txn; key: Scalar }[]>);
      (byValue.get(v) ?? byValue.set(v, []).get(v))?.push({ txn: t, key: op.key });
      if (v === null) continue;
      const w = writes.get(k)?.get(v);
      if (w === undefined) anomalies.push({ anomaly: 'garbage-read', explanation: `${txnName(t)} read key ${show(op.key)} = ${show(v)}, which no transaction wrote` });
      else if (w.txn.status === 'fail') anomalies.push({ anomaly: 'G1a', explanation: `${txnName(t)} read key ${show(op.key)} = ${show(v)}, written by ${txnName(w.txn)}, which aborted` });
      else {
        if (w.next !== undefined && w.txn !== t) anomalies.push({ anomaly: 'G1b', explanation: `${txnName(t)} read key ${show(op.key)} = ${show(v)}, an intermediate write of ${txnName(w.txn)}, which wrote the key again after it` });
        observed.add(w.txn);
        graph.add(w.txn.id, t.id, { dep: 'wr', key: op.key, from: v });
      }
    }
  }
  for (const t of committed) addReadThenWrite(graph, t, writes, readersOf);
  // A read of a key's initial state comes before every write of it that took effect.
  for (const [k, byValue] of readersOf) {
    const initial = byValue.get(null) ?? [];
    for (const w of writes.get(k)?.values() ?? []) {
      if (!observed.has(w.txn) || w.next !== undefined) continue;
      for (const r of initial) graph.add(r.txn.id, w.txn.id, { dep: 'rw', key: r.key, from: null, to: finalWrite(w.txn, r.key) });
    }
  }
  return { graph, anomalies };
}

function finalWrite(t: Txn, key: Scalar): Scalar | null {
  let v: Scalar | null = null;
  for (const op of t.ops) if (op.f === 'w' && op.key === key) v = op.value;
  return v;
}

/** T read k = v1 and then wrote k = v2: v2 follows v1, so v1's writer →ww T, and v1's other readers →rw T. */
function addReadThenWrite(graph: DepGraph, t: Txn, writes: ReadonlyMap<Scalar, ReadonlyMap<Scalar, Written>>, readersOf: ReadonlyMap<Scalar, ReadonlyMap<Scalar | null, { txn: Txn; key: Scalar }[]>>): void {
  for (const { op, at } of externalReads(t)) {
    const wroteAfter = t.ops.slice(at + 1).some((o) => o.f === 'w' && o.key === op.key);
    if (!wroteAfter) continue;
    const v = op.value as Scalar | null;
    const v2 = finalWrite(t, op.key);
    const w = v === null ? undefined : writes.get(op.key)?.get(v);
    if (w !== undefined && w.txn.status !== 'fail') graph.add(w.txn.id, t.id, { dep: 'ww', key: op.key, from: v, to: v2 });
    for (const r of readersOf.get(op.key)?.get(v) ?? []) graph.add(r.txn.id, t.id, { dep: 'rw', key: op.key, from: v, to: v2 });
  }
}

/**
 * Realtime order: T1 completed before T2 was invoked. Linking every
 * invocation to every earlier completion would take O(n²) edges, and
 * linking it to the latest completions only (as Elle does) O(n × clients);
 * instead a chain of time nodes runs through the history: each completion
 * links to the newest time node, each invocation is linked from it, and a
 * new one is started (after the last) when a completion follows an
 * invocation. T1 then reaches T2 through the chain exactly when T1
 * completed before T2 was invoked.
 */
export function addRealtimeEdges(graph: DepGraph, txns: readonly Txn[]): void {
  // Invocations and completions by their place in the history (which is unique), as +(id + 1) and -(id + 1).
  let end = 0;
  for (const t of txns) end = Math.max(end, t.invokeAt + 1, t.status === 'ok' ? t.completeAt + 1 : 0);
  const events = new Int32Array(end);
  for (const t of txns) {
    if (t.status === 'fail') continue;
    events[t.invokeAt] = t.id + 1;
    if (t.status === 'ok') events[t.completeAt] = -(t.id + 1);
  }
  let now = -1;
  let invokedSinceNow = true;
  for (const e of events) {
    if (e > 0 && now >= 0) {
      graph.add(now, e - 1, REALTIME);
      invokedSinceNow = true;
    } else if (e < 0) {
      if (invokedSinceNow) {
        const next = graph.addTimeNode();
        if (now >= 0) graph.add(now, next, REALTIME);
        now = next;
        invokedSinceNow = false;
      }
      graph.add(-e - 1, now, REALTIME);
    }
  }
}
