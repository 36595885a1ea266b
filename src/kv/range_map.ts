import { Packr } from 'msgpackr';
import { AssertionError, TesseraError } from '../base/index.js';
import { compareBytes } from '../mvcc/index.js';
import { MAX_KEY_BYTES } from '../storage/index.js';

/**
 * Range descriptors and the map of them (ADR 0009 §5). A range is the
 * half-open key span [start, end) served by one Raft group; the map of all
 * ranges partitions the whole key space. The descriptors' epoch follows
 * TiKV's RegionEpoch: `version` rises on every split and merge (the bounds
 * changed), `confVersion` on every membership change (the replicas changed),
 * so a request routed with an older epoch can be recognised and refused.
 */

/** TiKV's RegionEpoch. Both counters only rise. */
export interface RangeEpoch {
  readonly version: number;
  readonly confVersion: number;
}

export type ReplicaRole = 'voter' | 'learner';

export interface ReplicaDescriptor {
  readonly nodeId: number;
  readonly role: ReplicaRole;
}

export interface RangeDescriptor {
  readonly rangeId: number;
  /** Inclusive. The first range starts at the empty key. */
  readonly start: Uint8Array;
  /** Exclusive; undefined is the end of the key space. */
  readonly end: Uint8Array | undefined;
  readonly epoch: RangeEpoch;
  readonly replicas: readonly ReplicaDescriptor[];
}

/** A range's replicas are a Raft group's members: far fewer than this; the cap keeps a hostile descriptor small. */
export const MAX_RANGE_REPLICAS = 64;
/** The epoch a range map starts from (TiKV starts its first region at 1/1). */
export const INITIAL_RANGE_EPOCH: RangeEpoch = { version: 1, confVersion: 1 };

/** Whether `key` lies in [start, end) of `range`. */
export function rangeContainsKey(range: RangeDescriptor, key: Uint8Array): boolean {
  return compareBytes(range.start, key) <= 0 && (range.end === undefined || compareBytes(key, range.end) < 0);
}

/** End bound comparison where undefined is +infinity. */
function compareEnds(a: Uint8Array | undefined, b: Uint8Array | undefined): number {
  if (a === undefined) return b === undefined ? 0 : 1;
  if (b === undefined) return -1;
  return compareBytes(a, b);
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_ARGUMENT', message);
}

function hex(key: Uint8Array | undefined): string {
  if (key === undefined) return '<end>';
  if (key.length === 0) return '<empty>';
  // Messages stay short: a key may be up to MAX_KEY_BYTES long.
  const shown = Array.from(key.subarray(0, 32), (b) => b.toString(16).padStart(2, '0')).join('');
  return key.length > 32 ? `${shown}…(${key.length} bytes)` : shown;
}

/**
 * Why `replicas` cannot be a range's replica set, or undefined if it can:
 * positive safe-integer node ids, each once, a known role, and at least one
 * voter (a range without a voter can never elect a leader).
 */
export function replicasProblem(replicas: readonly ReplicaDescriptor[]): string | undefined {
  if (!Array.isArray(replicas)) return 'replicas is not an array';
  if (replicas.length > MAX_RANGE_REPLICAS) return `more than ${MAX_RANGE_REPLICAS} replicas`;
  const seen = new Set<number>();
  let voters = 0;
  for (const r of replicas as readonly unknown[]) {
    const o = r as Partial<ReplicaDescriptor> | null;
    if (o === null || typeof o !== 'object') return 'a replica is not an object';
    if (!Number.isSafeInteger(o.nodeId) || (o.nodeId as number) <= 0) return `replica node id ${String(o.nodeId)} is not a positive integer`;
    if (o.role !== 'voter' && o.role !== 'learner') return `replica ${o.nodeId} has unknown role ${String(o.role)}`;
    if (seen.has(o.nodeId as number)) return `node ${o.nodeId} is listed twice`;
    seen.add(o.nodeId as number);
    if (o.role === 'voter') voters++;
  }
  return voters === 0 ? 'no voter among the replicas' : undefined;
}

