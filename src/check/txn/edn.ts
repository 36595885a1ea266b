/**
 * A reader for the EDN that Jepsen and Elle histories are written in:
 * maps, vectors, lists, keywords, integers, strings, nil and booleans,
 * nested to any depth (a transaction's value is a vector of micro-op
 * vectors). Commas are whitespace, `;` starts a comment. Never throws
 * anything but EdnSyntaxError, whatever the text.
 */
import { EdnSyntaxError, readEdnString } from '../parse/edn.js';

export type EdnValue = string | number | boolean | null | EdnKeyword | readonly EdnValue[] | EdnMap;
export interface EdnKeyword {
  readonly keyword: string;
}
/** A map whose keys were keywords (the only keys histories use), by keyword name. */
export type EdnMap = ReadonlyMap<string, EdnValue>;

/** Nesting deeper than this is refused: a history never needs it, and recursion must stay bounded. */
export const EDN_MAX_DEPTH = 64;

const DELIMITER = /[\s,{}[\]()";]/;

export function isKeyword(v: EdnValue | undefined, name?: string): v is EdnKeyword {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && (name === undefined || (v as EdnKeyword).keyword === name);
}

export function isEdnMap(v: EdnValue | undefined): v is EdnMap {
  return v instanceof Map;
}

/** Every top-level value of `text`, in order. */
export function readEdnValues(text: string): EdnValue[] {
  const r = new EdnReader(text);
  const out: EdnValue[] = [];
  while (r.skipSpace() !== undefined) out.push(r.value(0));
  return out;
}

class EdnReader {
  pos = 0;
  constructor(private readonly text: string) {}

  skipSpace(): string | undefined {
    for (;;) {
      while (this.pos < this.text.length && /[\s,]/.test(this.text[this.pos] as string)) this.pos++;
      if (this.text[this.pos] !== ';') return this.text[this.pos];
      while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.pos++;
    }
  }

  value(depth: number): EdnValue {
    if (depth > EDN_MAX_DEPTH) throw new EdnSyntaxError(`nesting deeper than ${EDN_MAX_DEPTH} at ${this.pos}`);
    const c = this.skipSpace();
    if (c === undefined) throw new EdnSyntaxError('unexpected end of text');
    if (c === '{') return this.map(depth);
    if (c === '[') return this.sequence(']', depth);
    if (c === '(') return this.sequence(')', depth);
    if (c === '"') return this.string();
    if (c === '}' || c === ']' || c === ')') throw new EdnSyntaxError(`unexpected '${c}' at ${this.pos}`);
    const token = this.token();
    if (token.startsWith(':') && token.length > 1) return { keyword: token.slice(1) };
    if (token === 'nil') return null;
    if (token === 'true' || token === 'false') return token === 'true';
    if (/^[-+]?\d+N?$/.test(token)) {
      const n = Number(token.replace(/N$/, ''));
      if (!Number.isSafeInteger(n)) throw new EdnSyntaxError(`integer ${token} out of range at ${this.pos - token.length}`);
      return n;
    }
    throw new EdnSyntaxError(`unsupported token '${token.slice(0, 40)}' at ${this.pos - token.length}`);
  }

  private map(depth: number): EdnMap {
    this.pos++;
    const out = new Map<string, EdnValue>();
    while (this.skipSpace() !== '}') {
      const key = this.value(depth + 1);
      if (!isKeyword(key)) throw new EdnSyntaxError(`map key must be a keyword at ${this.pos}`);
      if (this.skipSpace() === '}') throw new EdnSyntaxError(`map key :${key.keyword} has no value at ${this.pos}`);
      out.set(key.keyword, this.value(depth + 1));
    }
    this.pos++;
    return out;
  }

  private sequence(close: string, depth: number): EdnValue[] {
    this.pos++;
    const out: EdnValue[] = [];
    for (;;) {
      const c = this.skipSpace();
      if (c === undefined) throw new EdnSyntaxError(`unterminated sequence, '${close}' expected`);
      if (c === close) break;
      out.push(this.value(depth + 1));
    }
    this.pos++;
    return out;
  }

  private token(): string {
    const start = this.pos;
    while (this.pos < this.text.length && !DELIMITER.test(this.text[this.pos] as string)) this.pos++;
    if (this.pos === start) throw new EdnSyntaxError(`unexpected '${this.text[this.pos]}' at ${this.pos}`);
    return this.text.slice(start, this.pos);
  }

  private string(): string {
    const { value, end } = readEdnString(this.text, this.pos);
    this.pos = end;
    return value;
  }
}
