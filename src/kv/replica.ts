import { assert, type Rng } from '../base/index.js';
import { DEFAULT_RAFT_OPTIONS, RawNode, type ConfState, type Entry, type Message, type RaftConfig, type Ready, type Snapshot, type StepView } from '../raft/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import type { StorageEngine, WriteBatch } from '../storage/engine.js';
import { decodeHardState, encodeHardState, encodeJson } from './codec.js';
import { type EntryCacheBudget, EngineLogStorage } from './log_storage.js';
import { META_RANGE, type RangeId, keys } from './keys.js';
import { APPLY_HELD, type RangeStateMachine } from './state_machine.js';
import { type OpenSnapshotReaders, snapshotReaderOf, streamedSnapshot } from './snapshot_stream.js';

/** The log behind the retained entries is dropped in this many steps per logRetainEntries applied (see maybeCompactLog). */
export const LOG_COMPACT_STEPS = 10;

/**
 * A range's log keeps at most this many bytes of entries behind its applied
 * index (with the entry count bound, whichever comes first): a quarter of
 * the default --range-max-bytes, as TiKV keeps its log under a fraction of
 * its region size. A follower further behind gets a snapshot.
 */
export const LOG_RETAIN_BYTES = 16 * 1024 * 1024;

/**
 * The log position a range created by a split starts at, on every replica
 * (TiKV's RAFT_INIT_LOG_INDEX): its log is truncated there, so a replica
 * that missed the split is brought up by a snapshot, never by a log that
 * would have to begin before the range existed.
 */
export const SPLIT_INITIAL_INDEX = 5;

/**
 * Raft settings a store applies to all its replicas. `afterStep` names the
 * range too: the simulator's oracles are kept per Raft group.
 */
export type ReplicaRaftOptions = Partial<Omit<RaftConfig, 'id' | 'storage' | 'appliedIndex' | 'rng' | 'sabotage' | 'afterStep' | 'onQuiescenceChange'>> & {
  readonly afterStep?: (rangeId: RangeId, node: StepView, message?: Message) => void;
};

export interface ReplicaOptions {
  readonly nodeId: number;
  readonly rangeId: RangeId;
  readonly engine: StorageEngine;
  readonly stateMachine: RangeStateMachine;
  readonly rng: Rng;
  readonly raft: ReplicaRaftOptions;
  /** Entries kept in the log behind the applied index before it is compacted. */
  readonly logRetainEntries: number;
  /** Bytes of entries kept in the log behind the applied index, at most (whichever bound is reached first). */
  readonly logRetainBytes: number;
  /** The node's budget for cached log entries, shared by its ranges (absent: the range's own). */
  readonly entryCacheBudget?: EntryCacheBudget;
  /** The node's open snapshot readers: snapshots for followers are counted and their lifetime bounded there. */
  readonly snapshots: OpenSnapshotReaders;
  readonly sabotage?: Sabotage;
  /** Told when the replica's Raft quiesces or wakes (the Store ticks only awake replicas). */
  readonly onQuiescenceChange?: (quiesced: boolean) => void;
}

/** Outcome of applying one committed entry. */
export interface Applied {
  readonly entry: Entry;
  readonly result: unknown;
}

/**
 * One range's replica on this node: its RawNode, its log on the shared
 * engine, and its state machine. The store's loop drives it in two phases
 * per turn: `persist` (into the synced batch) and, once that batch is
 * durable, `apply` (committed entries into a second batch).
 */
export class Replica {
  readonly rangeId: RangeId;
  readonly raw: RawNode;
  readonly log: EngineLogStorage;
  readonly stateMachine: RangeStateMachine;
  private confState: ConfState;
  private applied: number;
  /**
   * While an apply batch is being filled (and until the Store has staged it),
   * the engine still shows the state before it: `applied` counts entries whose
   * writes nobody can read yet. A snapshot made then (Raft may ask for one in
   * the middle, when a conf change starts replication to a new member) must
   * describe that earlier state, so this keeps its index and membership.
   */
  private visible: { readonly index: number; readonly confState: ConfState } | undefined;
  private readonly logRetainEntries: number;
  private readonly logRetainBytes: number;
  private readonly snapshots: OpenSnapshotReaders;
  private readonly sabotage: Sabotage | undefined;
  private readonly engine: StorageEngine;
  /** Ranges that entries applied in this turn created (splits): the store opens them once the batch is visible. */
  readonly created: RangeId[] = [];
  /** Ranges that entries applied in this turn retired (merges): the store deletes their state in this batch and closes them. */
  readonly retired: RangeId[] = [];

