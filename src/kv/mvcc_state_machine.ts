import { Packr } from 'msgpackr';
import { TesseraError, assert } from '../base/index.js';
import type { ConfChange, ConfState, Entry } from '../raft/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import {
  CHANGE_KEY_BOUNDS,
  type KeySpan,
  type MvccEvent,
  type MvccOpenOptions,
  MvccStore,
  type TxnResponse,
  WHOLE_KEY_SPAN,
  dataKeyBounds,
  isMvccRefusal,
  isStoreKeyInSpan,
  isWholeKeySpan,
  spanContains,
  validateTxnRequest,
  type KeyInterval,
  type TxnRequest,
  txnIntervals,
  type CommitOutcome,
  type Intent,
  type PrepareOutcome,
  type TxnRecord,
  abortRecord,
  commitProblem,
  commitRecord,
  forgetRecord,
  heartbeatRecord,
  prepare,
  resolveIntents,
  resolveProblem,
  txnFamilyBounds,
} from '../mvcc/index.js';
import type { StorageEngine, WriteBatch } from '../storage/engine.js';
import { type KvCommand, readCommand } from './commands.js';
import { LeaseTable } from './leases.js';
import { type MemberRecord, MemberTable, decodeMemberContext } from './members.js';
import { compareBytes, fromKeyString } from '../mvcc/bytes.js';
import { DedupeWindow, windowRecord } from './dedupe.js';
import { type RangeId, keys, readU64, writeU64 } from './keys.js';
import { openEntry } from './stamp.js';
import { MetaTable } from './meta_table.js';
import { type RangeDescriptor, type ReplicaDescriptor, decodeDescriptor, encodeDescriptor } from './range_map.js';
import { APPLY_HELD, type KeyBounds, type LogCompaction, type RangeStateMachine, type RecentLog } from './state_machine.js';
import { type SnapshotDataReader, type SnapshotPair, type SnapshotSpan, StateSnapshotReader } from './snapshot_stream.js';

export { DEDUPE_WINDOW_ENTRIES } from './dedupe.js';

/** What applying a command yields; `requestId` routes it to the proposer. */
export type CommandResult =
  | { readonly requestId: string; readonly kind: 'txn'; readonly response: TxnResponse; readonly events: readonly MvccEvent[] }
  | { readonly requestId: string; readonly kind: 'compact'; readonly revision: number }
  | { readonly requestId: string; readonly kind: 'lease-grant'; readonly id: number; readonly ttlSeconds: number; readonly revision: number }
  | { readonly requestId: string; readonly kind: 'lease-revoke'; readonly id: number; readonly revision: number; readonly events: readonly MvccEvent[] }
  | { readonly requestId: string; readonly kind: 'lease-checkpoint' }
  | { readonly requestId: string; readonly kind: 'member-update'; readonly member: MemberRecord }
  | { readonly requestId: string; readonly kind: 'member-attrs'; readonly member: MemberRecord }
  | { readonly requestId: string; readonly kind: 'member-decommission'; readonly member: MemberRecord }
  | { readonly requestId: string; readonly kind: 'conf-change'; readonly confState: ConfState }
  | { readonly requestId: string; readonly kind: 'range-id'; readonly id: number }
  | { readonly requestId: string; readonly kind: 'split'; readonly left: RangeDescriptor; readonly right: RangeDescriptor }
  /** A range frozen for a merge: the freeze entry's position, the version it froze, the left range (and its version) that may take it over, and the range's final revision. */
  | { readonly requestId: string; readonly kind: 'freeze'; readonly rangeId: number; readonly index: number; readonly term: number; readonly version: number; readonly leftRangeId: number; readonly leftVersion: number; readonly revision: number }
  /** The left range after an abort-merge: `aborted` when this entry moved it past the version the freeze named (false: it had moved already). */
  | { readonly requestId: string; readonly kind: 'merge-aborted'; readonly descriptor: RangeDescriptor; readonly aborted: boolean }
  /** A frozen range that serves again, at the next epoch version. */
  | { readonly requestId: string; readonly kind: 'unfreeze'; readonly descriptor: RangeDescriptor }
  /** The left range after it took over `rightRangeId`, whose replica here is retired with this entry's batch. */
  | { readonly requestId: string; readonly kind: 'merge'; readonly merged: RangeDescriptor; readonly rightRangeId: number }
  /** The TSO window bound the range holds after the command: max of every bound applied (revisions.ts). */
  | { readonly requestId: string; readonly kind: 'tso-window'; readonly bound: number }
  /** Whether a meta-update changed the descriptor table ('stale': it was already as new). */
  | { readonly requestId: string; readonly kind: 'meta-update'; readonly outcome: 'applied' | 'stale' }
  /** The range's revision after a close: the stamp, or the higher one it already had. */
  | { readonly requestId: string; readonly kind: 'close'; readonly revision: number }
  /** Transactions across ranges (ADR 0017): a prepare's outcome, a record as a command left it, a resolution's changes at `revision`. */
  | { readonly requestId: string; readonly kind: 'txn-prepared'; readonly outcome: PrepareOutcome }
  | { readonly requestId: string; readonly kind: 'txn-committed'; readonly outcome: CommitOutcome }
  | { readonly requestId: string; readonly kind: 'txn-record'; readonly record: TxnRecord | undefined }
  | { readonly requestId: string; readonly kind: 'txn-resolved'; readonly revision: number; readonly events: readonly MvccEvent[] }
  /**
   * A write (a txn, a lease revocation, a compaction) that met intents of
   * transactions across ranges: nothing was written; the proposer settles
   * them from their records and proposes again (ADR 0017 §4, §6).
   */
  | { readonly requestId: string; readonly kind: 'txn-blocked'; readonly intents: readonly Intent[] }
  | { readonly requestId: string; readonly kind: 'error'; readonly code: string; readonly message: string }
  | { readonly requestId: string; readonly kind: 'duplicate' };

const packr = new Packr({ useRecords: false, moreTypes: false });

/** The error code of a command that is not one (see readCommand): applied as a no-op on every replica. */
export const MALFORMED_COMMAND = 'MALFORMED_COMMAND';
/**
 * The error code of a write whose revision stamp is not above the range's
 * current revision: refused alike on every replica (the stamp came from a
 * leader that lost the race, or from a peer), never applied out of order.
 */
export const STALE_REVISION = 'STALE_REVISION';

/**
 * How many of the epoch versions a range left without a merge it keeps
 * (leftVersionWithoutMerge): a freeze names its left range's version as the
 * proposer saw it, at most a few changes behind.
 */
export const VERSIONS_LEFT_KEPT = 8;
/** Intents a blocked write's result names at most: its proposer settles them and proposes again, meeting any others then. */
export const MAX_BLOCKING_INTENTS = 64;
/**
 * How many (range, version) pairs a range keeps of the ranges it took over
 * by merges (absorbedAt): each taken-over range's final version, the
 * versions it had left without a merge, and the pairs it kept in turn.
 */
export const ABSORBED_RANGES_KEPT = 32;

/** Where a range was frozen for a merge (ADR 0009 §6), as kept under `keys.frozen`. */
export interface FrozenState {
  readonly index: number;
  readonly term: number;
  readonly version: number;
  /** The only range that may take this one over, and only while at `leftVersion` (ADR 0014); 0: any (a freeze recorded before left ranges were named). */
  readonly leftRangeId: number;
  readonly leftVersion: number;
}

/**
 * Whether this node's replica of range `rightRangeId` has applied its log
 * through `index` (an entry of term `term`), visibly in the engine: a merge
 * entry is applied only then (see `apply`).
 */
