import type { Rng } from '../base/index.js';
import type { KvInput, KvOutput } from './models/kv.js';
import type { Operation } from './types.js';

export interface KvHistoryOptions {
  readonly rng: Rng;
  readonly clients: number;
  readonly opsPerClient: number;
  readonly keys: number;
  /** Chance that a write's client never hears back (its outcome is unknown; it may still take effect). */
  readonly unknownRate: number;
  /** Make one read return a value the key had long before: the history is then not linearizable. */
  readonly violation: boolean;
}

/**
 * A kv history of concurrent clients, made by running a real sequential store:
 * each operation takes effect at a random instant inside its interval, in the
 * order of those instants, so the history is linearizable by construction. An
 * operation with an unknown outcome may take effect or not. With `violation`,
 * one read that follows two or more writes of its key answers with an
 * overwritten value, after that value's overwrite returned: no order explains it.
 */
export function generateKvHistory(o: KvHistoryOptions): Operation<KvInput, KvOutput>[] {
  interface Planned { clientId: number; input: KvInput; callMs: number; returnMs: number; atMs: number; unknown: boolean; applies: boolean }
  const planned: Planned[] = [];
  for (let c = 0; c < o.clients; c++) {
    let t = o.rng.intBelow(5);
    for (let i = 0; i < o.opsPerClient; i++) {
      const key = `k${o.rng.intBelow(o.keys)}`;
      const roll = o.rng.intBelow(10);
      const input: KvInput = roll < 5 ? { kind: 'get', key } : roll < 8 ? { kind: 'put', key, value: `c${c}.${i}` } : { kind: 'append', key, value: `.${c}.${i}` };
      const duration = 1 + o.rng.intBelow(20);
      const unknown = input.kind !== 'get' && o.rng.chance(o.unknownRate);
      planned.push({ clientId: c, input, callMs: t, returnMs: t + duration, atMs: t + o.rng.float() * duration, unknown, applies: !unknown || o.rng.chance(0.5) });
      t += duration + o.rng.intBelow(5);
    }
  }
  const byEffect = [...planned].sort((a, b) => a.atMs - b.atMs);
  const store = new Map<string, string>();
  const outputs = new Map<Planned, KvOutput>();
  for (const p of byEffect) {
    const current = store.get(p.input.key) ?? '';
    if (p.input.kind === 'get') outputs.set(p, { kind: 'ok', value: current });
    else {
      if (p.applies) store.set(p.input.key, p.input.kind === 'put' ? p.input.value : current + p.input.value);
      outputs.set(p, p.unknown ? { kind: 'unknown' } : { kind: 'ok' });
    }
  }
  if (o.violation) injectStaleRead(planned, outputs);
  return planned.map((p) => ({ clientId: p.clientId, input: p.input, output: outputs.get(p) as KvOutput, callMs: p.callMs, returnMs: p.unknown ? Infinity : p.returnMs }));
}

/** Finds a read called after two known puts of its key returned, and makes it answer with the first one's value. */
function injectStaleRead(planned: readonly { input: KvInput; callMs: number; returnMs: number; unknown: boolean }[], outputs: Map<unknown, KvOutput>): void {
  const candidates = planned.filter((p) => p.input.kind === 'get');
  for (let i = candidates.length - 1; i >= 0; i--) {
    const read = candidates[i] as (typeof planned)[number];
    // Put values are unique and appends only lengthen a value, so once any write after a known put has taken
    // effect, that put's value never comes back. A known write called after the put returned and
    // returned before the read was called takes effect between them in every order.
    const writes = planned.filter((p) => p.input.key === read.input.key && p.input.kind !== 'get');
    const old = writes.find((w) => w.input.kind === 'put' && !w.unknown && writes.some((later) => later !== w && !later.unknown && later.callMs > w.returnMs && later.returnMs < read.callMs));
    if (old === undefined || old.input.kind === 'get') continue;
    outputs.set(read, { kind: 'ok', value: old.input.value });
    return;
  }
  throw new Error('no read could be made stale; use more operations or fewer keys');
}