  constructor(o: ReplicaOptions) {
    this.sabotage = o.sabotage;
    this.engine = o.engine;
    this.rangeId = o.rangeId;
    this.stateMachine = o.stateMachine;
    this.logRetainEntries = o.logRetainEntries;
    this.logRetainBytes = o.logRetainBytes;
    this.snapshots = o.snapshots;
    this.log = new EngineLogStorage(o.engine, o.rangeId, () => this.makeSnapshot(), o.entryCacheBudget);
    this.stateMachine.attachLog(this.log);
    const apply = this.log.applyState();
    this.confState = apply.confState;
    this.applied = apply.appliedIndex;
    const { afterStep, ...raft } = o.raft;
    this.raw = new RawNode({
      ...DEFAULT_RAFT_OPTIONS,
      ...raft,
      ...(afterStep === undefined ? {} : { afterStep: (node: StepView, message?: Message) => afterStep(o.rangeId, node, message) }),
      id: o.nodeId,
      storage: this.log,
      appliedIndex: this.applied,
      rng: o.rng,
      ...(o.sabotage === undefined ? {} : { sabotage: o.sabotage }),
      ...(o.onQuiescenceChange === undefined ? {} : { onQuiescenceChange: o.onQuiescenceChange }),
    });
  }

  appliedIndex(): number {
    return this.applied;
  }

  /** The applied index the engine shows: not the entries of an apply batch still being filled (see `visible`). */
  visibleAppliedIndex(): number {
    return this.visible?.index ?? this.applied;
  }

  currentConfState(): ConfState {
    return this.confState;
  }

  /** Phase 1: what must be durable before this Ready's messages go out. */
  persist(batch: WriteBatch, rd: Ready): void {
    if (rd.snapshot !== undefined) this.installSnapshot(batch, rd.snapshot);
    this.log.append(batch, rd.entries);
    if (rd.hardState !== undefined) this.log.setHardState(batch, rd.hardState);
  }

  private installSnapshot(batch: WriteBatch, snapshot: Snapshot): void {
    const { index, confState } = snapshot.metadata;
    // A held merge entry is covered by the snapshot (or comes again after it, unheld, and is re-checked).
    this.raw.releaseApply();
    // A snapshot this node made for a follower carries a reader, not bytes: its carrier must have streamed it.
    assert(snapshotReaderOf(snapshot) === undefined, () => `range ${this.rangeId}: a streamed snapshot was delivered without its data`);
    assert(index > this.applied, () => `range ${this.rangeId}: snapshot ${index} not newer than applied ${this.applied}`);
    this.stateMachine.restore(batch, snapshot.data);
    this.log.applySnapshot(batch, snapshot);
    this.confState = confState;
    this.applied = index;
    this.log.setApplyState(batch, { appliedIndex: index, confState });
  }

  /**
   * Installs a leader's snapshot whose last entry the log already holds
   * (same index and term) past what this replica applied: the state it
   * describes is that of applying the entries up to it, which this replica
   * cannot do (held at a merge whose right range's replica here is gone or
   * never catches up, ADR 0014). Unlike installSnapshot the log stays, every
   * entry after the snapshot included: the replica may have acknowledged
   * them. Only between turns (Store.installPendingInLog).
   */
  installInLog(batch: WriteBatch, snapshot: Snapshot): void {
    const { index, confState } = snapshot.metadata;
    assert(index > this.applied, () => `range ${this.rangeId}: snapshot ${index} not newer than applied ${this.applied}`);
    assert(snapshotReaderOf(snapshot) === undefined, () => `range ${this.rangeId}: a streamed snapshot was delivered without its data`);
    this.stateMachine.restore(batch, snapshot.data);
    this.confState = confState;
    this.applied = index;
    this.log.setApplyState(batch, { appliedIndex: index, confState });
    this.raw.restoreInLog(snapshot.metadata);
  }

