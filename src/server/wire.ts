import { Packr } from 'msgpackr';
import type { ConfChange, ConfState, Entry, Message, MessageType, NodeId, Snapshot } from '../raft/index.js';
import { isLocalMessage } from '../raft/index.js';
import { type ForwardMessage, MAX_FORWARD_ID_BYTES, type NodeLoad, nodeLoadProblem, MAX_REVISION_REQUEST_ID_BYTES, TSO_MAX_BATCH_REVISIONS, type RangeMessage, type RevisionMessage } from '../kv/index.js';
import { assert } from '../base/index.js';
import { PeerError } from './errors.js';

/**
 * The peer wire format: each frame is a 4-byte big-endian payload length and
 * a payload (DESIGN.md decision 9). Batches of Raft messages, nearly all the
 * traffic, have a binary payload of their own (see encodeMessages); every
 * other frame is a msgpackr map. Everything a peer sends is validated here
 * before it reaches Raft, and rebuilt as a fresh object, so a malformed or
 * hostile frame is refused with a PeerError instead of crashing the node
 * inside the Raft library.
 */

/**
 * Bumped when frames change incompatibly; peers of another version are
 * refused at the handshake. 2: message batches are binary (1 sent them as
 * msgpackr maps). 3: 'tso' frames, and log entries carry revision stamps
 * (src/kv/stamp.ts), which a version 2 node would apply as malformed.
 * 4: 'alive' frames and quiesce heartbeats (ADR 0010); a version 3 node
 * would refuse both as malformed. 5: 'fwd' frames (requests on ranges the
 * sender holds no replica of, ADR 0012).
 */
export const PEER_PROTOCOL_VERSION = 5;
export const FRAME_HEADER_BYTES = 4;

export type Frame =
  | { readonly t: 'hello'; readonly v: number; readonly cluster: string; readonly from: NodeId; readonly to: NodeId; readonly name: string; readonly client?: string }
  | { readonly t: 'welcome'; readonly from: NodeId; readonly name: string; readonly client?: string }
  | { readonly t: 'reject'; readonly reason: string; readonly message: string }
  /** A batch of Raft messages, still encoded: `decodeMessages` checks it against the connection's peer. */
  | { readonly t: 'msgs'; readonly payload: Buffer }
  | SnapChunkFrame
  | { readonly t: 'snapack'; readonly id: number; readonly ok: boolean }
  /** A node starting to join an existing cluster asks a member who is in it (etcd's GET /members). */
  | { readonly t: 'join'; readonly v: number; readonly name: string; readonly peer: string }
  | { readonly t: 'members'; readonly cluster: string; readonly members: readonly JoinMember[] }
  /** A revision request or answer between nodes' revision services (src/kv/revisions.ts). */
  | { readonly t: 'tso'; readonly m: RevisionMessage }
  /**
   * The sender is alive: it leads quiesced ranges this node may follow (ADR 0010). Its announcements
   * carry its load (ADR 0015); a version 5 node without it ignores the field, so the version stays.
   */
  | { readonly t: 'alive'; readonly load?: NodeLoad }
  /** A request on a range the sender holds no replica of, or the reply (src/kv/forward.ts; the body is checked there). */
  | { readonly t: 'fwd'; readonly m: ForwardMessage };

/** A member as the `members` frame describes it. */
export interface JoinMember {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly learner: boolean;
}

/** One chunk of a snapshot. The first (seq 0) carries the MsgSnap without its data and the data's total size. */
export interface SnapChunkFrame {
  readonly t: 'snap';
  readonly id: number;
  readonly rangeId: number;
  readonly seq: number;
  readonly last: boolean;
  readonly data: Uint8Array;
  readonly total?: number;
  readonly head?: Message;
}

// Maps, not records: a frame must decode without state shared with the sender.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** Every frame but a message batch: a msgpackr map. */
export type MapFrame = Exclude<Frame, { t: 'msgs' }>;

