import { assert } from '../base/index.js';
import type { WriteBatch } from '../storage/engine.js';
import { toKeyString } from './bytes.js';
import { type Intent, type IntentWrite, type TxnRecord, intentFloor, intentProblem, txnIdProblem } from './intents.js';
import { MAX_REVISION } from './revision.js';
import type { MvccStore } from './store.js';
import type { MvccEvent } from './write-txn.js';

/**
 * What a range does with the steps of a transaction across ranges (ADR 0017
 * §2, §5): each function is one command's apply, deterministic, so every
 * replica of the range makes the same writes and gives the same answer. The
 * coordinator (src/txn) sends them; the kv layer applies them through the
 * range's log.
 */

/** One write of a transaction in this range: its key, the sub-revision it takes at commit, and what it does. */
export interface PreparedWrite {
  readonly key: Uint8Array;
  readonly sub: number;
  readonly write: Exclude<IntentWrite, { kind: 'lock' }>;
}

export interface PrepareRequest {
  readonly txnId: string;
  readonly startRevision: number;
  readonly priority: number;
  readonly primary: Uint8Array;
  /** The transaction's writes in this range. */
  readonly writes: readonly PreparedWrite[];
  /** Keys the transaction read or compared in this range and does not write: each gets a read lock. */
  readonly reads: readonly Uint8Array[];
  /** The range holds the primary key: the record is written here, PENDING, with the intents (ADR 0017 §2 step 2). */
  readonly holdsRecord: boolean;
}

export type PrepareOutcome =
  /** Every key holds an intent or a lock of the transaction. */
  | { readonly kind: 'prepared' }
  /** Keys held by other transactions' intents: nothing was written. The coordinator waits, wounds or pushes (ADR 0017 §6). */
  | { readonly kind: 'conflict'; readonly holders: readonly Intent[] }
  /** A key changed after the transaction's read revision: nothing was written; the transaction must run again at a fresh one. */
  | { readonly kind: 'stale'; readonly key: Uint8Array; readonly modRevision: number }
  /** The record here is no longer PENDING (a pusher aborted it, or a late duplicate met the end): nothing was written. */
  | { readonly kind: 'ended'; readonly record: TxnRecord };

/** Most keys one prepare may name (writes and reads): an etcd Txn has at most 128 operations by default, each a key or a span. */
export const MAX_PREPARE_KEYS = 10_000;

/** Why a peer's prepare is malformed, or undefined. */
export function prepareProblem(p: PrepareRequest): string | undefined {
  const idProblem = txnIdProblem(p.txnId);
  if (idProblem !== undefined) return idProblem;
  if (!(p.startRevision >= 0 && p.startRevision < MAX_REVISION && Number.isSafeInteger(p.startRevision))) return 'start revision';
  if (!(p.primary instanceof Uint8Array) || p.primary.byteLength === 0) return 'primary key';
  if (!Array.isArray(p.writes) || !Array.isArray(p.reads) || p.writes.length + p.reads.length === 0) return 'no keys';
  if (p.writes.length + p.reads.length > MAX_PREPARE_KEYS) return `more than ${MAX_PREPARE_KEYS} keys`;
  const seen = new Set<string>();
  const subs = new Set<number>();
  for (const w of p.writes) {
    const problem = intentProblem({ ...w, txnId: p.txnId, startRevision: p.startRevision, priority: p.priority, primary: p.primary, laidAt: 0 });
    if (problem !== undefined || w.write.kind === ('lock' as string)) return problem ?? 'a write that is a lock';
    if (seen.has(toKeyString(w.key))) return 'a key written twice';
    if (subs.has(w.sub)) return 'a sub-revision used twice';
    seen.add(toKeyString(w.key));
    subs.add(w.sub);
  }
  for (const r of p.reads) {
    if (!(r instanceof Uint8Array) || r.byteLength === 0) return 'read key';
    if (seen.has(toKeyString(r))) return 'a read key that is also written or read twice';
    seen.add(toKeyString(r));
  }
  return undefined;
}

/**
 * Prepares the transaction in this range (ADR 0017 §2 step 2): refuses if a
 * key changed after the read revision (first committer wins) or is held by
 * another transaction; otherwise lays an intent on every written key and a
 * read lock on every read one, and in the primary's range the PENDING
 * record. All or nothing: a refusal writes nothing. Again with the same
 * keys it changes nothing (a retried command).
 */
