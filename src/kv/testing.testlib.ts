import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import type { ConfState, NodeId, Snapshot } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { encodeCommand, type KvCommand } from './commands.js';
import { type CommandResult, MvccStateMachine } from './mvcc_state_machine.js';
import type { ReplicaRaftOptions } from './replica.js';
import { type RangeMessage, type RevisionSource, Store } from './store.js';
import { SNAPSHOT_CHUNK_BYTES, SNAPSHOT_MEASURE_SLICE_PAIRS, type SnapshotDataReader, snapshotReaderOf } from './snapshot_stream.js';

export const RANGE = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A hand-driven cluster: loops, syncs and messages run only when `settle` runs them, in order. */
export class Harness {
  readonly tasks: (() => void)[] = [];
  readonly engines = new Map<NodeId, MemoryEngine>();
  readonly stores = new Map<NodeId, Store>();
  readonly sms = new Map<NodeId, MvccStateMachine>();
  syncs = 0;
  /** Snapshot data is carried in chunks of this many bytes. */
  snapshotChunkBytes = SNAPSHOT_CHUNK_BYTES;
  /** The size of every snapshot chunk carried, in order. */
  readonly snapshotChunks: number[] = [];
  /** Called after each snapshot chunk is carried (a test may act between chunks). */
  onSnapshotChunk: ((bytes: number) => void) | undefined;
  /** The fake clock of the proposal window, moved by `advance`. */
  nowMs = 0;
  /** Sees every batch sent from one node to another; what it returns is delivered (default: all of it). */
  filter: (from: NodeId, to: NodeId, msgs: readonly RangeMessage[]) => readonly RangeMessage[] = (_from, _to, msgs) => msgs;
  /** Nodes whose liveness (Transport.sendLiveness) is not delivered: down, or cut off. */
  readonly silenced = new Set<NodeId>();
  /** Liveness messages delivered, per sender. */
  readonly livenessSent = new Map<NodeId, number>();
  /** Starts per node: a restarted node gets a fresh Rng seed, as a real process does. */
  private readonly boots = new Map<NodeId, number>();
  private timers: { readonly atMs: number; readonly run: () => void }[] = [];

  constructor(
    readonly ids: NodeId[],
    private readonly options: {
      readonly proposalWindowMs?: number;
      readonly raft?: ReplicaRaftOptions;
      readonly catchUpClock?: (id: NodeId) => void;
      /** Each node's source of revision stamps; absent: the stores stamp nothing. */
      readonly revisions?: (id: NodeId) => RevisionSource;
      /** The transport carries node liveness, so ranges may quiesce (ADR 0010; with raft.quiesceAfterTicks). */
      readonly liveness?: boolean;
    } = {},
  ) {
    for (const id of ids) {
      this.engines.set(id, new MemoryEngine({ scheduleSync: (f) => this.tasks.push(() => { this.syncs++; f(); }) }));
      this.start(id);
    }
  }

  start(id: NodeId): void {
    const engine = this.engines.get(id) as MemoryEngine;
    const sm = new MvccStateMachine(engine, RANGE);
    const others = new Map<number, MvccStateMachine>();
    const boot = this.boots.get(id) ?? 0;
    this.boots.set(id, boot + 1);
    const store = new Store({
      nodeId: id,
      engine,
      transport: {
        send: (to: NodeId, msgs: readonly RangeMessage[]) => {
          const delivered = this.filter(id, to, msgs);
          for (const m of msgs) if (!delivered.includes(m)) readerOf(m)?.close();
          const plain = delivered.filter((m) => readerOf(m) === undefined);
          if (plain.length > 0) this.tasks.push(() => this.stores.get(to)?.receive(plain));
          for (const m of delivered) if (readerOf(m) !== undefined) this.streamSnapshot(to, m);
        },
        sendRevisions: () => {},
        ...(this.options.liveness === true
          ? {
              sendLiveness: (to: NodeId) => {
                this.livenessSent.set(id, (this.livenessSent.get(id) ?? 0) + 1);
                if (!this.silenced.has(id)) this.tasks.push(() => this.stores.get(to)?.receiveLiveness(id));
              },
            }
          : {}),
      },
      rng: new SeededRng(boot === 0 ? id : id + 1000 * boot),
      raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1, ...this.options.raft },
      ...(this.options.catchUpClock === undefined ? {} : { catchUpClock: () => this.options.catchUpClock?.(id) }),
      ...(this.options.revisions === undefined ? {} : { revisions: this.options.revisions(id) }),
      // Other ranges (a replica made for a peer's message) get their own machines.
      stateMachines: (rangeId) => {
        if (rangeId === RANGE) return sm;
        let other = others.get(rangeId);
        if (other === undefined) others.set(rangeId, (other = new MvccStateMachine(engine, rangeId)));
        return other;
      },
      scheduleLoop: (loop) => this.tasks.push(loop),
      logRetainEntries: 5,
      ...(this.options.proposalWindowMs === undefined
        ? {}
        : { proposalWindow: { windowMs: this.options.proposalWindowMs, nowMs: () => this.nowMs, after: (ms: number, run: () => void) => this.timers.push({ atMs: this.nowMs + ms, run }) } }),
    });
    const cs: ConfState = { voters: this.ids, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    store.openRange(RANGE, { confState: cs });
    this.stores.set(id, store);
    this.sms.set(id, sm);
  }

