import type { ConfChange, ConfState, Entry } from '../raft/index.js';
import type { WriteBatch } from '../storage/engine.js';
import type { SnapshotDataReader } from './snapshot_stream.js';

/** The replica's log as a state machine may read it: state derived from recent entries (the dedupe window) is rebuilt from it. */
export interface RecentLog {
  firstIndex(): number;
  /** Entries [lo, hi), at most maxBytes of data (at least one). */
  entries(lo: number, hi: number, maxBytes: number): readonly Entry[];
}

/** Where a log compaction is going, for state that must outlive the entries it drops. */
export interface LogCompaction {
  /** The log's first index now, and after the compaction. */
  readonly oldFirst: number;
  readonly newFirst: number;
  readonly appliedIndex: number;
}

/**
 * What a range replicates. The replica hands it each committed normal entry
 * in log order; its writes go into the batch that also records the applied
 * index, so a command and its applied index land atomically (DESIGN.md
 * decision 2). `apply` must be deterministic: every replica computes the
 * same writes and the same result from the same entry.
 */
/**
 * What `apply` returns for an entry it cannot apply yet (a merge whose right
 * range lags on this node, ADR 0009 §6), having written nothing: the replica
 * stops before it and Raft hands it out again later.
 */
export const APPLY_HELD: unique symbol = Symbol('apply-held');

export interface RangeStateMachine {
  /** Applies one committed entry; returns the result for the proposer (undefined for a no-op), or APPLY_HELD. */
  apply(batch: WriteBatch, entry: Entry): unknown;
  /**
   * Sees a membership change once Raft has applied it (optional): the
   * application's own record of members changes in the same batch. Its
   * result, if any, answers the proposer like a command's.
   */
  applyConfChange?(batch: WriteBatch, cc: ConfChange, confState: ConfState): unknown;
  /**
   * A refusal of a committed membership change (optional), decided from the
   * applied state alone so that every replica refuses it alike: Raft's
   * configuration stays as it was, and the refusal answers the proposer.
   * Undefined: the change applies.
   */
  refuseConfChange?(cc: ConfChange): unknown;
  /** Called once by the replica, before any other call: the log this state machine's range replicates. */
  attachLog(log: RecentLog): void;
  /** The replica that attached its log is replaced (an empty one, by the range a split created): the next one attaches its own. */
  detachLog?(): void;
  /** The engine now shows every entry applied up to `appliedIndex` (the batch was staged or committed). */
  settled(appliedIndex: number): void;
  /** The replica compacts its log in `batch`; whatever must outlive the dropped entries is written there too. */
  logCompacting(batch: WriteBatch, compaction: LogCompaction): void;
  /**
   * Opens a snapshot of the applied state the engine shows, which is at
   * `appliedIndex`, for a follower: a read view is taken now, and the data is
   * read from it later, in chunks, while the loop goes on (snapshot_stream.ts).
   */
  openSnapshot(appliedIndex: number): SnapshotDataReader;
  /** Replaces the state with a snapshot's data. */
  restore(batch: WriteBatch, data: Uint8Array): void;
  /** A digest of the state, for comparing replicas. */
  digest(): string;
  /**
   * The range an applied entry's result created (a split's right-hand
   * range), if any: the replica writes its Raft state in the same batch and
   * the store opens it once that batch is visible.
   */
  rangeCreatedBy?(result: unknown): number | undefined;
  /** The range an applied entry's result retired (a merge's right-hand range): the store deletes its state in the same batch and closes it. */
  rangeRetiredBy?(result: unknown): number | undefined;
  /** The range's bounds as applied; undefined while the replica holds no state yet (made for a peer's message). */
  readonly bounds?: KeyBounds | undefined;
  /** The bounds a snapshot's data gives the range; undefined if it carries none (refused). */
  snapshotBounds?(data: Uint8Array): KeyBounds | undefined;
}

/** A range's user keys, [start, end); `end` undefined is the end of the key space. */
export interface KeyBounds {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
  /** The range's epoch (a descriptor's), where known: a merge raises its version (see Store.snapshotFits). */
  readonly epoch?: { readonly version: number };
}

export type StateMachineFactory = (rangeId: number) => RangeStateMachine;

/** The membership a range starts with when it is created (bootstrap). */
export interface RangeBootstrap {
  readonly rangeId: number;
  readonly confState: ConfState;
}
