/**
 * HPACK (RFC 7541): a decoder for the request header blocks our HTTP/2
 * server reads (h2_server.ts), and a plain encoder for its responses.
 * Header names and values are latin1 strings: one char per octet, so any
 * bytes survive a decode and re-encode unchanged.
 */

/** A decode failure: the connection is beyond repair (HPACK state is per connection). */
export class HpackError extends Error {
  override readonly name = 'HpackError';
}

export type HeaderField = readonly [name: string, value: string];

/** RFC 7541 Appendix A. Index 1 is the first entry. */
const STATIC_TABLE: readonly HeaderField[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

/**
 * Code lengths of the HPACK Huffman code (RFC 7541 Appendix B) for symbols
 * 0..256 (256 is EOS), one char each: 'A' is 5 bits, 'B' 6, and so on. The
 * code is canonical, so the codes follow from the lengths (assigned in order
 * of length, then symbol); hpack.test.ts checks them against the RFC.
 */
const HUFFMAN_LENGTHS =
  'ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCCDCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSSQQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ';
const EOS = 256;

interface HuffmanNode {
  sym?: number;
  zero?: HuffmanNode;
  one?: HuffmanNode;
}

/** The canonical code for each symbol, as [code, length]. */
export function huffmanCodes(): [code: number, length: number][] {
  const lengths = [...HUFFMAN_LENGTHS].map((c) => c.charCodeAt(0) - 65 + 5);
  const order = [...lengths.keys()].sort((a, b) => (lengths[a] as number) - (lengths[b] as number) || a - b);
  const codes: [number, number][] = [];
  let code = 0;
  let previous = lengths[order[0] as number] as number;
  for (const sym of order) {
    const length = lengths[sym] as number;
    code = code * 2 ** (length - previous);
    previous = length;
    codes[sym] = [code, length];
    code++;
  }
  return codes;
}

function buildHuffmanTree(): HuffmanNode {
  const root: HuffmanNode = {};
  huffmanCodes().forEach(([code, length], sym) => {
    let node = root;
    for (let bit = length - 1; bit >= 0; bit--) {
      const one = Math.floor(code / 2 ** bit) % 2 === 1;
      const next: HuffmanNode = (one ? node.one : node.zero) ?? {};
      if (one) node.one = next;
      else node.zero = next;
      node = next;
    }
    node.sym = sym;
  });
  return root;
}

let huffmanTree: HuffmanNode | undefined;

export function huffmanDecode(bytes: Uint8Array): string {
  huffmanTree ??= buildHuffmanTree();
  let out = '';
  let node = huffmanTree;
  // Bits read since the last complete symbol, and whether they were all ones (valid padding).
  let pending = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const one = ((byte >> bit) & 1) === 1;
      const next = one ? node.one : node.zero;
      if (next === undefined) throw new HpackError('invalid Huffman code');
      pending++;
      allOnes &&= one;
      if (next.sym === undefined) {
        node = next;
        continue;
      }
      if (next.sym === EOS) throw new HpackError('EOS in a Huffman string');
      out += String.fromCharCode(next.sym);
      node = huffmanTree;
      pending = 0;
      allOnes = true;
    }
  }
  // Padding: a prefix of EOS (all ones), shorter than a byte.
  if (pending > 7 || !allOnes) throw new HpackError('invalid Huffman padding');
  return out;
}

/** Largest integer a decoder accepts: far above any sane length or index, and safe. */
const MAX_HPACK_INT = 2 ** 31;

/** Reads HPACK integers and strings from one header block. */
class BlockReader {
  pos = 0;
  constructor(private readonly block: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.block.length;
  }

  peek(): number {
    const b = this.block[this.pos];
    if (b === undefined) throw new HpackError('header block truncated');
    return b;
  }

