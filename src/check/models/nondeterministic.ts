import type { Model, NondeterministicModel } from '../types.js';

/**
 * Power-set construction (as Porcupine's NondeterministicModel.ToModel):
 * the deterministic state is the set of states the nondeterministic model
 * could be in, and an output is legal if at least one of them allows it.
 * Sets are kept deduplicated and sorted by hash so that equal sets hash
 * equally and the memo cache keeps working.
 */
export function fromNondeterministic<S, I, O>(nd: NondeterministicModel<S, I, O>): Model<readonly S[], I, O> {
  const canonical = (states: readonly S[]): readonly S[] => dedupe(nd, states);
  const model: Model<readonly S[], I, O> = {
    name: nd.name,
    init: () => canonical(nd.init()),
    step(states, input, output) {
      const next: S[] = [];
      for (const s of states) next.push(...nd.step(s, input, output));
      return { ok: next.length > 0, state: canonical(next) };
    },
    hash: (states) => states.map((s) => String(nd.hash(s))).join('\u0000'),
    describeState: (states) => `{${states.map((s) => nd.describeState?.(s) ?? String(nd.hash(s))).join(', ')}}`,
  };
  const equal = nd.equal;
  if (equal !== undefined) {
    // Both sides are deduplicated, so equal sizes plus inclusion means equal sets.
    model.equal = (a, b) => a.length === b.length && a.every((x) => b.some((y) => equal.call(nd, x, y)));
  }
  if (nd.partition !== undefined) model.partition = nd.partition.bind(nd);
  if (nd.isUnknown !== undefined) model.isUnknown = nd.isUnknown.bind(nd);
  if (nd.describeOperation !== undefined) model.describeOperation = nd.describeOperation.bind(nd);
  return model;
}

function dedupe<S, I, O>(nd: NondeterministicModel<S, I, O>, states: readonly S[]): readonly S[] {
  const byHash = new Map<string, S[]>();
  for (const s of states) {
    const h = String(nd.hash(s));
    const same = byHash.get(h);
    if (same === undefined) byHash.set(h, [s]);
    else if (nd.equal !== undefined && !same.some((t) => nd.equal!(s, t))) same.push(s);
  }
  const hashes = [...byHash.keys()].sort();
  return hashes.flatMap((h) => byHash.get(h)!);
}