/** Encodes a frame with its length header; message batches have their own encoder (encodeMessages). */
export function encodeFrame(frame: MapFrame): Buffer {
  const payload = packr.pack(frame);
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.byteLength);
  out.writeUInt32BE(payload.byteLength, 0);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Splits a byte stream into frame payloads. Chunks are kept in a list and
 * joined once per frame, so a large frame arriving in many small reads costs
 * one copy, not one per read.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private maxFrameBytes: number) {}

  /** A connection starts with a small limit and raises it once the peer is known (see MAX_PRE_HELLO_FRAME_BYTES). */
  setMaxFrameBytes(bytes: number): void {
    this.maxFrameBytes = bytes;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Returns the complete payloads now available; throws PeerError on a bad length. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    const out: Buffer[] = [];
    for (;;) {
      if (this.buffered < FRAME_HEADER_BYTES) return out;
      const head = this.chunks[0] as Buffer;
      const length = head.byteLength >= FRAME_HEADER_BYTES ? head.readUInt32BE(0) : this.join().readUInt32BE(0);
      if (length > this.maxFrameBytes) {
        throw new PeerError('frame-too-large', `peer frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`);
      }
      if (length === 0) throw new PeerError('malformed-frame', 'peer frame of length 0');
      if (this.buffered < FRAME_HEADER_BYTES + length) return out;
      const all = this.join();
      out.push(all.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length));
      const rest = all.subarray(FRAME_HEADER_BYTES + length);
      this.chunks = rest.byteLength > 0 ? [rest] : [];
      this.buffered = rest.byteLength;
    }
  }

  private join(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0] as Buffer;
  }
}

/** Decodes and checks a frame's outer shape; a message batch is checked by `decodeMessages`. */
export function decodeFrame(payload: Buffer): Frame {
  if (payload[0] === MSGS_TAG) return { t: 'msgs', payload };
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (error) {
    throw new PeerError('malformed-frame', 'undecodable peer frame', { cause: error });
  }
  const f = value as Record<string, unknown> | null;
  if (f === null || typeof f !== 'object' || Array.isArray(f)) throw bad('frame is not a map');
  switch (f['t']) {
    case 'hello':
      need(isStr(f['cluster']) && isId(f['from']) && isId(f['to']) && isInt(f['v']) && isStr(f['name']) && optStr(f['client']), 'hello');
      break;
    case 'welcome':
      need(isId(f['from']) && isStr(f['name']) && optStr(f['client']), 'welcome');
      break;
    case 'reject':
      need(isStr(f['reason']) && isStr(f['message']), 'reject');
      break;
    case 'snap':
      need(isInt(f['id']) && isInt(f['rangeId']) && isInt(f['seq']) && typeof f['last'] === 'boolean' && isBytes(f['data']), 'snap');
      // The head is checked in full (toMessage) when the snapshot is delivered; here its shape, so a
      // null or a list never reaches the reassembly (issue 12: `head: null` threw a TypeError there).
      need(f['seq'] !== 0 || (isInt(f['total']) && isMap(f['head']) && isMap((f['head'] as Record<string, unknown>)['snapshot'])), 'snap head');
      need(f['seq'] === 0 || (f['total'] === undefined && f['head'] === undefined), 'snap head on a later chunk');
      break;
    case 'snapack':
      need(isInt(f['id']) && typeof f['ok'] === 'boolean', 'snapack');
      break;
    case 'join':
      need(isInt(f['v']) && isStr(f['name']) && isStr(f['peer']), 'join');
      break;
    case 'members':
      need(isStr(f['cluster']) && Array.isArray(f['members']) && (f['members'] as unknown[]).every(isJoinMember), 'members');
      break;
    case 'tso':
      return { t: 'tso', m: toRevisionMessage(f['m']) };
    case 'alive': {
      if (f['load'] === undefined) return { t: 'alive' };
      const problem = nodeLoadProblem(f['load']);
      need(problem === undefined, `alive load: ${problem}`);
      const load = f['load'] as Record<string, number>;
      const leaders = load['leaders'] as number | undefined;
      return { t: 'alive', load: { bytes: load['bytes'] as number, leaderQps: load['leaderQps'] as number, ...(leaders === undefined ? {} : { leaders }) } };
    }
    case 'fwd':
      return { t: 'fwd', m: toForwardMessage(f['m']) };
    default:
      throw bad(`unknown frame type ${String(f['t'])}`);
  }
  return f as unknown as Frame;
}

/** A forward message rebuilt from checked fields; its body (an op or an outcome) is checked by the forwarder. */
export function toForwardMessage(value: unknown): ForwardMessage {
  need(isMap(value), 'fwd message');
  const id = value['id'];
  const body = value['body'];
  need(isStr(id) && Buffer.byteLength(id) <= MAX_FORWARD_ID_BYTES && isBytes(body), 'fwd message id or body');
  if (value['kind'] === 'reply') return { kind: 'reply', id, body };
  const rangeId = value['rangeId'];
  need(value['kind'] === 'call' && isId(rangeId), 'fwd call');
  return { kind: 'call', id, rangeId, body };
}

