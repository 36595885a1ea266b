import { Packr } from 'msgpackr';
import type { ConfChange, ConfState, Entry, Message, MessageType, NodeId, Snapshot } from '../raft/index.js';
import { isLocalMessage } from '../raft/index.js';
import type { RangeMessage } from '../kv/store.js';
import { PeerError } from './errors.js';

/**
 * The peer wire format: each frame is a 4-byte big-endian payload length and
 * a msgpackr payload (DESIGN.md decision 9). Everything a peer sends is
 * validated here before it reaches Raft, and rebuilt as a fresh object, so a
 * malformed or hostile frame is refused with a PeerError instead of crashing
 * the node inside the Raft library.
 */

/** Bumped when frames change incompatibly; peers of another version are refused at the handshake. */
export const PEER_PROTOCOL_VERSION = 1;
export const FRAME_HEADER_BYTES = 4;

export type Frame =
  | { readonly t: 'hello'; readonly v: number; readonly cluster: string; readonly from: NodeId; readonly to: NodeId; readonly name: string; readonly client?: string }
  | { readonly t: 'welcome'; readonly from: NodeId; readonly name: string; readonly client?: string }
  | { readonly t: 'reject'; readonly reason: string; readonly message: string }
  | { readonly t: 'msgs'; readonly m: readonly (readonly [number, Message])[] }
  | SnapChunkFrame
  | { readonly t: 'snapack'; readonly id: number; readonly ok: boolean }
  /** A node starting to join an existing cluster asks a member who is in it (etcd's GET /members). */
  | { readonly t: 'join'; readonly v: number; readonly name: string; readonly peer: string }
  | { readonly t: 'members'; readonly cluster: string; readonly members: readonly JoinMember[] };

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

/** Encodes a frame with its length header. */
export function encodeFrame(frame: Frame): Buffer {
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

  constructor(private readonly maxFrameBytes: number) {}

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

/** Decodes and checks a frame's outer shape; message contents are checked by `toRangeMessages`. */
export function decodeFrame(payload: Buffer): Frame {
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
    case 'msgs':
      need(Array.isArray(f['m']), 'msgs');
      break;
    case 'snap':
      need(isInt(f['id']) && isInt(f['rangeId']) && isInt(f['seq']) && typeof f['last'] === 'boolean' && isBytes(f['data']), 'snap');
      need(f['seq'] !== 0 || (isInt(f['total']) && typeof f['head'] === 'object'), 'snap head');
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
    default:
      throw bad(`unknown frame type ${String(f['t'])}`);
  }
  return f as unknown as Frame;
}

function isJoinMember(v: unknown): boolean {
  const o = v as Record<string, unknown> | null;
  return (
    o !== null && typeof o === 'object' && isId(o['id']) && isStr(o['name']) && typeof o['learner'] === 'boolean' &&
    Array.isArray(o['peerUrls']) && (o['peerUrls'] as unknown[]).every(isStr)
  );
}

/** Validates a batch from peer `from` to this node (`self`) and rebuilds it as plain Raft messages. */
export function toRangeMessages(raw: readonly unknown[], from: NodeId, self: NodeId): RangeMessage[] {
  return raw.map((item) => {
    need(Array.isArray(item) && item.length === 2 && isInt(item[0]), 'range message');
    const [rangeId, m] = item as [number, unknown];
    return { rangeId, message: toMessage(m, from, self, false) };
  });
}

const REMOTE_TYPES = new Set<MessageType>([
  'MsgProp', 'MsgApp', 'MsgAppResp', 'MsgVote', 'MsgVoteResp', 'MsgPreVote', 'MsgPreVoteResp', 'MsgSnap',
  'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex', 'MsgReadIndexResp',
]);

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
