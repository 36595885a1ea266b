import { TesseraError, type Rng } from '../base/index.js';
import type { KvInput, KvOutput } from './models/kv.js';
import type { Operation } from './types.js';

/**
 * Generates large kv histories (Porcupine's kv model: get, put, append) for
 * testing and benchmarking the checker, with a known verdict.
 *
 * Clients run closed loops on random keys. Every operation takes effect at a
 * random instant inside its interval, in the order of those instants, on a
 * correct store: the untouched history is linearizable by construction (the
 * instants are a witness). Violations are then injected into chosen gets, in
 * ways that no order can explain (see `injectViolation`).
 */
export interface KvHistoryOptions {
  readonly clients: number;
  readonly operations: number;
  readonly keys: number;
  /** Gets to falsify, each on a different key (default 0: linearizable). */
  readonly violations?: number;
  /** Share of operations whose client never learns the outcome (default 0.02). */
  readonly unknownShare?: number;
  /** Share of operations that are slow: 10 to 100 times the usual latency (default 0.05). */
  readonly slowShare?: number;
  /**
   * Where in its interval an operation takes effect: by default within the
   * last REPLY_MS before it returns (a replicated store's wait is before the
   * effect); `true` spreads it uniformly, which is much harder to check: a
   * slow read that took effect early is found out of place only at its return.
   */
  readonly effectAnywhere?: boolean;
}

export interface GeneratedKvHistory {
  readonly ops: Operation<KvInput, KvOutput>[];
  /** Indexes in `ops` of the falsified gets. */
  readonly violated: readonly number[];
  /** How each falsified get was made impossible, in the order of `violated`. */
  readonly violationKinds: readonly ViolationKind[];
}

/**
 * `stale-read`: the value from just before a write that finished before the
 * get started. `phantom-read`: a value with a token nobody wrote.
 */
export type ViolationKind = 'stale-read' | 'phantom-read';

interface Planned {
  readonly op: Operation<KvInput, KvOutput>;
  /** When it takes effect; Infinity if it never does. */
  readonly pointMs: number;
}

interface Write {
  readonly index: number;
  readonly kind: 'put' | 'append';
  readonly valueBefore: string;
}

const MEAN_LATENCY_MS = 5;
const MAX_THINK_MS = 2;
const REPLY_MS = 1;

export function generateKvHistory(rng: Rng, options: KvHistoryOptions): GeneratedKvHistory {
  const { clients, operations, keys } = options;
  const violations = options.violations ?? 0;
  if (!(clients >= 1 && operations >= 1 && keys >= 1 && violations >= 0 && violations <= keys)) {
    throw new TesseraError('INVALID_ARGUMENT', `generateKvHistory: bad options ${JSON.stringify(options)}`);
  }
  const planned = planOperations(rng, options);
  const { ops, writesByKey } = execute(planned);
  const violated: number[] = [];
  const violationKinds: ViolationKind[] = [];
  const victims = pickVictimKeys(rng, ops, violations, keys);
  for (const key of victims) {
    const result = injectViolation(rng, ops, key, writesByKey.get(key) ?? []);
    violated.push(result.index);
    violationKinds.push(result.kind);
  }
  return { ops, violated, violationKinds };
}

/** Each client's operations back to back, with think time, random keys and latencies. */
function planOperations(rng: Rng, options: KvHistoryOptions): Planned[] {
  const unknownShare = options.unknownShare ?? 0.02;
  const slowShare = options.slowShare ?? 0.05;
  const effectAnywhere = options.effectAnywhere ?? false;
  const clock = new Array<number>(options.clients).fill(0).map(() => rng.float() * MAX_THINK_MS);
  const planned: Planned[] = [];
  for (let n = 0; n < options.operations; n++) {
    const clientId = n % options.clients;
    const callMs = clock[clientId]!;
    const slow = rng.chance(slowShare) ? 10 + rng.float() * 90 : 1;
    const durationMs = (0.2 + rng.float() * 2 * MEAN_LATENCY_MS) * slow;
    const unknown = rng.chance(unknownShare);
    const input = randomInput(rng, clientId, n, options.keys);
    const returnMs = callMs + durationMs;
    // As on a replicated store, the wait is before the effect (queueing,
    // commit) and the reply is quick; `effectAnywhere` spreads it uniformly.
    const effectMs = effectAnywhere ? callMs + rng.float() * durationMs : returnMs - rng.float() * Math.min(durationMs, REPLY_MS);
    // An unknown write may have taken effect or not; an unknown get changes nothing.
    const pointMs = unknown && rng.chance(0.5) ? Infinity : effectMs;
    const output: KvOutput = unknown ? { kind: 'unknown' } : { kind: 'ok' };
    planned.push({ op: { clientId, input, output, callMs, returnMs }, pointMs });
    clock[clientId] = returnMs + rng.float() * MAX_THINK_MS;
  }
  return planned;
}

/** As 6.824's kv tests: about 47% gets, 47% appends, 6% puts; written values are unique tokens. */
function randomInput(rng: Rng, clientId: number, n: number, keys: number): KvInput {
  const key = String(rng.intBelow(keys));
  const roll = rng.float();
  if (roll < 0.47) return { kind: 'get', key };
  const value = `x ${clientId} ${n} y`;
  return roll < 0.94 ? { kind: 'append', key, value } : { kind: 'put', key, value };
}