/** A revision message rebuilt from checked fields: a peer's numbers reach the revision service only as safe integers in range. */
export function toRevisionMessage(value: unknown): RevisionMessage {
  need(isMap(value), 'tso message');
  const id = value['id'];
  need(isStr(id) && Buffer.byteLength(id) <= MAX_REVISION_REQUEST_ID_BYTES, 'tso request id');
  switch (value['kind']) {
    case 'request': {
      const count = value['count'];
      need(isInt(count) && count >= 1 && count <= TSO_MAX_BATCH_REVISIONS, 'tso request count');
      return { kind: 'request', id, count };
    }
    case 'answer': {
      const first = value['first'];
      const last = value['last'];
      need(isInt(first) && isInt(last) && first >= 1 && first <= last && last < Number.MAX_SAFE_INTEGER, 'tso answer');
      return { kind: 'answer', id, first, last };
    }
    case 'refusal': {
      const code = value['code'];
      const leader = value['leader'];
      need((code === 'NOT_LEADER' || code === 'RESOURCE_EXHAUSTED' || code === 'TIMEOUT') && (leader === 0 || isId(leader)), 'tso refusal');
      return { kind: 'refusal', id, code, leader };
    }
    default:
      throw bad('tso message kind');
  }
}

function isJoinMember(v: unknown): boolean {
  const o = v as Record<string, unknown> | null;
  return (
    o !== null && typeof o === 'object' && isId(o['id']) && isStr(o['name']) && typeof o['learner'] === 'boolean' &&
    Array.isArray(o['peerUrls']) && (o['peerUrls'] as unknown[]).every(isStr)
  );
}

/** The message types a peer may send, by their one-byte wire code in a batch (the index); MsgSnap travels only in snapshot chunks. */
const WIRE_TYPES: readonly MessageType[] = [
  'MsgProp', 'MsgApp', 'MsgAppResp', 'MsgVote', 'MsgVoteResp', 'MsgPreVote', 'MsgPreVoteResp', 'MsgSnap',
  'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex', 'MsgReadIndexResp',
];
const REMOTE_TYPES = new Set(WIRE_TYPES);
const WIRE_CODES = new Map(WIRE_TYPES.map((t, i) => [t, i]));

// ---- message batches ---------------------------------------------------------

/** First payload byte of a message batch. A msgpackr frame is a map, whose first byte is never 0x01. */
const MSGS_TAG = 0x01;

const FLAG_REJECT = 1;
const FLAG_CONTEXT = 2;
const FLAG_LEASE_TICK = 4;
const FLAG_QUIESCE = 8;
const ENTRY_NORMAL = 0;
const ENTRY_CONF_CHANGE = 1;

/** Bytes of a message's fixed part: range id, type, flags, to, from, term, logTerm, index, commit, rejectHint, entry count. */
const MESSAGE_FIXED_BYTES = 8 + 1 + 1 + 8 * 7 + 4;
/** Bytes of an entry's fixed part: term, index, type, data length. */
const ENTRY_FIXED_BYTES = 8 + 8 + 1 + 4;

/**
 * Encodes one loop turn's messages to a peer as a frame, header included.
 * Layout, little-endian, every integer a float64 (exact below 2^53):
 * tag 0x01, count u32, then per message: rangeId, type code u8, flags u8,
 * to, from, term, logTerm, index, commit, rejectHint, [leaseTick],
 * [context: u32 length + UTF-8], entry count u32, then per entry: term,
 * index, type u8, data (u32 length + bytes), and for a conf change its
 * msgpackr encoding (u32 length + bytes). Hand-written because msgpackr
 * wrote and parsed every field name of every message and entry (ADR 0006).
 */