export type MergeGate = (rightRangeId: RangeId, index: number, term: number) => boolean;

export interface MvccStateMachineOptions {
  /** Whether the lease records live in this range: the metadata range's (default true, for a lone range). */
  readonly holdsLeaseRecords?: boolean;
  /** Deliberate bugs, for the simulator only (sabotage.ts). */
  readonly sabotage?: Sabotage;
  /** Every range has a descriptor once set up (a node's ranges; not the single-range tests): see `mvcc`. */
  readonly requireDescriptor?: boolean;
  /** Whether a merge entry may apply yet (KvNode: the Store's replica of the right range); absent: always (tests of one range). */
  readonly mergeGate?: MergeGate;
  /** Whether this range keeps the cluster's descriptor table (the metadata range: meta_table.ts). */
  readonly holdsMetaTable?: boolean;
}

/**
 * A range's state machine: etcd's MVCC key space (src/mvcc) plus leases,
 * members and a table of applied request ids. The MVCC data of the user keys
 * in the range's span is keyed by user key (shared families `d` and `e`);
 * the rest is under the range's own keys (keys.ts).
 * Applying is deterministic: every replica makes the same writes and returns
 * the same result for the same entry, errors included.
 */
export class MvccStateMachine implements RangeStateMachine {
  private store: MvccStore | undefined;
  private leaseTable: LeaseTable | undefined;
  private memberTable: MemberTable | undefined;
  private dedupeWindow: DedupeWindow | undefined;
  private log: RecentLog | undefined;
  /** The approximate size in bytes, once read (see approxBytes). */
  private bytes: number | undefined;
  /** The range id counter as this batch leaves it (see allocRangeId). */
  private allocated = 0;

  /** The range's descriptor as applied; undefined until the engine holds one (see `descriptor`). */
  private desc: RangeDescriptor | undefined;
  private window: number | undefined;
  /** The ranges taken over by merges, with their final versions (keys.absorbedRanges), once read: flat pairs. */
  private absorbed: readonly number[] | undefined;
  /** The last versions left without a merge (keys.versionLeftWithoutMerge), once read. */
  private leftWithoutMerge: readonly number[] | undefined;
  /** The freeze, once read: null when the range is not frozen. */
  private frozenState: FrozenState | null | undefined;

  constructor(
    private readonly engine: StorageEngine,
    readonly rangeId: RangeId,
    private readonly mvccOptions: MvccOpenOptions = {},
    private readonly machineOptions: MvccStateMachineOptions = {},
  ) {}

  private get sabotage(): Sabotage | undefined {
    return this.machineOptions.sabotage;
  }

  private metaTableCache: MetaTable | undefined;

  /** The cluster's descriptor table, on the metadata range; undefined elsewhere. */
  get metaTable(): MetaTable | undefined {
    if (this.machineOptions.holdsMetaTable !== true) return undefined;
    this.metaTableCache ??= new MetaTable(this.engine, this.rangeId);
    return this.metaTableCache;
  }

  /**
   * The range's descriptor: written when the range is created (bootstrap or
   * split) and carried by snapshots; undefined for a replica that has neither
   * yet (created for a peer's message, waiting for a snapshot).
   */
  get descriptor(): RangeDescriptor | undefined {
    if (this.desc === undefined) {
      const raw = this.engine.get(keys.descriptor(this.rangeId));
      if (raw !== undefined) this.desc = decodeDescriptor(raw);
    }
    return this.desc;
  }

  get bounds(): KeyBounds | undefined {
    return this.descriptor;
  }

  snapshotBounds(data: Uint8Array): KeyBounds | undefined {
    return snapshotDescriptor(this.rangeId, data);
  }

  /** The user keys the range holds (its descriptor's bounds). */
  get span(): KeySpan {
    const d = this.descriptor;
    return d === undefined ? WHOLE_KEY_SPAN : { start: d.start, end: d.end };
  }

  /**
   * The MVCC store, (re)opened from the engine after a snapshot replaced it.
   * With `requireDescriptor`, a replica without a descriptor (made for a
   * peer's message, waiting for its snapshot) has none: a store over the
   * whole key space would index the records of the ranges this node does
   * hold (they share the layout by user key), above its own revisions.
   */
  get mvcc(): MvccStore {
    if (this.store === undefined && this.machineOptions.requireDescriptor === true && this.descriptor === undefined) {
      throw new TesseraError('RANGE_UNAVAILABLE', `range ${this.rangeId} is not set up on this node yet (it waits for a snapshot); retry`);
    }
    if (this.store === undefined) this.store = MvccStore.open(this.engine, { metaPrefix: keys.mvccPrefix(this.rangeId), span: this.span }, this.mvccOptions);
    return this.store;
  }

  /** Writes the descriptor of a range being created from nothing (a founder's bootstrap of the first range). */
  seedDescriptor(batch: WriteBatch, descriptor: RangeDescriptor): void {
    assert(descriptor.rangeId === this.rangeId, 'a descriptor for another range');
    batch.put(keys.descriptor(this.rangeId), encodeDescriptor(descriptor));
    this.desc = descriptor;
  }

  rangeCreatedBy(result: unknown): number | undefined {
    const r = result as CommandResult | undefined;
    return r?.kind === 'split' ? r.right.rangeId : undefined;
  }

  rangeRetiredBy(result: unknown): number | undefined {
    const r = result as CommandResult | undefined;
    return r?.kind === 'merge' ? r.rightRangeId : undefined;
  }

  /**
   * Whether this range left epoch version `version` by another change than
   * a merge (an abort-merge, a split, an unfreeze), as far as the last
   * VERSIONS_LEFT_KEPT such changes tell: at that version it applied no
   * merge, and it never returns to it, so a right neighbour frozen for it
   * at that version is never taken over (ADR 0014).
   */
  leftVersionWithoutMerge(version: number): boolean {
    return this.versionsLeftOf(this.rangeId).includes(version);
  }

  /** The versions range `rangeId` left without a merge, as the engine holds them (this range's is cached). */
  private versionsLeftOf(rangeId: RangeId): readonly number[] {
    if (rangeId === this.rangeId && this.leftWithoutMerge !== undefined) return this.leftWithoutMerge;
    const raw = this.engine.get(keys.versionLeftWithoutMerge(rangeId));
    const versions: number[] = [];
    if (raw !== undefined) {
      if (raw.byteLength % 8 !== 0) throw new TesseraError('CORRUPT_DATA', `range ${rangeId}: a record of versions left of ${raw.byteLength} bytes`);
      for (let at = 0; at < raw.byteLength; at += 8) versions.push(readU64(raw, at));
    }
    if (rangeId === this.rangeId) this.leftWithoutMerge = versions;
    return versions;
  }

  /**
   * Whether this range took over range `rangeId` by a merge (or took over a
   * range that had), and that range applied no merge at epoch version
   * `version`, as far as the last ABSORBED_RANGES_KEPT pairs tell: it was
   * frozen at its final version, and applied no merge while frozen; and the
   * versions it had left without a merge (leftVersionWithoutMerge) are
   * carried over with it, since its own record goes when it is retired
   * (simulator seed 685: a left range split, which ended the merge its
   * frozen right neighbour waited for, then was merged away before the
   * unfreeze applied). Either way a range frozen for it at that version is
   * never taken over (ADR 0014).
   */
  absorbedAt(rangeId: RangeId, version: number): boolean {
    const pairs = this.absorbedPairs(this.rangeId);
    for (let i = 0; i + 1 < pairs.length; i += 2) if (pairs[i] === rangeId && pairs[i + 1] === version) return true;
    return false;
  }

