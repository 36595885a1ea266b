import { assertNever } from '../../base/index.js';
import type { Model, Operation } from '../types.js';
import { partitionByKey } from './partition.js';
import { HashedStringMap } from './string-map.js';

/** Porcupine's multi-key store (porcupine-kv): a missing key reads as "". */
export type KvInput =
  | { readonly kind: 'get'; readonly key: string }
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'append'; readonly key: string; readonly value: string };

/** `value` is what a get read; `unknown` is an operation that never returned. */
export type KvOutput = { readonly kind: 'ok'; readonly value?: string } | { readonly kind: 'unknown' };

/**
 * Keys with a non-empty value. "" and absent behave alike, so neither is
 * stored: otherwise equal states would hash differently and escape the memo.
 */
export type KvState = HashedStringMap;

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  name: 'kv',
  init: () => HashedStringMap.EMPTY,
  step(state, input, output) {
    const current = state.get(input.key) ?? '';
    switch (input.kind) {
      case 'get':
        return { ok: output.kind === 'unknown' || output.value === current, state };
      case 'put':
        return { ok: true, state: input.value === '' ? state.delete(input.key) : state.set(input.key, input.value) };
      case 'append':
        return { ok: true, state: input.value === '' ? state : state.append(input.key, input.value) };
      default:
        return assertNever(input, 'kv input');
    }
  },
  hash: (state) => state.hash(),
  equal: (a, b) => a.equals(b),
  stateBytes: (state) => state.ownBytes,
  readOnly: (input) => input.kind === 'get',
  // Keys are independent and every operation touches one key.
  partition: (ops) => partitionByKey(ops, (input) => input.key),
  isUnknown: (output) => output.kind === 'unknown',
  prune: pruneUnobserved,
  describeOperation(input, output) {
    const result = output.kind === 'unknown' ? 'unknown' : JSON.stringify(output.value ?? '');
    if (input.kind === 'get') return `get ${JSON.stringify(input.key)} -> ${result}`;
    return `${input.kind} ${JSON.stringify(input.key)} ${JSON.stringify(input.value)} -> ${output.kind}`;
  },
  describeState: (state) => state.encode(),
};

/**
 * Within one key: a read that never returned constrains nothing, and a write
 * that never returned whose value appears in no read's answer may be placed
 * after everything else, where it changes no answer. Dropping both is sound:
 * an order of what is left, with those writes appended, is an order of the
 * whole; and an order of the whole, with them removed, still explains every
 * read, since no read saw them (a put value is overwritten by the next write,
 * and an append shows in every later value until a put). The substring test
 * keeps a write whenever in doubt.
 */
function pruneUnobserved(ops: readonly Operation<KvInput, KvOutput>[]): Operation<KvInput, KvOutput>[] {
  const seen: string[] = [];
  for (const op of ops) if (op.input.kind === 'get' && op.output.kind === 'ok') seen.push(op.output.value ?? '');
  return ops.filter((op) => {
    if (op.output.kind !== 'unknown') return true;
    if (op.input.kind === 'get') return false;
    const value = op.input.value;
    return value === '' || seen.some((v) => v.includes(value));
  });
}