/** Why `d` is not a well-formed descriptor on its own, or undefined. */
export function descriptorProblem(d: RangeDescriptor): string | undefined {
  if (d === null || typeof d !== 'object' || d.epoch === null || typeof d.epoch !== 'object') return 'descriptor or epoch is not an object';
  if (!Number.isSafeInteger(d.rangeId) || d.rangeId <= 0) return `range id ${d.rangeId} is not a positive integer`;
  if (!(d.start instanceof Uint8Array)) return `range ${d.rangeId}: start is not bytes`;
  if (d.end !== undefined && !(d.end instanceof Uint8Array)) return `range ${d.rangeId}: end is not bytes`;
  if (d.end !== undefined && compareBytes(d.start, d.end) >= 0) return `range ${d.rangeId} is empty: [${hex(d.start)}, ${hex(d.end)})`;
  const { version, confVersion } = d.epoch;
  if (!Number.isSafeInteger(version) || version < 0 || !Number.isSafeInteger(confVersion) || confVersion < 0) {
    return `range ${d.rangeId}: epoch ${version}/${confVersion} is not two non-negative integers`;
  }
  const problem = replicasProblem(d.replicas);
  return problem === undefined ? undefined : `range ${d.rangeId}: ${problem}`;
}

/**
 * Why `sorted` (ordered by start) does not partition the key space, or
 * undefined: each descriptor well formed, the first starting at the empty
 * key, each end equal to the next start, the last unbounded, ids unique.
 */
export function partitionProblem(sorted: readonly RangeDescriptor[]): string | undefined {
  if (sorted.length === 0) return 'no ranges';
  const ids = new Set<number>();
  for (let i = 0; i < sorted.length; i++) {
    const d = sorted[i]!;
    const problem = descriptorProblem(d);
    if (problem !== undefined) return problem;
    if (ids.has(d.rangeId)) return `range id ${d.rangeId} is used twice`;
    ids.add(d.rangeId);
    if (i === 0 && d.start.length !== 0) return `the first range ${d.rangeId} starts at ${hex(d.start)}, not the empty key`;
    const next = sorted[i + 1];
    if (next === undefined) {
      if (d.end !== undefined) return `the last range ${d.rangeId} ends at ${hex(d.end)}, not the end of the key space`;
    } else if (d.end === undefined || compareBytes(d.end, next.start) !== 0) {
      return `range ${d.rangeId} ends at ${hex(d.end)} but range ${next.rangeId} starts at ${hex(next.start)}`;
    }
  }
  return undefined;
}

/** A copy that shares nothing mutable with the caller's descriptor. */
function copyDescriptor(d: RangeDescriptor): RangeDescriptor {
  return Object.freeze({
    rangeId: d.rangeId,
    start: d.start.slice(),
    end: d.end?.slice(),
    epoch: Object.freeze({ version: d.epoch.version, confVersion: d.epoch.confVersion }),
    replicas: Object.freeze(d.replicas.map((r) => Object.freeze({ nodeId: r.nodeId, role: r.role }))),
  });
}

function sameReplicaSet(a: readonly ReplicaDescriptor[], b: readonly ReplicaDescriptor[]): boolean {
  if (a.length !== b.length) return false;
  const roles = new Map(a.map((r) => [r.nodeId, r.role]));
  return b.every((r) => roles.get(r.nodeId) === r.role);
}

export interface SplitResult {
  readonly map: RangeMap;
  readonly left: RangeDescriptor;
  readonly right: RangeDescriptor;
}

export interface MergeResult {
  readonly map: RangeMap;
  readonly merged: RangeDescriptor;
}

export interface ReplicaChangeResult {
  readonly map: RangeMap;
  readonly updated: RangeDescriptor;
}

/**
 * An immutable map of range descriptors sorted by start key. Every change
 * returns a new map (copying the array: O(ranges) per change, which is fine
 * while changes are splits and merges, rare next to lookups). Descriptors
 * are frozen copies; their key bytes must not be mutated by callers.
 */
export class RangeMap {
  private readonly byId: ReadonlyMap<number, number>;

  private constructor(private readonly sorted: readonly RangeDescriptor[]) {
    this.byId = new Map(sorted.map((d, i) => [d.rangeId, i]));
  }

