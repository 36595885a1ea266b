import { Packr } from 'msgpackr';
import { TesseraError, assert } from '../base/index.js';
import type { WriteBatch } from '../storage/engine.js';
import { type KeyInterval, bytesEqual, compareBytes } from './bytes.js';
import { crc32c } from './checksum.js';
import { INTENT_FAMILY, MAX_TXN_ID_BYTES, TXN_RECORD_FAMILY, type EngineSpan, type KeySpan, type StoredRecord, dataKeyMain, dataKeyRevision, escapedFamilyKey, familyKeyBounds, spanContains } from './codec.js';
import { recordKeyValue } from './range.js';
import { MAX_REVISION, MAX_SUB_REVISION } from './revision.js';
import type { MvccState } from './state.js';
import { type MvccEvent, tombstoneKeyValue } from './write-txn.js';

/**
 * Write intents and transaction records (ADR 0017 §3, §5): the storage half
 * of a transaction across ranges. Two families beside `d` and `e`, keyed by
 * user key the way `d` is, so they sort, split and merge with the keys
 * they belong to:
 *
 *   'i' esc(key) 0x00 0x00             → the intent of one transaction on `key`: the
 *                                        value it will write, a tombstone, or a read lock
 *   't' esc(primary) 0x00 0x00 txnId   → the record of the transaction whose primary key
 *                                        is `primary`: PENDING, COMMITTED at C, or ABORTED
 *
 * A key holds at most one intent. An intent is not a version: reads at a
 * revision meet it (conflictingIntents) and ask its record what it became;
 * resolving it at commit revision C writes the version at C, which may be
 * below the store's current revision (the other keys went on), and is never
 * below the key's newest version (the intent held every writer off).
 */
export const INTENT_TAG = INTENT_FAMILY;
export const TXN_RECORD_TAG = TXN_RECORD_FAMILY;

export { MAX_TXN_ID_BYTES };

/** What an intent does to its key at commit: write a value, delete it, or nothing (a read lock). */
export type IntentWrite =
  | { readonly kind: 'put'; readonly value: Uint8Array; readonly lease: number }
  | { readonly kind: 'delete' }
  | { readonly kind: 'lock' };

export interface Intent {
  readonly key: Uint8Array;
  readonly txnId: string;
  /** S: the revision the transaction read at; its commit revision is above it. */
  readonly startRevision: number;
  /** Wound-wait age (ADR 0017 §6): the S of the transaction's first attempt; smaller is older. */
  readonly priority: number;
  /** The key whose range holds the transaction's record. */
  readonly primary: Uint8Array;
  /** The sub-revision the write takes at commit: unique in the transaction, so ranges on one node never share an `e` key. */
  readonly sub: number;
  /**
   * The range's revision when the intent was laid. The commit revision C is
   * asked for after every prepare applied, so it is above both this and the
   * start revision: a read at or below intentFloor never needs the intent's
   * outcome, and the range's closed revision stays at or below it while the
   * intent is pending (closedRevision).
   */
  readonly laidAt: number;
  readonly write: IntentWrite;
}

export type TxnStatus = 'pending' | 'committed' | 'aborted';

/** The record of a transaction (ADR 0017 §5). Nothing leaves COMMITTED or ABORTED. */
export interface TxnRecord {
  readonly primary: Uint8Array;
  readonly txnId: string;
  readonly status: TxnStatus;
  readonly startRevision: number;
  readonly priority: number;
  /** Bumped by the coordinator's heartbeats; a pusher aborts only a record whose count it saw stand still. */
  readonly heartbeat: number;
  /** C, once committed; 0 otherwise. */
  readonly commitRevision: number;
}

const INTENT_FORMAT = 1;
const RECORD_FORMAT = 1;
const WRITE_KINDS = ['put', 'delete', 'lock'] as const;
const STATUSES: readonly TxnStatus[] = ['pending', 'committed', 'aborted'];
const packr = new Packr({ useRecords: false, moreTypes: false });

/** The engine keys of the intents and of the transaction records of the user keys in `span`: a snapshot carries them, a replica's removal deletes them. */
export function txnFamilyBounds(span: KeySpan): readonly EngineSpan[] {
  return [familyKeyBounds(INTENT_TAG, span), familyKeyBounds(TXN_RECORD_TAG, span)];
}

export function intentKey(userKey: Uint8Array): Uint8Array {
  return escapedFamilyKey(INTENT_TAG, userKey);
}

export function txnRecordKey(primary: Uint8Array, txnId: string): Uint8Array {
  return escapedFamilyKey(TXN_RECORD_TAG, primary, new TextEncoder().encode(txnId));
}

