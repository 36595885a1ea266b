import { assert } from '../base/index.js';
import { type KeyInterval, compareBytes, keyInterval } from './bytes.js';
import { type StoredRecord, isTombstoneRecord } from './codec.js';
import { mvccError } from './errors.js';
import type { VersionHead, WalkOptions } from './versions.js';

/** A key-value pair as etcd's mvccpb.KeyValue shows it. `lease` 0 means no lease. */
export interface KeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly lease: number;
}

/** Sort orders and targets, listed in the order of their protobuf enum numbers. */
export const SORT_ORDERS = ['NONE', 'ASCEND', 'DESCEND'] as const;
export const SORT_TARGETS = ['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE'] as const;
export type SortOrder = (typeof SORT_ORDERS)[number];
export type SortTarget = (typeof SORT_TARGETS)[number];

/** etcd's RangeRequest. Numbers that are 0 or absent mean "not set", as in protobuf. */
export interface RangeOptions {
  readonly key: Uint8Array;
  /** Absent or empty: just `key`; "\0": every key ≥ key; else [key, rangeEnd). Prefixes (key + 1) are the caller's job. */
  readonly rangeEnd?: Uint8Array | undefined;
  /** Read at this revision; ≤ 0 or absent: the current one. */
  readonly revision?: number | undefined;
  /** At most this many kvs; ≤ 0 or absent: no limit. */
  readonly limit?: number | undefined;
  readonly sortOrder?: SortOrder | undefined;
  readonly sortTarget?: SortTarget | undefined;
  readonly keysOnly?: boolean | undefined;
  readonly countOnly?: boolean | undefined;
  readonly minModRevision?: number | undefined;
  readonly maxModRevision?: number | undefined;
  readonly minCreateRevision?: number | undefined;
  readonly maxCreateRevision?: number | undefined;
  /**
   * etcd's serializable: may be answered from this node's state without a
   * read barrier. The server decides on it; the store reads alike either way.
   */
  readonly serializable?: boolean | undefined;
}

export interface RangeResult {
  readonly kvs: KeyValue[];
  /** More kvs matched than `limit` allowed. */
  readonly more: boolean;
  /** Keys in the range at the revision read, before limit and the revision filters (as etcd counts). */
  readonly count: number;
  /** Header revision: the store's revision when the read was served. */
  readonly revision: number;
}

/** What a read needs from the store or from a write transaction (MvccState). */
export interface ReadSource {
  readonly compactedRevision: number;
  forEachKeyAt(interval: KeyInterval, atMain: number, visit: (head: VersionHead) => boolean | void, options?: WalkOptions): void;
  recordOf(head: VersionHead): StoredRecord;
}

/** Checks a read revision against the store; returns the revision to read at. */
export function resolveReadRevision(requested: number | undefined, current: number, compacted: number): number {
  const rev = requested ?? 0;
  assert(Number.isSafeInteger(rev), () => `read revision must be a safe integer, got ${rev}`);
  if (rev > current) throw mvccError('FUTURE_REVISION');
  const at = rev <= 0 ? current : rev;
  if (at < compacted) throw mvccError('COMPACTED');
  return at;
}

export function validateRangeOptions(options: RangeOptions): void {
  if (options.key.length === 0) throw mvccError('EMPTY_KEY');
  if (options.sortOrder !== undefined && !SORT_ORDERS.includes(options.sortOrder)) throw mvccError('INVALID_SORT_OPTION');
  if (options.sortTarget !== undefined && !SORT_TARGETS.includes(options.sortTarget)) throw mvccError('INVALID_SORT_OPTION');
  for (const n of [options.limit, options.minModRevision, options.maxModRevision, options.minCreateRevision, options.maxCreateRevision]) {
    assert(n === undefined || Number.isSafeInteger(n), () => `range option must be a safe integer, got ${n}`);
  }
}

/** etcd's range, given the revision the reader sees as current. */
export function executeRange(source: ReadSource, options: RangeOptions, current: number): RangeResult {
  validateRangeOptions(options);
  const at = resolveReadRevision(options.revision, current, source.compactedRevision);
  const { found, count } = collectKeys(source, options, at, fetchLimit(options));
  if (options.countOnly === true) return { kvs: [], more: false, count, revision: current };
  // Like etcd's FastKeysOnly, keys-only reads that need no values show lease 0 (they came from the
  // in-memory index alone when there was one; the answer stays the same without it).
  const fastKeysOnly = options.keysOnly === true && options.sortTarget !== 'VALUE';
  let kvs = found.map((record) => (fastKeysOnly ? { ...recordKeyValue(record), lease: 0 } : recordKeyValue(record)));
  kvs = filterByRevision(kvs, options);
  sortKeyValues(kvs, options);
  const limit = options.limit ?? 0;
  const more = limit > 0 && kvs.length > limit;
  if (more) kvs = kvs.slice(0, limit);
  if (options.keysOnly === true) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array(0) }));
  return { kvs, more, count, revision: current };
}

/**
 * Like etcd, fetch limit + 1 keys to learn `more`, and everything when the
 * result must be sorted or filtered first. One deliberate difference: etcd
 * tests the raw sort order here, so a non-KEY target with order NONE (which
 * it then sorts ascending) sorts only the first limit + 1 keys by key. We
 * sort the whole range, which is what etcd means by that request.
 */