export function encodeMessages(messages: readonly RangeMessage[]): Buffer {
  const extras: (Uint8Array | undefined)[] = [];
  let size = 1 + 4;
  for (const { message: m } of messages) {
    assert(m.snapshot === undefined && m.type !== 'MsgSnap', 'a snapshot travels in chunks, not in a message batch');
    size += MESSAGE_FIXED_BYTES + (m.leaseTick === undefined ? 0 : 8) + (m.context === undefined ? 0 : 4 + Buffer.byteLength(m.context));
    for (const e of m.entries) {
      size += ENTRY_FIXED_BYTES + e.data.byteLength;
      if (e.type === 'conf-change') {
        const cc = packr.pack(e.confChange);
        extras.push(cc);
        size += 4 + cc.byteLength;
      }
    }
  }
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + size);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.writeUInt32BE(size, 0);
  let o = FRAME_HEADER_BYTES;
  out[o++] = MSGS_TAG;
  view.setUint32(o, messages.length, true);
  o += 4;
  let extra = 0;
  for (const { rangeId, message: m } of messages) {
    view.setFloat64(o, rangeId, true);
    const code = WIRE_CODES.get(m.type);
    assert(code !== undefined, () => `message type ${m.type} has no wire code: it never leaves the node`);
    out[o + 8] = code;
    out[o + 9] = (m.reject ? FLAG_REJECT : 0) | (m.context === undefined ? 0 : FLAG_CONTEXT) | (m.leaseTick === undefined ? 0 : FLAG_LEASE_TICK) | (m.quiesce === true ? FLAG_QUIESCE : 0);
    o += 10;
    for (const v of [m.to, m.from, m.term, m.logTerm, m.index, m.commit, m.rejectHint]) {
      view.setFloat64(o, v, true);
      o += 8;
    }
    if (m.leaseTick !== undefined) {
      view.setFloat64(o, m.leaseTick, true);
      o += 8;
    }
    if (m.context !== undefined) {
      const n = out.write(m.context, o + 4, 'utf8');
      view.setUint32(o, n, true);
      o += 4 + n;
    }
    view.setUint32(o, m.entries.length, true);
    o += 4;
    for (const e of m.entries) {
      view.setFloat64(o, e.term, true);
      view.setFloat64(o + 8, e.index, true);
      out[o + 16] = e.type === 'normal' ? ENTRY_NORMAL : ENTRY_CONF_CHANGE;
      view.setUint32(o + 17, e.data.byteLength, true);
      o += ENTRY_FIXED_BYTES;
      out.set(e.data, o);
      o += e.data.byteLength;
      if (e.type === 'conf-change') {
        const cc = extras[extra++] as Uint8Array;
        view.setUint32(o, cc.byteLength, true);
        out.set(cc, o + 4);
        o += 4 + cc.byteLength;
      }
    }
  }
  assert(o === out.byteLength, () => `message batch encoded to ${o} of ${out.byteLength} bytes`);
  return out;
}

/** Reads a batch payload front to back; every read checks that the bytes are there (a PeerError if not). */
class BatchReader {
  private o = 1;
  private readonly view: DataView;

  constructor(private readonly bytes: Buffer) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.o === this.bytes.byteLength;
  }

  get remaining(): number {
    return this.bytes.byteLength - this.o;
  }

  private room(n: number, what: string): void {
    need(this.o + n <= this.bytes.byteLength, `${what} beyond the end of the batch`);
  }

  u8(what: string): number {
    this.room(1, what);
    return this.bytes[this.o++] as number;
  }

  u32(what: string): number {
    this.room(4, what);
    const v = this.view.getUint32(this.o, true);
    this.o += 4;
    return v;
  }

  /** A safe non-negative integer sent as a float64. */
  int(what: string): number {
    this.room(8, what);
    const v = this.view.getFloat64(this.o, true);
    this.o += 8;
    need(isInt(v), what);
    return v;
  }

  /** `n` bytes as UTF-8 text. */
  utf8(n: number, what: string): string {
    this.room(n, what);
    const text = this.bytes.toString('utf8', this.o, this.o + n);
    this.o += n;
    return text;
  }

  /** `n` bytes as a view of the payload (no copy, as msgpackr's binary values were). */
  bytesOf(n: number, what: string): Uint8Array {
    this.room(n, what);
    const out = new Uint8Array(this.bytes.buffer, this.bytes.byteOffset + this.o, n);
    this.o += n;
    return out;
  }
}