/** Why `txnId` cannot name a transaction, or undefined. */
export function txnIdProblem(txnId: unknown): string | undefined {
  if (typeof txnId !== 'string' || txnId.length === 0) return 'a transaction id is a non-empty string';
  if (new TextEncoder().encode(txnId).byteLength > MAX_TXN_ID_BYTES) return `a transaction id is at most ${MAX_TXN_ID_BYTES} bytes`;
  return undefined;
}

// Values: msgpack of a tuple, then a CRC-32C (LMDB pages carry none, as for records).
function seal(tuple: unknown[]): Uint8Array {
  const body = packr.pack(tuple);
  const out = new Uint8Array(body.byteLength + 4);
  out.set(body, 0);
  new DataView(out.buffer).setUint32(body.byteLength, crc32c(body));
  return out;
}

function unseal(stored: Uint8Array, what: string): unknown[] {
  const corrupt = (why: string): TesseraError => new TesseraError('CORRUPT_DATA', `${what}: ${why}; the data file is damaged`);
  if (stored.byteLength < 5) throw corrupt('too short');
  const end = stored.byteLength - 4;
  const body = stored.subarray(0, end);
  if (new DataView(stored.buffer, stored.byteOffset, stored.byteLength).getUint32(end) !== crc32c(body)) throw corrupt('checksum mismatch');
  let value: unknown;
  try {
    value = packr.unpack(body);
  } catch {
    throw corrupt('undecodable');
  }
  if (!Array.isArray(value)) throw corrupt('not a tuple');
  return value;
}

export function encodeIntent(intent: Intent): Uint8Array {
  const w = intent.write;
  return seal([INTENT_FORMAT, intent.key, intent.txnId, intent.startRevision, intent.priority, intent.primary, intent.sub, w.kind, w.kind === 'put' ? w.value : null, w.kind === 'put' ? w.lease : 0, intent.laidAt]);
}

export function decodeIntent(stored: Uint8Array): Intent {
  const t = unseal(stored, 'intent');
  const [format, key, txnId, startRevision, priority, primary, sub, kind, value, lease, laidAt] = t;
  const intent = { key, txnId, startRevision, priority, primary, sub, laidAt, write: kind === 'put' ? { kind, value, lease } : { kind } };
  const problem = format === INTENT_FORMAT && t.length === 11 ? intentProblem(intent) : `format ${String(format)}`;
  if (problem !== undefined) throw new TesseraError('CORRUPT_DATA', `intent: ${problem}; the data file is damaged`);
  return intent as Intent;
}

/** Why `v` is not an Intent, or undefined: every field checked, so one that came off the network is safe to apply. */
export function intentProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null) return 'not an intent';
  const i = v as Record<string, unknown>;
  if (!(i['key'] instanceof Uint8Array) || i['key'].byteLength === 0) return 'intent key';
  if (!(i['primary'] instanceof Uint8Array) || i['primary'].byteLength === 0) return 'intent primary key';
  const idProblem = txnIdProblem(i['txnId']);
  if (idProblem !== undefined) return idProblem;
  if (!revisionNumber(i['startRevision']) || !revisionNumber(i['priority']) || !revisionNumber(i['laidAt'])) return 'intent revisions';
  if (!Number.isSafeInteger(i['sub']) || (i['sub'] as number) < 0 || (i['sub'] as number) > MAX_SUB_REVISION) return 'intent sub-revision';
  const w = i['write'] as Record<string, unknown> | undefined;
  if (typeof w !== 'object' || w === null || !(WRITE_KINDS as readonly unknown[]).includes(w['kind'])) return 'intent write';
  if (w['kind'] === 'put' && (!(w['value'] instanceof Uint8Array) || !Number.isSafeInteger(w['lease']) || (w['lease'] as number) < 0)) return 'intent put';
  return undefined;
}

export function encodeTxnRecord(record: TxnRecord): Uint8Array {
  return seal([RECORD_FORMAT, record.primary, record.txnId, record.status, record.startRevision, record.priority, record.heartbeat, record.commitRevision]);
}

export function decodeTxnRecord(stored: Uint8Array): TxnRecord {
  const t = unseal(stored, 'transaction record');
  const [format, primary, txnId, status, startRevision, priority, heartbeat, commitRevision] = t;
  const record = { primary, txnId, status, startRevision, priority, heartbeat, commitRevision };
  const ok =
    format === RECORD_FORMAT && t.length === 8 && primary instanceof Uint8Array && txnIdProblem(txnId) === undefined && STATUSES.includes(status as TxnStatus) &&
    revisionNumber(startRevision) && revisionNumber(priority) && Number.isSafeInteger(heartbeat) && (heartbeat as number) >= 0 &&
    Number.isSafeInteger(commitRevision) && (status === 'committed' ? (commitRevision as number) > (startRevision as number) : commitRevision === 0);
  if (!ok) throw new TesseraError('CORRUPT_DATA', 'transaction record: malformed; the data file is damaged');
  return record as TxnRecord;
}

