import type { Budget } from './budget.js';
import { Bitset } from './bitset.js';
import { ConfigurationCache } from './cache.js';
import { NIL, Timeline } from './timeline.js';
import type { Model, Operation } from './types.js';

export type SearchOutcome<S> =
  | { readonly kind: 'linearizable'; readonly order: readonly number[] }
  | { readonly kind: 'not-linearizable'; readonly prefix: readonly number[]; readonly stateAfterPrefix: S }
  | { readonly kind: 'budget' };

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

/**
 * Wing & Gong's search with Lowe's memoization, on one partition.
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
export function searchPartition<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  budget: Budget,
): SearchOutcome<S> {
  budget.memoEntries = 0; // one partition's memo is alive at a time
  const list = new Timeline(ops);
  const linearized = new Bitset(ops.length);
  const cache = new ConfigurationCache<S>(model.equal?.bind(model));
  const stack: number[] = []; // call nodes, in linearization order
  const before: S[] = []; // model state before each stacked operation
  let state = model.init();
  const deepest = new DeepestPrefix<S>(state);
  let node = list.first();
  while (list.first() !== NIL) {
    if (!budget.tick()) return { kind: 'budget' };
    if (list.isCall(node)) {
      const id = list.op[node]!;
      const op = ops[id]!;
      const result = model.step(state, op.input, op.output);
      if (result.ok) {
        linearized.set(id);
        if (cache.add(linearized, result.state, model.hash(result.state))) {
          if (!budget.memo()) return { kind: 'budget' };
          stack.push(node);
          before.push(state);
          deepest.onPush(stack, result.state);
          state = result.state;
          list.lift(node);
          node = list.first();
          continue;
        }
        linearized.clear(id); // seen before: this branch leads nowhere new
      }
      node = list.next[node]!;
    } else {
      const call = stack.pop();
      if (call === undefined) {
        const prefix = deepest.ops.map((n) => list.op[n]!);
        return { kind: 'not-linearizable', prefix, stateAfterPrefix: deepest.state };
      }
      state = before.pop()!;
      deepest.onPop(stack.length);
      linearized.clear(list.op[call]!);
      list.unlift(call);
      node = list.next[call]!;
    }
  }
  return { kind: 'linearizable', order: stack.map((n) => list.op[n]!) };
}
