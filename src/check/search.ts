import type { Budget } from './budget.js';
import { Bitset } from './bitset.js';
import { AddResult, ConfigurationCache } from './cache.js';
import { NIL, Timeline } from './timeline.js';
import type { Model, Operation } from './types.js';

export type SearchOutcome<S> =
  | { readonly kind: 'linearizable'; readonly order: readonly number[] }
  | { readonly kind: 'not-linearizable'; readonly prefix: readonly number[]; readonly stateAfterPrefix: S }
  | { readonly kind: 'budget' };

/**
 * Bytes assumed retained per memo entry for a model that keeps states (has
 * `equal`) but gives no `stateBytes`: an object with a few fields.
 */
export const DEFAULT_STATE_BYTES = 64;

/**
 * Remembers the deepest stack of linearized operations seen, for diagnostics.
 * `agree` counts how many bottom entries of the live stack still equal the
 * recorded one, so a new record only copies the entries pushed since the
 * stacks diverged: each push is copied at most once (amortized O(1)).
 */
class DeepestPrefix<S> {
  readonly ops: number[] = [];
  state: S;
  private agree = 0;

  constructor(initial: S) {
    this.state = initial;
  }

  onPush(stack: readonly number[], state: S): void {
    const depth = stack.length;
    const top = stack[depth - 1]!;
    if (depth > this.ops.length) {
      for (let i = this.agree; i < depth; i++) this.ops[i] = stack[i]!;
      this.agree = depth;
      this.state = state;
    } else if (this.agree === depth - 1 && this.ops[depth - 1] === top) {
      this.agree = depth;
    }
  }

  onPop(depth: number): void {
    if (this.agree > depth) this.agree = depth;
  }
}

/** Bytes the memo keeps for one state: the state itself with `equal`, else its hash. */
function valueBytesOf<S, I, O>(model: Model<S, I, O>): (state: S, stateHash: string | number) => number {
  if (model.equal !== undefined) {
    const sized = model.stateBytes?.bind(model);
    return sized === undefined ? () => DEFAULT_STATE_BYTES : (state) => sized(state);
  }
  // A heap number, or a one-byte string's header and characters.
  return (_state, stateHash) => (typeof stateHash === 'number' ? 16 : 24 + stateHash.length);
}

/**
 * Wing & Gong's search with Lowe's memoization, on one partition, as a
 * resumable loop: `run` advances it by a slice of steps so that several
 * partitions can be searched in turns (see checkOperations).
 *
 * Walk the entry list from the front. At a call, try to linearize that
 * operation next: if the model accepts its output and the resulting
 * (linearized set, state) is new, push it, lift it out of the list and start
 * again from the front. At a return, the operation returning there is not
 * linearized and every candidate before it has been tried: backtrack by
 * popping the last linearized operation and trying the entry after it.
 * An empty list means everything is linearized; an empty stack at a return
 * means no order works.
 */
export class PartitionSearch<S, I, O> {
  private readonly list: Timeline;
  private readonly linearized: Bitset;
  private readonly cache: ConfigurationCache<S>;
  private readonly stack: number[] = []; // call nodes, in linearization order
  private readonly before: S[] = []; // model state before each stacked operation
  private readonly deepest: DeepestPrefix<S>;
  private state: S;
  private node: number;

  constructor(
    private readonly model: Model<S, I, O>,
    private readonly ops: readonly Operation<I, O>[],
    budget: Budget,
  ) {
    this.list = new Timeline(ops);
    this.linearized = new Bitset(ops.length);
    this.cache = new ConfigurationCache<S>({ equal: model.equal?.bind(model), valueBytes: valueBytesOf(model), meter: budget });
    this.state = model.init();
    this.deepest = new DeepestPrefix<S>(this.state);
    this.node = this.list.first();
  }

  /** Memo entries stored so far. */
  get memoEntries(): number {
    return this.cache.size;
  }

  /**
   * Runs at most `sliceSteps` steps; `undefined` means not decided yet.
   * Returns `budget` once the step, time or memory budget is spent.
   */
  run(budget: Budget, sliceSteps: number): SearchOutcome<S> | undefined {
    if (!this.cache.ok) return { kind: 'budget' };
    const { list, ops, model, stack, before, linearized, cache } = this;
    let { node, state } = this;
    for (let slice = 0; list.first() !== NIL; slice++) {
      if (slice === sliceSteps) {
        this.node = node;
        this.state = state;
        return undefined;
      }
      if (!budget.tick()) return { kind: 'budget' };
      if (list.isCall(node)) {
        const id = list.op[node]!;
        const op = ops[id]!;
        const result = model.step(state, op.input, op.output);
        if (result.ok) {
          linearized.set(id);
          const added = cache.add(linearized, result.state, model.hash(result.state));
          if (added === AddResult.Added) {
            stack.push(node);
            before.push(state);
            this.deepest.onPush(stack, result.state);
            state = result.state;
            list.lift(node);
            node = list.first();
            continue;
          }
          if (added === AddResult.NoMemory) return { kind: 'budget' };
          linearized.clear(id); // seen before: this branch leads nowhere new
        }
        node = list.next[node]!;
      } else {
        const call = stack.pop();
        if (call === undefined) {
          const prefix = this.deepest.ops.map((n) => list.op[n]!);
          return { kind: 'not-linearizable', prefix, stateAfterPrefix: this.deepest.state };
        }
        state = before.pop()!;
        this.deepest.onPop(stack.length);
        linearized.clear(list.op[call]!);
        list.unlift(call);
        node = list.next[call]!;
      }
    }
    return { kind: 'linearizable', order: stack.map((n) => list.op[n]!) };
  }

  /** Gives the memo's memory back to the budget; the search is dead after. */
  release(): void {
    this.cache.release();
  }
}