function revisionNumber(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= MAX_REVISION;
}

/** The revision at or below which a read never needs `intent`'s outcome: its commit revision will be above it. */
export function intentFloor(intent: Intent): number {
  return Math.max(intent.startRevision, intent.laidAt);
}

/**
 * The lowest floor of the store's write intents (read locks write nothing),
 * or MAX_REVISION when there are none: the store's closed revision stays at
 * or below it (MvccStore.closedRevision). Kept with the count.
 */
export function lowestWriteFloor(state: MvccState): number {
  if (intentCount(state) === 0) return MAX_REVISION;
  if (state.lowestIntentFloor === undefined) {
    let low = MAX_REVISION;
    for (const i of intentsIn(state, wholeSpan(state.span))) if (i.write.kind !== 'lock') low = Math.min(low, intentFloor(i));
    state.lowestIntentFloor = low;
  }
  return state.lowestIntentFloor;
}

/** The intent on `key`, if any (the store's pending writes included); none outside the store's span. */
export function readIntent(state: MvccState, key: Uint8Array): Intent | undefined {
  if (!spanContains(state.span, key)) return undefined;
  const raw = state.pending.get(intentKey(key));
  return raw === undefined ? undefined : checkedIntent(raw, key);
}

function checkedIntent(raw: Uint8Array, key: Uint8Array): Intent {
  const intent = decodeIntent(raw);
  if (!bytesEqual(intent.key, key)) throw new TesseraError('CORRUPT_DATA', 'intent: stored under another key; the data file is damaged');
  return intent;
}

/** The intents on keys of `interval` within the store's span, in key order, at most `limit` (0: all). */
export function intentsIn(state: MvccState, interval: KeyInterval, limit = 0): Intent[] {
  const out: Intent[] = [];
  const span = clip(state.span, interval);
  if (span === undefined) return out;
  for (const { value } of state.pending.scan(familyKeyBounds(INTENT_TAG, span))) {
    out.push(decodeIntent(value));
    if (limit > 0 && out.length >= limit) break;
  }
  return out;
}

/** The intents the store holds: counted once by a scan of its span (intents are few and short-lived), then kept by every change. */
export function intentCount(state: MvccState): number {
  if (state.intentCount === undefined) state.intentCount = intentsIn(state, wholeSpan(state.span)).length;
  return state.intentCount;
}

/** Lays `intent` on its key, replacing one of the same transaction; the caller made sure no other transaction's intent is there. */
export function layIntent(state: MvccState, batch: WriteBatch, intent: Intent): void {
  assert(!state.writing, 'layIntent during a write transaction');
  assert(spanContains(state.span, intent.key), 'an intent on a key outside the store span');
  assert(intentProblem(intent) === undefined, () => `a malformed intent: ${intentProblem(intent)}`);
  const old = readIntent(state, intent.key);
  assert(old === undefined || old.txnId === intent.txnId, 'an intent laid over another transaction\'s intent');
  if (old === undefined) state.intentCount = intentCount(state) + 1;
  state.lowestIntentFloor = undefined;
  state.pending.put(batch, intentKey(intent.key), encodeIntent(intent));
}

/**
 * Resolves the intent of `txnId` on `key` (ADR 0017 §2 step 4): with a
 * commit revision C, its write becomes the key's version at C (sub-revision
 * intent.sub), and the store's revision rises to C if below; without, it is
 * dropped. Returns the change for watchers, or undefined (an abort, a read
 * lock, a delete of an absent key, or no intent of that transaction there:
 * resolving twice is a no-op).
 */
export function resolveIntent(state: MvccState, batch: WriteBatch, key: Uint8Array, txnId: string, commitRevision: number | undefined): MvccEvent | undefined {
  assert(!state.writing, 'resolveIntent during a write transaction');
  const intent = readIntent(state, key);
  if (intent === undefined || intent.txnId !== txnId) return undefined;
  // Counted before the delete: a count taken after it (one not known yet) would already leave this intent out.
  const before = intentCount(state);
  state.pending.delete(batch, intentKey(key));
  state.intentCount = before - 1;
  state.lowestIntentFloor = undefined;
  assert(state.intentCount >= 0, 'negative intent count');
  const event = commitRevision === undefined || intent.write.kind === 'lock' ? undefined : writeAt(state, batch, intent, commitRevision);
  if (commitRevision !== undefined && commitRevision > state.currentRevision) state.currentRevision = commitRevision;
  state.persistMeta(batch);
  return event;
}

