import { assert } from '../base/index.js';

/**
 * Key layout in the node's one storage engine (ADR 0009 §1). Five families:
 *   d<user key>…  MVCC records, keyed by user key (src/mvcc/codec.ts owns the layout)
 *   e<revision>   MVCC change index: revision → user key, the history in revision order
 *   i<user key>   the intent of a transaction across ranges on the key (src/mvcc/intents.ts)
 *   t<primary key><txn id>  the record of a transaction across ranges (src/mvcc/intents.ts)
 *   r<id>…        range-local keys, `r` + rangeId (8 bytes, big-endian), so many ranges
 *                 share one engine and one synced write per loop turn
 * A range owns the `d`, `e`, `i` and `t` keys of the user keys in its span (with one range per
 * node, all of them), so a split or merge changes descriptors and moves no data. Its
 * range-local keys:
 *   r<id>g        tombstone: replica GC dropped this node's replica of the range (it
 *                 may have acknowledged entries it no longer holds; Store.mayNotVote)
 *   r<id>h        Raft hard state
 *   r<id>t        truncated state: index and term of the last compacted entry
 *   r<id>c        applied index and conf state (written with every apply)
 *   r<id>l<idx>   Raft log entry, index big-endian so scans run in log order
 *   r<id>m...     the range's MVCC meta record (revisions, compaction, record count)
 *   r<id>n<lease> lease record (TTL, checkpointed remaining time)
 *   r<id>o        the range's descriptor (bounds, epoch, replicas: range_map.ts)
 *   r<id>o 0x01   the next range id to hand out (on the metadata range only)
 *   r<id>o 0x02   the TSO window bound W (on the metadata range only; revisions.ts)
 *   r<id>o 0x03   the range's approximate size in bytes (written keys and values; splits recount)
 *   r<id>o 0x04 <start key>  the meta table: every range's descriptor by start key (on the
 *                 metadata range only; meta_table.ts)
 *   r<id>o 0x06   the range is frozen for a merge: the freeze entry's index, term, epoch version,
 *                 and the left range (and its version) that may take it over
 *   r<id>o 0x07   the last epoch versions the range left by another change than a merge (an
 *                 abort-merge, a split, an unfreeze): no merge naming one applies (ADR 0014)
 *   r<id>o 0x08   the last ranges the range took over by merges, with their final epoch versions
 *                 and the versions they had left without a merge (ADR 0014)
 *   r<id>p<node>  member record (name, peer and client URLs) of the cluster
 *   r<id>q<node>  a member removed from the cluster (peers refuse its connections)
 *   r<id>r<idx>   log index → request id, for window entries the log no longer holds (dedupe.ts);
 *                 the last tag of the state machine's part
 * The state machine's part, copied into snapshots, is its `d` and `e` keys plus
 * [r<id>m, r<id>s). A snapshot carries the `d` and `e` keys whole and the range-local
 * ones cut to their suffix after r<id>; no range-local tag is 'd' or 'e', so the first
 * byte tells them apart (mvcc_state_machine.ts).
 */
export type RangeId = number;

/**
 * The meta range (ADR 0009): the member table, leases, the TSO window and
 * the meta table of range descriptors; every member holds a replica.
 */
export const META_RANGE: RangeId = 1;

const R = 0x72; // 'r'

export function rangePrefix(rangeId: RangeId): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = R;
  writeU64(out, 1, rangeId);
  return out;
}

function suffixed(rangeId: RangeId, tag: number, extra?: number): Uint8Array {
  const out = new Uint8Array(extra === undefined ? 10 : 18);
  out[0] = R;
  writeU64(out, 1, rangeId);
  out[9] = tag;
  if (extra !== undefined) writeU64(out, 10, extra);
  return out;
}