export function prepare(store: MvccStore, batch: WriteBatch, p: PrepareRequest): PrepareOutcome {
  // Guard: the primary's range refuses once the record has ended (a pusher aborted it first).
  const record = p.holdsRecord ? store.txnRecord(p.primary, p.txnId) : undefined;
  if (record !== undefined && record.status !== 'pending') return { kind: 'ended', record };
  // Preconditions: no newer version (first committer wins), no other transaction's intent.
  const keys = [...p.writes.map((w) => w.key), ...p.reads];
  // Below the compacted revision a delete's tombstone may be gone: the check below could not see it.
  if (p.startRevision < store.compactedRevision) return { kind: 'stale', key: keys[0]!, modRevision: store.compactedRevision };
  for (const key of keys) {
    // Tombstones count: a delete after S is a change the transaction did not see.
    const newest = store.newestChangeRevision(key);
    if (newest > p.startRevision) return { kind: 'stale', key, modRevision: newest };
  }
  const holders: Intent[] = [];
  for (const key of keys) {
    const held = store.intent(key);
    if (held !== undefined && held.txnId !== p.txnId) holders.push(held);
  }
  if (holders.length > 0) return { kind: 'conflict', holders };
  // Transition: the record first (secondaries are prepared only once it exists), then the intents.
  if (p.holdsRecord && record === undefined) {
    store.writeTxnRecord(batch, { primary: p.primary, txnId: p.txnId, status: 'pending', startRevision: p.startRevision, priority: p.priority, heartbeat: 0, commitRevision: 0 });
  }
  // A retried prepare keeps the first one's floor: the closed revision may already have passed it.
  const laidAt = (key: Uint8Array): number => store.intent(key)?.laidAt ?? store.currentRevision;
  const base = { txnId: p.txnId, startRevision: p.startRevision, priority: p.priority, primary: p.primary };
  for (const w of p.writes) store.layIntent(batch, { ...base, key: w.key, sub: w.sub, write: w.write, laidAt: laidAt(w.key) });
  for (const key of p.reads) store.layIntent(batch, { ...base, key, sub: 0, write: { kind: 'lock' }, laidAt: laidAt(key) });
  return { kind: 'prepared' };
}

export type CommitOutcome = { readonly kind: 'committed'; readonly commitRevision: number } | { readonly kind: 'aborted' };

/**
 * The commit point (ADR 0017 §2 step 3): the PENDING record becomes
 * COMMITTED at `commitRevision`. An ABORTED record (a pusher won) stays so;
 * a COMMITTED one keeps its revision; a missing one (never prepared, or
 * ended and forgotten) is written ABORTED, so a late prepare is refused.
 */
export function commitRecord(store: MvccStore, batch: WriteBatch, c: { primary: Uint8Array; txnId: string; commitRevision: number }): CommitOutcome {
  const record = store.txnRecord(c.primary, c.txnId);
  if (record === undefined) {
    store.writeTxnRecord(batch, abortedRecord(c.primary, c.txnId));
    return { kind: 'aborted' };
  }
  if (record.status === 'aborted') return { kind: 'aborted' };
  if (record.status === 'committed') return { kind: 'committed', commitRevision: record.commitRevision };
  assert(c.commitRevision > record.startRevision, () => `a commit revision ${c.commitRevision} not above the start revision ${record.startRevision}`);
  store.writeTxnRecord(batch, { ...record, status: 'committed', commitRevision: c.commitRevision });
  return { kind: 'committed', commitRevision: c.commitRevision };
}

/**
 * A pusher's or the coordinator's abort (ADR 0017 §5): a PENDING record
 * becomes ABORTED, unless `ifHeartbeat` is given and the record's heartbeat
 * has moved past it (its coordinator is alive). A missing record is written
 * ABORTED. Returns the record as it is after the command.
 */
export function abortRecord(store: MvccStore, batch: WriteBatch, a: { primary: Uint8Array; txnId: string; ifHeartbeat?: number | undefined }): TxnRecord {
  const record = store.txnRecord(a.primary, a.txnId);
  if (record === undefined) {
    const aborted = abortedRecord(a.primary, a.txnId);
    store.writeTxnRecord(batch, aborted);
    return aborted;
  }
  if (record.status !== 'pending' || (a.ifHeartbeat !== undefined && a.ifHeartbeat !== record.heartbeat)) return record;
  const aborted: TxnRecord = { ...record, status: 'aborted' };
  store.writeTxnRecord(batch, aborted);
  return aborted;
}

