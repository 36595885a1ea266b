import { isTesseraError } from '../base/index.js';
import type { Message } from '../raft/index.js';
import { SNAPSHOT_MEASURE_SLICE_PAIRS, snapshotReaderOf } from '../kv/index.js';
import type { Scheduler } from './scheduler.js';

/**
 * The simulator streams snapshot data in chunks this small, so that even its
 * few keys take several chunks and records are cut across them, and the
 * sender's loop runs between chunks as it does in the server.
 */
export const SIM_SNAPSHOT_CHUNK_BYTES = 128;

export interface SnapshotCarry {
  readonly sched: Scheduler;
  /** A MsgSnap whose snapshot is a reader (see snapshotReaderOf). */
  readonly message: Message;
  /** Whether the process that made the snapshot still runs: a crash ends its streams. */
  alive(): boolean;
  /** The message with its data, once every chunk was read: the network carries it from here. */
  send(message: Message): void;
  /** The reader was closed before the end (held too long): the send failed. */
  failed(message: Message): void;
}

/**
 * Reads a snapshot's data one step per scheduler event, as the server's
 * transport reads it between event-loop turns: the sizing pass a slice at a
 * time, then one chunk per step. Deterministic: the steps are events.
 */
export function carrySnapshot(c: SnapshotCarry): void {
  const snapshot = c.message.snapshot;
  const reader = snapshot === undefined ? undefined : snapshotReaderOf(snapshot);
  if (snapshot === undefined || reader === undefined) {
    c.send(c.message);
    return;
  }
  const chunks: Uint8Array[] = [];
  const step = (): void => {
    if (!c.alive()) {
      reader.close();
      return;
    }
    let chunk: Uint8Array | undefined;
    try {
      if (!reader.measure(SNAPSHOT_MEASURE_SLICE_PAIRS)) {
        c.sched.after(0, step);
        return;
      }
      chunk = reader.nextChunk(SIM_SNAPSHOT_CHUNK_BYTES);
    } catch (error) {
      if (!isTesseraError(error, 'CLOSED')) throw error;
      c.failed(c.message);
      return;
    }
    if (chunk !== undefined) {
      chunks.push(chunk);
      c.sched.after(0, step);
      return;
    }
    const data = new Uint8Array(chunks.reduce((n, x) => n + x.byteLength, 0));
    let at = 0;
    for (const x of chunks) {
      data.set(x, at);
      at += x.byteLength;
    }
    c.send({ ...c.message, snapshot: { metadata: snapshot.metadata, data } });
  };
  c.sched.after(0, step);
}