  /** The absorbed list of range `rangeId` as the engine holds it (this range's is cached). */
  private absorbedPairs(rangeId: RangeId): readonly number[] {
    if (rangeId === this.rangeId && this.absorbed !== undefined) return this.absorbed;
    const raw = this.engine.get(keys.absorbedRanges(rangeId));
    const pairs: number[] = [];
    if (raw !== undefined) {
      if (raw.byteLength % 16 !== 0) throw new TesseraError('CORRUPT_DATA', `range ${rangeId}: a record of absorbed ranges of ${raw.byteLength} bytes`);
      for (let at = 0; at < raw.byteLength; at += 8) pairs.push(readU64(raw, at));
    }
    if (rangeId === this.rangeId) this.absorbed = pairs;
    return pairs;
  }

  private noteAbsorbed(batch: WriteBatch, right: RangeDescriptor): void {
    const leftWithoutMerge = this.versionsLeftOf(right.rangeId).flatMap((v) => [right.rangeId, v]);
    const pairs = [...this.absorbedPairs(this.rangeId), ...this.absorbedPairs(right.rangeId), ...leftWithoutMerge, right.rangeId, right.epoch.version].slice(-2 * ABSORBED_RANGES_KEPT);
    const out = new Uint8Array(pairs.length * 8);
    pairs.forEach((v, i) => writeU64(out, i * 8, v));
    batch.put(keys.absorbedRanges(this.rangeId), out);
    this.absorbed = pairs;
  }

  private noteVersionLeft(batch: WriteBatch, version: number): void {
    const versions = [...this.versionsLeftOf(this.rangeId), version].slice(-VERSIONS_LEFT_KEPT);
    const out = new Uint8Array(versions.length * 8);
    versions.forEach((v, i) => writeU64(out, i * 8, v));
    batch.put(keys.versionLeftWithoutMerge(this.rangeId), out);
    this.leftWithoutMerge = versions;
  }

  /** Where the range was frozen for a merge (ADR 0009 §6), or undefined if it serves. */
  get frozen(): FrozenState | undefined {
    if (this.frozenState === undefined) this.frozenState = readFrozen(this.engine, this.rangeId) ?? null;
    return this.frozenState ?? undefined;
  }

  /** The request ids of the recent log, rebuilt from the log (and records) when first needed at `appliedIndex` (see DedupeWindow). */
  private dedupeAt(appliedIndex: number): DedupeWindow {
    if (this.dedupeWindow === undefined) {
      const log = this.log;
      assert(log !== undefined, () => `range ${this.rangeId}: the state machine was used before its replica attached the log`);
      this.dedupeWindow = DedupeWindow.load({ view: this.engine, rangeId: this.rangeId, log, appliedIndex, requestIdOf });
    }
    return this.dedupeWindow;
  }

  attachLog(log: RecentLog): void {
    assert(this.log === undefined, () => `range ${this.rangeId}: a second log attached`);
    this.log = log;
  }

  detachLog(): void {
    this.log = undefined;
    this.dedupeWindow = undefined;
  }

  settled(appliedIndex: number): void {
    this.dedupeWindow?.settle(appliedIndex);
  }

  logCompacting(batch: WriteBatch, compaction: LogCompaction): void {
    this.dedupeAt(compaction.appliedIndex).persistBelow(batch, compaction);
  }

  /** The replicated lease table, (re)built from the engine like the MVCC store. */
  get leases(): LeaseTable {
    if (this.leaseTable === undefined) this.leaseTable = new LeaseTable(this.rangeId, this.engine, this.mvcc, this.machineOptions.holdsLeaseRecords ?? true);
    return this.leaseTable;
  }

  /** The replicated member records (the cluster's, on range 1), (re)built from the engine like the lease table. */
  get members(): MemberTable {
    if (this.memberTable === undefined) this.memberTable = new MemberTable(this.rangeId, this.engine);
    return this.memberTable;
  }

  /** Writes the founding members' records when the range is bootstrapped; every founder writes the same. */
  seedMembers(batch: WriteBatch, records: readonly MemberRecord[]): void {
    for (const r of records) this.members.put(batch, r);
  }

  /**
   * Records what a membership change did to the member table: an added
   * member's record arrives in the change's context; a removed member's
   * record goes. Changes without a context (Raft leaving a joint
   * configuration, the simulator's) change only the Raft configuration.
   */
  /**
   * A frozen range refuses membership changes (ADR 0014), alike on every
   * replica: the proposer of its merge saw every replica of the left range
   * hold its log through the freeze, and none may leave before the merge
   * applies there (the merge gate waits for it) or the freeze ends.
   */
  refuseConfChange(cc: ConfChange): CommandResult | undefined {
    if (this.frozen === undefined) return undefined;
    return { requestId: decodeMemberContext(cc)?.requestId ?? '', kind: 'error', code: 'RANGE_MISMATCH', message: `range ${this.rangeId} is frozen for a merge: its membership does not change` };
  }

  applyConfChange(batch: WriteBatch, cc: ConfChange, confState: ConfState): CommandResult | undefined {
    this.recordReplicas(batch, confState);
    const ctx = decodeMemberContext(cc);
    if (ctx === undefined) return undefined;
    for (const change of cc.changes) {
      if (change.type === 'remove-node') this.members.remove(batch, change.nodeId);
      else if (ctx.member !== undefined && ctx.member.id === change.nodeId && this.members.get(change.nodeId) === undefined) this.members.put(batch, ctx.member);
    }
    return { requestId: ctx.requestId, kind: 'conf-change', confState };
  }

  /** The TSO window bound W this range holds (0 before any): revisions below it may have been handed out. */
  get tsoWindow(): number {
    if (this.window === undefined) {
      const stored = this.engine.get(keys.tsoWindow(this.rangeId));
      this.window = stored === undefined ? 0 : readU64(stored, 0);
    }
    return this.window;
  }

