import { TesseraError } from '../base/index.js';
import { Budget } from './budget.js';
import { explainFailure } from './failure.js';
import { PartitionSearch } from './search.js';
import type { CheckOptions, CheckResult, Model, Operation } from './types.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Steps one partition runs before the next gets its turn. Small enough that
 * a partition refuted in a few thousand steps is found while an expensive
 * one is still searching; large enough that switching costs nothing.
 */
export const SLICE_STEPS = 4096;
/** Partitions searched in turns at once; the others wait for a free place. */
export const MAX_ACTIVE_PARTITIONS = 64;

interface Active<S, I, O> {
  readonly index: number;
  readonly search: PartitionSearch<S, I, O>;
}

/**
 * Decides whether `ops` is linearizable with respect to `model`.
 *
 * Partitions (when the model has `partition` and `options.partition` is not
 * false) are searched in turns, SLICE_STEPS steps each, as Porcupine checks
 * them in parallel: any one illegal partition makes the whole history
 * illegal, and a partition refuted in a thousand steps must not wait behind
 * one that needs millions. The first refuted partition ends the check.
 * A spent step, time or memory budget gives `unknown`, never a pass.
 */
export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult<I, O> {
  const budget = new Budget(options);
  const all = normalize(model, ops);
  // Pruning drops operations that cannot change a partition's verdict (Model.prune).
  const parts = splitHistory(model, all, options.partition !== false).map((part) => model.prune?.(part) ?? part);
  const result: Mutable<CheckResult<I, O>> = {
    verdict: 'linearizable',
    model: model.name,
    operations: all.length,
    partitions: parts.length,
    partitionsChecked: 0,
    steps: 0,
    peakMemoBytes: 0,
  };
  const witness = searchInTurns(model, parts, budget, result);
  result.steps = budget.steps;
  result.peakMemoBytes = budget.peakMemoBytes;
  const elapsed = budget.elapsedMs();
  if (elapsed !== undefined) result.elapsedMs = elapsed;
  if (options.witness === true && result.verdict === 'linearizable') result.witness = witness;
  return result;
}

/** Runs the partitions' searches round-robin until one fails, all pass or the budget ends. */
function searchInTurns<S, I, O>(
  model: Model<S, I, O>,
  parts: readonly Operation<I, O>[][],
  budget: Budget,
  result: Mutable<CheckResult<I, O>>,
): Operation<I, O>[][] {
  const witness: Operation<I, O>[][] = [];
  const active: Active<S, I, O>[] = [];
  let next = 0;
  while (active.length > 0 || next < parts.length) {
    while (active.length < MAX_ACTIVE_PARTITIONS && next < parts.length) {
      if (!budget.clockOk()) break;
      active.push({ index: next, search: new PartitionSearch(model, parts[next]!, budget) });
      next++;
    }
    if (budget.reason !== undefined) {
      result.verdict = 'unknown';
      result.reason = budget.reason;
      break;
    }
    for (let a = 0; a < active.length && result.verdict === 'linearizable'; a++) {
      const { index, search } = active[a]!;
      const outcome = search.run(budget, SLICE_STEPS);
      if (outcome === undefined) continue;
      search.release();
      active.splice(a--, 1);
      if (outcome.kind === 'budget') {
        result.verdict = 'unknown';
        result.reason = budget.reason ?? 'step-budget';
      } else if (outcome.kind === 'linearizable') {
        result.partitionsChecked++;
        witness[index] = outcome.order.map((i) => parts[index]![i]!);
      } else {
        result.partitionsChecked++;
        result.verdict = 'not-linearizable';
        result.failure = explainFailure(model, parts[index]!, outcome.prefix, outcome.stateAfterPrefix, index);
      }
    }
    if (result.verdict !== 'linearizable') break;
  }
  for (const { search } of active) search.release();
  return witness;
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
