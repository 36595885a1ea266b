/** A value in the flat EDN maps Jepsen prints (no nesting needed here). */
export type EdnScalar = string | number | boolean | null | { readonly keyword: string };

export class EdnSyntaxError extends Error {
  override readonly name = 'EdnSyntaxError';
}

const ESCAPES: Readonly<Record<string, string>> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\' };
const DELIMITER = /[\s,{}[\]()"]/;

/**
 * Reads one flat EDN map such as `{:process 0, :type :ok, :value "x"}`.
 * Keys must be keywords; values are strings, integers, nil, booleans or
 * keywords. Commas are whitespace, as in EDN.
 */
export function parseEdnMap(text: string): Map<string, EdnScalar> {
  const reader = new Reader(text);
  reader.expect('{');
  const map = new Map<string, EdnScalar>();
  while (reader.skipSpace() !== '}') {
    const key = reader.scalar();
    if (key === null || typeof key !== 'object') throw new EdnSyntaxError(`map key must be a keyword at ${reader.pos}`);
    map.set(key.keyword, reader.scalar());
  }
  reader.expect('}');
  if (reader.skipSpace() !== undefined) throw new EdnSyntaxError(`trailing text at ${reader.pos}`);
  return map;
}

class Reader {
  pos = 0;
  constructor(private readonly text: string) {}

  /** Skips whitespace and commas; returns the next character, if any. */
  skipSpace(): string | undefined {
    while (this.pos < this.text.length && /[\s,]/.test(this.text[this.pos]!)) this.pos++;
    return this.text[this.pos];
  }

  expect(c: string): void {
    if (this.skipSpace() !== c) throw new EdnSyntaxError(`expected '${c}' at ${this.pos}`);
    this.pos++;
  }

  scalar(): EdnScalar {
    const c = this.skipSpace();
    if (c === undefined) throw new EdnSyntaxError('unexpected end of text');
    if (c === '"') return this.string();
    const token = this.token();
    if (token.startsWith(':') && token.length > 1) return { keyword: token.slice(1) };
    if (token === 'nil') return null;
    if (token === 'true' || token === 'false') return token === 'true';
    if (/^[-+]?\d+$/.test(token)) return Number(token);
    throw new EdnSyntaxError(`unsupported token '${token}' at ${this.pos - token.length}`);
  }

  private token(): string {
    const start = this.pos;
    while (this.pos < this.text.length && !DELIMITER.test(this.text[this.pos]!)) this.pos++;
    if (this.pos === start) throw new EdnSyntaxError(`unexpected '${this.text[this.pos]}' at ${this.pos}`);
    return this.text.slice(start, this.pos);
  }

  private string(): string {
    const { value, end } = readEdnString(this.text, this.pos);
    this.pos = end;
    return value;
  }
}

/** The EDN string whose opening quote is at `pos` in `text`, and the position after its closing quote. */
export function readEdnString(text: string, pos: number): { readonly value: string; readonly end: number } {
  let out = '';
  let at = pos + 1;
  for (;;) {
    const c = text[at++];
    if (c === undefined) throw new EdnSyntaxError('unterminated string');
    if (c === '"') return { value: out, end: at };
    if (c !== '\\') {
      out += c;
      continue;
    }
    const escaped = ESCAPES[text[at++] ?? ''];
    if (escaped === undefined) throw new EdnSyntaxError(`unsupported escape at ${at - 1}`);
    out += escaped;
  }
}
