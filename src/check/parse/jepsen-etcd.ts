import type { EtcdRegisterInput, EtcdRegisterOutput } from '../models/register.js';
import type { Operation } from '../types.js';
import { HistoryBuilder, parseError } from './history.js';

// `INFO  jepsen.util - 3	:invoke	:cas	[1 4]`; separators are tabs or spaces.
const EVENT = /^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$/;
const INT = /^-?\d+$/;
const PAIR = /^\[\s*(-?\d+)\s+(-?\d+)\s*\]$/;

type Kind = 'invoke' | 'ok' | 'fail' | 'info';
type F = 'read' | 'write' | 'cas';

/**
 * Parses a Jepsen etcd register log (../shared/testdata/README.md,
 * porcupine-etcd) into operations; time is the line number.
 * `:fail :cas` is a definite "not swapped"; `:fail :read` (a timeout) and
 * `:info` are unknown results; other `:fail`s did not happen.
 */
export function parseJepsenEtcdLog(
  text: string,
  source = 'etcd log',
): Operation<EtcdRegisterInput, EtcdRegisterOutput>[] {
  const history = new HistoryBuilder<EtcdRegisterInput, EtcdRegisterOutput>(source, { kind: 'unknown' });
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const m = EVENT.exec(line);
    if (m === null) throw parseError(source, i + 1, `not a jepsen.util event: ${line}`);
    const process = Number(m[1]);
    const kind = m[2] as Kind;
    const f = m[3] as F;
    const arg = m[4]!;
    applyEvent(history, { process, kind, f, arg, time: i, line: i + 1, source });
  }
  return history.finish();
}

interface EtcdEvent {
  readonly process: number;
  readonly kind: Kind;
  readonly f: F;
  readonly arg: string;
  readonly time: number;
  readonly line: number;
  readonly source: string;
}

function applyEvent(history: HistoryBuilder<EtcdRegisterInput, EtcdRegisterOutput>, e: EtcdEvent): void {
  switch (e.kind) {
    case 'invoke':
      history.invoke(e.process, parseInput(e), e.time, e.line);
      return;
    case 'info':
      history.indeterminate(e.process, e.line);
      return;
    case 'ok':
      checkSameOperation(history, e);
      history.complete(e.process, parseOkOutput(e), e.time, e.line);
      return;
    case 'fail':
      checkSameOperation(history, e);
      if (e.f === 'cas') history.complete(e.process, { kind: 'ok', succeeded: false }, e.time, e.line);
      else if (e.f === 'read') history.indeterminate(e.process, e.line);
      else history.failed(e.process, e.line);
      return;
  }
}

function parseInput(e: EtcdEvent): EtcdRegisterInput {
  switch (e.f) {
    case 'read':
      return { kind: 'read' };
    case 'write':
      return { kind: 'write', value: parseInteger(e, e.arg) };
    case 'cas': {
      const m = PAIR.exec(e.arg);
      if (m === null) throw parseError(e.source, e.line, `cas argument is not [FROM TO]: ${e.arg}`);
      return { kind: 'cas', from: Number(m[1]), to: Number(m[2]) };
    }
  }
}

function parseOkOutput(e: EtcdEvent): EtcdRegisterOutput {
  switch (e.f) {
    case 'read':
      return { kind: 'ok', value: e.arg === 'nil' ? null : parseInteger(e, e.arg) };
    case 'write':
      return { kind: 'ok' };
    case 'cas':
      return { kind: 'ok', succeeded: true };
  }
}

function checkSameOperation(history: HistoryBuilder<EtcdRegisterInput, EtcdRegisterOutput>, e: EtcdEvent): void {
  const invoked = history.inputOf(e.process, e.line).kind;
  if (invoked !== e.f) throw parseError(e.source, e.line, `process ${e.process} invoked ${invoked} but completes ${e.f}`);
}

function parseInteger(e: EtcdEvent, text: string): number {
  if (!INT.test(text)) throw parseError(e.source, e.line, `expected an integer, got ${text}`);
  return Number(text);
}