  apply(batch: WriteBatch, entry: Entry): CommandResult | typeof APPLY_HELD {
    const opened = openEntry(entry.data);
    const command = typeof opened === 'string' ? opened : readCommand(opened.body);
    // Refused alike on every replica, without a write: a peer proposed it (issue 12), or a bug did.
    if (typeof command === 'string') return { requestId: '', kind: 'error', code: MALFORMED_COMMAND, message: `entry ${entry.index}: ${command}` };
    // A merge waits, before it touches anything, until the right range applied its freeze here;
    // not one naming another freeze than the right range's (refused below, alike everywhere: a
    // range is frozen once, so every replica finds the same record), which would wait forever;
    // nor one this range refuses by its own state alone (a frozen range, another epoch or
    // membership than the merge names): that refusal needs nothing of the right range, and a
    // replica added to this range since may hold none of it (ADR 0014).
    if (command.kind === 'merge' && this.frozen === undefined && this.leftSideProblem(command) === undefined && !frozenElsewhere(this.engine, command)) {
      if (this.machineOptions.mergeGate?.(command.rightRangeId, command.rightFrozenIndex, command.rightFrozenTerm) === false) return APPLY_HELD;
    }
    const { requestId } = command;
    // The window is in memory and updated as each command applies, so it also holds the ids applied
    // earlier in this same batch. A duplicate is noted too: the window is what the log holds.
    const dedupe = this.dedupeAt(entry.index - 1);
    const duplicate = dedupe.has(requestId, entry.index);
    dedupe.note(requestId, entry.index);
    if (duplicate) return { requestId, kind: 'duplicate' };
    // A frozen range changes nothing more, not even a compaction step, so that its state is the same
    // on every replica from the freeze on, however far each applied past it (the merge reads it).
    const frozen = this.frozen;
    if (frozen !== undefined) {
      if (command.kind === 'freeze' && command.version === frozen.version) return this.frozenResult(requestId, frozen);
      if (command.kind === 'unfreeze') return this.unfreeze(batch, command, frozen);
      return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `range ${this.rangeId} is frozen for a merge` };
    }
    // A large compaction continues a bounded step with every later command, alike on every replica.
    if (this.mvcc.compactionPending) this.mvcc.compactStep(batch);
    try {
      const result = this.execute(batch, command, (opened as { revision: number | undefined }).revision, entry);
      // Compaction freed space (a compact command, or a step of one under way): the range is that much smaller.
      const freed = this.mvcc.takeDeletedBytes();
      if (freed > 0) this.setApproxBytes(batch, Math.max(0, this.approxBytes - freed));
      return result;
    } catch (err) {
      // A refused command (compacted, future revision, …) is refused alike on every replica. Only
      // refusals: a storage failure (IO_ERROR, CORRUPT_DATA) is a TesseraError too, but must escape.
      if (isMvccRefusal(err)) return { requestId, kind: 'error', code: err.code, message: err.message };
      throw err;
    }
  }

  private execute(batch: WriteBatch, command: KvCommand, revision: number | undefined, entry: Entry): CommandResult {
    const { requestId } = command;
    // Unstamped writes (a node without a TSO: unit tests) take etcd's counter, current + 1.
    if (revision !== undefined && revision <= this.mvcc.currentRevision && (command.kind === 'txn' || command.kind === 'lease-revoke')) {
      return { requestId, kind: 'error', code: STALE_REVISION, message: `revision stamp ${revision} is not above the current revision ${this.mvcc.currentRevision}` };
    }
    switch (command.kind) {
      case 'txn': {
        // The proposer checked it, but a peer's forwarded proposal may not have been: a refused one
        // is refused alike everywhere (its refusal code), as the write path assumes these checks passed.
        validateTxnRequest(command.txn, Number.MAX_SAFE_INTEGER);
        // Routed before a split that applied first: refused alike everywhere, and routed again.
        if (this.sabotage?.has('split-skips-key-check') !== true && !this.holdsAll(command.txn)) return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `a txn names keys outside range ${this.rangeId}` };
        const blocking = this.intentsIn(txnIntervals(command.txn));
        if (blocking.length > 0) return { requestId, kind: 'txn-blocked', intents: blocking };
        const leases = this.leases;
        // A range without lease records attaches any lease: the node checked it on the metadata
        // range before proposing (KvApi), and a key left by a lease revoked meanwhile is swept
        // (KvNode.sweepLeaseKeys).
        const recordsHere = this.machineOptions.holdsLeaseRecords ?? true;
        const { response, result } = this.mvcc.txn(batch, command.txn, { leaseExists: (id) => !recordsHere || leases.has(id), revision });
        leases.onEvents(result.events);
        this.countWritten(batch, result.events);
        return { requestId, kind: 'txn', response, events: result.events };
      }
      case 'compact': {
        // A pending write may still land above its floor: the history is not final there, and must not be compacted past (ADR 0017 §4).
        const blocking = this.mvcc.conflictingIntents(undefined, command.revision, MAX_BLOCKING_INTENTS);
        if (blocking.length > 0) return { requestId, kind: 'txn-blocked', intents: blocking };
        this.mvcc.compact(command.revision, batch);
        return { requestId, kind: 'compact', revision: command.revision };
      }
      case 'lease-grant':
        if (this.leases.has(command.id)) return { requestId, kind: 'error', code: 'LEASE_EXIST', message: 'etcdserver: lease already exists' };
        this.leases.grant(batch, { id: command.id, ttlSeconds: command.ttlSeconds });
        return { requestId, kind: 'lease-grant', id: command.id, ttlSeconds: command.ttlSeconds, revision: this.mvcc.currentRevision };
      case 'lease-revoke':
        return this.revoke(batch, requestId, command.id, revision);
      case 'lease-checkpoint':
        for (const c of command.checkpoints) this.leases.checkpoint(batch, c.id, c.remainingMs);
        return { requestId, kind: 'lease-checkpoint' };
      case 'member-update':
      case 'member-attrs':
      case 'member-decommission':
        return this.updateMember(batch, command);
      case 'alloc-range-id':
        return this.allocRangeId(batch, requestId);
      case 'split':
        return this.split(batch, command);
      case 'tso-window':
        return this.raiseWindow(batch, requestId, command.bound);
      case 'freeze':
        return this.freeze(batch, command, entry);
      case 'merge':
        return this.merge(batch, command);
      case 'abort-merge':
        return this.abortMerge(batch, command);
      case 'unfreeze':
        return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `range ${this.rangeId} is not frozen` };
      case 'meta-update':
        return this.updateMeta(batch, requestId, command.descriptors);
      case 'close':
        // An unstamped close (a store without revisions) or one overtaken by a later write closes nothing new.
        if (revision !== undefined && revision > this.mvcc.currentRevision) this.mvcc.advanceTo(batch, revision);
        return { requestId, kind: 'close', revision: this.mvcc.currentRevision };
      case 'txn-prepare':
      case 'txn-commit':
      case 'txn-abort':
      case 'txn-heartbeat':
      case 'txn-resolve':
      case 'txn-forget':
        return this.applyTxnStep(batch, command);
    }
  }

  /**
   * A step of a transaction across ranges (ADR 0017), as
   * src/mvcc/participant.ts defines it. Every key it names must be in this
   * range: one routed before a split that applied first is refused
   * (RANGE_MISMATCH) alike everywhere, and sent again by its coordinator.
   */
  private applyTxnStep(batch: WriteBatch, command: Extract<KvCommand, { kind: `txn-${string}` }>): CommandResult {
    const { requestId } = command;
    const keysNamed = command.kind === 'txn-prepare' ? [...command.prepare.writes.map((w) => w.key), ...command.prepare.reads, ...(command.prepare.holdsRecord ? [command.prepare.primary] : [])] : command.kind === 'txn-resolve' ? command.keys : [command.primary];
    const span = this.span;
    if (!keysNamed.every((k) => spanContains(span, k))) return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `a transaction step names keys outside range ${this.rangeId}` };
    switch (command.kind) {
      case 'txn-prepare':
        return { requestId, kind: 'txn-prepared', outcome: prepare(this.mvcc, batch, command.prepare) };
      case 'txn-commit': {
        const problem = commitProblem(this.mvcc, command);
        if (problem !== undefined) return { requestId, kind: 'error', code: MALFORMED_COMMAND, message: `txn commit: ${problem}` };
        return { requestId, kind: 'txn-committed', outcome: commitRecord(this.mvcc, batch, command) };
      }
      case 'txn-abort':
        return { requestId, kind: 'txn-record', record: abortRecord(this.mvcc, batch, { primary: command.primary, txnId: command.txnId, ifHeartbeat: command.ifHeartbeat < 0 ? undefined : command.ifHeartbeat }) };
      case 'txn-heartbeat':
        return { requestId, kind: 'txn-record', record: heartbeatRecord(this.mvcc, batch, command) };
      case 'txn-forget':
        forgetRecord(this.mvcc, batch, command);
        return { requestId, kind: 'txn-record', record: undefined };
      case 'txn-resolve': {
        const commitRevision = command.commitRevision === 0 ? undefined : command.commitRevision;
        // Refused alike everywhere: the protocol never asks for it, a peer's command might.
        const problem = resolveProblem(this.mvcc, { txnId: command.txnId, keys: command.keys, commitRevision });
        if (problem !== undefined) return { requestId, kind: 'error', code: MALFORMED_COMMAND, message: `txn resolve: ${problem}` };
        const events = resolveIntents(this.mvcc, batch, { txnId: command.txnId, keys: command.keys, commitRevision });
        this.leases.onEvents(events);
        this.countWritten(batch, events);
        return { requestId, kind: 'txn-resolved', revision: commitRevision ?? this.mvcc.currentRevision, events };
      }
    }
  }

  /**
   * The range's approximate size: the bytes of every key and value written
   * to it, versions and deletes included, recounted from the stored records
   * for the new range at a split. It counts history too, like CockroachDB's
   * total MVCC bytes, and errs large; compaction lowers it by the records it
   * deletes (as CockroachDB's GC does), so a range whose keys were deleted
   * and compacted can merge. Size-based splits and merges compare it with
   * --range-max-bytes.
   */
  get approxBytes(): number {
    if (this.bytes === undefined) {
      const raw = this.engine.get(keys.approxBytes(this.rangeId));
      this.bytes = raw === undefined ? 0 : readU64(raw, 0);
    }
    return this.bytes;
  }

  private setApproxBytes(batch: WriteBatch, bytes: number): void {
    this.bytes = bytes;
    writeBytesCounter(batch, keys.approxBytes(this.rangeId), bytes);
  }

  private countWritten(batch: WriteBatch, events: readonly MvccEvent[]): void {
    if (events.length === 0) return;
    let added = 0;
    for (const e of events) added += e.kv.key.byteLength + e.kv.value.byteLength;
    this.setApproxBytes(batch, Math.min(Number.MAX_SAFE_INTEGER, this.approxBytes + added));
  }

  /**
   * The descriptor follows the range's Raft membership: its replicas, and
   * confVersion + 1 (TiKV's conf_ver) for every change applied, joint steps
   * included, alike on every replica.
   */
  private recordReplicas(batch: WriteBatch, cs: ConfState): void {
    const d = this.descriptor;
    if (d === undefined) return;
    const replicas: ReplicaDescriptor[] = [
      ...[...new Set([...cs.voters, ...cs.votersOutgoing])].map((nodeId) => ({ nodeId, role: 'voter' as const })),
      ...[...new Set([...cs.learners, ...cs.learnersNext])].filter((id) => !cs.voters.includes(id) && !cs.votersOutgoing.includes(id)).map((nodeId) => ({ nodeId, role: 'learner' as const })),
    ];
    // A configuration without a voter (never applied by Raft) would make a descriptor its checks refuse.
    if (!replicas.some((r) => r.role === 'voter')) return;
    const next: RangeDescriptor = { ...d, replicas, epoch: { version: d.epoch.version, confVersion: d.epoch.confVersion + 1 } };
    batch.put(keys.descriptor(this.rangeId), encodeDescriptor(next));
    this.desc = next;
  }

  /** The intents on keys of `intervals` (any transaction's, read locks included), at most MAX_BLOCKING_INTENTS: a write over them waits. */
  private intentsIn(intervals: readonly KeyInterval[]): Intent[] {
    if (this.mvcc.intentCount === 0) return [];
    const found: Intent[] = [];
    for (const interval of intervals) {
      found.push(...this.mvcc.intents(interval, MAX_BLOCKING_INTENTS - found.length));
      if (found.length >= MAX_BLOCKING_INTENTS) break;
    }
    return found;
  }

  /** Whether every key the txn names lies in this range's bounds. */
  private holdsAll(txn: TxnRequest): boolean {
    const span = this.span;
    if (isWholeKeySpan(span)) return true;
    return txnIntervals(txn).every((i) => intervalInSpan(span, i));
  }

  /** The next range id; the counter lives on the range that allocates (the metadata range). Ids above the first range's. */
  private allocRangeId(batch: WriteBatch, requestId: string): CommandResult {
    const key = keys.nextRangeId(this.rangeId);
    const raw = this.engine.get(key);
    const id = Math.max(raw === undefined ? 0 : readU64(raw, 0), this.allocated, this.rangeId + 1);
    const next = new Uint8Array(8);
    writeU64(next, 0, id + 1);
    batch.put(key, next);
    // The batch is not readable until it is staged: the counter is kept here for the rest of it.
    this.allocated = id + 1;
    return { requestId, kind: 'range-id', id };
  }

  /**
   * A split at one log position (ADR 0009 §5): this range ends at the split
   * key and range `newRangeId` starts there, with this range's replicas and
   * revisions, both at the next epoch version. No MVCC record moves (they are
   * keyed by user key). Refused alike on every replica if the descriptor
   * changed since the proposer chose the key, or the key is not strictly
   * inside the bounds: a command applied after the split to a key the
   * range no longer holds is refused the same way (see `checkKeys`).
   */
  private split(batch: WriteBatch, c: Extract<KvCommand, { kind: 'split' }>): CommandResult {
    const { requestId } = c;
    const d = this.descriptor;
    assert(d !== undefined, () => `range ${this.rangeId} applies a split without a descriptor`);
    if (c.version !== d.epoch.version) return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `range ${this.rangeId} is at version ${d.epoch.version}, the split was for ${c.version}` };
    const key = c.splitKey.slice();
    if (compareBytes(key, d.start) <= 0 || (d.end !== undefined && compareBytes(key, d.end) >= 0) || c.newRangeId === this.rangeId) {
      return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `split key is not strictly inside range ${this.rangeId}` };
    }
    if (this.mvcc.compactionPending) this.mvcc.compactStep(batch, Number.MAX_SAFE_INTEGER);
    const epoch = { version: d.epoch.version + 1, confVersion: d.epoch.confVersion };
    const left: RangeDescriptor = { ...d, end: key, epoch };
    const right: RangeDescriptor = { rangeId: c.newRangeId, start: key, end: d.end, epoch, replicas: d.replicas };
    const movedBytes = this.mvcc.splitOff(batch, key, keys.mvccPrefix(c.newRangeId));
    this.setApproxBytes(batch, Math.max(0, this.approxBytes - movedBytes));
    writeBytesCounter(batch, keys.approxBytes(c.newRangeId), movedBytes);
    this.leaseTable?.dropKeysFrom(key);
    batch.put(keys.descriptor(this.rangeId), encodeDescriptor(left));
    batch.put(keys.descriptor(c.newRangeId), encodeDescriptor(right));
    this.noteVersionLeft(batch, d.epoch.version);
    this.desc = left;
    return { requestId, kind: 'split', left, right };
  }

  /**
   * The right-hand range of a merge stops serving (ADR 0009 §6): refused
   * alike on every replica if the range changed since the proposer chose
   * it. A pending compaction is finished first, so nothing changes the
   * range's MVCC state after this entry (see `apply`).
   */
  private freeze(batch: WriteBatch, c: Extract<KvCommand, { kind: 'freeze' }>, entry: Entry): CommandResult {
    const { requestId } = c;
    const d = this.descriptor;
    assert(d !== undefined, () => `range ${this.rangeId} applies a freeze without a descriptor`);
    if (c.version !== d.epoch.version) return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `range ${this.rangeId} is at version ${d.epoch.version}, the freeze was for ${c.version}` };
    if (this.mvcc.compactionPending) this.mvcc.compactStep(batch, Number.MAX_SAFE_INTEGER);
    const frozen: FrozenState = { index: entry.index, term: entry.term, version: d.epoch.version, leftRangeId: c.leftRangeId, leftVersion: c.leftVersion };
    batch.put(keys.frozen(this.rangeId), encodeFrozen(frozen));
    this.frozenState = frozen;
    return this.frozenResult(requestId, frozen);
  }

  private frozenResult(requestId: string, frozen: FrozenState): CommandResult {
    return { requestId, kind: 'freeze', rangeId: this.rangeId, index: frozen.index, term: frozen.term, version: frozen.version, leftRangeId: frozen.leftRangeId, leftVersion: frozen.leftVersion, revision: this.mvcc.currentRevision };
  }

  /**
   * Why this range, as the left side, refuses a merge by its own state
   * alone (ADR 0014): another epoch version than the one the freeze named
   * (an abort-merge, a split or an unfreeze moved it on, and no merge
   * naming the old one applies any more), another membership than the
   * proposer saw hold the right range's log through the freeze, or no end
   * to widen. Alike on every replica, and needing nothing of the right
   * range: checked before the merge gate.
   */
  private leftSideProblem(c: Extract<KvCommand, { kind: 'merge' }>): string | undefined {
    const d = this.descriptor;
    if (d === undefined || d.end === undefined) return 'this range has no right neighbour';
    if (d.epoch.version !== c.leftVersion) return `this range is at version ${d.epoch.version}, not ${c.leftVersion}`;
    // A replica added since the proposer checked may hold no state of the right range (its merge could not apply).
    if (d.epoch.confVersion !== c.leftConfVersion) return `this range's membership changed (conf version ${d.epoch.confVersion}, not ${c.leftConfVersion})`;
    return undefined;
  }

  /**
   * The way back from a freeze, in the left range's log (ADR 0014): while
   * this range is at the version the freeze of `rightRangeId` names, it
   * moves to the next one, so every merge naming that version is refused
   * from this entry on (leftSideProblem). A range already past it changes
   * nothing. A frozen range refuses this like any command (see `apply`): it
   * applies no merge while frozen, and leaves that state only retired or at
   * a new version (unfreeze), so it needs no abort.
   */
  private abortMerge(batch: WriteBatch, c: Extract<KvCommand, { kind: 'abort-merge' }>): CommandResult {
    const d = this.descriptor;
    assert(d !== undefined, () => `range ${this.rangeId} applies an abort-merge without a descriptor`);
    if (d.epoch.version !== c.leftVersion) return { requestId: c.requestId, kind: 'merge-aborted', descriptor: d, aborted: false };
    const moved: RangeDescriptor = { ...d, epoch: { version: d.epoch.version + 1, confVersion: d.epoch.confVersion } };
    batch.put(keys.descriptor(this.rangeId), encodeDescriptor(moved));
    this.noteVersionLeft(batch, d.epoch.version);
    this.desc = moved;
    return { requestId: c.requestId, kind: 'merge-aborted', descriptor: moved, aborted: true };
  }

  /**
   * Ends this range's freeze (ADR 0014), if it is the one named: the range
   * serves again at the next epoch version, so a merge that named it as its
   * left side at the old version (another range frozen for it) is refused
   * too. The proposer saw the merge that froze it can no longer apply.
   */
  private unfreeze(batch: WriteBatch, c: Extract<KvCommand, { kind: 'unfreeze' }>, frozen: FrozenState): CommandResult {
    const { requestId } = c;
    if (c.frozenIndex !== frozen.index || c.frozenTerm !== frozen.term || c.version !== frozen.version) {
      return { requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `range ${this.rangeId} is frozen at ${frozen.index}/${frozen.term}, not ${c.frozenIndex}/${c.frozenTerm}` };
    }
    const d = this.descriptor;
    assert(d !== undefined, () => `range ${this.rangeId} applies an unfreeze without a descriptor`);
    const moved: RangeDescriptor = { ...d, epoch: { version: d.epoch.version + 1, confVersion: d.epoch.confVersion } };
    batch.put(keys.descriptor(this.rangeId), encodeDescriptor(moved));
    batch.delete(keys.frozen(this.rangeId));
    this.noteVersionLeft(batch, d.epoch.version);
    this.desc = moved;
    this.frozenState = null;
    return { requestId, kind: 'unfreeze', descriptor: moved };
  }

  /**
   * Takes over the right neighbour (ADR 0009 §6), which this node's replica
   * has applied through its freeze (the merge gate held the entry until
   * then): its state is the same on every replica. Refused alike everywhere
   * if the right range is not the one frozen at the version and index the
   * merge names, or no longer starts where this range ends, or this range's
   * membership changed since the proposer saw every replica of it hold the
   * right range's log through the freeze. No MVCC record
   * moves: this range's span, counts and revisions widen over the right
   * range's, and every range-local key of the right range goes in the same
   * batch (the Store closes its replica once the batch is visible).
   */
  private merge(batch: WriteBatch, c: Extract<KvCommand, { kind: 'merge' }>): CommandResult {
    const { requestId, rightRangeId } = c;
    const d = this.descriptor;
    assert(d !== undefined, () => `range ${this.rangeId} applies a merge without a descriptor`);
    const rawRight = this.engine.get(keys.descriptor(rightRangeId));
    const right = rawRight === undefined ? undefined : decodeDescriptor(rawRight);
    const refuse = (why: string): CommandResult => ({ requestId, kind: 'error', code: 'RANGE_MISMATCH', message: `merge of range ${rightRangeId} into ${this.rangeId}: ${why}` });
    if (right === undefined || rightRangeId === this.rangeId) return refuse('the right range is not on this node');
    if (d.end === undefined || compareBytes(d.end, right.start) !== 0) return refuse('the right range does not start where this one ends');
    if (right.epoch.version !== c.rightVersion) return refuse(`the right range is at version ${right.epoch.version}, not ${c.rightVersion}`);
    const leftProblem = this.leftSideProblem(c);
    if (leftProblem !== undefined) return refuse(leftProblem);
    if (this.sabotage?.has('merge-skips-freeze') !== true) {
      const frozen = readFrozen(this.engine, rightRangeId);
      if (frozen === undefined || frozen.index !== c.rightFrozenIndex || frozen.term !== c.rightFrozenTerm || frozen.version !== c.rightVersion) return refuse('the right range is not frozen where the merge says');
      // The freeze names the one left range and version that may take the range over (ADR 0014).
      if (frozen.leftRangeId !== 0 && (frozen.leftRangeId !== this.rangeId || frozen.leftVersion !== c.leftVersion)) return refuse(`the right range is frozen for range ${frozen.leftRangeId} at version ${frozen.leftVersion}`);
    }
    if (this.mvcc.compactionPending) this.mvcc.compactStep(batch, Number.MAX_SAFE_INTEGER);
    this.mvcc.absorb(batch, right.end, keys.mvccPrefix(rightRangeId));
    const rawBytes = this.engine.get(keys.approxBytes(rightRangeId));
    this.setApproxBytes(batch, this.approxBytes + (rawBytes === undefined ? 0 : readU64(rawBytes, 0)));
    const merged: RangeDescriptor = { ...d, end: right.end, epoch: { version: Math.max(d.epoch.version, right.epoch.version) + 1, confVersion: d.epoch.confVersion } };
    batch.put(keys.descriptor(this.rangeId), encodeDescriptor(merged));
    this.noteAbsorbed(batch, right);
    this.desc = merged;
    // The right range's keys carried lease attachments: rebuilt over the wider span when next used.
    this.leaseTable = undefined;
    return { requestId, kind: 'merge', merged, rightRangeId };
  }

  private updateMember(batch: WriteBatch, command: Extract<KvCommand, { kind: 'member-update' | 'member-attrs' | 'member-decommission' }>): CommandResult {
    const { requestId } = command;
    const old = this.members.get(command.id);
    if (old === undefined) return { requestId, kind: 'error', code: 'MEMBER_NOT_FOUND', message: 'etcdserver: member not found' };
    const member: MemberRecord =
      command.kind === 'member-update'
        ? { ...old, peerUrls: [...command.peerUrls] }
        : command.kind === 'member-decommission'
          ? { ...old, decommissioning: true }
          : memberWithAttrs(old, command);
    this.members.put(batch, member);
    return { requestId, kind: command.kind, member };
  }

  /** The meta range's descriptor table; refused alike on every replica elsewhere, or for descriptors that do not decode or do not fit. */
  private updateMeta(batch: WriteBatch, requestId: string, encoded: readonly Uint8Array[]): CommandResult {
    const table = this.metaTable;
    if (table === undefined) return { requestId, kind: 'error', code: 'INVALID_ARGUMENT', message: `range ${this.rangeId} holds no meta table` };
    let descriptors: RangeDescriptor[];
    try {
      descriptors = encoded.map((d) => decodeDescriptor(d));
    } catch (error) {
      return { requestId, kind: 'error', code: 'INVALID_ARGUMENT', message: `meta update: ${(error as Error).message}` };
    }
    const outcome = table.update(batch, descriptors);
    if (outcome !== 'applied' && outcome !== 'stale') return { requestId, kind: 'error', code: 'INVALID_ARGUMENT', message: `meta update refused: ${outcome}` };
    return { requestId, kind: 'meta-update', outcome };
  }

  /** W = max(W, bound): a late or repeated window never lowers it (tso.ts's contract). */
  private raiseWindow(batch: WriteBatch, requestId: string, bound: number): CommandResult {
    if (bound > this.tsoWindow) {
      const value = new Uint8Array(8);
      writeU64(value, 0, bound);
      batch.put(keys.tsoWindow(this.rangeId), value);
      this.window = bound;
    }
    return { requestId, kind: 'tso-window', bound: this.tsoWindow };
  }

  /** Deletes a lease and every key attached to it, in one revision (DESIGN.md decision 8), the entry's stamp if it has one. */
  private revoke(batch: WriteBatch, requestId: string, id: number, revision: number | undefined): CommandResult {
    const leases = this.leases;
    // Where no records are kept, revoking deletes this range's keys of the lease, if any.
    if (!leases.has(id) && (this.machineOptions.holdsLeaseRecords ?? true)) return { requestId, kind: 'error', code: 'LEASE_NOT_FOUND', message: 'etcdserver: requested lease not found' };
    const blocking = this.intentsIn(leases.keysOf(id).map((k) => ({ start: fromKeyString(k), end: undefined })));
    if (blocking.length > 0) return { requestId, kind: 'txn-blocked', intents: blocking };
    const txn = this.mvcc.beginWrite(batch, { revision });
    for (const k of leases.keysOf(id)) txn.deleteRange(fromKeyString(k));
    const result = txn.end();
    leases.onEvents(result.events);
    leases.remove(batch, id);
    return { requestId, kind: 'lease-revoke', id, revision: result.revision, events: result.events };
  }

  openSnapshot(appliedIndex: number): SnapshotDataReader {
    const start = keys.stateStart(this.rangeId);
    const stripBytes = start.byteLength - 1;
    // The window records are the state's last keys (keys.ts). The engine holds only those its log
    // dropped; the snapshot carries the whole window, since the receiver's log will start after it.
    // The window is in memory and at most DEDUPE_WINDOW_ENTRIES long: copied now, with the view.
    const tail: SnapshotPair[] = [];
    for (const [index, id] of this.dedupeAt(appliedIndex).windowOf(appliedIndex)) {
      const [key, value] = windowRecord(this.rangeId, index, id);
      tail.push({ key: key.subarray(stripBytes), value });
    }
    const view = this.engine.snapshotView();
    return new StateSnapshotReader({ view, spans: rangeSnapshotSpans(this.rangeId, this.span), tail });
  }

  /**
   * Replaces the range's state with a snapshot's. The data of the span the
   * range held goes, and so does the data of the span the snapshot's
   * descriptor gives it (the store made sure no other range here holds any
   * of it, see snapshotDescriptor): the two differ when the snapshot comes
   * from after a split this replica never applied, or when this replica was
   * made for a peer's message and held nothing yet.
   */
  restore(batch: WriteBatch, data: Uint8Array): void {
    const start = keys.stateStart(this.rangeId);
    const incoming = data.byteLength > 0 ? snapshotDescriptor(this.rangeId, data) : undefined;
    // Without a descriptor on either side the range is the only one and holds every key (tests made so).
    const spans: KeySpan[] = incoming === undefined ? [this.span] : [{ start: incoming.start, end: incoming.end }];
    if (incoming !== undefined && this.descriptor !== undefined) spans.push(this.span);
    batch.deleteRange(start, keys.stateEnd(this.rangeId));
    for (const span of spans) this.clearSpan(batch, span);
    if (data.byteLength > 0) {
      const problem = snapshotDataProblem(this.rangeId, data, incoming ?? WHOLE_KEY_SPAN);
      if (problem !== undefined) throw new TesseraError('CORRUPT_DATA', `range ${this.rangeId}: malformed snapshot: ${problem}`);
      const pairs = packr.unpack(data) as Uint8Array[];
      const base = start.subarray(0, start.byteLength - 1);
      for (let i = 0; i < pairs.length; i += 2) {
        const carried = pairs[i] as Uint8Array;
        if (isMvccDataKey(carried)) {
          batch.put(carried, pairs[i + 1] as Uint8Array);
          continue;
        }
        const key = new Uint8Array(base.byteLength + carried.byteLength);
        key.set(base, 0);
        key.set(carried, base.byteLength);
        batch.put(key, pairs[i + 1] as Uint8Array);
      }
    }
    // The batch is committed before anything reads the store again; reopen lazily then.
    this.store = undefined;
    this.leaseTable = undefined;
    this.memberTable = undefined;
    this.dedupeWindow = undefined;
    this.desc = incoming;
    this.metaTable?.forget();
    this.allocated = 0;
    this.bytes = undefined;
    this.window = undefined;
    this.frozenState = undefined;
    this.leftWithoutMerge = undefined;
    this.absorbed = undefined;
  }

  /** Deletes the MVCC records and change index entries of the user keys in `span`. */
  private clearSpan(batch: WriteBatch, span: KeySpan): void {
    const records = dataKeyBounds(span);
    batch.deleteRange(records.start, records.end);
    for (const family of txnFamilyBounds(span)) batch.deleteRange(family.start, family.end);
    if (isWholeKeySpan(span)) {
      batch.deleteRange(CHANGE_KEY_BOUNDS.start, CHANGE_KEY_BOUNDS.end);
    } else {
      // The change index is in revision order, other ranges' entries among this one's: only ours go.
      for (const { key, value } of this.engine.scan(CHANGE_KEY_BOUNDS)) if (spanContains(span, value)) batch.delete(key);
    }
  }

  digest(): string {
    const h = this.mvcc.hashKV(0);
    return `${h.hash}@${h.revision}`;
  }
}

