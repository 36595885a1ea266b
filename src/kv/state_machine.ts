import type { ConfChange, ConfState, Entry } from '../raft/index.js';
import type { WriteBatch } from '../storage/engine.js';

/**
 * What a range replicates. The replica hands it each committed normal entry
 * in log order; its writes go into the batch that also records the applied
 * index, so a command and its applied index land atomically (DESIGN.md
 * decision 2). `apply` must be deterministic: every replica computes the
 * same writes and the same result from the same entry.
 */
export interface RangeStateMachine {
  /** Applies one committed entry; returns the result for the proposer (undefined for a no-op). */
  apply(batch: WriteBatch, entry: Entry): unknown;
  /**
   * Sees a membership change once Raft has applied it (optional): the
   * application's own record of members changes in the same batch. Its
   * result, if any, answers the proposer like a command's.
   */
  applyConfChange?(batch: WriteBatch, cc: ConfChange, confState: ConfState): unknown;
  /** Serializes the applied state, for a snapshot sent to a follower. */
  snapshotData(): Uint8Array;
  /** Replaces the state with a snapshot's data. */
  restore(batch: WriteBatch, data: Uint8Array): void;
  /** A digest of the state, for comparing replicas. */
  digest(): string;
}

export type StateMachineFactory = (rangeId: number) => RangeStateMachine;

/** The membership a range starts with when it is created (bootstrap). */
export interface RangeBootstrap {
  readonly rangeId: number;
  readonly confState: ConfState;
}
