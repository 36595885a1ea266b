import { assert, TesseraError } from '../base/index.js';
import type { ConfChange, NodeId } from '../raft/index.js';
import type { ReadView, WriteBatch } from '../storage/engine.js';
import { decodeJson, encodeJson } from './codec.js';
import { type RangeId, keys, readU64 } from './keys.js';

/** etcd caps a member's URL lists; so do we, so a record stays small. */
export const MAX_MEMBER_URLS = 16;
export const MAX_MEMBER_URL_BYTES = 512;
/** The longest `--locality` (CockroachDB's form: `region=us-east1,zone=us-east1-b`, outermost tier first). */
export const MAX_LOCALITY_BYTES = 256;
/** Tiers one locality may have. */
export const MAX_LOCALITY_TIERS = 8;

const LOCALITY_TIER = /^[A-Za-z0-9_.-]{1,64}=[A-Za-z0-9_.:-]{1,128}$/;

/** Why `locality` is not a valid `--locality`, or undefined: comma-separated `key=value` tiers, each key once. */
export function localityProblem(locality: string): string | undefined {
  if (locality.length === 0) return undefined;
  if (Buffer.byteLength(locality) > MAX_LOCALITY_BYTES) return `longer than ${MAX_LOCALITY_BYTES} bytes`;
  const tiers = locality.split(',');
  if (tiers.length > MAX_LOCALITY_TIERS) return `more than ${MAX_LOCALITY_TIERS} tiers`;
  const bad = tiers.find((t) => !LOCALITY_TIER.test(t));
  if (bad !== undefined) return `tier "${bad}" is not key=value (letters, digits, '_', '.', '-'; values may hold ':')`;
  const keysSeen = tiers.map((t) => t.slice(0, t.indexOf('=')));
  if (new Set(keysSeen).size !== keysSeen.length) return 'a tier key appears twice';
  return undefined;
}

/**
 * A cluster member as etcd's Cluster API shows it. The Raft configuration
 * says who votes; this record says how to reach the member and what it is
 * called. A member added by MemberAdd has no name until it starts and
 * publishes one (as in etcd).
 */
export interface MemberRecord {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  /** Being decommissioned (`tessera node decommission`): ranges other than range 1 drop it, then range 1 removes it. */
  readonly decommissioning?: boolean;
  /** The member's `--locality` (empty or absent: none), which placement spreads each range's replicas across. */
  readonly locality?: string;
}

/**
 * What a membership conf change carries in its context (opaque to Raft):
 * the request it answers and, for an addition, the new member's record.
 */
export interface MemberChangeContext {
  readonly requestId: string;
  readonly member?: MemberRecord;
}

export function encodeMemberContext(ctx: MemberChangeContext): string {
  return JSON.stringify(ctx);
}

/** Reads a conf change's context; a change proposed without one (the simulator's, Raft's auto-leave) gives undefined. */
export function decodeMemberContext(cc: ConfChange): MemberChangeContext | undefined {
  if (cc.context === undefined || cc.context === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(cc.context);
  } catch (error) {
    throw new TesseraError('CORRUPT_DATA', 'undecodable membership context in the log', { cause: error });
  }
  const o = v as Partial<MemberChangeContext> | null;
  if (o === null || typeof o !== 'object' || typeof o.requestId !== 'string') throw new TesseraError('CORRUPT_DATA', 'malformed membership context in the log');
  return o.member === undefined ? { requestId: o.requestId } : { requestId: o.requestId, member: checkMemberRecord(o.member) };
}

/** Validates a record's shape (from the log, a snapshot, or a peer). */
export function checkMemberRecord(v: unknown): MemberRecord {
  const o = v as Partial<MemberRecord> | null;
  const urls = (u: unknown): u is string[] =>
    Array.isArray(u) && u.length <= MAX_MEMBER_URLS && u.every((s) => typeof s === 'string' && s.length > 0 && s.length <= MAX_MEMBER_URL_BYTES);
  if (o === null || typeof o !== 'object' || !Number.isSafeInteger(o.id) || (o.id as number) <= 0 || typeof o.name !== 'string' || !urls(o.peerUrls) || !urls(o.clientUrls)) {
    throw new TesseraError('CORRUPT_DATA', 'malformed member record');
  }
  if (o.decommissioning !== undefined && typeof o.decommissioning !== 'boolean') throw new TesseraError('CORRUPT_DATA', 'malformed member record');
  if (o.locality !== undefined && (typeof o.locality !== 'string' || localityProblem(o.locality) !== undefined)) throw new TesseraError('CORRUPT_DATA', 'malformed member record');
  return {
    id: o.id as number,
    name: o.name,
    peerUrls: [...o.peerUrls],
    clientUrls: [...o.clientUrls],
    ...(o.decommissioning === true ? { decommissioning: true } : {}),
    ...(o.locality === undefined || o.locality === '' ? {} : { locality: o.locality }),
  };
}

/**
 * The replicated member records of the cluster, kept by the range that holds
 * the cluster's metadata (range 1). They change only when entries apply, so
 * every replica holds the same table; they live under the range's 'p' keys,
 * inside the part of the key space that snapshots copy, so a member that
 * joins from a snapshot learns everyone's address.
 */
export class MemberTable {
  private readonly members = new Map<NodeId, MemberRecord>();
  /** Members removed from the cluster and not added back: a peer refuses their connections, so one that was down learns it was removed. */
  private readonly removed = new Set<NodeId>();

  constructor(
    private readonly rangeId: RangeId,
    view: ReadView,
  ) {
    for (const kv of view.scan({ start: keys.memberStart(rangeId), end: keys.memberEnd(rangeId) })) {
      const record = checkMemberRecord(decodeJson<unknown>(kv.value, 'member record'));
      assert(record.id === readU64(kv.key, 10), 'member record key and id agree');
      this.members.set(record.id, record);
    }
    for (const kv of view.scan({ start: keys.removedMemberStart(rangeId), end: keys.removedMemberEnd(rangeId) })) this.removed.add(readU64(kv.key, 10));
  }

  isRemoved(id: NodeId): boolean {
    return this.removed.has(id);
  }

  get(id: NodeId): MemberRecord | undefined {
    return this.members.get(id);
  }

  all(): MemberRecord[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  /** The member whose peer URLs include `peerUrl`, if any. */
  byPeerUrl(peerUrl: string): MemberRecord | undefined {
    return this.all().find((m) => m.peerUrls.includes(peerUrl));
  }

  put(batch: WriteBatch, record: MemberRecord): void {
    this.members.set(record.id, record);
    batch.put(keys.member(this.rangeId, record.id), encodeJson(record));
    if (this.removed.delete(record.id)) batch.delete(keys.removedMember(this.rangeId, record.id));
  }

  remove(batch: WriteBatch, id: NodeId): void {
    this.members.delete(id);
    batch.delete(keys.member(this.rangeId, id));
    this.removed.add(id);
    batch.put(keys.removedMember(this.rangeId, id), encodeJson({ id }));
  }
}
