/**
 * Shared vocabulary of the history checkers (research/reliability.md 2.0-2.1).
 *
 * The checker is pure: it never reads a clock or the file system. Callers
 * hand it recorded operations and, if they want a wall-clock limit, a clock.
 */

/**
 * One completed, failed-for-sure-excluded or indeterminate client operation.
 *
 * Intervals are closed: two operations whose intervals touch at a single
 * instant are concurrent. `returnMs` is `Infinity` when the outcome is
 * unknown (timed out, connection lost, never completed): such an operation
 * may take effect at any point after its call, or never.
 */
export interface Operation<I, O> {
  readonly clientId: number;
  readonly input: I;
  readonly output: O;
  readonly callMs: number;
  readonly returnMs: number;
}

export interface StepResult<S> {
  readonly ok: boolean;
  readonly state: S;
}

/**
 * A sequential specification. `step` must be pure: the search calls it many
 * times on the same state and keeps old states around for backtracking.
 */
export interface Model<S, I, O> {
  readonly name: string;
  init(): S;
  /** Applies `input` to `state`; `ok` says whether `output` is a legal answer. */
  step(state: S, input: I, output: O): StepResult<S>;
  /**
   * Equal states must hash equally. Without `equal`, equal hashes (`===`)
   * are taken to mean equal states, so the hash must then be a canonical
   * encoding. A number is cheaper for the memo than a string.
   */
  hash(state: S): string | number;
  equal?(a: S, b: S): boolean;
  /**
   * With `equal`, the memo keeps states: an estimate of the bytes `state`
   * retains beyond the states it shares structure with, counted against
   * `CheckOptions.maxMemoBytes` (default DEFAULT_STATE_BYTES).
   */
  stateBytes?(state: S): number;
  /**
   * Splits a history into independent sub-histories (P-compositionality).
   * Only sound when every operation touches one part and the specification
   * has no state shared between parts.
   */
  partition?(ops: readonly Operation<I, O>[]): Operation<I, O>[][];
  /**
   * True when the operation, in every state where its output is legal,
   * leaves the state unchanged (a read, a compare-and-set that reported
   * failure). The search then linearizes it as soon as it is legal and tries
   * nothing else there. Leave it out, or answer false, when unsure: an
   * unknown-outcome CAS, say, may change the state.
   */
  readOnly?(input: I, output: O): boolean;
  /**
   * Marks outputs that carry no information. Such an operation may still land
   * after the client gave up, so the checker treats its return as `Infinity`.
   */
  isUnknown?(output: O): boolean;
  /**
   * Drops operations of one partition that cannot change the verdict, before
   * the search: for example a write that never returned and whose value no
   * read observed (it may always be placed last). Each such operation left in
   * doubles the configurations the search can reach.
   */
  prune?(ops: readonly Operation<I, O>[]): Operation<I, O>[];
  describeOperation?(input: I, output: O): string;
  describeState?(state: S): string;
}

/**
 * A specification that may move to several states on one step; `[]` means the
 * output is illegal. `fromNondeterministic` turns it into a `Model`.
 */
export interface NondeterministicModel<S, I, O> {
  readonly name: string;
  init(): readonly S[];
  step(state: S, input: I, output: O): readonly S[];
  hash(state: S): string | number;
  equal?(a: S, b: S): boolean;
  partition?(ops: readonly Operation<I, O>[]): Operation<I, O>[][];
  isUnknown?(output: O): boolean;
  describeOperation?(input: I, output: O): string;
  describeState?(state: S): string;
}

export type Verdict = 'linearizable' | 'not-linearizable' | 'unknown';

export interface CheckOptions {
  /** Split by the model's `partition` (default true). `false` checks one model. */
  readonly partition?: boolean;
  /** Wall-clock budget for the whole check; requires `nowMs`. */
  readonly timeBudgetMs?: number;
  /** Injected monotonic clock in milliseconds (the caller owns the real one). */
  readonly nowMs?: () => number;
  /** Budget in search steps (one visit of a list entry), summed over partitions. */
  readonly maxSteps?: number;
  /**
   * Bound on the bytes the memos hold at once, summed over the partitions
   * being searched (default MAX_MEMO_BYTES, 256 MiB). Reaching it answers
   * `unknown` with reason `memory-budget`.
   */
  readonly maxMemoBytes?: number;
  /** Return one linearization per partition when the history is linearizable. */
  readonly witness?: boolean;
}

export interface CheckFailure<I, O> {
  /** Index of the failing partition in the model's `partition` order. */
  readonly partition: number;
  /** The operation that no order of the pending operations could admit. */
  readonly blocked: Operation<I, O>;
  /**
   * The operations that could not be ordered: `blocked`, the unlinearized
   * operations invoked before it returned, and the linearized ones that
   * overlap it in time. Sorted by call time.
   */
  readonly window: readonly Operation<I, O>[];
  /** The longest linearizable prefix found in that partition, in linearization order. */
  readonly prefix: readonly Operation<I, O>[];
  /** `prefix.length`. */
  readonly prefixLength: number;
  /** Number of operations in that partition. */
  readonly partitionSize: number;
  /** The model state after that prefix, as `describeState` or `hash` shows it. */
  readonly stateAfterPrefix: string;
  readonly message: string;
}

export type BudgetReason = 'time-budget' | 'step-budget' | 'memory-budget';

export interface CheckResult<I, O> {
  readonly verdict: Verdict;
  readonly model: string;
  readonly operations: number;
  readonly partitions: number;
  readonly partitionsChecked: number;
  readonly steps: number;
  /** The most bytes the memos held at once (what `maxMemoBytes` bounds). */
  readonly peakMemoBytes: number;
  /** Present only when a clock was injected. */
  readonly elapsedMs?: number;
  /** Why the verdict is `unknown`. */
  readonly reason?: BudgetReason;
  readonly failure?: CheckFailure<I, O>;
  /** With `options.witness`: per partition, the operations in linearization order. */
  readonly witness?: readonly (readonly Operation<I, O>[])[];
}
