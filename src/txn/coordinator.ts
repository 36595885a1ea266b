import { TesseraError, assert, isTesseraError, latin1String } from '../base/index.js';
import { type CommitOutcome, type Intent, type PrepareOutcome, type PrepareRequest, type PreparedWrite, type TxnRecord, compareBytes, type KeyValue } from '../mvcc/index.js';
import type { TxnSabotage } from './sabotage.js';

/**
 * The coordinator of a transaction across ranges (ADR 0017 §2, §5, §6): it
 * reads at S, prepares the primary's range and then the others, asks for C,
 * commits the primary's record and resolves the intents. It runs on the node
 * that took the request and reaches ranges through TxnRanges, so the same
 * code runs over the simulator's ranges and a node's.
 */

/** How often a running transaction's coordinator bumps its record's heartbeat. */
export const TXN_HEARTBEAT_MS = 1_000;
/** How long a pusher watches a PENDING record's heartbeat stand still before it aborts the transaction. */
export const TXN_EXPIRY_MS = 5_000;
/** How often a transaction or a read waiting on an older transaction asks its record again. */
export const TXN_WAIT_POLL_MS = 20;
/** Attempts (each at a fresh read revision, with the first one's priority) before a transaction gives up with TXN_ABORTED. */
export const TXN_MAX_ATTEMPTS = 100;

/** What a read at a revision found: the key's version (undefined: no key), or an intent in the way (ADR 0017 §4). */
export type ReadAnswer = { readonly kind: 'value'; readonly kv: KeyValue | undefined } | { readonly kind: 'intent'; readonly intent: Intent };

/**
 * The ranges as the coordinator sees them: each call is one command or read
 * in the range that holds the keys named, applied atomically there. A call
 * that rejects may or may not have been applied.
 */
export interface TxnRanges {
  /** A fresh revision from the cluster-wide oracle. */
  revision(): Promise<number>;
  /** `key` at `revision`; with `ignoreIntents` (a deliberate bug only) the intents are passed over. */
  read(key: Uint8Array, revision: number, ignoreIntents: boolean): Promise<ReadAnswer>;
  /** `keys` grouped by the range that holds each now; every key in exactly one group. */
  group(keys: readonly Uint8Array[]): Uint8Array[][];
  prepare(request: PrepareRequest): Promise<PrepareOutcome>;
  commit(primary: Uint8Array, txnId: string, commitRevision: number): Promise<CommitOutcome>;
  abort(primary: Uint8Array, txnId: string, ifHeartbeat?: number): Promise<TxnRecord>;
  heartbeat(primary: Uint8Array, txnId: string): Promise<TxnRecord | undefined>;
  record(primary: Uint8Array, txnId: string): Promise<TxnRecord | undefined>;
  /** Resolves the intents of `txnId` on `keys` (all in one range): at `commitRevision`, or dropped. */
  resolve(keys: readonly Uint8Array[], txnId: string, commitRevision: number | undefined): Promise<void>;
  forget(primary: Uint8Array, txnId: string): Promise<void>;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
}

export interface TxnWrite {
  readonly key: Uint8Array;
  /** null: delete the key. */
  readonly value: Uint8Array | null;
  readonly lease?: number;
}

/**
 * A whole transaction, known when it starts (an etcd Txn is not
 * interactive): the keys it reads, and what it writes and answers given
 * their values at the read revision.
 */
export interface TxnPlan<R> {
  readonly reads: readonly Uint8Array[];
  decide(kvOf: (key: Uint8Array) => KeyValue | undefined): { readonly writes: readonly TxnWrite[]; readonly result: R };
}

export interface TxnOutcome<R> {
  readonly result: R;
  /** The commit revision C, or the read revision S of a transaction that wrote nothing. */
  readonly revision: number;
  readonly attempts: number;
}

export interface TxnCoordinatorOptions {
  /** Makes this coordinator's transaction ids unique in the cluster (a node id and an incarnation). */
  readonly idPrefix: string;
  readonly heartbeatMs?: number;
  readonly expiryMs?: number;
  readonly maxAttempts?: number;
  /** Deliberate bugs, for the simulator only (sabotage.ts). */
  readonly sabotage?: TxnSabotage | undefined;
}

