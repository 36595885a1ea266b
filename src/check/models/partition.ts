import type { Operation } from '../types.js';

/**
 * Groups operations by the one key each touches, keeping history order
 * inside a group and first-appearance order between groups (deterministic).
 */
export function partitionByKey<I, O>(
  ops: readonly Operation<I, O>[],
  keyOf: (input: I) => string,
): Operation<I, O>[][] {
  const groups = new Map<string, Operation<I, O>[]>();
  for (const op of ops) {
    const key = keyOf(op.input);
    let group = groups.get(key);
    if (group === undefined) {
      group = [];
      groups.set(key, group);
    }
    group.push(op);
  }
  return [...groups.values()];
}
