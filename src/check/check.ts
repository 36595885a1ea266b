import { TesseraError } from '../base/index.js';
import { Budget } from './budget.js';
import { explainFailure } from './failure.js';
import { searchPartition } from './search.js';
import type { CheckOptions, CheckResult, Model, Operation } from './types.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Decides whether `ops` is linearizable with respect to `model`.
 *
 * Partitions (when the model has `partition` and `options.partition` is not
 * false) are checked one after another; the first non-linearizable one ends
 * the check, as any one illegal partition makes the whole history illegal.
 * A spent step or time budget gives `unknown`, never a pass.
 */
export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult<I, O> {
  const budget = new Budget(options);
  const all = normalize(model, ops);
  const parts = splitHistory(model, all, options.partition !== false);
  const result: Mutable<CheckResult<I, O>> = {
    verdict: 'linearizable',
    model: model.name,
    operations: all.length,
    partitions: parts.length,
    partitionsChecked: 0,
    steps: 0,
  };
  const witness: Operation<I, O>[][] = [];
  for (let p = 0; p < parts.length && result.verdict === 'linearizable'; p++) {
    const part = model.prune === undefined ? parts[p]! : model.prune(parts[p]!);
    const outcome = budget.clockOk() ? searchPartition(model, part, budget) : ({ kind: 'budget' } as const);
    if (outcome.kind === 'budget') {
      result.verdict = 'unknown';
      result.reason = budget.reason ?? 'step-budget';
      break;
    }
    result.partitionsChecked++;
    if (outcome.kind === 'linearizable') {
      witness.push(outcome.order.map((i) => part[i]!));
    } else {
      result.verdict = 'not-linearizable';
      result.failure = explainFailure(model, part, outcome.prefix, outcome.stateAfterPrefix, p);
    }
  }
  result.steps = budget.steps;
  const elapsed = budget.elapsedMs();
  if (elapsed !== undefined) result.elapsedMs = elapsed;
  if (options.witness === true && result.verdict === 'linearizable') result.witness = witness;
  return result;
}

/**
 * Validates times, widens unknown-outcome operations to `returnMs = Infinity`,
 * and orders by call time (stable): the search numbers operations in this
 * order, which keeps the memo's bitsets compact (see ConfigurationCache).
 */
function normalize<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[]): Operation<I, O>[] {
  const checked = ops.map((op, i) => {
    if (!Number.isFinite(op.callMs) || Number.isNaN(op.returnMs) || op.returnMs < op.callMs) {
      throw new TesseraError(
        'INVALID_ARGUMENT',
        `operation ${i} (client ${op.clientId}) has interval [${op.callMs}, ${op.returnMs}]; ` +
          'callMs must be finite and returnMs >= callMs (Infinity when unknown)',
      );
    }
    // The effect of an operation nobody heard back from may land after the
    // client gave up, so its interval must stay open to the end of the history.
    if (op.returnMs !== Infinity && model.isUnknown?.(op.output) === true) return { ...op, returnMs: Infinity };
    return op;
  });
  return checked.sort((a, b) => a.callMs - b.callMs);
}

function splitHistory<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  partition: boolean,
): Operation<I, O>[][] {
  const parts = partition && model.partition !== undefined ? model.partition(ops) : [ops];
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  if (total !== ops.length) {
    throw new TesseraError('INVALID_ARGUMENT', `${model.name}.partition returned ${total} of ${ops.length} operations`);
  }
  return parts.filter((part) => part.length > 0);
}