  /** Phase 2: applies committed entries; their effects and the applied index share the batch. */
  apply(batch: WriteBatch, rd: Ready): Applied[] {
    const out: Applied[] = [];
    for (const e of rd.committedEntries) {
      if (e.index <= this.applied) continue; // covered by a snapshot installed in this Ready
      assert(e.index === this.applied + 1, () => `range ${this.rangeId}: applying ${e.index} after ${this.applied}`);
      this.visible ??= { index: this.applied, confState: this.confState };
      let result: unknown;
      if (e.type === 'conf-change') {
        assert(e.confChange !== undefined, 'conf-change entry without a change');
        // A refused change is never given to Raft: its configuration is that of the entries before.
        result = this.stateMachine.refuseConfChange?.(e.confChange);
        if (result === undefined) {
          this.confState = this.raw.applyConfChange(e.confChange);
          result = this.stateMachine.applyConfChange?.(batch, e.confChange, this.confState) ?? this.confState;
        }
      } else if (e.data.byteLength > 0) {
        result = this.stateMachine.apply(batch, e);
        if (result === APPLY_HELD) {
          // Nothing was written for it: this entry and those after it wait (see Store.releaseHeld).
          this.raw.holdApplyFrom(e.index);
          break;
        }
        const created = this.stateMachine.rangeCreatedBy?.(result);
        if (created !== undefined) this.writeCreatedRange(batch, created);
        const retired = this.stateMachine.rangeRetiredBy?.(result);
        if (retired !== undefined) this.retired.push(retired);
      }
      this.applied = e.index;
      out.push({ entry: e, result });
    }
    if (out.length > 0) {
      this.log.setApplyState(batch, { appliedIndex: this.applied, confState: this.confState });
      this.maybeCompactLog(batch);
    }
    return out;
  }

  /**
   * The Raft state of a range a split just created, alike on every replica:
   * a log truncated at SPLIT_INITIAL_INDEX, applied there, with this range's
   * membership. A replica of it this node already made for a peer's message
   * (waiting for a snapshot) may have voted: its term and vote are kept, so
   * the split never lets this node vote twice in one term.
   */
  private writeCreatedRange(batch: WriteBatch, rangeId: RangeId): void {
    const at = SPLIT_INITIAL_INDEX;
    const old = this.engine.get(keys.hardState(rangeId));
    const prior = old === undefined ? undefined : decodeHardState(old);
    const hard = prior !== undefined && prior.term > at ? { term: prior.term, vote: prior.vote, commit: at } : { term: at, vote: prior?.term === at ? prior.vote : 0, commit: at };
    batch.put(keys.truncated(rangeId), encodeJson({ index: at, term: at }));
    batch.put(keys.applyState(rangeId), encodeJson({ appliedIndex: at, confState: this.confState }));
    batch.put(keys.hardState(rangeId), encodeHardState(hard));
    this.created.push(rangeId);
  }

  /**
   * Keeps logRetainEntries behind the applied index, dropping the older ones
   * a tenth of that at a time: the deletes go in the apply batch, and a
   * larger step would hold up the loop turn that carries them. Large
   * entries (a bulk load's Txns) are bounded by logRetainBytes as well, as
   * TiKV bounds its log by size and count: 10,000 entries of 32 KiB would
   * keep 320 MiB of log for a range of at most 64 MiB.
   */
  private maybeCompactLog(batch: WriteBatch): void {
    const oldFirst = this.log.firstIndex();
    const byCount = this.applied - this.logRetainEntries;
    const step = Math.ceil(this.logRetainEntries / LOG_COMPACT_STEPS);
    const target = Math.max(byCount >= oldFirst + step ? byCount : oldFirst - 1, this.log.bytesCompactionIndex(this.applied, this.logRetainBytes));
    if (target < oldFirst) return;
    this.stateMachine.logCompacting(batch, { oldFirst, newFirst: target + 1, appliedIndex: this.applied });
    this.log.compact(batch, target);
  }

  /** The Store made this turn's apply batch visible in the engine (staged it), or had none: `applied` is readable now. */
  appliedVisible(): void {
    this.visible = undefined;
    this.stateMachine.settled(this.applied);
  }

  /**
   * A snapshot of the applied state the engine shows, for a lagging follower:
   * its metadata, and a reader of a read view taken now, at that index. The
   * data is read later, in chunks, by whoever carries the message (it is not
   * built here, inside the loop). Throws SNAPSHOT_TEMPORARILY_UNAVAILABLE when
   * the node holds too many open already; Raft asks again later.
   */
  private makeSnapshot(): Snapshot {
    // Range 1 first: a node without it knows no members, no meta table and no leases, and can use
    // none of the data ranges' snapshots meanwhile (a joining node under data ranges' snapshots).
    this.snapshots.admit(this.rangeId === META_RANGE);
    const point = this.visible ?? { index: this.applied, confState: this.confState };
    let index = point.index;
    // The deliberate bug: claim one entry more than the data holds, so the follower skips it.
    if (this.sabotage?.has('snapshot-drops-entries') === true && index + 1 <= this.raw.raft.raftLog.lastIndex()) index++;
    const term = this.raw.raft.raftLog.termOrUndefined(index) ?? this.log.term(index);
    const reader = this.snapshots.track(this.stateMachine.openSnapshot(point.index));
    return streamedSnapshot({ index, term, confState: point.confState }, reader);
  }
}