  /**
   * Carries a snapshot's data as the server's transport does: one step per
   * task (a slice of the sizing pass, or one chunk), so loop turns run
   * between them; then delivers the MsgSnap with its data.
   */
  private streamSnapshot(to: NodeId, rm: RangeMessage): void {
    const snapshot = rm.message.snapshot as Snapshot;
    const reader = snapshotReaderOf(snapshot) as SnapshotDataReader;
    const chunks: Uint8Array[] = [];
    const step = (): void => {
      if (!reader.measure(SNAPSHOT_MEASURE_SLICE_PAIRS)) return void this.tasks.push(step);
      const chunk = reader.nextChunk(this.snapshotChunkBytes);
      if (chunk !== undefined) {
        chunks.push(chunk);
        this.snapshotChunks.push(chunk.byteLength);
        this.onSnapshotChunk?.(chunk.byteLength);
        return void this.tasks.push(step);
      }
      const data = Buffer.concat(chunks);
      this.stores.get(to)?.receive([{ rangeId: rm.rangeId, message: { ...rm.message, snapshot: { metadata: snapshot.metadata, data } } }]);
    };
    this.tasks.push(step);
  }

  settle(maxTasks = 100_000): void {
    for (let n = 0; n < maxTasks && this.tasks.length > 0; n++) (this.tasks.shift() as () => void)();
  }

  /** Moves the clock, runs the timers that came due, and settles. */
  advance(ms: number): void {
    this.nowMs += ms;
    const due = this.timers.filter((t) => t.atMs <= this.nowMs);
    this.timers = this.timers.filter((t) => t.atMs > this.nowMs);
    for (const t of due) this.tasks.push(t.run);
    this.settle();
  }

  tickAll(times: number): void {
    for (let i = 0; i < times; i++) {
      for (const s of this.stores.values()) s.tick();
      this.settle();
    }
  }

  leader(): Store {
    const l = [...this.stores.values()].find((s) => s.replica(RANGE)?.raw.raft.state === 'leader');
    assert.ok(l !== undefined, 'no leader');
    return l;
  }

  put(store: Store, requestId: string, key: string, value: string, done: (r: CommandResult) => void): void {
    const txn = { compare: [], success: [{ type: 'put' as const, put: { key: encoder.encode(key), value: encoder.encode(value) } }], failure: [] };
    store.propose(RANGE, requestId, encodeCommand({ kind: 'txn', requestId, txn }), (o) => {
      assert.equal(o.kind, 'applied');
      if (o.kind === 'applied') done(o.result as CommandResult);
    });
  }

  command(store: Store, command: KvCommand, done: (r: CommandResult) => void): void {
    store.propose(RANGE, command.requestId, encodeCommand(command), (o) => {
      assert.equal(o.kind, 'applied');
      if (o.kind === 'applied') done(o.result as CommandResult);
    });
  }

  value(id: NodeId, key: string): string | undefined {
    const kv = this.sms.get(id)?.mvcc.range({ key: encoder.encode(key) }).kvs[0];
    return kv === undefined ? undefined : decoder.decode(kv.value);
  }
}


/** The reader of a streamed snapshot the message carries, if any. */
function readerOf(m: RangeMessage): SnapshotDataReader | undefined {
  const snapshot = m.message.snapshot;
  return snapshot === undefined ? undefined : snapshotReaderOf(snapshot);
}