/** Decodes a batch from peer `from` to this node (`self`) into plain Raft messages, refusing anything malformed. */
export function decodeMessages(payload: Buffer, from: NodeId, self: NodeId): RangeMessage[] {
  need(payload[0] === MSGS_TAG, 'message batch tag');
  const r = new BatchReader(payload);
  const count = r.u32('message count');
  // Each message takes at least its fixed part, so a count the payload cannot hold is refused before any work.
  need(count * MESSAGE_FIXED_BYTES <= payload.byteLength, 'message count');
  const out: RangeMessage[] = [];
  for (let i = 0; i < count; i++) out.push(readMessage(r, from, self));
  need(r.done, 'bytes after the last message');
  return out;
}

function readMessage(r: BatchReader, from: NodeId, self: NodeId): RangeMessage {
  const rangeId = r.int('range id');
  const type = WIRE_TYPES[r.u8('message type')];
  need(type !== undefined && type !== 'MsgSnap', `message type ${String(type)}`);
  const flags = r.u8('message flags');
  need((flags & ~(FLAG_REJECT | FLAG_CONTEXT | FLAG_LEASE_TICK | FLAG_QUIESCE)) === 0, 'message flags');
  need((flags & FLAG_QUIESCE) === 0 || type === 'MsgHeartbeat', 'quiesce flag on a message that is not a heartbeat');
  need(r.int('message to') === self, `message to another node delivered to node ${self}`);
  need(r.int('message from') === from, `message from another node on the connection of node ${from}`);
  const term = r.int('message field term');
  const logTerm = r.int('message field logTerm');
  const index = r.int('message field index');
  const commit = r.int('message field commit');
  const rejectHint = r.int('message field rejectHint');
  const leaseTick = flags & FLAG_LEASE_TICK ? r.int('leaseTick') : undefined;
  let context: string | undefined;
  if (flags & FLAG_CONTEXT) {
    context = r.utf8(r.u32('context length'), 'context');
  }
  const entryCount = r.u32('entry count');
  need(entryCount * ENTRY_FIXED_BYTES <= r.remaining, 'entry count');
  const entries: Entry[] = [];
  for (let i = 0; i < entryCount; i++) entries.push(readEntry(r));
  const message: Message = {
    type,
    to: self,
    from,
    term,
    logTerm,
    index,
    commit,
    reject: (flags & FLAG_REJECT) !== 0,
    rejectHint,
    entries,
    ...(context === undefined ? {} : { context }),
    ...(leaseTick === undefined ? {} : { leaseTick }),
    ...(flags & FLAG_QUIESCE ? { quiesce: true } : {}),
  };
  return { rangeId, message };
}

function readEntry(r: BatchReader): Entry {
  const term = r.int('entry term');
  const index = r.int('entry index');
  const kind = r.u8('entry type');
  need(kind === ENTRY_NORMAL || kind === ENTRY_CONF_CHANGE, 'entry type');
  const data = r.bytesOf(r.u32('entry data length'), 'entry data');
  if (kind === ENTRY_NORMAL) return { term, index, type: 'normal', data };
  const cc = r.bytesOf(r.u32('conf change length'), 'conf change');
  let value: unknown;
  try {
    value = packr.unpack(cc);
  } catch (error) {
    throw new PeerError('malformed-frame', 'malformed peer frame: undecodable conf change', { cause: error });
  }
  return { term, index, type: 'conf-change', data, confChange: toConfChange(value) };
}

/** A Raft message as the peer sent it; `snapshotAllowed` only for a reassembled MsgSnap. */
export function toMessage(value: unknown, from: NodeId, self: NodeId, snapshotAllowed: boolean): Message {
  const m = value as Record<string, unknown> | null;
  need(m !== null && typeof m === 'object', 'message');
  const o = m as Record<string, unknown>;
  const type = o['type'] as MessageType;
  need(REMOTE_TYPES.has(type) && !isLocalMessage(type), `message type ${String(type)}`);
  // Snapshots travel only in chunks (snapshot frames), never inside a batch.
  need(type !== 'MsgSnap' || snapshotAllowed, 'MsgSnap outside a snapshot stream');
  need(o['from'] === from, `message from ${String(o['from'])} on the connection of node ${from}`);
  need(o['to'] === self, `message to ${String(o['to'])} delivered to node ${self}`);
  for (const k of ['term', 'logTerm', 'index', 'commit', 'rejectHint']) need(isInt(o[k]), `message field ${k}`);
  need(typeof o['reject'] === 'boolean' && Array.isArray(o['entries']) && optStr(o['context']), 'message fields');
  need(o['leaseTick'] === undefined || isInt(o['leaseTick']), 'leaseTick');
  need((o['snapshot'] === undefined) === (type !== 'MsgSnap' || !snapshotAllowed), 'snapshot only on a reassembled MsgSnap');
  return {
    type,
    to: self,
    from,
    term: o['term'] as number,
    logTerm: o['logTerm'] as number,
    index: o['index'] as number,
    commit: o['commit'] as number,
    reject: o['reject'] as boolean,
    rejectHint: o['rejectHint'] as number,
    entries: (o['entries'] as unknown[]).map(toEntry),
    ...(o['context'] === undefined ? {} : { context: o['context'] as string }),
    ...(o['leaseTick'] === undefined ? {} : { leaseTick: o['leaseTick'] as number }),
    ...(o['snapshot'] === undefined ? {} : { snapshot: toSnapshot(o['snapshot']) }),
  };
}

