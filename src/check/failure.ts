import { unreachable } from '../base/index.js';
import type { CheckFailure, Model, Operation } from './types.js';

/**
 * Explains a failed search from its longest linearizable prefix.
 *
 * After that prefix, the earliest-returning operation left over ("blocked")
 * is the one whose return the search could never get past. The operations
 * that could have been ordered around it are the leftovers invoked before it
 * returned, plus the prefix operations overlapping it in time (which could
 * have been placed after it instead). That set is the window to look at.
 */
export function explainFailure<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  prefix: readonly number[],
  stateAfterPrefix: S,
  partition: number,
): CheckFailure<I, O> {
  const inPrefix = new Set(prefix);
  const blocked = earliestReturn(ops, inPrefix);
  const window = ops
    .filter((op, i) => (inPrefix.has(i) ? overlaps(op, blocked) : op.callMs <= blocked.returnMs))
    .sort((a, b) => a.callMs - b.callMs);
  const stateText = describeState(model, stateAfterPrefix);
  const message =
    `${model.name}: cannot linearize ${describeOperation(model, blocked)}. ` +
    `The longest linearizable prefix has ${prefix.length} of ${ops.length} operations ` +
    `and leaves state ${stateText}; no order of the ${window.length} operations in the window ` +
    `[${formatTime(window[0]?.callMs ?? blocked.callMs)}, ${formatTime(blocked.returnMs)}] admits it.`;
  return {
    partition,
    blocked,
    window,
    prefix: prefix.map((i) => ops[i]!),
    prefixLength: prefix.length,
    partitionSize: ops.length,
    stateAfterPrefix: stateText,
    message,
  };
}

function earliestReturn<I, O>(ops: readonly Operation<I, O>[], linearized: ReadonlySet<number>): Operation<I, O> {
  let best: Operation<I, O> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (linearized.has(i)) continue;
    if (best === undefined || op.returnMs < best.returnMs) best = op;
  }
  // A failed search always leaves an operation out; a full prefix would be a success.
  if (best === undefined) unreachable('explainFailure: every operation is linearized');
  return best;
}

function overlaps(a: Operation<unknown, unknown>, b: Operation<unknown, unknown>): boolean {
  return a.callMs <= b.returnMs && b.callMs <= a.returnMs;
}

export function describeOperation<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  const what = model.describeOperation?.(op.input, op.output) ?? `${JSON.stringify(op.input)} -> ${JSON.stringify(op.output)}`;
  return `client ${op.clientId} ${what} [${formatTime(op.callMs)}, ${formatTime(op.returnMs)}]`;
}

export function describeState<S, I, O>(model: Model<S, I, O>, state: S): string {
  return model.describeState?.(state) ?? String(model.hash(state));
}

function formatTime(ms: number): string {
  return ms === Infinity ? '∞' : String(ms);
}
