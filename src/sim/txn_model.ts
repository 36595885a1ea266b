import { SeededRng, TesseraError, assert, isTesseraError, type Rng } from '../base/index.js';
import { type MicroOp, type Scalar, type Txn, type TxnCheckResult, checkTxnHistory } from '../check/index.js';
import {
  MvccStore,
  abortRecord,
  commitRecord,
  compareBytes,
  forgetRecord,
  heartbeatRecord,
  prepare,
  prepareProblem,
  resolveIntents,
  utf8,
    type KeySpan,
  type PrepareRequest,
} from '../mvcc/index.js';
import { MemoryEngine } from '../storage/memory.js';
import type { WriteBatch } from '../storage/engine.js';
import { type ReadAnswer, TxnCoordinator, type TxnPlan, type TxnRanges, type TxnWrite } from '../txn/index.js';
import { TxnSabotage, type TxnBugName } from '../txn/sabotage.js';

/**
 * The transaction protocol's model simulation (issue 14): the coordinator
 * (src/txn) and the ranges' steps (src/mvcc/participant.ts), as a node runs
 * them, over ranges that apply each command atomically, with messages that
 * are delayed, lost before or after they apply, and coordinators that crash
 * at any step. Clients run Elle's list-append transactions across the
 * ranges; the history goes through the Elle-style checker (src/check/txn),
 * and after a recovery sweep no intent and no PENDING record may remain.
 * Raft, splits and moves are the cluster simulator's part (src/sim/cluster.ts);
 * here every range is one atomic state machine.
 */

export interface TxnModelOptions {
  readonly seed: number;
  readonly clients?: number;
  readonly txnsPerClient?: number;
  readonly keys?: number;
  readonly ranges?: number;
  /** Chance that a transaction's coordinator crashes at a random step of it. */
  readonly crashChance?: number;
  /** Chance that a message is lost, before its command applies or after (its answer). */
  readonly lossChance?: number;
  /** Chance that a message is held for up to twice the expiry (a paused node). */
  readonly pauseChance?: number;
  readonly bugs?: readonly TxnBugName[];
  /**
   * list-append (default): Elle's workload, checked by src/check/txn. bank:
   * transfers between accounts and reads of every account; no read may see
   * a total other than the opening one, and no balance goes below zero.
   */
  readonly workload?: 'list-append' | 'bank';
}

/** What each account of the bank workload opens with. */
export const BANK_OPENING_BALANCE = 100;

export interface TxnModelResult {
  readonly history: readonly Txn[];
  readonly check: TxnCheckResult;
  /** What failed beyond the history: intents or PENDING records left after recovery, broken store invariants. */
  readonly problems: readonly string[];
  readonly committed: number;
  readonly aborted: number;
  readonly unknown: number;
  readonly modelMs: number;
}

const HEARTBEAT_MS = 100;
const EXPIRY_MS = 500;
/** Model time after which the run stops waiting (a hang is a failure, not a long run). */
const MODEL_LIMIT_MS = 3_600_000;

/** Events in model time: callbacks run in time order, each followed by every promise it settled. */
class ModelTime {
  nowMs = 0;
  private seq = 0;
  private readonly queue: { atMs: number; seq: number; run: () => void }[] = [];

  after(delayMs: number, run: () => void): void {
    const event = { atMs: this.nowMs + delayMs, seq: this.seq++, run };
    let i = this.queue.length;
    while (i > 0 && (this.queue[i - 1]!.atMs > event.atMs)) i--;
    this.queue.splice(i, 0, event);
  }

  /** Runs events until `done()` or none are left; false if model time ran past the limit. */
  async run(done: () => boolean): Promise<boolean> {
    while (!done() && this.queue.length > 0) {
      const event = this.queue.shift()!;
      this.nowMs = event.atMs;
      if (this.nowMs > MODEL_LIMIT_MS) return false;
      event.run();
      // Every continuation the event set off runs before the next event: the run is a function of the seed.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return true;
  }
}

/** The ranges: MvccStores over one engine, split at fixed keys, and the revision oracle. */
class ModelRanges {
  readonly engine = new MemoryEngine({ scheduleSync: () => {} });
  readonly stores: { readonly span: KeySpan; readonly store: MvccStore }[] = [];
  private tso = 1;