/** One attempt's state shared with its heartbeat loop. */
interface Attempt {
  readonly txnId: string;
  readonly startRevision: number;
  readonly priority: number;
  readonly primary: Uint8Array;
  done: boolean;
  /** A younger transaction's pusher aborted our record: stop and run again. */
  wounded: boolean;
}

type AttemptEnd = { readonly kind: 'committed'; readonly commitRevision: number } | { readonly kind: 'retry' };

const key = (k: Uint8Array): string => latin1String(k);

export class TxnCoordinator {
  private seq = 0;
  /** Resolutions still running after their transactions answered (tests wait for them). */
  private readonly background = new Set<Promise<void>>();

  constructor(
    private readonly ranges: TxnRanges,
    private readonly options: TxnCoordinatorOptions,
  ) {}

  /** Runs `plan` to its commit (or to its read revision, if it writes nothing). Throws TXN_ABORTED (no effect) or TXN_OUTCOME_UNKNOWN. */
  async run<R>(plan: TxnPlan<R>): Promise<TxnOutcome<R>> {
    const name = `${this.options.idPrefix}.${++this.seq}`;
    let priority: number | undefined;
    const maxAttempts = this.options.maxAttempts ?? TXN_MAX_ATTEMPTS;
    let last: TesseraError | undefined;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      try {
        const startRevision = await this.definite(() => this.ranges.revision());
        priority ??= startRevision;
        const values = await this.definite(() => this.readAll(plan.reads, startRevision));
        const { writes, result } = plan.decide((k) => values.get(key(k)));
        // A transaction that writes nothing is serialized at S: every read was made there.
        if (writes.length === 0) return { result, revision: startRevision, attempts: attempt };
        const end = await this.attempt({ txnId: `${name}.${attempt}`, startRevision, priority, reads: plan.reads, writes });
        if (end.kind === 'committed') return { result, revision: end.commitRevision, attempts: attempt };
      } catch (error) {
        // An attempt that certainly took no effect (a lost message before it wrote, or its record ABORTED) runs again.
        if (!isTesseraError(error, 'TXN_ABORTED')) throw error;
        last = error;
      }
    }
    throw new TesseraError('TXN_ABORTED', `transaction ${name} gave up after ${maxAttempts} attempts${last === undefined ? '' : `; last: ${last.message}`}`, { cause: last });
  }

  /**
   * Settles an intent found by a sweep, as a reader or writer meeting it
   * does: waits while its transaction is alive, aborts it once expired, and
   * resolves the intent from the record (ADR 0017 §5).
   */
  async settle(intent: Intent): Promise<void> {
    const record = await this.waitForEnd(intent, undefined);
    if (record !== undefined) await this.resolveFrom(intent, record);
  }

  /** Settles once every resolution started so far has ended. */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Runs a step that changes nothing: if it fails, the transaction took no effect. */
  private async definite<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      throw new TesseraError('TXN_ABORTED', `transaction failed before it wrote: ${(error as Error).message}`, { cause: error });
    }
  }

  private async readAll(keys: readonly Uint8Array[], revision: number): Promise<Map<string, KeyValue | undefined>> {
    const values = await Promise.all(keys.map((k) => this.readKey(k, revision)));
    return new Map(keys.map((k, i) => [key(k), values[i]]));
  }

  /** Reads `k` at `revision`, settling every intent in the way from its record first (ADR 0017 §4). */
  private async readKey(k: Uint8Array, revision: number): Promise<KeyValue | undefined> {
    const ignoreIntents = this.options.sabotage?.has('txn-reader-ignores-intents') ?? false;
    for (;;) {
      const answer = await this.ranges.read(k, revision, ignoreIntents);
      if (answer.kind === 'value') return answer.kv;
      const record = await this.waitForEnd(answer.intent, undefined);
      if (record !== undefined) await this.resolveFrom(answer.intent, record);
    }
  }

  /** One attempt at S: prepare, commit, resolve. Failures before the commit point end in TXN_ABORTED once our record is ABORTED. */
  private async attempt(t: { txnId: string; startRevision: number; priority: number; reads: readonly Uint8Array[]; writes: readonly TxnWrite[] }): Promise<AttemptEnd> {
    const writes = [...t.writes].sort((a, b) => compareBytes(a.key, b.key));
    for (let i = 1; i < writes.length; i++) assert(compareBytes(writes[i - 1]!.key, writes[i]!.key) !== 0, 'a transaction plan writes a key twice');
    const written = new Set(writes.map((w) => key(w.key)));
    const skipReads = this.options.sabotage?.has('txn-skips-read-validation') ?? false;
    const reads = skipReads ? [] : [...new Map(t.reads.filter((k) => !written.has(key(k))).map((k) => [key(k), k])).values()];
    const a: Attempt = { txnId: t.txnId, startRevision: t.startRevision, priority: t.priority, primary: writes[0]!.key, done: false, wounded: false };
    const prepared = new Map(writes.map((w, sub): [string, PreparedWrite] => [key(w.key), { key: w.key, sub, write: w.value === null ? { kind: 'delete' } : { kind: 'put', value: w.value, lease: w.lease ?? 0 } }]));
    const groups = this.ranges.group([...writes.map((w) => w.key), ...reads]);
    const primaryGroup = groups.find((g) => g.some((k) => key(k) === key(a.primary)));
    assert(primaryGroup !== undefined, 'the primary key in no group');
    const requestOf = (g: Uint8Array[]): PrepareRequest => ({
      txnId: a.txnId,
      startRevision: a.startRevision,
      priority: a.priority,
      primary: a.primary,
      writes: g.filter((k) => prepared.has(key(k))).map((k) => prepared.get(key(k))!),
      reads: g.filter((k) => !prepared.has(key(k))),
      holdsRecord: g === primaryGroup,
    });
    try {
      return await this.prepareAndCommit(a, groups, primaryGroup, requestOf);
    } finally {
      a.done = true;
    }
  }

  private async prepareAndCommit(a: Attempt, groups: Uint8Array[][], primaryGroup: Uint8Array[], requestOf: (g: Uint8Array[]) => PrepareRequest): Promise<AttemptEnd> {
    const others = groups.filter((g) => g !== primaryGroup);
    let outcome: CommitOutcome;
    try {
      // The primary first: it writes the record, so whoever meets a secondary intent finds it (ADR 0017 §5).
      if (!(await this.prepareGroup(a, requestOf(primaryGroup)))) return await this.abandon(a, groups);
      void this.heartbeats(a);
      const ok = await Promise.all(others.map((g) => this.prepareGroup(a, requestOf(g))));
      if (ok.includes(false)) return await this.abandon(a, groups);
      const commitRevision = await this.ranges.revision();
      if (this.options.sabotage?.has('txn-commits-secondaries-first')) await Promise.all(others.map((g) => this.ranges.resolve(g, a.txnId, commitRevision)));
      outcome = await this.ranges.commit(a.primary, a.txnId, commitRevision);
    } catch (error) {
      return this.settleAfterFailure(a, groups, error);
    }
    if (outcome.kind === 'aborted') return this.abandon(a, groups);
    this.resolveAll(a, groups, outcome.commitRevision);
    return outcome;
  }

  /** Prepares one range, waiting for or wounding the holders in the way (ADR 0017 §6). False: the attempt must end (stale, wounded, or the record ended). */
  private async prepareGroup(a: Attempt, request: PrepareRequest): Promise<boolean> {
    for (;;) {
      if (a.wounded) return false;
      const out = await this.ranges.prepare(request);
      if (out.kind === 'prepared') return true;
      if (out.kind !== 'conflict') return false;
      for (const holder of out.holders) {
        const older = holder.priority < a.priority || (holder.priority === a.priority && holder.txnId < a.txnId);
        const record = older ? await this.waitForEnd(holder, a) : await this.ranges.abort(holder.primary, holder.txnId);
        if (record === undefined) return false;
        await this.resolveFrom(holder, record);
      }
    }
  }

  /**
   * Waits while `holder`'s transaction is PENDING and alive; aborts it once
   * its heartbeat stood still for the expiry (ADR 0017 §5). Returns its
   * record once ended, or undefined if `waiter` was wounded meanwhile.
   */
  private async waitForEnd(holder: Intent, waiter: Attempt | undefined): Promise<TxnRecord | undefined> {
    const expiryMs = this.options.expiryMs ?? TXN_EXPIRY_MS;
    let seen: { heartbeat: number; sinceMs: number } | undefined;
    for (;;) {
      const record = await this.ranges.record(holder.primary, holder.txnId);
      // No record while its intent stands: it was never written (ABORTED is written so a late prepare fails) or is gone.
      if (record === undefined) return this.ranges.abort(holder.primary, holder.txnId);
      if (record.status !== 'pending') return record;
      if (seen === undefined || seen.heartbeat !== record.heartbeat) seen = { heartbeat: record.heartbeat, sinceMs: this.ranges.nowMs() };
      else if (this.ranges.nowMs() - seen.sinceMs >= expiryMs) {
        const after = await this.ranges.abort(holder.primary, holder.txnId, record.heartbeat);
        if (after.status !== 'pending') return after;
      }
      if (waiter?.wounded === true) return undefined;
      await this.ranges.sleep(TXN_WAIT_POLL_MS);
    }
  }

  /** Settles `holder`'s intent as its ended record says. */
  private async resolveFrom(holder: Intent, record: TxnRecord): Promise<void> {
    assert(record.status !== 'pending', 'resolving from a pending record');
    await this.ranges.resolve([holder.key], holder.txnId, record.status === 'committed' ? record.commitRevision : undefined);
  }

  private async heartbeats(a: Attempt): Promise<void> {
    const everyMs = this.options.heartbeatMs ?? TXN_HEARTBEAT_MS;
    try {
      for (;;) {
        await this.ranges.sleep(everyMs);
        if (a.done) return;
        const record = await this.ranges.heartbeat(a.primary, a.txnId);
        if (record !== undefined && record.status === 'aborted') a.wounded = true;
      }
    } catch {
      // A lost heartbeat is one a pusher does not see: it may abort us, which the commit then learns.
    }
  }

  /** Aborts our record and drops our intents; 'retry' once the record is ABORTED (nothing of the attempt can take effect). */
  private async abandon(a: Attempt, groups: Uint8Array[][]): Promise<AttemptEnd> {
    try {
      const record = await this.ranges.abort(a.primary, a.txnId);
      if (record.status === 'committed') {
        // Cannot happen before our commit: a pusher never commits. Kept as a check.
        assert(false, () => `transaction ${a.txnId} found committed before its coordinator committed it`);
      }
      await Promise.all(groups.map((g) => this.ranges.resolve(g, a.txnId, undefined)));
      return { kind: 'retry' };
    } catch (error) {
      return this.settleAfterFailure(a, groups, error);
    }
  }

  /** After a failed step: the record tells whether the attempt committed; if nobody can tell, the outcome is unknown. */
  private async settleAfterFailure(a: Attempt, groups: Uint8Array[][], cause: unknown): Promise<AttemptEnd> {
    let record: TxnRecord;
    try {
      record = await this.ranges.abort(a.primary, a.txnId);
    } catch (error) {
      throw new TesseraError('TXN_OUTCOME_UNKNOWN', `transaction ${a.txnId}: ${(cause as Error).message}; its record could not be read: ${(error as Error).message}`, { cause });
    }
    if (record.status === 'committed') {
      this.resolveAll(a, groups, record.commitRevision);
      return { kind: 'committed', commitRevision: record.commitRevision };
    }
    // ABORTED: nothing of it can take effect; its intents are dropped by whoever meets them, or now.
    this.track(Promise.all(groups.map((g) => this.ranges.resolve(g, a.txnId, undefined))).then(() => undefined));
    throw new TesseraError('TXN_ABORTED', `transaction ${a.txnId} aborted after a failed step: ${(cause as Error).message}`, { cause });
  }

  /** After the commit point: every range resolves at C, then the record goes; the client has its answer already. */
  private resolveAll(a: Attempt, groups: Uint8Array[][], commitRevision: number): void {
    const fresh = this.options.sabotage?.has('txn-resolves-at-fresh-revisions') ?? false;
    const work = (async () => {
      await Promise.all(groups.map(async (g) => this.ranges.resolve(g, a.txnId, fresh && !g.some((k) => key(k) === key(a.primary)) ? await this.ranges.revision() : commitRevision)));
      await this.ranges.forget(a.primary, a.txnId);
    })();
    this.track(work);
  }

  private track(work: Promise<void>): void {
    const settled = work.catch(() => {
      // A resolution that fails is finished by whoever meets the intents, from the record.
    });
    this.background.add(settled);
    void settled.then(() => this.background.delete(settled));
  }
}
