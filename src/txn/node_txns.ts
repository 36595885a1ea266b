import { TesseraError, type TimerHandle, type Timers, latin1String } from '../base/index.js';
import type { CommandResult, CrossRangeTxns, IntentSettler, KeyAtRevision, KvCommand, TsoAnswer } from '../kv/index.js';
import type { Intent, PrepareRequest, TxnRecord, TxnRequest, TxnResponse } from '../mvcc/index.js';
import { TxnCoordinator, type TxnRanges } from './coordinator.js';
import { atRevision, crossRangeTxnProblem, etcdTxnPlan } from './etcd_txn.js';
import type { TxnSabotage } from './sabotage.js';

/** The node's API as transactions across ranges use it (KvApi). */
export interface NodeTxnApi {
  localRangeOf(key: Uint8Array): number;
  txnStep(key: Uint8Array, make: (requestId: string) => KvCommand): Promise<CommandResult>;
  keyAt(key: Uint8Array, revision: number, ignoreIntents: boolean): Promise<KeyAtRevision>;
  txnRecord(primary: Uint8Array, txnId: string): Promise<TxnRecord | undefined>;
  intentsLedHere(limit: number): Intent[];
}

/** How often a node looks for intents in the ranges it leads that nobody met: one seen in two looks in a row is settled. */
export const TXN_SWEEP_INTERVAL_MS = 5_000;
/** Intents a sweep takes at most; the next one takes more. */
export const TXN_SWEEP_BATCH = 64;

export interface NodeTransactionsOptions {
  readonly api: NodeTxnApi;
  /** The node's revision oracle (KvNode.revisions.allocate). */
  readonly allocate: (count: number, done: (answer: TsoAnswer) => void) => void;
  readonly timers: Timers;
  /** Unique across the node's restarts, so transaction ids never repeat. */
  readonly idPrefix: string;
  readonly sabotage?: TxnSabotage | undefined;
  /** TXN_SWEEP_INTERVAL_MS, TXN_HEARTBEAT_MS and TXN_EXPIRY_MS unless given (tests shorten them). */
  readonly sweepIntervalMs?: number;
  readonly heartbeatMs?: number;
  readonly expiryMs?: number;
}

const intentId = (intent: Intent): string => `${intent.txnId}/${latin1String(intent.key)}`;

/**
 * Transactions across ranges on a node (ADR 0017): etcd Txns whose keys
 * lie in several ranges run through the coordinator, and intents that the
 * node's reads and single-range writes meet are settled from their records.
 * Wired into KvApi as its CrossRangeTxns and IntentSettler.
 */
export class NodeTransactions implements CrossRangeTxns, IntentSettler {
  private readonly coordinator: TxnCoordinator;
  private sweepTimer: TimerHandle | undefined;
  private closed = false;
  /** The intents the last sweep found (transaction id and key). */
  private lastSeen = new Set<string>();

  constructor(private readonly o: NodeTransactionsOptions) {
    this.coordinator = new TxnCoordinator(this.ranges(), {
      idPrefix: o.idPrefix,
      sabotage: o.sabotage,
      ...(o.heartbeatMs === undefined ? {} : { heartbeatMs: o.heartbeatMs }),
      ...(o.expiryMs === undefined ? {} : { expiryMs: o.expiryMs }),
    });
  }

  /** Starts the node's sweep of intents nobody meets (TXN_SWEEP_INTERVAL_MS); `close` stops it. */
  startSweeping(): void {
    if (this.closed || this.sweepTimer !== undefined) return;
    this.sweepTimer = this.o.timers.after(this.o.sweepIntervalMs ?? TXN_SWEEP_INTERVAL_MS, () => {
      this.sweepTimer = undefined;
      void this.sweep().finally(() => this.startSweeping());
    });
  }

  close(): void {
    this.closed = true;
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }

  /**
   * One look: intents seen by the last look too are settled as any reader
   * meeting them would (waited for while their transaction lives, aborted
   * once its heartbeat stood still for the expiry, resolved from the record).
   */
  async sweep(): Promise<void> {
    const intents = this.o.api.intentsLedHere(TXN_SWEEP_BATCH);
    const seen = new Set(intents.map(intentId));
    const stale = intents.filter((i) => this.lastSeen.has(intentId(i)));
    this.lastSeen = seen;
    await Promise.allSettled(stale.map((i) => this.coordinator.settle(i)));
  }

  async run(request: TxnRequest): Promise<TxnResponse> {
    const problem = crossRangeTxnProblem(request);
    if (problem !== undefined) throw new TesseraError('CROSS_RANGE', problem);
    const outcome = await this.coordinator.run(etcdTxnPlan(request));
    return atRevision(outcome.result, outcome.revision);
  }

  async settle(intents: readonly Intent[]): Promise<void> {
    const seen = new Set<string>();
    for (const intent of intents) {
      const id = intentId(intent);
      if (seen.has(id)) continue;
      seen.add(id);
      await this.coordinator.settle(intent);
    }
  }

  /** The coordinator's view of the node's ranges: each step a command through the range's log. */
  private ranges(): TxnRanges {
    const { api, timers } = this.o;
    const expect = <K extends CommandResult['kind']>(result: CommandResult, kind: K): Extract<CommandResult, { kind: K }> => {
      if (result.kind === kind) return result as Extract<CommandResult, { kind: K }>;
      if (result.kind === 'duplicate') throw new TesseraError('TIMEOUT', 'a transaction step applied twice; the first outcome is unknown');
      throw new TesseraError('RANGE_UNAVAILABLE', `a transaction step answered ${result.kind}${result.kind === 'error' ? `: ${result.code}: ${result.message}` : ''}`);
    };
    const stepKey = (p: PrepareRequest): Uint8Array => p.writes[0]?.key ?? p.reads[0]!;
    return {
      revision: () => new Promise((resolve, reject) => this.o.allocate(1, (a) => (a.ok ? resolve(a.first) : reject(a.error)))),
      read: (key, revision, ignoreIntents) => api.keyAt(key, revision, ignoreIntents),
      group: (keys) => {
        const groups = new Map<number, Uint8Array[]>();
        for (const k of keys) {
          const id = api.localRangeOf(k);
          groups.set(id, [...(groups.get(id) ?? []), k]);
        }
        return [...groups.values()];
      },
      prepare: async (prepare) => expect(await api.txnStep(stepKey(prepare), (requestId) => ({ kind: 'txn-prepare', requestId, prepare })), 'txn-prepared').outcome,
      commit: async (primary, txnId, commitRevision) => expect(await api.txnStep(primary, (requestId) => ({ kind: 'txn-commit', requestId, primary, txnId, commitRevision })), 'txn-committed').outcome,
      abort: async (primary, txnId, ifHeartbeat) => {
        const r = expect(await api.txnStep(primary, (requestId) => ({ kind: 'txn-abort', requestId, primary, txnId, ifHeartbeat: ifHeartbeat ?? -1 })), 'txn-record');
        if (r.record === undefined) throw new TesseraError('RANGE_UNAVAILABLE', 'an abort left no record');
        return r.record;
      },
      heartbeat: async (primary, txnId) => expect(await api.txnStep(primary, (requestId) => ({ kind: 'txn-heartbeat', requestId, primary, txnId })), 'txn-record').record,
      record: (primary, txnId) => api.txnRecord(primary, txnId),
      resolve: async (keys, txnId, commitRevision) => {
        expect(await api.txnStep(keys[0]!, (requestId) => ({ kind: 'txn-resolve', requestId, txnId, keys, commitRevision: commitRevision ?? 0 })), 'txn-resolved');
      },
      forget: async (primary, txnId) => {
        expect(await api.txnStep(primary, (requestId) => ({ kind: 'txn-forget', requestId, primary, txnId })), 'txn-record');
      },
      sleep: (ms) => new Promise<void>((resolve) => timers.after(ms, resolve)),
      nowMs: () => timers.nowMs(),
    };
  }
}