  integer(prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = this.peek() & max;
    this.pos++;
    if (value < max) return value;
    for (let shift = 0; ; shift += 7) {
      // Zero continuation bytes add nothing, so the value alone cannot bound the loop: 2^31 needs at most 5 of them.
      if (shift > 28) throw new HpackError('HPACK integer too long');
      const b = this.peek();
      this.pos++;
      value += (b & 0x7f) * 2 ** shift;
      if (value > MAX_HPACK_INT) throw new HpackError('HPACK integer too large');
      if ((b & 0x80) === 0) return value;
    }
  }

  string(): string {
    const huffman = (this.peek() & 0x80) !== 0;
    const length = this.integer(7);
    if (this.pos + length > this.block.length) throw new HpackError('header string truncated');
    const raw = this.block.subarray(this.pos, this.pos + length);
    this.pos += length;
    return huffman ? huffmanDecode(raw) : String.fromCharCode(...raw);
  }
}

/** Per-entry overhead in the dynamic table's size accounting (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;

/**
 * Decodes the header blocks a client sends on one connection, in order,
 * tracking the dynamic table the client's encoder fills. `maxTableSize` is
 * the largest table the server may have allowed (SETTINGS_HEADER_TABLE_SIZE).
 */
export class HpackDecoder {
  private readonly table: HeaderField[] = [];
  private size = 0;
  private capacity: number;

  constructor(private readonly maxTableSize = 4096) {
    this.capacity = maxTableSize;
  }

  decode(block: Uint8Array): HeaderField[] {
    const r = new BlockReader(block);
    const out: HeaderField[] = [];
    while (!r.done) {
      const b = r.peek();
      if (b & 0x80) out.push(this.entry(r.integer(7)));
      else if (b & 0x40) {
        const field = this.literal(r, 6);
        this.insert(field);
        out.push(field);
      } else if (b & 0x20) this.resize(r.integer(5));
      else out.push(this.literal(r, 4));
    }
    return out;
  }

  private literal(r: BlockReader, prefixBits: number): HeaderField {
    const index = r.integer(prefixBits);
    const name = index === 0 ? r.string() : this.entry(index)[0];
    return [name, r.string()];
  }

  private entry(index: number): HeaderField {
    if (index === 0) throw new HpackError('header index 0');
    const field = index <= STATIC_TABLE.length ? STATIC_TABLE[index - 1] : this.table[index - STATIC_TABLE.length - 1];
    if (field === undefined) throw new HpackError(`header index ${index} out of range`);
    return field;
  }

  private insert(field: HeaderField): void {
    const size = field[0].length + field[1].length + ENTRY_OVERHEAD;
    this.table.unshift(field);
    this.size += size;
    this.evict();
  }

  private resize(capacity: number): void {
    if (capacity > this.maxTableSize) throw new HpackError(`table size ${capacity} above the limit ${this.maxTableSize}`);
    this.capacity = capacity;
    this.evict();
  }

  private evict(): void {
    while (this.size > this.capacity) {
      const last = this.table.pop();
      if (last === undefined) break;
      this.size -= last[0].length + last[1].length + ENTRY_OVERHEAD;
    }
  }
}

function writeInteger(out: number[], firstByte: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  for (value -= max; value >= 0x80; value = Math.floor(value / 128)) out.push((value % 128) | 0x80);
  out.push(value);
}

function writeString(out: number[], text: string): void {
  writeInteger(out, 0, 7, text.length);
  for (let i = 0; i < text.length; i++) out.push(text.charCodeAt(i) & 0xff);
}

/**
 * Encodes fields as literals without indexing and with literal names: the
 * receiver's dynamic table is never touched, so blocks encoded this way are
 * independent of each other and of what the client's encoder believes.
 */
export function encodeHeaderBlock(fields: readonly HeaderField[]): Buffer {
  // A table size update to 0 first: valid at the start of any block, and it keeps us right when a client
  // lowers SETTINGS_HEADER_TABLE_SIZE (RFC 7541 §4.2 then requires an update in our next block).
  const out: number[] = [0x20];
  for (const [name, value] of fields) {
    out.push(0x00);
    writeString(out, name);
    writeString(out, value);
  }
  return Buffer.from(out);
}
