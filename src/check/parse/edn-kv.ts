import type { KvInput, KvOutput } from '../models/kv.js';
import type { Operation } from '../types.js';
import { type EdnScalar, EdnSyntaxError, parseEdnMap } from './edn.js';
import { HistoryBuilder, parseError } from './history.js';

type Fields = Map<string, EdnScalar>;

/**
 * Parses a kv history in Clojure-map lines (../shared/testdata/README.md,
 * porcupine-kv) into operations; time is the line number. A get that
 * read `nil` read the empty string, as a missing key reads "".
 */
export function parseEdnKvLog(text: string, source = 'kv log'): Operation<KvInput, KvOutput>[] {
  const history = new HistoryBuilder<KvInput, KvOutput>(source, { kind: 'unknown' });
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const at = { source, line: i + 1 };
    const fields = readMap(line, at);
    const process = integerField(fields, 'process', at);
    const type = keywordField(fields, 'type', at);
    switch (type) {
      case 'invoke':
        history.invoke(process, parseInput(fields, at), i, at.line);
        break;
      case 'ok':
        history.complete(process, parseOutput(fields, history.inputOf(process, at.line), at), i, at.line);
        break;
      case 'fail':
        history.failed(process, at.line);
        break;
      case 'info':
        history.indeterminate(process, at.line);
        break;
      default:
        throw parseError(source, at.line, `unknown :type :${type}`);
    }
  }
  return history.finish();
}

interface At {
  readonly source: string;
  readonly line: number;
}

function readMap(line: string, at: At): Fields {
  try {
    return parseEdnMap(line);
  } catch (e) {
    if (e instanceof EdnSyntaxError) throw parseError(at.source, at.line, e.message);
    throw e;
  }
}

function parseInput(fields: Fields, at: At): KvInput {
  const f = keywordField(fields, 'f', at);
  const key = stringField(fields, 'key', at);
  switch (f) {
    case 'get':
      return { kind: 'get', key };
    case 'put':
    case 'append':
      return { kind: f, key, value: stringField(fields, 'value', at) };
    default:
      throw parseError(at.source, at.line, `unknown :f :${f}`);
  }
}

function parseOutput(fields: Fields, input: KvInput, at: At): KvOutput {
  const f = keywordField(fields, 'f', at);
  if (f !== input.kind) throw parseError(at.source, at.line, `completes :${f} but invoked :${input.kind}`);
  if (input.kind !== 'get') return { kind: 'ok' };
  return { kind: 'ok', value: fields.get('value') === null ? '' : stringField(fields, 'value', at) };
}

function keywordField(fields: Fields, name: string, at: At): string {
  const v = fields.get(name);
  if (v === null || typeof v !== 'object') throw parseError(at.source, at.line, `:${name} must be a keyword`);
  return v.keyword;
}

function stringField(fields: Fields, name: string, at: At): string {
  const v = fields.get(name);
  if (typeof v !== 'string') throw parseError(at.source, at.line, `:${name} must be a string`);
  return v;
}

function integerField(fields: Fields, name: string, at: At): number {
  const v = fields.get(name);
  if (typeof v !== 'number') throw parseError(at.source, at.line, `:${name} must be an integer`);
  return v;
}
