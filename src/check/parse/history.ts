import { TesseraError } from '../../base/index.js';
import type { Operation } from '../types.js';

/**
 * Turns Jepsen-style invoke/complete events into operations.
 *
 * Time is the event's position (line order). Each process runs one operation
 * at a time (reliability.md 2.0, rule 1). A definite failure removes the
 * operation (it did not happen); an indeterminate completion, or none at all,
 * leaves it open until the end of the history (`returnMs = Infinity`).
 */
export class HistoryBuilder<I, O> {
  private readonly slots: (Operation<I, O> | undefined)[] = [];
  private readonly pending = new Map<number, { readonly slot: number; readonly input: I; readonly callMs: number }>();

  constructor(
    private readonly source: string,
    private readonly unknown: O,
  ) {}

  invoke(process: number, input: I, time: number, line: number): void {
    if (this.pending.has(process)) {
      throw parseError(this.source, line, `process ${process} invokes while its previous operation is outstanding`);
    }
    this.pending.set(process, { slot: this.slots.length, input, callMs: time });
    this.slots.push(undefined);
  }

  /** The input of the process's outstanding operation, for completions that depend on it. */
  inputOf(process: number, line: number): I {
    const open = this.pending.get(process);
    if (open === undefined) throw parseError(this.source, line, `process ${process} completes an operation it never invoked`);
    return open.input;
  }

  complete(process: number, output: O, time: number, line: number): void {
    const open = this.take(process, line);
    this.slots[open.slot] = { clientId: process, input: open.input, output, callMs: open.callMs, returnMs: time };
  }

  /** Completion with a result the client does not know. */
  indeterminate(process: number, line: number): void {
    const open = this.take(process, line);
    this.slots[open.slot] = this.openEnded(process, open.input, open.callMs);
  }

  /** A definite failure: the operation did not take effect, so it is dropped. */
  failed(process: number, line: number): void {
    this.take(process, line);
  }

  /** Operations in invocation order; the still-outstanding ones are open-ended. */
  finish(): Operation<I, O>[] {
    for (const [process, open] of this.pending) this.slots[open.slot] = this.openEnded(process, open.input, open.callMs);
    this.pending.clear();
    return this.slots.filter((op): op is Operation<I, O> => op !== undefined);
  }

  private openEnded(process: number, input: I, callMs: number): Operation<I, O> {
    return { clientId: process, input, output: this.unknown, callMs, returnMs: Infinity };
  }

  private take(process: number, line: number): { readonly slot: number; readonly input: I; readonly callMs: number } {
    const open = this.pending.get(process);
    if (open === undefined) throw parseError(this.source, line, `process ${process} completes an operation it never invoked`);
    this.pending.delete(process);
    return open;
  }
}

export function parseError(source: string, line: number, message: string): TesseraError {
  return new TesseraError('PARSE_ERROR', `${source}:${line}: ${message}`);
}