function fetchLimit(options: RangeOptions): number {
  const limit = options.limit ?? 0;
  if (limit <= 0 || needsSort(options) || hasRevisionFilters(options)) return 0;
  return limit + 1;
}

/** etcd's sort order after "a target without an order sorts ascending". */
function effectiveSortOrder(options: RangeOptions): SortOrder {
  const order = options.sortOrder ?? 'NONE';
  return (options.sortTarget ?? 'KEY') !== 'KEY' && order === 'NONE' ? 'ASCEND' : order;
}

/** False when key order, which the engine walk yields, is the answer. */
function needsSort(options: RangeOptions): boolean {
  const order = effectiveSortOrder(options);
  return !(order === 'NONE' || ((options.sortTarget ?? 'KEY') === 'KEY' && order === 'ASCEND'));
}

function hasRevisionFilters(options: RangeOptions): boolean {
  return [options.minModRevision, options.maxModRevision, options.minCreateRevision, options.maxCreateRevision].some((n) => (n ?? 0) !== 0);
}

/**
 * The live keys of the range at `at`, from the engine (versions.ts): every
 * key is counted, as etcd counts, but only the first `limit` (0: all) are
 * decoded. The rest need only their tombstone flag, so a second walk, from
 * after the last key found, reads only the records' heads: the engine copies
 * no values for them.
 */
function collectKeys(source: ReadSource, options: RangeOptions, at: number, limit: number): { found: StoredRecord[]; count: number } {
  const found: StoredRecord[] = [];
  const interval = keyInterval(options.key, options.rangeEnd);
  let count = 0;
  let afterKey: Uint8Array | undefined;
  if (options.countOnly !== true) {
    let full = false;
    source.forEachKeyAt(interval, at, (head) => {
      const record = source.recordOf(head);
      if (record.tombstone) return true;
      count++;
      found.push(record);
      full = limit !== 0 && found.length >= limit;
      return !full;
    });
    if (!full) return { found, count };
    afterKey = found[found.length - 1]!.key;
  }
  source.forEachKeyAt(
    interval,
    at,
    (head) => {
      if (!isTombstoneRecord(head.raw, head.rawBytes)) count++;
    },
    { headsOnly: true, afterKey },
  );
  return { found, count };
}

export function recordKeyValue(record: StoredRecord): KeyValue {
  assert(!record.tombstone, 'a tombstone read as a live key');
  return {
    key: record.key,
    value: record.value,
    createRevision: record.createRevision,
    modRevision: record.modRevision,
    version: record.version,
    lease: record.lease,
  };
}

function filterByRevision(kvs: KeyValue[], options: RangeOptions): KeyValue[] {
  const maxMod = options.maxModRevision ?? 0;
  const minMod = options.minModRevision ?? 0;
  const maxCreate = options.maxCreateRevision ?? 0;
  const minCreate = options.minCreateRevision ?? 0;
  return kvs.filter(
    (kv) =>
      (maxMod === 0 || kv.modRevision <= maxMod) &&
      (minMod === 0 || kv.modRevision >= minMod) &&
      (maxCreate === 0 || kv.createRevision <= maxCreate) &&
      (minCreate === 0 || kv.createRevision >= minCreate),
  );
}

/**
 * etcd's sortRangeResults. etcd's sort is not stable; ours is, and input is
 * in key order, so ties stay in ascending key order (the same on every
 * replica).
 */
function sortKeyValues(kvs: KeyValue[], options: RangeOptions): void {
  if (!needsSort(options)) return;
  const sign = effectiveSortOrder(options) === 'ASCEND' ? 1 : -1;
  const by = compareBy(options.sortTarget ?? 'KEY');
  kvs.sort((a, b) => sign * by(a, b));
}

function compareBy(target: SortTarget): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case 'KEY':
      return (a, b) => compareBytes(a.key, b.key);
    case 'VERSION':
      return (a, b) => a.version - b.version;
    case 'CREATE':
      return (a, b) => a.createRevision - b.createRevision;
    case 'MOD':
      return (a, b) => a.modRevision - b.modRevision;
    case 'VALUE':
      return (a, b) => compareBytes(a.value, b.value);
  }
}


/**
 * One answer from the answers of the ranges a read covers, each given the
 * same options clipped to its bounds, in key order of the ranges: etcd's
 * answer over their union. Each part is sorted and cut to `limit` already,
 * so the union's first `limit` are among them; the sort is stable and the
 * parts come in key order, so ties stay in key order as in one range.
 * `count` adds up (each part counts its keys before the limit), and the
 * header revision is the newest part's.
 */
export function mergeRangeResults(parts: readonly RangeResult[], options: RangeOptions): RangeResult {
  if (parts.length === 1) return parts[0] as RangeResult;
  let kvs: KeyValue[] = [];
  let count = 0;
  let revision = 0;
  let more = false;
  for (const p of parts) {
    kvs.push(...p.kvs);
    count += p.count;
    revision = Math.max(revision, p.revision);
    more ||= p.more;
  }
  sortKeyValues(kvs, options);
  const limit = options.limit ?? 0;
  if (limit > 0 && kvs.length > limit) {
    kvs = kvs.slice(0, limit);
    more = true;
  }
  return { kvs, more, count, revision };
}
