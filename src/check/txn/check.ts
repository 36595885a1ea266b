/**
 * The transactional checker: infers dependencies from a list-append or
 * rw-register history, adds realtime order, and searches the graph for
 * cycles (graph.ts). `valid` is true when no anomaly was found and the
 * search finished, false when any was found (an anomaly found is found,
 * budget or not), and 'unknown' when the budget ran out first.
 */
import { TesseraError, unreachable } from '../../base/index.js';
import { Budget } from '../budget.js';
import { type CycleStep, type EdgeWhy, findCycles } from './graph.js';
import type { Txn } from './history.js';
import { type PlainAnomaly, addRealtimeEdges, inferListAppend, inferRwRegister, show, showRead, txnName } from './infer.js';

export type TxnModel = 'list-append' | 'rw-register';

export interface TxnCheckOptions {
  readonly model: TxnModel;
  /** Add realtime edges (strict serializability); default true. */
  readonly realtime?: boolean;
  /** Wall-clock budget for the whole check (inference and search); requires `nowMs`. */
  readonly timeBudgetMs?: number;
  /** Injected monotonic clock in milliseconds (the checker may not read one itself). */
  readonly nowMs?: () => number;
  /** Bound on search steps (transactions visited), whatever the time (default TXN_DEFAULT_MAX_STEPS). */
  readonly maxSteps?: number;
  /** Bound on the dependency graph's edges (default TXN_DEFAULT_MAX_EDGES): past it, edges are left out and a check that finds nothing is `unknown`. */
  readonly maxEdges?: number;
  /** Cycles reported per kind of anomaly (TXN_CYCLES_PER_KIND). */
  readonly cyclesPerKind?: number;
}

export interface TxnAnomaly {
  readonly anomaly: string;
  readonly explanation: string;
}

/** What ended a check in `unknown`. */
export type TxnBudgetReason = 'time-budget' | 'step-budget' | 'edge-budget';

export interface TxnCheckResult {
  readonly valid: true | false | 'unknown';
  /** Set when a budget ran out (the answer is then `unknown`, or `false` if an anomaly was found anyway). */
  readonly reason?: TxnBudgetReason;
  readonly anomalies: readonly TxnAnomaly[];
  /** The anomaly names found, sorted, once each. */
  readonly names: readonly string[];
  readonly txns: number;
  /** Edges of the graph: dependencies, and realtime order through time nodes. */
  readonly edges: number;
}

export const TXN_CYCLES_PER_KIND = 4;
/** Plain (non-cycle) anomalies reported per kind; the rest are counted. */
export const TXN_PLAIN_PER_KIND = 8;
export const TXN_DEFAULT_MAX_STEPS = 50_000_000;
/** An edge costs about 110 bytes of heap (measured on list-append histories), so this bound holds the graph near 1.1 GB; 100,000 generated list-append transactions make about 0.6 million edges. */
export const TXN_DEFAULT_MAX_EDGES = 10_000_000;

const DEP_WORDS: Readonly<Record<EdgeWhy['dep'], string>> = { ww: 'ww', wr: 'wr', rw: 'rw', rt: 'realtime' };

function describeStep(s: CycleStep): string {
  const a = `T${s.from}`;
  const b = `T${s.to}`;
  const w = s.why;
  const k = show(w.key);
  let why: string;
  if (w.dep === 'rt') why = `${a} completed before ${b} was invoked`;
  else if (w.dep === 'ww' && w.unseen === true) why = `${b} appended ${show(w.to)} to key ${k}, which no read shows, so after ${a}'s ${show(w.from)}, the last element read`;
  else if (w.dep === 'ww') why = w.list === true ? `${b} appended ${show(w.to)} to key ${k} right after ${a}'s ${show(w.from)}` : `${b} read key ${k} = ${show(w.from)} written by ${a}, then wrote ${show(w.to)}`;
  else if (w.dep === 'wr') why = w.list === true ? `${b} read key ${k} ending in ${a}'s append ${show(w.from)}` : `${b} read key ${k} = ${show(w.from)}, written by ${a}`;
  else why = w.list === true ? `${a} read key ${k} ${w.from === null ? 'empty' : `ending in ${show(w.from)}`}, before ${b}'s append ${show(w.to)}${w.unseen === true ? ', which no read shows' : ''}` : `${a} read key ${k} = ${show(w.from)}, which ${b} overwrote with ${show(w.to)}`;
  return `${a} -${DEP_WORDS[w.dep]}-> ${b}: ${why}`;
}

