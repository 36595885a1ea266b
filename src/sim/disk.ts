import type { Rng } from '../base/index.js';
import { MemoryLogStorage, type ConfState, type Entry, type HardState, type Snapshot } from '../raft/index.js';

/** One write to the simulated disk, as a storage engine transaction would make it. */
export type DiskOp =
  | { readonly kind: 'append'; readonly entries: readonly Entry[] }
  | { readonly kind: 'hard-state'; readonly hardState: HardState }
  | { readonly kind: 'apply-snapshot'; readonly snapshot: Snapshot }
  | { readonly kind: 'create-snapshot'; readonly index: number; readonly confState: ConfState; readonly data: Uint8Array }
  | { readonly kind: 'compact'; readonly index: number };

export interface CrashReport {
  readonly pendingWrites: number;
  readonly survived: number;
  readonly torn: boolean;
}

/**
 * A disk with a durable image and writes not yet synced. The live image (what
 * the running node reads) has every write; a crash keeps the durable image
 * plus a random prefix of the unsynced transactions, the last of which may be torn
 * (detected by its checksum and discarded, as LMDB's or a WAL's recovery would).
 */
export class SimDisk {
  private durable = new MemoryLogStorage();
  /** Unsynced transactions, in commit order. */
  private pending: (readonly DiskOp[])[] = [];
  live: MemoryLogStorage = this.durable.clone();
  syncs = 0;

  static bootstrap(confState: ConfState): SimDisk {
    const disk = new SimDisk();
    // Every founding member starts from the same snapshot at index 1 holding the initial membership.
    disk.durable.applySnapshot({ metadata: { index: 1, term: 1, confState }, data: new Uint8Array() });
    disk.durable.setHardState({ term: 1, vote: 0, commit: 1 });
    disk.live = disk.durable.clone();
    return disk;
  }

  /** Commits one transaction: all of its ops survive a crash, or none do. */
  write(ops: readonly DiskOp[]): void {
    if (ops.length === 0) return;
    for (const op of ops) applyOp(this.live, op);
    this.pending.push(ops);
  }

  sync(): void {
    for (const tx of this.pending) for (const op of tx) applyOp(this.durable, op);
    this.pending = [];
    this.syncs++;
  }

  hasPending(): boolean {
    return this.pending.length > 0;
  }

  /** Loses unsynced writes, except a random prefix that happened to reach the platter. */
  crash(rng: Rng): CrashReport {
    const pendingWrites = this.pending.length;
    let survived = 0;
    let torn = false;
    if (pendingWrites > 0 && rng.chance(0.5)) {
      survived = rng.intBelow(pendingWrites + 1);
      // The write after the surviving prefix was torn mid-way: its checksum fails and recovery drops it.
      torn = survived < pendingWrites;
      for (const tx of this.pending.slice(0, survived)) for (const op of tx) applyOp(this.durable, op);
    }
    this.pending = [];
    this.live = this.durable.clone();
    return { pendingWrites, survived, torn };
  }
}

function applyOp(storage: MemoryLogStorage, op: DiskOp): void {
  switch (op.kind) {
    case 'append':
      storage.append(op.entries);
      return;
    case 'hard-state':
      storage.setHardState(op.hardState);
      return;
    case 'apply-snapshot':
      storage.applySnapshot(op.snapshot);
      return;
    case 'create-snapshot':
      if (op.index > storage.snapshot().metadata.index && op.index <= storage.lastIndex()) {
        storage.createSnapshot(op.index, op.confState, op.data);
      }
      return;
    case 'compact':
      if (op.index >= storage.firstIndex() && op.index <= storage.snapshot().metadata.index) storage.compact(op.index);
      return;
  }
}