  constructor(splitKeys: readonly Uint8Array[]) {
    const bounds = [new Uint8Array(0), ...splitKeys];
    bounds.forEach((start, i) => {
      const span = { start, end: bounds[i + 1] };
      this.stores.push({ span, store: MvccStore.open(this.engine, { metaPrefix: utf8(`r${i + 1}/`), span }) });
    });
  }

  nextRevision(): number {
    return ++this.tso;
  }

  indexOf(key: Uint8Array): number {
    let i = this.stores.length - 1;
    while (i > 0 && compareBytes(key, this.stores[i]!.span.start) < 0) i--;
    return i;
  }

  storeOf(key: Uint8Array): MvccStore {
    return this.stores[this.indexOf(key)]!.store;
  }

  apply<T>(body: (batch: WriteBatch) => T): T {
    const batch = this.engine.newBatch();
    const out = body(batch);
    this.engine.commit(batch, () => {});
    return out;
  }

  read(key: Uint8Array, revision: number, ignoreIntents: boolean): ReadAnswer {
    const store = this.storeOf(key);
    // The range closes at the read revision first (ADR 0009 §4): no later write of its own lands at or below it.
    if (revision > store.currentRevision) this.apply((b) => store.advanceTo(b, revision));
    const conflict = ignoreIntents ? undefined : store.conflictingIntents({ start: key, end: undefined }, revision, 1)[0];
    if (conflict !== undefined) return { kind: 'intent', intent: conflict };
    return { kind: 'value', kv: store.range({ key, revision }).kvs[0] };
  }

  prepare(request: PrepareRequest): ReturnType<typeof prepare> {
    const problem = prepareProblem(request);
    if (problem !== undefined) throw new TesseraError('INVALID_ARGUMENT', `malformed prepare: ${problem}`);
    const keys = [...request.writes.map((w) => w.key), ...request.reads];
    const at = this.indexOf(keys[0]!);
    assert(keys.every((k) => this.indexOf(k) === at), 'a prepare across ranges');
    return this.apply((b) => prepare(this.stores[at]!.store, b, request));
  }
}

const unavailable = (): TesseraError => new TesseraError('TIMEOUT', 'model: message lost');

/** One client's view of the ranges: every call is a message that may be delayed or lost, and all stop when its coordinator crashes. */
class ClientRanges implements TxnRanges {
  crashed = false;
  calls = 0;
  /** Crash at this call (set per transaction by the driver). */
  crashAtCall = Infinity;
  onCrash: () => void = () => {};

  constructor(
    private readonly model: ModelRanges,
    private readonly time: ModelTime,
    private readonly rng: Rng,
    private readonly faults: { readonly lossChance: number; readonly pauseChance: number },
  ) {}

  private delay(): number {
    return this.rng.chance(this.faults.pauseChance) ? this.rng.intBetween(1, 2 * EXPIRY_MS) : this.rng.intBetween(1, 5);
  }

  private call<T>(op: () => T): Promise<T> {
    if (++this.calls >= this.crashAtCall && !this.crashed) {
      this.crashed = true;
      this.onCrash();
    }
    return new Promise<T>((resolve, reject) => {
      this.time.after(this.delay(), () => {
        // A message in flight when its sender crashed may still arrive; nobody hears the answer.
        if (this.crashed) {
          if (this.rng.chance(0.5)) this.tryApply(op);
          return;
        }
        if (this.rng.chance(this.faults.lossChance)) return reject(unavailable());
        let out: { ok: true; value: T } | { ok: false; error: unknown };
        try {
          out = { ok: true, value: op() };
        } catch (error) {
          out = { ok: false, error };
        }
        const lost = this.rng.chance(this.faults.lossChance);
        this.time.after(this.delay(), () => {
          if (this.crashed) return;
          if (lost) reject(unavailable());
          else if (out.ok) resolve(out.value);
          else reject(out.error);
        });
      });
    });
  }

  private tryApply(op: () => unknown): void {
    try {
      op();
    } catch {
      // Refused: nothing applied.
    }
  }