  /** A map of one range covering the whole key space. */
  static initial(rangeId: number, replicas: readonly ReplicaDescriptor[]): RangeMap {
    return RangeMap.fromDescriptors([{ rangeId, start: new Uint8Array(0), end: undefined, epoch: INITIAL_RANGE_EPOCH, replicas }]);
  }

  /** A map of `descriptors` in any order; INVALID_ARGUMENT unless they partition the key space. */
  static fromDescriptors(descriptors: readonly RangeDescriptor[]): RangeMap {
    for (const d of descriptors) {
      const problem = descriptorProblem(d);
      if (problem !== undefined) throw invalid(problem);
    }
    const sorted = descriptors.map(copyDescriptor).sort((a, b) => compareBytes(a.start, b.start));
    const problem = partitionProblem(sorted);
    if (problem !== undefined) throw invalid(`descriptors do not partition the key space: ${problem}`);
    return new RangeMap(sorted);
  }

  get size(): number {
    return this.sorted.length;
  }

  /** The descriptors in key order. */
  descriptors(): readonly RangeDescriptor[] {
    return this.sorted;
  }

  get(rangeId: number): RangeDescriptor | undefined {
    const i = this.byId.get(rangeId);
    return i === undefined ? undefined : this.sorted[i];
  }

  /** The range holding `key`: the last range whose start is ≤ key (binary search, unsigned byte order). */
  lookup(key: Uint8Array): RangeDescriptor {
    return this.sorted[this.indexOf(key)]!;
  }

  /** The ranges overlapping [start, end) in key order; `end` undefined reaches the end of the key space. An empty span overlaps none. */
  overlapping(start: Uint8Array, end: Uint8Array | undefined): RangeDescriptor[] {
    if (end !== undefined && compareBytes(start, end) >= 0) return [];
    const out: RangeDescriptor[] = [];
    for (let i = this.indexOf(start); i < this.sorted.length; i++) {
      const d = this.sorted[i]!;
      if (end !== undefined && compareBytes(d.start, end) >= 0) break;
      out.push(d);
    }
    return out;
  }

  /**
   * Splits range `rangeId` at `splitKey`: the left part keeps the id and ends
   * at the key, the right part is range `newRangeId` from the key on, with
   * the same replicas. Both take the parent's epoch with version + 1, as
   * TiKV's split gives both regions the bumped epoch: a request routed with
   * the parent's epoch is stale for either half.
   */
  split(rangeId: number, splitKey: Uint8Array, newRangeId: number): SplitResult {
    const i = this.indexOfId(rangeId);
    const parent = this.sorted[i]!;
    if (!Number.isSafeInteger(newRangeId) || newRangeId <= 0) throw invalid(`new range id ${newRangeId} is not a positive integer`);
    if (this.byId.has(newRangeId)) throw invalid(`range id ${newRangeId} is already in use`);
    if (!(splitKey instanceof Uint8Array)) throw invalid('split key is not bytes');
    if (compareBytes(splitKey, parent.start) <= 0 || compareEnds(splitKey, parent.end) >= 0) {
      throw invalid(`split key ${hex(splitKey)} is not strictly inside range ${rangeId} [${hex(parent.start)}, ${hex(parent.end)})`);
    }
    const key = splitKey.slice();
    const epoch = { version: parent.epoch.version + 1, confVersion: parent.epoch.confVersion };
    const left = copyDescriptor({ ...parent, end: key, epoch });
    const right = copyDescriptor({ ...parent, rangeId: newRangeId, start: key, epoch });
    const sorted = [...this.sorted.slice(0, i), left, right, ...this.sorted.slice(i + 1)];
    return { map: new RangeMap(sorted), left, right };
  }

