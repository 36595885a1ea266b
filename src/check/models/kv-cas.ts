import { TesseraError, assertNever } from '../../base/index.js';
import type { Model, Operation } from '../types.js';
import { partitionByKey } from './partition.js';
import { HashedStringMap } from './string-map.js';

/** Single-key operations of the simulator's workload. Values are unique per key. */
export type KvCasInput =
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'delete'; readonly key: string }
  | { readonly kind: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string };

/**
 * `value` answers a get (`null`: absent); `succeeded` answers a CAS.
 * `unknown` is an operation whose outcome the client never learned.
 */
export type KvCasOutput =
  | { readonly kind: 'ok'; readonly value?: string | null; readonly succeeded?: boolean }
  | { readonly kind: 'unknown' };

/** Present keys only; absence is the `null` value. */
export type KvCasState = HashedStringMap;

function required<T>(value: T | undefined, what: string): T {
  // A definite answer without its payload is a recording bug, not a verdict.
  if (value === undefined) throw new TesseraError('INVALID_ARGUMENT', `kv-cas: an ok ${what} needs its result`);
  return value;
}

export const kvCasModel: Model<KvCasState, KvCasInput, KvCasOutput> = {
  name: 'kv-cas',
  init: () => HashedStringMap.EMPTY,
  step(state, input, output) {
    const current = state.get(input.key) ?? null;
    const known = output.kind === 'ok' ? output : undefined;
    switch (input.kind) {
      case 'get':
        return { ok: known === undefined || required(known.value, 'get') === current, state };
      case 'put':
        return { ok: true, state: state.set(input.key, input.value) };
      case 'delete':
        return { ok: true, state: state.delete(input.key) };
      case 'cas': {
        const matches = current === input.expected;
        const ok = known === undefined || required(known.succeeded, 'cas') === matches;
        return { ok, state: matches ? state.set(input.key, input.value) : state };
      }
      default:
        return assertNever(input, 'kv-cas input');
    }
  },
  hash: (state) => state.hash(),
  equal: (a, b) => a.equals(b),
  stateBytes: (state) => state.ownBytes,
  // A CAS reported as failed is legal only where it would not match, and there it changes nothing.
  readOnly: (input, output) =>
    input.kind === 'get' || (input.kind === 'cas' && output.kind === 'ok' && output.succeeded === false),
  partition: (ops) => partitionByKey(ops, (input) => input.key),
  isUnknown: (output) => output.kind === 'unknown',
  prune: pruneUnobservedCas,
  describeOperation: describeKvCas,
  describeState: (state) => state.encode(),
};

function describeKvCas(input: KvCasInput, output: KvCasOutput): string {
  const key = JSON.stringify(input.key);
  const result =
    output.kind === 'unknown'
      ? 'unknown'
      : input.kind === 'get'
        ? JSON.stringify(output.value ?? null)
        : input.kind === 'cas'
          ? output.succeeded === true
            ? 'swapped'
            : 'not swapped'
          : 'ok';
  switch (input.kind) {
    case 'get':
    case 'delete':
      return `${input.kind} ${key} -> ${result}`;
    case 'put':
      return `put ${key} ${JSON.stringify(input.value)} -> ${result}`;
    case 'cas':
      return `cas ${key} ${JSON.stringify(input.expected)}->${JSON.stringify(input.value)} -> ${result}`;
    default:
      return assertNever(input, 'kv-cas input');
  }
}

/**
 * Within one key: a read that never returned constrains nothing; and while no
 * known CAS failed on the key, a put or CAS that never returned and whose new
 * value no read returned and no CAS expected may be placed last, where it
 * changes no answer. Dropping it is sound: in an order of the whole, the
 * operations between it and the next write that took effect can only be
 * unknown ones without effect (a read would have returned its value, a
 * successful CAS expected it, a failed known CAS is excluded), and those may
 * move to the end too. Deletes are kept (an absent key is often read).
 */
function pruneUnobservedCas(ops: readonly Operation<KvCasInput, KvCasOutput>[]): Operation<KvCasInput, KvCasOutput>[] {
  const observed = new Set<string>();
  let failedCas = false;
  for (const op of ops) {
    if (op.input.kind === 'cas' && op.input.expected !== null) observed.add(op.input.expected);
    if (op.output.kind !== 'ok') continue;
    if (op.input.kind === 'get' && typeof op.output.value === 'string') observed.add(op.output.value);
    if (op.input.kind === 'cas' && op.output.succeeded === false) failedCas = true;
  }
  return ops.filter((op) => {
    if (op.output.kind !== 'unknown') return true;
    if (op.input.kind === 'get') return false;
    if (op.input.kind === 'delete' || failedCas) return true;
    return observed.has(op.input.value);
  });
}