  revision(): Promise<number> {
    return this.call(() => this.model.nextRevision());
  }
  read(key: Uint8Array, revision: number, ignoreIntents: boolean): Promise<ReadAnswer> {
    return this.call(() => this.model.read(key, revision, ignoreIntents));
  }
  group(keys: readonly Uint8Array[]): Uint8Array[][] {
    const groups = new Map<number, Uint8Array[]>();
    for (const k of keys) {
      const i = this.model.indexOf(k);
      groups.set(i, [...(groups.get(i) ?? []), k]);
    }
    return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([, g]) => g);
  }
  prepare(request: PrepareRequest): ReturnType<TxnRanges['prepare']> {
    return this.call(() => this.model.prepare(request));
  }
  commit(primary: Uint8Array, txnId: string, commitRevision: number): ReturnType<TxnRanges['commit']> {
    return this.call(() => this.model.apply((b) => commitRecord(this.model.storeOf(primary), b, { primary, txnId, commitRevision })));
  }
  abort(primary: Uint8Array, txnId: string, ifHeartbeat?: number): ReturnType<TxnRanges['abort']> {
    return this.call(() => this.model.apply((b) => abortRecord(this.model.storeOf(primary), b, { primary, txnId, ifHeartbeat })));
  }
  heartbeat(primary: Uint8Array, txnId: string): ReturnType<TxnRanges['heartbeat']> {
    return this.call(() => this.model.apply((b) => heartbeatRecord(this.model.storeOf(primary), b, { primary, txnId })));
  }
  record(primary: Uint8Array, txnId: string): ReturnType<TxnRanges['record']> {
    return this.call(() => this.model.storeOf(primary).txnRecord(primary, txnId));
  }
  resolve(keys: readonly Uint8Array[], txnId: string, commitRevision: number | undefined): Promise<void> {
    return this.call(() => {
      this.model.apply((b) => resolveIntents(this.model.storeOf(keys[0]!), b, { txnId, keys, commitRevision }));
    });
  }
  forget(primary: Uint8Array, txnId: string): Promise<void> {
    return this.call(() => this.model.apply((b) => forgetRecord(this.model.storeOf(primary), b, { primary, txnId })));
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.time.after(ms, () => (this.crashed ? undefined : resolve())));
  }
  nowMs(): number {
    return this.time.nowMs;
  }
}

const keyBytes = (k: number): Uint8Array => utf8(`k${String(k).padStart(3, '0')}`);
const encodeList = (list: readonly number[]): Uint8Array => utf8(list.join(','));
const decodeList = (value: Uint8Array | undefined): number[] => (value === undefined || value.byteLength === 0 ? [] : new TextDecoder().decode(value).split(',').map(Number));

/** A list-append transaction as a plan: reads every key it touches, appends to the lists, answers the reads. */
function listAppendPlan(ops: readonly MicroOp[]): TxnPlan<MicroOp[]> {
  const keys = [...new Set(ops.map((op) => op.key as number))];
  return {
    reads: keys.map(keyBytes),
    decide(kvOf) {
      const lists = new Map(keys.map((k) => [k, decodeList(kvOf(keyBytes(k))?.value)]));
      const changed = new Set<number>();
      const done: MicroOp[] = ops.map((op) => {
        const list = lists.get(op.key as number)!;
        if (op.f === 'append') {
          lists.set(op.key as number, [...list, op.value as number]);
          changed.add(op.key as number);
          return op;
        }
        return { f: 'r', key: op.key, value: [...list] };
      });
      const writes: TxnWrite[] = [...changed].map((k) => ({ key: keyBytes(k), value: encodeList(lists.get(k)!) }));
      return { writes, result: done };
    },
  };
}

