import { CRC32, TesseraError, allocBytes } from '../base/index.js';
import type { ConfChange, ConfState, Entry, HardState } from '../raft/index.js';
import { readU64, writeU64 } from './keys.js';

/**
 * Binary encodings of what the store persists. Each record starts with a
 * version byte and ends with a CRC-32 of what precedes it, so a torn or
 * flipped record is detected when read and never served (bug class 15).
 */
const VERSION = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeEntry(e: Entry): Uint8Array {
  const cc = e.confChange === undefined ? new Uint8Array() : encoder.encode(JSON.stringify(e.confChange));
  const out = allocBytes(1 + 1 + 8 + 8 + 4 + e.data.byteLength + 4 + cc.byteLength + 4);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let o = 0;
  out[o++] = VERSION;
  out[o++] = e.type === 'normal' ? 0 : 1;
  writeU64(out, o, e.term);
  o += 8;
  writeU64(out, o, e.index);
  o += 8;
  view.setUint32(o, e.data.byteLength);
  o += 4;
  out.set(e.data, o);
  o += e.data.byteLength;
  view.setUint32(o, cc.byteLength);
  o += 4;
  out.set(cc, o);
  o += cc.byteLength;
  view.setUint32(o, crc32(out.subarray(0, o)));
  return out;
}

export function decodeEntry(bytes: Uint8Array): Entry {
  const body = checked(bytes, 'log entry');
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let o = 1;
  const type = body[o++] === 0 ? 'normal' : 'conf-change';
  const term = readU64(body, o);
  o += 8;
  const index = readU64(body, o);
  o += 8;
  const dataLen = view.getUint32(o);
  o += 4;
  const data = body.slice(o, o + dataLen);
  o += dataLen;
  const ccLen = view.getUint32(o);
  o += 4;
  if (type === 'normal') return { term, index, type, data };
  const confChange = JSON.parse(decoder.decode(body.subarray(o, o + ccLen))) as ConfChange;
  return { term, index, type, data, confChange };
}

/** Bytes of an entry record before its data: version, type, term, index, data length. */
const ENTRY_HEADER_BYTES = 22;

/**
 * Whether an entry record is shorter than its own lengths say: the partial
 * record a power cut leaves when it interrupts a log append. Recovery drops
 * such a record at the log's tail (it was never synced, so never
 * acknowledged); a full-length record whose checksum fails is corruption
 * instead and is refused. (A flip in a length field can pass for a partial
 * record; etcd's WAL repair has the same blind spot.)
 */
export function isPartialEntryRecord(bytes: Uint8Array): boolean {
  if (bytes.byteLength === 0) return true;
  if (bytes[0] !== VERSION) return false;
  if (bytes.byteLength < ENTRY_HEADER_BYTES + 4) return true;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataLen = view.getUint32(ENTRY_HEADER_BYTES - 4);
  if (bytes.byteLength < ENTRY_HEADER_BYTES + dataLen + 4) return true;
  const ccLen = view.getUint32(ENTRY_HEADER_BYTES + dataLen);
  return bytes.byteLength < ENTRY_HEADER_BYTES + dataLen + 4 + ccLen + 4;
}

export function encodeJson(value: unknown): Uint8Array {
  const json = encoder.encode(JSON.stringify(value));
  const out = new Uint8Array(1 + json.byteLength + 4);
  out[0] = VERSION;
  out.set(json, 1);
  new DataView(out.buffer).setUint32(1 + json.byteLength, crc32(out.subarray(0, 1 + json.byteLength)));
  return out;
}

export function decodeJson<T>(bytes: Uint8Array, what: string): T {
  const body = checked(bytes, what);
  return JSON.parse(decoder.decode(body.subarray(1))) as T;
}

export function encodeHardState(hs: HardState): Uint8Array {
  return encodeJson(hs);
}

export function decodeHardState(bytes: Uint8Array): HardState {
  return decodeJson<HardState>(bytes, 'hard state');
}

export interface ApplyState {
  readonly appliedIndex: number;
  readonly confState: ConfState;
}

export interface TruncatedState {
  readonly index: number;
  readonly term: number;
}

/** Verifies version and checksum; returns the record without its checksum. */
function checked(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.byteLength < 5 || bytes[0] !== VERSION) {
    throw new TesseraError('CORRUPT_DATA', `${what}: unknown record version ${bytes[0]} (length ${bytes.byteLength})`);
  }
  const body = bytes.subarray(0, bytes.byteLength - 4);
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(bytes.byteLength - 4);
  if (crc32(body) !== stored) throw new TesseraError('CORRUPT_DATA', `${what}: checksum mismatch; the record is corrupt`);
  return body;
}

/** CRC-32 (IEEE), as zlib computes it. */
export function crc32(bytes: Uint8Array): number {
  return CRC32.of(bytes);
}
