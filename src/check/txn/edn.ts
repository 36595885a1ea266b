/**
 * A reader for the EDN that Jepsen and Elle histories are written in:
 * maps, vectors, lists, keywords, integers, strings, nil and booleans,
 * nested to any depth (a transaction's value is a vector of micro-op
 * vectors). Commas are whitespace, `;` starts a comment. Never throws
 * anything but EdnSyntaxError, whatever the text, and its messages start
 * with the line and column.
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
const SPACE = /[\s,]/;
/** Per ASCII code: 1 for whitespace (commas too), 2 for the other delimiters. Histories are mostly ASCII; the rest goes by the regexes. */
const ASCII_CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) ASCII_CLASS[c] = SPACE.test(String.fromCharCode(c)) ? 1 : DELIMITER.test(String.fromCharCode(c)) ? 2 : 0;

export function isKeyword(v: EdnValue | undefined, name?: string): v is EdnKeyword {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && (name === undefined || (v as EdnKeyword).keyword === name);
}

export function isEdnMap(v: EdnValue | undefined): v is EdnMap {
  return v instanceof Map;
}

/** The 1-based line of `offset` in `text`, and its column. */
export function lineAndColumn(text: string, offset: number): { readonly line: number; readonly column: number } {
  let line = 1;
  let lineStart = 0;
  for (let nl = text.indexOf('\n'); nl !== -1 && nl < offset; nl = text.indexOf('\n', nl + 1)) {
    line++;
    lineStart = nl + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

/** A history's operations, and the offset in the text each starts at (for messages that name its line). */
export interface EdnOperations {
  readonly values: readonly EdnValue[];
  readonly offsets: readonly number[];
}

/**
 * The operations of a history text: its top-level values (one map per
 * line, or maps spanning lines), or, when the text is one vector (or
 * list), its elements.
 */
export function readEdnOperations(text: string): EdnOperations {
  const r = new EdnReader(text);
  const values: EdnValue[] = [];
  const offsets: number[] = [];
  const open = r.skipSpace();
  if (open === '[' || open === '(') {
    const close = open === '[' ? ']' : ')';
    r.pos++;
    for (let c = r.skipSpace(); c !== close; c = r.skipSpace()) {
      if (c === undefined) throw r.fail(`unterminated vector of operations, '${close}' expected`);
      offsets.push(r.pos);
      values.push(r.value(1));
    }
    r.pos++;
    if (r.skipSpace() !== undefined) throw r.fail('text after the vector of operations');
    return { values, offsets };
  }
  while (r.skipSpace() !== undefined) {
    offsets.push(r.pos);
    values.push(r.value(0));
  }
  return { values, offsets };
}

function isSpace(code: number): boolean {
  return code < 128 ? ASCII_CLASS[code] === 1 : SPACE.test(String.fromCharCode(code));
}

function isDelimiter(code: number): boolean {
  return code < 128 ? ASCII_CLASS[code] !== 0 : DELIMITER.test(String.fromCharCode(code));
}

class EdnReader {
  pos = 0;
  /** Keywords read so far: a history repeats a few (:type, :ok, :append) millions of times, and they are immutable. */
  private readonly keywords = new Map<string, EdnKeyword>();
  constructor(private readonly text: string) {}

  /** A syntax error at `at` (default: where the reader is), its message led by the line and column. */
  fail(message: string, at = this.pos): EdnSyntaxError {
    const { line, column } = lineAndColumn(this.text, at);
    return new EdnSyntaxError(`line ${line}, column ${column}: ${message}`);
  }

  skipSpace(): string | undefined {
    const text = this.text;
    for (;;) {
      while (this.pos < text.length && isSpace(text.charCodeAt(this.pos))) this.pos++;
      if (text[this.pos] !== ';') return text[this.pos];
      while (this.pos < text.length && text[this.pos] !== '\n') this.pos++;
    }
  }

  value(depth: number): EdnValue {
    if (depth > EDN_MAX_DEPTH) throw this.fail(`nesting deeper than ${EDN_MAX_DEPTH}`);
    const c = this.skipSpace();
    if (c === undefined) throw this.fail('unexpected end of text');
    if (c === '{') return this.map(depth);
    if (c === '[') return this.sequence(']', depth);
    if (c === '(') return this.sequence(')', depth);
    if (c === '"') return this.string();
    if (c === '}' || c === ']' || c === ')') throw this.fail(`unexpected '${c}'`);
    const start = this.pos;
    const token = this.token();
    if (token.startsWith(':') && token.length > 1) return this.keyword(token.slice(1));
    if (token === 'nil') return null;
    if (token === 'true' || token === 'false') return token === 'true';
    if (/^[-+]?\d+N?$/.test(token)) {
      const n = Number(token.replace(/N$/, ''));
      if (!Number.isSafeInteger(n)) throw this.fail(`integer ${token} out of range`, start);
      return n;
    }
    throw this.fail(`unsupported token '${token.slice(0, 40)}'`, start);
  }

  private keyword(name: string): EdnKeyword {
    let k = this.keywords.get(name);
    if (k === undefined) this.keywords.set(name, (k = { keyword: name }));
    return k;
  }

  private map(depth: number): EdnMap {
    this.pos++;
    const out = new Map<string, EdnValue>();
    while (this.skipSpace() !== '}') {
      const start = this.pos;
      const key = this.value(depth + 1);
      if (!isKeyword(key)) throw this.fail('map key must be a keyword', start);
      if (this.skipSpace() === '}') throw this.fail(`map key :${key.keyword} has no value`);
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
      if (c === undefined) throw this.fail(`unterminated sequence, '${close}' expected`);
      if (c === close) break;
      out.push(this.value(depth + 1));
    }
    this.pos++;
    return out;
  }

  private token(): string {
    const start = this.pos;
    while (this.pos < this.text.length && !isDelimiter(this.text.charCodeAt(this.pos))) this.pos++;
    if (this.pos === start) throw this.fail(`unexpected '${this.text[this.pos]}'`);
    return this.text.slice(start, this.pos);
  }

  private string(): string {
    try {
      const { value, end } = readEdnString(this.text, this.pos);
      this.pos = end;
      return value;
    } catch (error) {
      if (error instanceof EdnSyntaxError) throw this.fail(error.message.replace(/ at \d+$/, ''));
      throw error;
    }
  }
}