/** Runs the model once; deterministic in `seed`. */
export async function runTxnModel(o: TxnModelOptions): Promise<TxnModelResult> {
  const rng = new SeededRng(o.seed);
  const keys = o.keys ?? 6;
  const rangeCount = o.ranges ?? 3;
  const splitKeys = Array.from({ length: rangeCount - 1 }, (_, i) => keyBytes(Math.round(((i + 1) * keys) / rangeCount)));
  const model = new ModelRanges(splitKeys);
  const time = new ModelTime();
  const sabotage = o.bugs === undefined || o.bugs.length === 0 ? undefined : TxnSabotage.of(...o.bugs);
  const faults = { lossChance: o.lossChance ?? 0.02, pauseChance: o.pauseChance ?? 0.01 };
  const history: Txn[] = [];
  let position = 0;
  let nextElement = 1;
  let incarnation = 0;
  let finished = 0;
  const clients = o.clients ?? 5;
  const perClient = o.txnsPerClient ?? 20;
  const counts = { committed: 0, aborted: 0, unknown: 0 };
  const bank = o.workload === 'bank';
  const problems: string[] = [];
  if (bank) await openAccounts(model, time, rng, keys, problems);

  const newCoordinator = (clientRng: Rng): { ranges: ClientRanges; coordinator: TxnCoordinator; process: number } => {
    const ranges = new ClientRanges(model, time, clientRng, faults);
    const process = incarnation++;
    return { ranges, coordinator: new TxnCoordinator(ranges, { idPrefix: `p${process}`, heartbeatMs: HEARTBEAT_MS, expiryMs: EXPIRY_MS, sabotage }), process };
  };

  const client = async (clientRng: Rng): Promise<void> => {
    let c = newCoordinator(clientRng.fork());
    for (let n = 0; n < perClient; n++) {
      const ops: MicroOp[] = bank
        ? bankOps(clientRng, keys)
        : Array.from({ length: clientRng.intBetween(1, 4) }, () => {
            const key = clientRng.intBelow(keys);
            return clientRng.chance(0.5) ? { f: 'append', key, value: nextElement++ } : { f: 'r', key, value: undefined };
          });
      const id = history.length;
      const invokeAt = position++;
      history.push({ id, process: c.process, status: 'info', ops, invokeAt, completeAt: Infinity, index: id });
      if (clientRng.chance(o.crashChance ?? 0.05)) c.ranges.crashAtCall = c.ranges.calls + clientRng.intBetween(1, 25);
      const crashed = new Promise<'crashed'>((resolve) => (c.ranges.onCrash = () => resolve('crashed')));
      const outcome = await Promise.race([c.coordinator.run(bank ? bankPlan(ops) : listAppendPlan(ops)).then((r) => r.result, (error: unknown) => error), crashed]);
      if (outcome === 'crashed') {
        // The process is gone: its transaction stays :info; a new process takes the client's place.
        counts.unknown++;
        c = newCoordinator(clientRng.fork());
        continue;
      }
      const completeAt = position++;
      if (Array.isArray(outcome)) {
        counts.committed++;
        history[id] = { ...history[id]!, status: 'ok', ops: outcome, completeAt };
      } else if (isTesseraError(outcome, 'TXN_ABORTED')) {
        counts.aborted++;
        history[id] = { ...history[id]!, status: 'fail', completeAt };
      } else if (isTesseraError(outcome, 'TXN_OUTCOME_UNKNOWN')) {
        counts.unknown++;
      } else {
        throw outcome;
      }
    }
  };

  const runs = Array.from({ length: clients }, () => client(rng.fork()).finally(() => finished++));
  if (!(await time.run(() => finished === clients))) problems.push(`the workload did not finish in ${MODEL_LIMIT_MS} ms of model time`);
  if (finished === clients) await Promise.all(runs);
  await recover(model, time, rng, problems, history, { tick: () => position++, bank });
  if (bank) problems.push(...bankProblems(history, keys));
  // The bank's history is checked by its invariant; Elle's list-append inference does not apply to it.
  const check = checkTxnHistory(bank ? [] : history, { model: 'list-append' });
  return { history, check, problems, ...counts, modelMs: time.nowMs };
}

/**
 * After the workload: a fault-free client settles every intent left (the
 * crashed coordinators' ones expire and are aborted, or roll forward from a
 * COMMITTED record), then reads every key once in one transaction, recorded
 * in the history. No intent and no PENDING record may remain.
 */
async function recover(model: ModelRanges, time: ModelTime, rng: Rng, problems: string[], history: Txn[], o: { tick: () => number; bank: boolean }): Promise<void> {
  const tick = o.tick;
  const ranges = new ClientRanges(model, time, rng.fork(), { lossChance: 0, pauseChance: 0 });
  const coordinator = new TxnCoordinator(ranges, { idPrefix: 'recovery', heartbeatMs: HEARTBEAT_MS, expiryMs: EXPIRY_MS });
  let done = false;
  const sweep = (async () => {
    for (const { store } of model.stores) {
      for (const intent of store.intents()) await coordinator.settle(intent);
    }
    const keys = [...new Set(history.flatMap((t) => t.ops.map((op) => op.key as number)))].sort((a, b) => a - b);
    const ops: MicroOp[] = keys.map((key) => ({ f: 'r', key, value: undefined }));
    const invokeAt = tick();
    const final = await coordinator.run(o.bank ? bankPlan(ops) : listAppendPlan(ops));
    history.push({ id: history.length, process: -1, status: 'ok', ops: final.result, invokeAt, completeAt: tick(), index: history.length });
    await coordinator.idle();
  })().finally(() => (done = true));
  if (!(await time.run(() => done))) problems.push('recovery did not finish');
  await sweep;
  for (const [i, { store }] of model.stores.entries()) {
    if (store.intentCount > 0) problems.push(`range ${i + 1}: ${store.intentCount} intents left after recovery`);
    const pending = store.txnRecords().filter((r) => r.status === 'pending');
    if (pending.length > 0) problems.push(`range ${i + 1}: ${pending.length} PENDING records left after recovery`);
    store.checkInvariants();
  }
}