/** Applies the operations at their instants on a correct store and fills in what gets read. */
function execute(planned: Planned[]): { ops: Operation<KvInput, KvOutput>[]; writesByKey: Map<string, Write[]> } {
  const ops = planned.map((p) => p.op);
  const order = planned.map((_, i) => i).filter((i) => planned[i]!.pointMs !== Infinity);
  order.sort((a, b) => planned[a]!.pointMs - planned[b]!.pointMs || a - b);
  const store = new Map<string, string>();
  const writesByKey = new Map<string, Write[]>();
  for (const i of order) {
    const { input, output } = ops[i]!;
    const current = store.get(input.key) ?? '';
    if (input.kind === 'get') {
      if (output.kind === 'ok') ops[i] = { ...ops[i]!, output: { kind: 'ok', value: current } };
      continue;
    }
    store.set(input.key, input.kind === 'put' ? input.value : current + input.value);
    const writes = writesByKey.get(input.key) ?? [];
    writes.push({ index: i, kind: input.kind, valueBefore: current });
    writesByKey.set(input.key, writes);
  }
  return { ops, writesByKey };
}

function pickVictimKeys(rng: Rng, ops: readonly Operation<KvInput, KvOutput>[], count: number, keys: number): string[] {
  const withGets = [...new Set(ops.filter(isAnsweredGet).map((op) => op.input.key))].sort();
  if (withGets.length < count) {
    throw new TesseraError('INVALID_ARGUMENT', `generateKvHistory: only ${withGets.length} of ${keys} keys have a get to falsify`);
  }
  for (let i = withGets.length - 1; i > 0; i--) {
    const j = rng.intBelow(i + 1);
    [withGets[i], withGets[j]] = [withGets[j]!, withGets[i]!];
  }
  return withGets.slice(0, count);
}

function isAnsweredGet(op: Operation<KvInput, KvOutput>): boolean {
  return op.input.kind === 'get' && op.output.kind === 'ok';
}

/**
 * Falsifies one answered get of `key`, chosen in the second half of the
 * key's history so the checker has to search its way there.
 *
 * A stale read returns the value from just before a write W (in the order
 * the store applied them) that returned before the get was called, where
 * the put that value starts from (if any) returned before W was called. Then
 * every order puts that put before W before the get, and every state after W
 * either contains W's token or starts with a later put's token; values are
 * token strings with unique tokens, so none equals the stale value. When no
 * write qualifies, the get instead reads a token that was never written.
 */
function injectViolation(
  rng: Rng,
  ops: Operation<KvInput, KvOutput>[],
  key: string,
  writes: readonly Write[],
): { index: number; kind: ViolationKind } {
  const gets = ops.map((_, i) => i).filter((i) => ops[i]!.input.key === key && isAnsweredGet(ops[i]!));
  const index = gets[Math.floor(gets.length / 2) + rng.intBelow(Math.ceil(gets.length / 2))]!;
  const get = ops[index]!;
  const stale = staleValue(ops, writes, get.callMs);
  const value = stale ?? `${readValue(get)}x phantom ${index} y`;
  ops[index] = { ...get, output: { kind: 'ok', value } };
  return { index, kind: stale === undefined ? 'phantom-read' : 'stale-read' };
}

function staleValue(ops: readonly Operation<KvInput, KvOutput>[], writes: readonly Write[], callMs: number): string | undefined {
  for (let w = writes.length - 1; w >= 0; w--) {
    const write = ops[writes[w]!.index]!;
    if (write.output.kind !== 'ok' || write.returnMs >= callMs) continue;
    let start = w - 1;
    while (start >= 0 && writes[start]!.kind !== 'put') start--;
    const base = start >= 0 ? ops[writes[start]!.index]! : undefined;
    if (base === undefined || (base.output.kind === 'ok' && base.returnMs < write.callMs)) return writes[w]!.valueBefore;
  }
  return undefined;
}

function readValue(op: Operation<KvInput, KvOutput>): string {
  return op.output.kind === 'ok' ? (op.output.value ?? '') : '';
}

/** The history as Porcupine-kv lines (testdata README), for check-history; time becomes line order. */
export function formatEdnKvLog(ops: readonly Operation<KvInput, KvOutput>[]): string {
  const events: { readonly t: number; readonly call: boolean; readonly line: string }[] = [];
  for (const op of ops) {
    const { input, output, clientId } = op;
    const value = input.kind === 'get' ? 'nil' : JSON.stringify(input.value);
    const head = `{:process ${clientId}, :type`;
    const tail = `:f :${input.kind}, :key ${JSON.stringify(input.key)}`;
    events.push({ t: op.callMs, call: true, line: `${head} :invoke, ${tail}, :value ${value}}` });
    if (op.returnMs === Infinity) continue;
    const result = output.kind === 'unknown' ? ':info' : ':ok';
    const read = input.kind === 'get' && output.kind === 'ok' ? JSON.stringify(output.value ?? '') : value;
    events.push({ t: op.returnMs, call: false, line: `${head} ${result}, ${tail}, :value ${read}}` });
  }
  // Calls before returns at equal times: touching intervals stay concurrent.
  events.sort((a, b) => a.t - b.t || Number(b.call) - Number(a.call));
  return `${events.map((e) => e.line).join('\n')}\n`;
}