export const keys = {
  tombstone: (id: RangeId): Uint8Array => suffixed(id, 0x67), // 'g'
  hardState: (id: RangeId): Uint8Array => suffixed(id, 0x68), // 'h'
  truncated: (id: RangeId): Uint8Array => suffixed(id, 0x74), // 't'
  applyState: (id: RangeId): Uint8Array => suffixed(id, 0x63), // 'c'
  logEntry: (id: RangeId, index: number): Uint8Array => suffixed(id, 0x6c, index), // 'l'
  logStart: (id: RangeId): Uint8Array => suffixed(id, 0x6c, 0),
  logEnd: (id: RangeId): Uint8Array => suffixed(id, 0x6d), // 'm' sorts right after 'l'
  mvccPrefix: (id: RangeId): Uint8Array => suffixed(id, 0x6d), // 'm'
  lease: (id: RangeId, leaseId: number): Uint8Array => suffixed(id, 0x6e, leaseId), // 'n'
  leaseStart: (id: RangeId): Uint8Array => suffixed(id, 0x6e, 0),
  leaseEnd: (id: RangeId): Uint8Array => suffixed(id, 0x6f), // 'o'
  descriptor: (id: RangeId): Uint8Array => suffixed(id, 0x6f), // 'o' (lease scans end before it)
  nextRangeId: (id: RangeId): Uint8Array => descriptorSub(id, 0x01),
  tsoWindow: (id: RangeId): Uint8Array => descriptorSub(id, 0x02),
  approxBytes: (id: RangeId): Uint8Array => descriptorSub(id, 0x03),
  /** The meta table's descriptor of the range starting at `start` (on the metadata range only; meta_table.ts). */
  metaDescriptor: (id: RangeId, start: Uint8Array): Uint8Array => descriptorSub(id, 0x04, start),
  metaDescriptorStart: (id: RangeId): Uint8Array => descriptorSub(id, 0x04),
  metaDescriptorEnd: (id: RangeId): Uint8Array => descriptorSub(id, 0x05),
  /** The range is frozen for a merge (ADR 0009 §6): the freeze entry's index, term and the epoch version it froze. Carried by snapshots. */
  frozen: (id: RangeId): Uint8Array => descriptorSub(id, 0x06),
  /** The last epoch version the range left without a merge (ADR 0014): a freeze naming it as the left side at that version can end. Carried by snapshots. */
  versionLeftWithoutMerge: (id: RangeId): Uint8Array => descriptorSub(id, 0x07),
  /** The last ranges this one took over by merges (its own and those its right sides had), each with its final epoch version (ADR 0014). Carried by snapshots. */
  absorbedRanges: (id: RangeId): Uint8Array => descriptorSub(id, 0x08),
  member: (id: RangeId, nodeId: number): Uint8Array => suffixed(id, 0x70, nodeId), // 'p'
  memberStart: (id: RangeId): Uint8Array => suffixed(id, 0x70, 0),
  memberEnd: (id: RangeId): Uint8Array => suffixed(id, 0x71), // 'q'
  removedMember: (id: RangeId, nodeId: number): Uint8Array => suffixed(id, 0x71, nodeId), // 'q'
  removedMemberStart: (id: RangeId): Uint8Array => suffixed(id, 0x71, 0),
  removedMemberEnd: (id: RangeId): Uint8Array => suffixed(id, 0x72), // 'r'
  requestByIndex: (id: RangeId, index: number): Uint8Array => suffixed(id, 0x72, index), // 'r'
  requestByIndexStart: (id: RangeId): Uint8Array => suffixed(id, 0x72, 0),
  stateStart: (id: RangeId): Uint8Array => suffixed(id, 0x6d), // 'm'
  stateEnd: (id: RangeId): Uint8Array => suffixed(id, 0x73), // 's'
  /** One past every key of the range. */
  rangeEnd: (id: RangeId): Uint8Array => rangePrefix(id + 1),
};

/** A key under the range's descriptor key `r<id>o`: one sub-tag byte, then `tail` if given. */
function descriptorSub(rangeId: RangeId, sub: number, tail?: Uint8Array): Uint8Array {
  const out = new Uint8Array(11 + (tail?.byteLength ?? 0));
  out.set(suffixed(rangeId, 0x6f), 0);
  out[10] = sub;
  if (tail !== undefined) out.set(tail, 11);
  return out;
}

export function writeU64(out: Uint8Array, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, () => `u64 out of range: ${value}`);
  let high = Math.floor(value / 0x100000000);
  let low = value >>> 0;
  for (let i = 3; i >= 0; i--) {
    out[offset + i] = high & 0xff;
    out[offset + 4 + i] = low & 0xff;
    high >>>= 8;
    low >>>= 8;
  }
}

export function readU64(bytes: Uint8Array, offset: number): number {
  let high = 0;
  let low = 0;
  for (let i = 0; i < 4; i++) {
    high = high * 256 + (bytes[offset + i] as number);
    low = low * 256 + (bytes[offset + 4 + i] as number);
  }
  const value = high * 0x100000000 + low;
  assert(Number.isSafeInteger(value), () => `u64 above 2^53 at offset ${offset}`);
  return value;
}