  /**
   * Merges range `rightId` into its left neighbour `leftId`, which keeps its
   * id (the left range is the merge target, as in ADR 0009's plan). The
   * version is max(left, right) + 1 so that a request routed with either
   * side's epoch is stale; confVersion is the larger of the two so neither
   * counter ever falls. Both ranges must have the same replicas, as TiKV and
   * CockroachDB require: the merged range's log lives on those replicas.
   */
  merge(leftId: number, rightId: number): MergeResult {
    const i = this.indexOfId(leftId);
    const j = this.indexOfId(rightId);
    const left = this.sorted[i]!;
    const right = this.sorted[j]!;
    if (j !== i + 1) throw invalid(`range ${rightId} does not directly follow range ${leftId}`);
    if (!sameReplicaSet(left.replicas, right.replicas)) throw invalid(`ranges ${leftId} and ${rightId} have different replicas`);
    const merged = copyDescriptor({
      ...left,
      end: right.end,
      epoch: {
        version: Math.max(left.epoch.version, right.epoch.version) + 1,
        confVersion: Math.max(left.epoch.confVersion, right.epoch.confVersion),
      },
    });
    const sorted = [...this.sorted.slice(0, i), merged, ...this.sorted.slice(j + 1)];
    return { map: new RangeMap(sorted), merged };
  }

  /** Gives range `rangeId` a new replica set, with confVersion + 1. */
  replaceReplicas(rangeId: number, replicas: readonly ReplicaDescriptor[]): ReplicaChangeResult {
    const i = this.indexOfId(rangeId);
    const current = this.sorted[i]!;
    const problem = replicasProblem(replicas);
    if (problem !== undefined) throw invalid(`range ${rangeId}: ${problem}`);
    const updated = copyDescriptor({
      ...current,
      replicas,
      epoch: { version: current.epoch.version, confVersion: current.epoch.confVersion + 1 },
    });
    const sorted = this.sorted.map((d, k) => (k === i ? updated : d));
    return { map: new RangeMap(sorted), updated };
  }

  /** Throws an AssertionError unless the descriptors partition the key space (a bug, never bad input: input is refused before it gets here). */
  checkInvariants(): void {
    const problem = partitionProblem(this.sorted);
    if (problem !== undefined) throw new AssertionError(`range map invariant broken: ${problem}`);
    if (this.byId.size !== this.sorted.length) throw new AssertionError('range map id index is out of step');
  }