/** The version an intent's put or delete leaves at `main`; its preconditions are the protocol's (an intent holds writers off). */
function writeAt(state: MvccState, batch: WriteBatch, intent: Intent, main: number): MvccEvent | undefined {
  assert(main > intentFloor(intent), () => `an intent of start ${intent.startRevision}, laid at ${intent.laidAt}, committed at ${main}`);
  assert(main > state.compactedRevision, () => `an intent committed at ${main}, at or below the compacted revision ${state.compactedRevision}`);
  const head = state.newestAt(intent.key, MAX_REVISION);
  assert(head === undefined || dataKeyMain(head.dataKey, head.prefixBytes) < main, () => `an intent committed at ${main}, below its key's newest version`);
  const prev = head === undefined ? undefined : state.recordOf(head);
  const live = prev === undefined || prev.tombstone ? undefined : prev;
  const rev = { main, sub: intent.sub };
  const prevRev = live === undefined || head === undefined ? undefined : dataKeyRevision(head.dataKey, head.prefixBytes);
  const prevKv = live !== undefined && state.eventsWantPrevKv() ? recordKeyValue(live) : undefined;
  if (intent.write.kind === 'put') {
    const record: StoredRecord = {
      key: intent.key,
      value: intent.write.value,
      tombstone: false,
      createRevision: live?.createRevision ?? main,
      modRevision: main,
      version: (live?.version ?? 0) + 1,
      lease: intent.write.lease,
      prev: prevRev,
    };
    state.putRecord(batch, rev, record);
    state.countLive(live === undefined ? 1 : 0, record.key.byteLength + record.value.byteLength - (live === undefined ? 0 : live.key.byteLength + live.value.byteLength));
    return { type: 'PUT', kv: recordKeyValue(record), prevKv };
  }
  if (live === undefined) return undefined;
  state.putRecord(batch, rev, { key: intent.key, value: new Uint8Array(0), tombstone: true, createRevision: 0, modRevision: main, version: 0, lease: 0, prev: prevRev });
  state.countLive(-1, -(live.key.byteLength + live.value.byteLength));
  return { type: 'DELETE', kv: tombstoneKeyValue(intent.key, main), prevKv };
}

/** The record of transaction `txnId` whose primary key is `primary`, if this store holds one. */
export function readTxnRecord(state: MvccState, primary: Uint8Array, txnId: string): TxnRecord | undefined {
  if (!spanContains(state.span, primary)) return undefined;
  const raw = state.pending.get(txnRecordKey(primary, txnId));
  if (raw === undefined) return undefined;
  const record = decodeTxnRecord(raw);
  if (record.txnId !== txnId || !bytesEqual(record.primary, primary)) throw new TesseraError('CORRUPT_DATA', 'transaction record: stored under another key; the data file is damaged');
  return record;
}

/** Writes a transaction record; its primary key is in the store's span. */
export function writeTxnRecord(state: MvccState, batch: WriteBatch, record: TxnRecord): void {
  assert(spanContains(state.span, record.primary), 'a transaction record outside the store span');
  state.pending.put(batch, txnRecordKey(record.primary, record.txnId), encodeTxnRecord(record));
}

export function deleteTxnRecord(state: MvccState, batch: WriteBatch, primary: Uint8Array, txnId: string): void {
  state.pending.delete(batch, txnRecordKey(primary, txnId));
}

/** The records in the store's span, in primary key order (recovery sweeps, tests). */
export function txnRecordsIn(state: MvccState): TxnRecord[] {
  return [...state.pending.scan(familyKeyBounds(TXN_RECORD_TAG, state.span))].map(({ value }) => decodeTxnRecord(value));
}

/** `interval` cut to `span`, or undefined if they do not meet. */
function clip(span: KeySpan, interval: KeyInterval): KeySpan | undefined {
  const point = interval.end === undefined;
  if (point) return spanContains(span, interval.start) ? { start: interval.start, end: pointEnd(interval.start) } : undefined;
  const start = compareBytes(interval.start, span.start) > 0 ? interval.start : span.start;
  // An empty end is etcd's "to the end of the key space".
  const intervalEnd = interval.end!.byteLength === 0 ? undefined : interval.end;
  const end = intervalEnd === undefined ? span.end : span.end === undefined ? intervalEnd : compareBytes(intervalEnd, span.end) < 0 ? intervalEnd : span.end;
  if (end !== undefined && compareBytes(start, end) >= 0) return undefined;
  return { start, end };
}

/** The smallest key above `key`. */
function pointEnd(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.byteLength + 1);
  out.set(key, 0);
  return out;
}

/** Every key of `span`, as an interval (etcd's form: an empty end is the end of the key space). */
export function wholeSpan(span: KeySpan): KeyInterval {
  return { start: span.start, end: span.end ?? new Uint8Array(0) };
}