/** The coordinator's heartbeat: a PENDING record's count rises by one. Returns the record after it, if any. */
export function heartbeatRecord(store: MvccStore, batch: WriteBatch, h: { primary: Uint8Array; txnId: string }): TxnRecord | undefined {
  const record = store.txnRecord(h.primary, h.txnId);
  if (record === undefined || record.status !== 'pending') return record;
  const next = { ...record, heartbeat: record.heartbeat + 1 };
  store.writeTxnRecord(batch, next);
  return next;
}

/**
 * Resolves the transaction's intents on `keys` (ADR 0017 §2 step 4):
 * committed at `commitRevision`, or dropped when it is undefined. Keys
 * without an intent of the transaction are skipped, so it may run twice.
 * Returns the changes in sub-revision order, for watchers.
 */
export function resolveIntents(store: MvccStore, batch: WriteBatch, r: { txnId: string; keys: readonly Uint8Array[]; commitRevision: number | undefined }): MvccEvent[] {
  const resolved: { sub: number; event: MvccEvent }[] = [];
  for (const key of r.keys) {
    const intent = store.intent(key);
    if (intent === undefined || intent.txnId !== r.txnId) continue;
    const event = store.resolveIntent(batch, key, r.txnId, r.commitRevision);
    if (event !== undefined) resolved.push({ sub: intent.sub, event });
  }
  return resolved.sort((a, b) => a.sub - b.sub).map((e) => e.event);
}

/**
 * Why resolving would break the store's history, or undefined: a commit
 * revision at or below an intent's floor or its key's newest version (the
 * protocol never asks for one; a peer's command might). Checked before
 * resolveIntents, so such a command is refused, never asserted on.
 */
export function resolveProblem(store: MvccStore, r: { txnId: string; keys: readonly Uint8Array[]; commitRevision: number | undefined }): string | undefined {
  if (r.commitRevision === undefined) return undefined;
  if (r.commitRevision <= store.compactedRevision) return 'a commit revision at or below the compacted revision';
  const subs = new Set<number>();
  for (const key of r.keys) {
    const intent = store.intent(key);
    if (intent === undefined || intent.txnId !== r.txnId || intent.write.kind === 'lock') continue;
    if (r.commitRevision <= intentFloor(intent)) return `a commit revision ${r.commitRevision} at or below the intent's floor ${intentFloor(intent)}`;
    if (r.commitRevision <= store.newestChangeRevision(key)) return `a commit revision ${r.commitRevision} at or below the key's newest version`;
    if (store.hasChange(r.commitRevision, intent.sub)) return `revision ${r.commitRevision}.${intent.sub} is taken by another change`;
    // Two intents of one transaction with one sub-revision (prepares the coordinator never sends) would share an `e` key.
    if (subs.has(intent.sub)) return `two intents at sub-revision ${intent.sub}`;
    subs.add(intent.sub);
  }
  return undefined;
}

/** Why committing would break the record's rules, or undefined (see resolveProblem). */
export function commitProblem(store: MvccStore, c: { primary: Uint8Array; txnId: string; commitRevision: number }): string | undefined {
  const record = store.txnRecord(c.primary, c.txnId);
  if (record === undefined || record.status !== 'pending') return undefined;
  return c.commitRevision > record.startRevision ? undefined : `a commit revision ${c.commitRevision} not above the start revision ${record.startRevision}`;
}

/** Deletes the record once every range resolved the transaction (ADR 0017 §2 step 4). */
export function forgetRecord(store: MvccStore, batch: WriteBatch, f: { primary: Uint8Array; txnId: string }): void {
  const record = store.txnRecord(f.primary, f.txnId);
  if (record === undefined) return;
  assert(record.status !== 'pending', 'a pending transaction record forgotten');
  store.deleteTxnRecord(batch, f.primary, f.txnId);
}

function abortedRecord(primary: Uint8Array, txnId: string): TxnRecord {
  return { primary, txnId, status: 'aborted', startRevision: 0, priority: 0, heartbeat: 0, commitRevision: 0 };
}