function encodeFrozen(f: FrozenState): Uint8Array {
  const out = new Uint8Array(40);
  writeU64(out, 0, f.index);
  writeU64(out, 8, f.term);
  writeU64(out, 16, f.version);
  writeU64(out, 24, f.leftRangeId);
  writeU64(out, 32, f.leftVersion);
  return out;
}

/** Whether the right range of a merge is frozen, visibly here, by another entry than the merge names. */
function frozenElsewhere(engine: Pick<StorageEngine, 'get'>, c: Extract<KvCommand, { kind: 'merge' }>): boolean {
  const f = readFrozen(engine, c.rightRangeId);
  return f !== undefined && (f.index !== c.rightFrozenIndex || f.term !== c.rightFrozenTerm);
}

/** Range `rangeId`'s freeze as the engine holds it (ADR 0009 §6), or undefined. */
export function readFrozen(engine: Pick<StorageEngine, 'get'>, rangeId: RangeId): FrozenState | undefined {
  const raw = engine.get(keys.frozen(rangeId));
  if (raw === undefined) return undefined;
  // 24 bytes: a freeze recorded before freezes named their left range (any left range may merge it).
  if (raw.byteLength !== 24 && raw.byteLength !== 40) throw new TesseraError('CORRUPT_DATA', `range ${rangeId}: a freeze record of ${raw.byteLength} bytes`);
  const named = raw.byteLength === 40;
  return { index: readU64(raw, 0), term: readU64(raw, 8), version: readU64(raw, 16), leftRangeId: named ? readU64(raw, 24) : 0, leftVersion: named ? readU64(raw, 32) : 0 };
}

