import assert from 'node:assert/strict';
import { SeededRng } from '../base/index.js';
import type { ConfState, NodeId } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { encodeCommand, type KvCommand } from './commands.js';
import { type CommandResult, MvccStateMachine } from './mvcc_state_machine.js';
import type { ReplicaRaftOptions } from './replica.js';
import { type RangeMessage, Store } from './store.js';

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
  /** The fake clock of the proposal window, moved by `advance`. */
  nowMs = 0;
  /** Sees every batch sent from one node to another; what it returns is delivered (default: all of it). */
  filter: (from: NodeId, to: NodeId, msgs: readonly RangeMessage[]) => readonly RangeMessage[] = (_from, _to, msgs) => msgs;
  /** Starts per node: a restarted node gets a fresh Rng seed, as a real process does. */
  private readonly boots = new Map<NodeId, number>();
  private timers: { readonly atMs: number; readonly run: () => void }[] = [];

  constructor(
    readonly ids: NodeId[],
    private readonly options: { readonly proposalWindowMs?: number; readonly raft?: ReplicaRaftOptions; readonly catchUpClock?: (id: NodeId) => void } = {},
  ) {
    for (const id of ids) {
      this.engines.set(id, new MemoryEngine({ scheduleSync: (f) => this.tasks.push(() => { this.syncs++; f(); }) }));
      this.start(id);
    }
  }

  start(id: NodeId): void {
    const engine = this.engines.get(id) as MemoryEngine;
    const sm = new MvccStateMachine(engine, RANGE);
    const boot = this.boots.get(id) ?? 0;
    this.boots.set(id, boot + 1);
    const store = new Store({
      nodeId: id,
      engine,
      transport: {
        send: (to: NodeId, msgs: readonly RangeMessage[]) => {
          const delivered = this.filter(id, to, msgs);
          if (delivered.length > 0) this.tasks.push(() => this.stores.get(to)?.receive(delivered));
        },
      },
      rng: new SeededRng(boot === 0 ? id : id + 1000 * boot),
      raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1, ...this.options.raft },
      ...(this.options.catchUpClock === undefined ? {} : { catchUpClock: () => this.options.catchUpClock?.(id) }),
      stateMachines: () => sm,
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