function toEntry(value: unknown): Entry {
  const e = value as Record<string, unknown> | null;
  need(e !== null && typeof e === 'object' && isInt(e['term']) && isInt(e['index']) && isBytes(e['data']), 'entry');
  const o = e as Record<string, unknown>;
  need(o['type'] === 'normal' || o['type'] === 'conf-change', 'entry type');
  const base = { term: o['term'] as number, index: o['index'] as number, type: o['type'] as Entry['type'], data: plain(o['data'] as Uint8Array) };
  if (o['type'] === 'normal') return base;
  return { ...base, confChange: toConfChange(o['confChange']) };
}

function toConfChange(value: unknown): ConfChange {
  const c = value as Record<string, unknown> | null;
  need(c !== null && typeof c === 'object' && Array.isArray(c['changes']) && optStr(c['context']), 'conf change');
  const o = c as Record<string, unknown>;
  need(o['transition'] === 'auto' || o['transition'] === 'implicit' || o['transition'] === 'explicit', 'conf change transition');
  const changes = (o['changes'] as unknown[]).map((ch) => {
    const s = ch as Record<string, unknown> | null;
    need(s !== null && typeof s === 'object' && isId(s['nodeId']), 'conf change node');
    const t = (s as Record<string, unknown>)['type'];
    need(t === 'add-node' || t === 'remove-node' || t === 'add-learner', 'conf change type');
    return { type: t as ConfChange['changes'][number]['type'], nodeId: (s as Record<string, unknown>)['nodeId'] as number };
  });
  return { transition: o['transition'] as ConfChange['transition'], changes, ...(o['context'] === undefined ? {} : { context: o['context'] as string }) };
}

function toSnapshot(value: unknown): Snapshot {
  const s = value as Record<string, unknown> | null;
  need(s !== null && typeof s === 'object' && isBytes(s['data']), 'snapshot');
  const md = (s as Record<string, unknown>)['metadata'] as Record<string, unknown> | null;
  need(md !== null && typeof md === 'object' && isInt(md['index']) && isInt(md['term']), 'snapshot metadata');
  const meta = md as Record<string, unknown>;
  return { metadata: { index: meta['index'] as number, term: meta['term'] as number, confState: toConfState(meta['confState']) }, data: plain((s as Record<string, unknown>)['data'] as Uint8Array) };
}

function toConfState(value: unknown): ConfState {
  const c = value as Record<string, unknown> | null;
  need(c !== null && typeof c === 'object' && typeof c['autoLeave'] === 'boolean', 'conf state');
  const o = c as Record<string, unknown>;
  const ids = (k: string): number[] => {
    need(Array.isArray(o[k]) && (o[k] as unknown[]).every(isId), `conf state ${k}`);
    return [...(o[k] as number[])];
  };
  return { voters: ids('voters'), votersOutgoing: ids('votersOutgoing'), learners: ids('learners'), learnersNext: ids('learnersNext'), autoLeave: o['autoLeave'] as boolean };
}

/** msgpackr yields Buffers; the store gets plain Uint8Arrays, as from the engines (Buffer's slice and toString differ). */
function plain(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
function isId(v: unknown): v is number {
  return isInt(v) && v > 0;
}
function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}
function isStr(v: unknown): v is string {
  return typeof v === 'string';
}
function optStr(v: unknown): boolean {
  return v === undefined || typeof v === 'string';
}
function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}
function bad(what: string): PeerError {
  return new PeerError('malformed-frame', `malformed peer frame: ${what}`);
}
function need(ok: boolean, what: string): asserts ok {
  if (!ok) throw bad(what);
}