function explainCycle(txns: readonly Txn[], steps: readonly CycleStep[]): string {
  const names = steps.map((s) => txnName(txns[s.from] as Txn));
  return `cycle ${names.join(' -> ')} -> T${steps[0]?.from}; ${steps.map(describeStep).join('; ')}`;
}

function capPlain(found: readonly PlainAnomaly[]): TxnAnomaly[] {
  const out: TxnAnomaly[] = [];
  const seen = new Map<string, number>();
  for (const a of found) {
    const n = (seen.get(a.anomaly) ?? 0) + 1;
    seen.set(a.anomaly, n);
    if (n <= TXN_PLAIN_PER_KIND) out.push(a);
  }
  for (const [anomaly, n] of seen) if (n > TXN_PLAIN_PER_KIND) out.push({ anomaly, explanation: `and ${n - TXN_PLAIN_PER_KIND} more` });
  return out;
}

/** Why the history is not one of `model`'s (a list-append history appends and reads lists, an rw-register one writes and reads single values), or undefined. */
function foreignOp(txns: readonly Txn[], model: TxnModel): string | undefined {
  const list = model === 'list-append';
  for (const t of txns) {
    for (const op of t.ops) {
      if (op.f === (list ? 'w' : 'append')) return `${txnName(t)} has a :${op.f} micro-op, which ${model} histories do not`;
      if (op.f !== 'r' || op.value === undefined || op.value === null || Array.isArray(op.value) === list) continue;
      return `${txnName(t)} read key ${show(op.key)} = ${showRead(op.value)}; ${model} reads are ${list ? 'lists' : 'single values'}`;
    }
  }
  return undefined;
}

export function checkTxnHistory(txns: readonly Txn[], options: TxnCheckOptions): TxnCheckResult {
  const { model } = options;
  if (model !== 'list-append' && model !== 'rw-register') throw new TesseraError('INVALID_ARGUMENT', `unknown model '${String(model)}'; use list-append or rw-register`);
  const maxEdges = options.maxEdges ?? TXN_DEFAULT_MAX_EDGES;
  if (!(maxEdges >= 0)) throw new TesseraError('INVALID_ARGUMENT', `maxEdges must be >= 0, got ${maxEdges}`);
  // Started first, so the time budget covers inference as well as the search.
  const budget = new Budget({
    maxSteps: options.maxSteps ?? TXN_DEFAULT_MAX_STEPS,
    ...(options.timeBudgetMs === undefined ? {} : { timeBudgetMs: options.timeBudgetMs }),
    ...(options.nowMs === undefined ? {} : { nowMs: options.nowMs }),
  });
  const foreign = foreignOp(txns, model);
  if (foreign !== undefined) throw new TesseraError('PARSE_ERROR', foreign);
  const { graph, anomalies: plain } = model === 'list-append' ? inferListAppend(txns, maxEdges) : inferRwRegister(txns, maxEdges);
  if (options.realtime !== false) addRealtimeEdges(graph, txns);
  // Inference is linear and not interrupted; a budget it used up leaves no time to search.
  const cycles = budget.clockOk() ? findCycles(graph, budget, options.cyclesPerKind ?? TXN_CYCLES_PER_KIND) : [];
  const anomalies = [...capPlain(plain), ...cycles.map((c) => ({ anomaly: c.anomaly, explanation: explainCycle(txns, c.steps) }))];
  const names = [...new Set(anomalies.map((a) => a.anomaly))].sort();
  // Every anomaly reported is real whatever the budget did (a truncated graph holds only real edges); only "none" needs the whole search.
  // No memo here, so the shared Budget never runs out of memory.
  if (budget.reason === 'memory-budget') unreachable('the transactional checker reserves no memo memory');
  const reason: TxnBudgetReason | undefined = budget.reason ?? (graph.truncated ? 'edge-budget' : undefined);
  const valid = anomalies.length > 0 ? false : reason !== undefined ? 'unknown' : true;
  return { valid, anomalies, names, txns: txns.length, edges: graph.edgeCount, ...(reason === undefined ? {} : { reason }) };
}