/** A bank transaction: a transfer of 1-5 between two accounts (reads both, writes both if the first can pay), or a read of every account. */
function bankOps(rng: Rng, accounts: number): MicroOp[] {
  if (rng.chance(0.3)) return Array.from({ length: accounts }, (_, key) => ({ f: 'r', key, value: undefined }));
  const from = rng.intBelow(accounts);
  const to = (from + rng.intBetween(1, accounts - 1)) % accounts;
  const amount = rng.intBetween(1, 5);
  return [
    { f: 'r', key: from, value: undefined },
    { f: 'r', key: to, value: undefined },
    { f: 'w', key: from, value: -amount },
    { f: 'w', key: to, value: amount },
  ];
}

const decodeBalance = (value: Uint8Array | undefined): number => (value === undefined ? 0 : Number(new TextDecoder().decode(value)));

/** The plan of bankOps' transactions: reads answered with balances; a transfer's writes are the new balances (none if the payer is short). */
function bankPlan(ops: readonly MicroOp[]): TxnPlan<MicroOp[]> {
  return {
    reads: ops.filter((op) => op.f === 'r').map((op) => keyBytes(op.key as number)),
    decide(kvOf) {
      const balance = (key: number): number => decodeBalance(kvOf(keyBytes(key))?.value);
      const done: MicroOp[] = ops.map((op) => (op.f === 'r' ? { f: 'r', key: op.key, value: balance(op.key as number) } : op));
      const transfers = ops.filter((op) => op.f === 'w');
      if (transfers.length === 0) return { writes: [], result: done };
      const [from, to] = transfers as [MicroOp & { f: 'w' }, MicroOp & { f: 'w' }];
      const amount = -(from.value as number);
      if (balance(from.key as number) < amount) return { writes: [], result: done.filter((op) => op.f === 'r') };
      const writes: TxnWrite[] = [
        { key: keyBytes(from.key as number), value: utf8(String(balance(from.key as number) - amount)) },
        { key: keyBytes(to.key as number), value: utf8(String(balance(to.key as number) + amount)) },
      ];
      return { writes, result: done };
    },
  };
}

/** Opens every account with BANK_OPENING_BALANCE in one transaction, before the clients start. */
async function openAccounts(model: ModelRanges, time: ModelTime, rng: Rng, accounts: number, problems: string[]): Promise<void> {
  const ranges = new ClientRanges(model, time, rng.fork(), { lossChance: 0, pauseChance: 0 });
  const coordinator = new TxnCoordinator(ranges, { idPrefix: 'open' });
  let done = false;
  const writes: TxnWrite[] = Array.from({ length: accounts }, (_, k) => ({ key: keyBytes(k), value: utf8(String(BANK_OPENING_BALANCE)) }));
  const opening = coordinator.run({ reads: [], decide: () => ({ writes, result: null }) }).finally(() => (done = true));
  if (!(await time.run(() => done))) problems.push('the accounts did not open');
  await opening;
}

/** The bank's invariant over every read of all accounts that answered (the final read included): the opening total, no balance below zero. */
function bankProblems(history: readonly Txn[], accounts: number): string[] {
  const problems: string[] = [];
  for (const t of history) {
    if (t.status !== 'ok') continue;
    const reads = t.ops.filter((op) => op.f === 'r');
    for (const op of reads) if ((op.value as number) < 0) problems.push(`txn ${t.id} read account ${String(op.key)} below zero: ${String(op.value)}`);
    if (reads.length !== accounts || t.ops.some((op) => op.f !== 'r')) continue;
    const total = reads.reduce((sum, op) => sum + (op.value as number), 0);
    if (total !== accounts * BANK_OPENING_BALANCE) problems.push(`txn ${t.id} read a total of ${total}, not ${accounts * BANK_OPENING_BALANCE}: it saw part of a transfer`);
  }
  return problems;
}

/** Micro-op scalars used by this model: integers. */
export type ModelScalar = Scalar;