function writeBytesCounter(batch: WriteBatch, key: Uint8Array, bytes: number): void {
  const value = new Uint8Array(8);
  writeU64(value, 0, bytes);
  batch.put(key, value);
}

/** Whether every key of `interval` (etcd's form, see keyInterval) lies in `span`. An empty interval asks for its start only. */
export function intervalInSpan(span: KeySpan, interval: KeyInterval): boolean {
  if (!spanContains(span, interval.start)) return false;
  if (interval.end === undefined || span.end === undefined) return true;
  if (interval.end.byteLength === 0) return false;
  return compareBytes(interval.end, span.end) <= 0 || compareBytes(interval.end, interval.start) <= 0;
}

/** The carried key of the descriptor in a snapshot: its tag, after the range prefix (see openSnapshot). */
const DESCRIPTOR_SUFFIX = keys.descriptor(0).subarray(9);

/**
 * The descriptor a snapshot of range `rangeId` carries, or undefined if it
 * carries none or a malformed one (the snapshot is then refused: see
 * snapshotDataProblem). The store checks it before Raft takes the snapshot:
 * its bounds must not overlap another range this node holds.
 */
export function snapshotDescriptor(rangeId: RangeId, data: Uint8Array): RangeDescriptor | undefined {
  let pairs: unknown;
  try {
    pairs = packr.unpack(data);
  } catch {
    return undefined;
  }
  if (!Array.isArray(pairs)) return undefined;
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const key: unknown = pairs[i];
    const value: unknown = pairs[i + 1];
    if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array) || key.byteLength !== DESCRIPTOR_SUFFIX.byteLength || key[0] !== DESCRIPTOR_SUFFIX[0]) continue;
    try {
      const d = decodeDescriptor(value);
      return d.rangeId === rangeId ? d : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** The request id a log entry carries: commands have one; no-ops, membership changes and malformed commands are not deduplicated. */
function requestIdOf(entry: Entry): string | undefined {
  if (entry.type !== 'normal' || entry.data.byteLength === 0) return undefined;
  const opened = openEntry(entry.data);
  if (typeof opened === 'string') return undefined;
  const command = readCommand(opened.body);
  return typeof command === 'string' ? undefined : command.requestId;
}

/**
 * The engine spans a range's snapshot carries, in this order: the MVCC
 * records of its user keys (`d`, whole keys), its change index entries (`e`,
 * whole keys), then its range-local state up to the dedupe window records
 * (the reader's tail carries those), cut to their suffix after the range
 * prefix. A carried key's first byte tells the two kinds apart: `d` and `e`
 * are not tags of range-local state (keys.ts).
 */
export function rangeSnapshotSpans(rangeId: RangeId, span: KeySpan): SnapshotSpan[] {
  const state = keys.stateStart(rangeId);
  return [
    { ...dataKeyBounds(span), stripBytes: 0 },
    { ...CHANGE_KEY_BOUNDS, stripBytes: 0, accept: isWholeKeySpan(span) ? undefined : (pair) => spanContains(span, pair.value) },
    // Intents and transaction records (ADR 0017 §3): user-key data, carried whole like `d`.
    ...txnFamilyBounds(span).map((family) => ({ ...family, stripBytes: 0 })),
    { start: state, end: keys.requestByIndexStart(rangeId), stripBytes: state.byteLength - 1 },
  ];
}

/** The first bytes of MVCC record, change index, intent and transaction record keys ('d', 'e', 'i', 't'). */
const DATA_FAMILIES: ReadonlySet<number> = new Set([dataKeyBounds(WHOLE_KEY_SPAN).start[0]!, CHANGE_KEY_BOUNDS.start[0]!, ...txnFamilyBounds(WHOLE_KEY_SPAN).map((f) => f.start[0]!)]);

/** A carried key of the MVCC data families (kept whole), as opposed to a range-local state suffix. */
function isMvccDataKey(carried: Uint8Array): boolean {
  return DATA_FAMILIES.has(carried[0]!);
}

/**
 * Why `data` cannot be a snapshot of range `rangeId`'s state (see
 * openSnapshot), or undefined when its shape is right: a list of key and
 * value pairs, all bytes, every key either a range-local state suffix or a
 * well-formed MVCC record or change index key of a user key in `span`. A
 * peer's snapshot is checked with this before Raft accepts it (issue 12):
 * restore runs inside the store's loop, where a throw stops the node. The
 * values themselves are checked when read (each record carries a checksum).
 */
export function snapshotDataProblem(rangeId: RangeId, data: Uint8Array, span: KeySpan = WHOLE_KEY_SPAN): string | undefined {
  if (data.byteLength === 0) return undefined; // an empty state (restore clears the range)
  let pairs: unknown;
  try {
    pairs = packr.unpack(data);
  } catch {
    return 'undecodable';
  }
  if (!Array.isArray(pairs) || pairs.length % 2 !== 0) return 'not a list of key/value pairs';
  const first = keys.stateStart(rangeId);
  const end = keys.stateEnd(rangeId);
  const at = first.byteLength - 1; // a state key is the range's prefix and then its suffix (openSnapshot)
  for (let i = 0; i < pairs.length; i++) {
    const item: unknown = pairs[i];
    if (!(item instanceof Uint8Array)) return `item ${i} is not bytes`;
    if (i % 2 === 1) continue;
    if (item.byteLength > 0 && (item[0] as number) >= (first[at] as number) && (item[0] as number) < (end[at] as number)) continue;
    if (isMvccDataKey(item)) {
      const value: unknown = pairs[i + 1];
      if (!(value instanceof Uint8Array)) return `item ${i + 1} is not bytes`;
      if (!isStoreKeyInSpan(span, item, value)) return `key ${i / 2} is not an mvcc key of the range's span`;
      continue;
    }
    return `key ${i / 2} lies outside the range's state`;
  }
  return undefined;
}

/** A member record with the attributes a member published (its name, client URLs and locality). */
function memberWithAttrs(old: MemberRecord, c: Extract<KvCommand, { kind: 'member-attrs' }>): MemberRecord {
  const { locality: _old, ...rest } = old;
  return { ...rest, name: c.name, clientUrls: [...c.clientUrls], ...(c.locality === undefined || c.locality === '' ? {} : { locality: c.locality }) };
}