  private indexOf(key: Uint8Array): number {
    // Invariant: sorted[0].start is the empty key, so some start is ≤ any key.
    let lo = 0;
    let hi = this.sorted.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (compareBytes(this.sorted[mid]!.start, key) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private indexOfId(rangeId: number): number {
    const i = this.byId.get(rangeId);
    if (i === undefined) throw invalid(`no range with id ${rangeId}`);
    return i;
  }
}

// ---------------------------------------------------------------------------
// Routing checks

/** Whether `held` is older than `current` in either counter: the holder must refresh its descriptor. */
export function isStaleEpoch(held: RangeEpoch, current: RangeEpoch): boolean {
  return held.version < current.version || held.confVersion < current.confVersion;
}

export type RangeMismatchReason = 'epoch' | 'key-outside';

/**
 * A replica's refusal of a request routed with another epoch or to a key
 * outside its bounds. It carries the replica's current descriptor so the
 * routing node can refresh its cache (only if the descriptor is newer than
 * what it holds: see isStaleEpoch; a lagging replica may answer with an
 * older one) and retry internally.
 */
export class RangeMismatchError extends TesseraError {
  readonly current: RangeDescriptor;
  readonly reason: RangeMismatchReason;

  constructor(reason: RangeMismatchReason, current: RangeDescriptor, message: string) {
    super('RANGE_MISMATCH', message);
    this.reason = reason;
    this.current = current;
  }
}

/**
 * Refuses with a RangeMismatchError a request for [start, end) (`end`
 * undefined: the single key `start`) routed with epoch `routed` to a replica
 * whose descriptor is `current`. The versions must be equal, not merely
 * ordered: a newer routed version means this replica has not applied the
 * split or merge yet, and its bounds cannot be trusted (TiKV does the same).
 * confVersion is compared only for membership commands (`checkConfVersion`):
 * data requests do not depend on who the replicas are.
 */
export function checkRangeRequest(current: RangeDescriptor, routed: RangeEpoch, start: Uint8Array, end: Uint8Array | undefined, checkConfVersion = false): void {
  const ce = current.epoch;
  if (routed.version !== ce.version || (checkConfVersion && routed.confVersion !== ce.confVersion)) {
    throw new RangeMismatchError(
      'epoch',
      current,
      `range ${current.rangeId} is at epoch ${ce.version}/${ce.confVersion}, the request was routed with ${routed.version}/${routed.confVersion}`,
    );
  }
  const inside = end === undefined ? rangeContainsKey(current, start) : compareBytes(current.start, start) <= 0 && compareEnds(end, current.end) <= 0;
  if (!inside) {
    throw new RangeMismatchError(
      'key-outside',
      current,
      `[${hex(start)}, ${hex(end)}) is outside range ${current.rangeId} [${hex(current.start)}, ${hex(current.end)})`,
    );
  }
}

// ---------------------------------------------------------------------------
// Encoding

/** Bumped when the encoded form changes incompatibly; a decoder refuses other versions. */
export const DESCRIPTOR_FORMAT = 1;

// Maps, not records: a descriptor must decode without state shared with its encoder.
const packr = new Packr({ useRecords: false, moreTypes: false });

const ROLE_CODE = { voter: 0, learner: 1 } as const satisfies Record<ReplicaRole, number>;
const ROLE_OF: readonly ReplicaRole[] = ['voter', 'learner'];

/** The descriptor as msgpack: short keys, `e` null for the end of the key space (msgpack has no undefined). */
export function encodeDescriptor(d: RangeDescriptor): Uint8Array {
  const problem = descriptorProblem(d);
  if (problem !== undefined) throw invalid(problem);
  const bytes: Uint8Array = packr.pack({
    f: DESCRIPTOR_FORMAT,
    id: d.rangeId,
    s: d.start,
    e: d.end ?? null,
    v: d.epoch.version,
    c: d.epoch.confVersion,
    r: d.replicas.map((r) => [r.nodeId, ROLE_CODE[r.role]]),
  });
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function corrupt(what: string, cause?: unknown): TesseraError {
  return new TesseraError('CORRUPT_DATA', `malformed range descriptor: ${what}`, cause === undefined ? undefined : { cause });
}

function decodeKey(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length > MAX_KEY_BYTES) throw corrupt(`${what} is not a key of at most ${MAX_KEY_BYTES} bytes`);
  return v.slice(); // a plain, unshared copy (msgpackr yields Buffer views of the input)
}

function decodeReplicas(v: unknown): ReplicaDescriptor[] {
  if (!Array.isArray(v) || v.length > MAX_RANGE_REPLICAS) throw corrupt('replicas');
  return v.map((r: unknown) => {
    if (!Array.isArray(r) || r.length !== 2 || typeof r[1] !== 'number') throw corrupt('a replica');
    const role = ROLE_OF[r[1]];
    if (role === undefined) throw corrupt(`replica role ${String(r[1])}`);
    return { nodeId: r[0] as number, role };
  });
}

/** Decodes and validates a descriptor from storage or a peer; anything malformed is CORRUPT_DATA, never a crash. */
export function decodeDescriptor(bytes: Uint8Array): RangeDescriptor {
  let v: unknown;
  try {
    v = packr.unpack(bytes);
  } catch (error) {
    throw corrupt('undecodable', error);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw corrupt('not a map');
  const o = v as Record<string, unknown>;
  if (o['f'] !== DESCRIPTOR_FORMAT) throw corrupt(`format ${String(o['f'])}, expected ${DESCRIPTOR_FORMAT}`);
  const d: RangeDescriptor = {
    rangeId: o['id'] as number,
    start: decodeKey(o['s'], 'start'),
    end: o['e'] === null ? undefined : decodeKey(o['e'], 'end'),
    epoch: { version: o['v'] as number, confVersion: o['c'] as number },
    replicas: decodeReplicas(o['r']),
  };
  // Numbers are checked here: descriptorProblem refuses ids and epochs that are not safe integers in range.
  const problem = descriptorProblem(d);
  if (problem !== undefined) throw corrupt(problem);
  return copyDescriptor(d);
}
