/**
 * Generated list-append histories for the checker's own tests: clients
 * run transactions against one serial store, each taking effect at one
 * moment between its invocation and its completion, so every history is
 * strictly serializable. Some transactions fail (and take no effect), and
 * some end `:info` (with or without effect). Deterministic from a seed.
 */
export interface GenerateOptions {
  readonly seed: number;
  readonly txns: number;
  readonly processes?: number;
  readonly keys?: number;
  readonly opsPerTxn?: number;
  /** Appends a key takes before it is replaced by a fresh one (reads stay short). */
  readonly maxAppendsPerKey?: number;
  /** Share of transactions that fail, and of those that end :info. */
  readonly failShare?: number;
  readonly infoShare?: number;
}

type Op = ['append', number, number] | ['r', number, number[] | null];

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function ednOps(ops: readonly Op[]): string {
  return `[${ops.map(([f, k, v]) => `[:${f} ${k} ${v === null ? 'nil' : Array.isArray(v) ? `[${v.join(' ')}]` : v}]`).join(' ')}]`;
}

/** A strictly serializable list-append history. */
export function generateListAppend(o: GenerateOptions): string {
  const next = rng(o.seed);
  const processes = o.processes ?? 8;
  const keys = o.keys ?? 16;
  const opsPerTxn = o.opsPerTxn ?? 4;
  const store = new Map<number, number[]>();
  const nextValue = new Map<number, number>();
  const maxAppends = o.maxAppendsPerKey ?? 32;
  const active = Array.from({ length: keys }, (_, i) => i);
  let freshKey = keys;
  const events: { at: number; line: string }[] = [];
  // Each process runs its transactions one after another; a transaction spans [invoke, complete] and
  // takes effect at `effect` inside it. Effects are applied in time order below, so times decide all.
  const txns: { process: number; invoke: number; effect: number; complete: number; ops: Op[]; outcome: 'ok' | 'fail' | 'info' }[] = [];
  const perProcess = Math.ceil(o.txns / processes);
  for (let worker = 0; worker < processes; worker++) {
    // After an :info outcome a Jepsen worker goes on as a new process (the old one may still be in flight).
    let p = worker;
    let t = next();
    for (let i = 0; i < perProcess && txns.length < o.txns; i++) {
      const invoke = t;
      const complete = t + 0.5 + next() * 3;
      const effect = invoke + (complete - invoke) * next();
      const ops: Op[] = [];
      const n = 1 + Math.floor(next() * opsPerTxn);
      for (let j = 0; j < n; j++) {
        // Keys rotate, as Elle's generators do: one that took maxAppendsPerKey appends is replaced by a fresh one.
        const slot = Math.floor(next() * keys);
        const k = active[slot] as number;
        if (next() < 0.5) {
          const v = (nextValue.get(k) ?? 0) + 1;
          nextValue.set(k, v);
          ops.push(['append', k, v]);
          if (v >= maxAppends) active[slot] = freshKey++;
        } else ops.push(['r', k, null]);
      }
      const roll = next();
      const outcome = roll < (o.failShare ?? 0.05) ? 'fail' : roll < (o.failShare ?? 0.05) + (o.infoShare ?? 0.03) ? 'info' : 'ok';
      txns.push({ process: p, invoke, effect, complete, ops, outcome });
      if (outcome === 'info') p += processes;
      t = complete + next() * 0.5;
    }
  }
  const byEffect = [...txns].sort((a, b) => a.effect - b.effect);
  for (const t of byEffect) {
    // A failed transaction takes no effect; an :info one does half of the time.
    const applies = t.outcome === 'ok' || (t.outcome === 'info' && next() < 0.5);
    const local = new Map<number, number[]>();
    t.ops = t.ops.map((op): Op => {
      const [f, k] = op;
      const cur = local.get(k) ?? [...(store.get(k) ?? [])];
      if (f === 'append') {
        cur.push(op[2]);
        local.set(k, cur);
        return op;
      }
      local.set(k, cur);
      return ['r', k, cur.length === 0 ? null : [...cur]];
    });
    if (applies) for (const [k, v] of local) store.set(k, v);
  }
  for (const t of txns) {
    const invokeOps = t.ops.map((op): Op => (op[0] === 'r' ? ['r', op[1], null] : op));
    events.push({ at: t.invoke, line: `{:type :invoke, :f :txn, :value ${ednOps(invokeOps)}, :process ${t.process}}` });
    if (t.outcome === 'info' && next() < 0.5) continue;
    events.push({ at: t.complete, line: `{:type :${t.outcome}, :f :txn, :value ${ednOps(t.outcome === 'ok' ? t.ops : invokeOps)}, :process ${t.process}}` });
  }
  events.sort((a, b) => a.at - b.at);
  return events.map((e) => e.line).join('\n');
}
