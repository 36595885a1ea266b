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
 *
 * Reads go first: on reaching a configuration, a read-only operation (see
 * `Model.readOnly`) that may go next and is legal in the current state is
 * linearized at once, and no alternative is tried there. Any order that
 * places it later can move it here, as it leaves the state alone and every
 * operation it must follow is already placed; so the configuration has a
 * completion exactly when the one after the read has. Without this, a slow
 * read that took effect early is skipped by the greedy walk and the search
 * explores everything up to its return before it backtracks to it.
 */
export class PartitionSearch<S, I, O> {
  private readonly list: Timeline;
  private readonly linearized: Bitset;
  private readonly cache: ConfigurationCache<S>;
  private readonly stack: number[] = []; // call nodes, in linearization order
  private readonly before: S[] = []; // model state before each stacked operation
  private readonly forced: boolean[] = []; // per stacked operation: a read taken without alternatives
  private readonly readOnly: Uint8Array;
  private readonly deepest: DeepestPrefix<S>;
  private state: S;
  private node: number;
  /** The current configuration is new: look for a read to force. */
  private fresh = true;

  constructor(
    private readonly model: Model<S, I, O>,
    private readonly ops: readonly Operation<I, O>[],
    budget: Budget,
  ) {
    this.list = new Timeline(ops);
    this.linearized = new Bitset(ops.length);
    this.cache = new ConfigurationCache<S>({ equal: model.equal?.bind(model), valueBytes: valueBytesOf(model), meter: budget });
    this.readOnly = new Uint8Array(ops.length);
    if (model.readOnly !== undefined) {
      for (let i = 0; i < ops.length; i++) this.readOnly[i] = model.readOnly(ops[i]!.input, ops[i]!.output) ? 1 : 0;
    }
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
    const { list } = this;
    for (let slice = 0; list.first() !== NIL; slice++) {
      if (slice === sliceSteps) return undefined;
      if (!budget.tick()) return { kind: 'budget' };
      let outcome: SearchOutcome<S> | undefined;
      if (this.fresh) outcome = this.forceRead();
      else if (list.isCall(this.node)) outcome = this.tryNode();
      else outcome = this.backtrack();
      if (outcome !== undefined) return outcome;
    }
    return { kind: 'linearizable', order: this.stack.map((n) => list.op[n]!) };
  }

  /** Gives the memo's memory back to the budget; the search is dead after. */
  release(): void {
    this.cache.release();
  }

  /** At a new configuration: linearizes a legal read if the window has one. */
  private forceRead(): SearchOutcome<S> | undefined {
    this.fresh = false;
    const { list, ops, model, state } = this;
    for (let node = list.first(); node !== NIL && list.isCall(node); node = list.next[node]!) {
      const id = list.op[node]!;
      if (this.readOnly[id] === 0) continue;
      const op = ops[id]!;
      const result = model.step(state, op.input, op.output);
      if (!result.ok) continue;
      const added = this.add(id, result.state);
      if (added === AddResult.NoMemory) return { kind: 'budget' };
      if (added === AddResult.Seen) return this.backtrack(); // explored before: this configuration fails too
      this.push(node, result.state, true);
      return undefined;
    }
    return undefined;
  }

  /** At a call: linearizes it if legal and new, else moves on. */
  private tryNode(): SearchOutcome<S> | undefined {
    const node = this.node;
    const id = this.list.op[node]!;
    const op = this.ops[id]!;
    const result = this.model.step(this.state, op.input, op.output);
    if (result.ok) {
      const added = this.add(id, result.state);
      if (added === AddResult.NoMemory) return { kind: 'budget' };
      if (added === AddResult.Added) {
        this.push(node, result.state, false);
        return undefined;
      }
    }
    this.node = this.list.next[node]!;
    return undefined;
  }

  /** Sets `id` in the linearized set and records the configuration; undoes the bit unless added. */
  private add(id: number, next: S): AddResult {
    this.linearized.set(id);
    const added = this.cache.add(this.linearized, next, this.model.hash(next));
    if (added !== AddResult.Added) this.linearized.clear(id);
    return added;
  }

  private push(node: number, next: S, forced: boolean): void {
    this.stack.push(node);
    this.before.push(this.state);
    this.forced.push(forced);
    this.deepest.onPush(this.stack, next);
    this.state = next;
    this.list.lift(node);
    this.node = this.list.first();
    this.fresh = true;
  }

  /**
   * Undoes the last linearization and resumes after it; a forced read leaves
   * no alternatives, so its configuration is undone as well.
   */
  private backtrack(): SearchOutcome<S> | undefined {
    const { list, stack } = this;
    for (;;) {
      const call = stack.pop();
      if (call === undefined) {
        const prefix = this.deepest.ops.map((n) => list.op[n]!);
        return { kind: 'not-linearizable', prefix, stateAfterPrefix: this.deepest.state };
      }
      this.state = this.before.pop()!;
      const forced = this.forced.pop()!;
      this.deepest.onPop(stack.length);
      this.linearized.clear(list.op[call]!);
      list.unlift(call);
      this.node = list.next[call]!;
      if (!forced) return undefined;
    }
  }
}
