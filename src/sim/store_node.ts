import type { Rng } from '../base/index.js';
import { type ConfChange, type ConfState, type NodeId, type RawNode, type Ready } from '../raft/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import {
  encodeCommand,
  type MemberRecord,
  type CommandResult,
  MvccStateMachine,
  type Applied,
  type ReplicaRaftOptions,
  type ProposalWindow,
  type RangeMessage,
  Store,
  WatchHub,
  keys,
} from '../kv/index.js';
import type { MvccStore, TxnRequest } from '../mvcc/index.js';
import type { MemoryEngine } from '../storage/memory.js';
import type { KvCommand, KvResult } from './commands.js';

/** The one range the simulator replicates today (splits come later). */
export const SIM_RANGE = 1;

export type ClientReply = { readonly kind: 'ok'; readonly result: KvResult } | { readonly kind: 'fail'; readonly reason: string };

export interface StoreNodeEnv {
  readonly id: NodeId;
  readonly rng: Rng;
  readonly engine: MemoryEngine;
  readonly sabotage: Sabotage;
  readonly raft: ReplicaRaftOptions;
  readonly logRetainEntries: number;
  readonly reproposeOnNewLeader: boolean;
  /** The founding membership, for a founding member's first start. */
  readonly bootstrap: ConfState | undefined;
  send(to: NodeId, messages: readonly RangeMessage[]): void;
  scheduleLoop(loop: () => void): void;
  /** The store's proposal window, if the run uses one. */
  readonly proposalWindow: ProposalWindow | undefined;
  onApply(id: NodeId, applied: Applied): void;
  onReady(id: NodeId, rd: Ready, raw: RawNode): void;
  /** The store stopped serving: its storage failed (a refused sync, a corrupt record read back). */
  onStorageFailed(error: Error): void;
  trace(line: string): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A simulated node running the production store (src/kv) on the in-memory
 * engine: the same Store, Replica, MVCC state machine and ready loop as the
 * server, with the simulator's transport, clock and disk.
 */
export class SimStoreNode {
  readonly store: Store;
  /** Watches on this node, fed by every applied transaction (the same hub the server uses). */
  readonly watches: WatchHub;
  private readonly sm: MvccStateMachine;
  private stopped = false;

  constructor(env: StoreNodeEnv) {
    this.sm = new MvccStateMachine(env.engine, SIM_RANGE);
    const sm = this.sm;
    this.watches = new WatchHub(() => sm.mvcc);
    this.store = new Store({
      nodeId: env.id,
      engine: env.engine,
      transport: { send: (to, msgs) => env.send(to, msgs) },
      rng: env.rng,
      raft: { ...env.raft, logger: (l) => env.trace(l) },
      stateMachines: () => this.sm,
      scheduleLoop: (loop) => env.scheduleLoop(loop),
      logRetainEntries: env.logRetainEntries,
      reproposeOnNewLeader: env.reproposeOnNewLeader,
      ...(env.proposalWindow === undefined ? {} : { proposalWindow: env.proposalWindow }),
      sabotage: env.sabotage,
      onStorageFailed: (error) => env.onStorageFailed(error),
      onApplied: (_range, a) => {
        env.onApply(env.id, a);
        const r = a.result as CommandResult | undefined;
        if (r !== undefined && r.kind === 'txn' && r.events.length > 0) this.watches.onApplied(r.response.revision, r.events);
      },
      onReady: (_range, rd) => {
        // A snapshot replaces the key space: watchers catch up from its history.
        if (rd.snapshot !== undefined) this.watches.onReset();
        env.onReady(env.id, rd, this.raw);
      },
    });
    const founders = env.bootstrap?.voters ?? [];
    this.store.openRange(
      SIM_RANGE,
      env.bootstrap === undefined ? undefined : { confState: env.bootstrap, seed: (batch) => this.sm.seedMembers(batch, founders.map(simMemberRecord)) },
    );
  }

  get raw(): RawNode {
    const r = this.store.replica(SIM_RANGE);
    if (r === undefined) throw new Error('sim range missing');
    return r.raw;
  }

  stop(): void {
    this.stopped = true;
    this.store.close();
  }

  isStopped(): boolean {
    return this.stopped;
  }

  tick(): void {
    this.store.tick();
    this.watches.pump();
  }

  /** Ticks owed after a pause, delivered at once as the node runtime's Ticker does. */
  catchUpTicks(ticks: number): void {
    this.store.catchUpTicks(ticks);
    this.watches.pump();
  }

  receive(messages: readonly RangeMessage[]): void {
    this.store.receive(messages);
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    this.store.reportSnapshot(SIM_RANGE, to, ok);
  }

  write(requestId: string, command: KvCommand, reply: (r: ClientReply) => void): void {
    const txn = toTxn(command);
    this.store.propose(SIM_RANGE, requestId, encodeCommand({ kind: 'txn', requestId, txn }), (outcome) => {
      if (outcome.kind === 'dropped') return reply({ kind: 'fail', reason: outcome.error.message });
      const result = outcome.result as CommandResult;
      if (result.kind === 'txn') return reply({ kind: 'ok', result: command.op === 'cas' ? { succeeded: result.response.succeeded } : {} });
      if (result.kind === 'error') return reply({ kind: 'fail', reason: result.message });
      // A duplicate: the first copy's answer went to nobody here; the client times out ("unknown").
    });
  }

  read(requestId: string, key: string, reply: (r: ClientReply) => void): void {
    void requestId;
    this.store.linearizableRead(SIM_RANGE, (error) => {
      if (error !== undefined) return reply({ kind: 'fail', reason: error.message });
      const kvs = this.sm.mvcc.range({ key: encoder.encode(key) }).kvs;
      const kv = kvs[0];
      reply({ kind: 'ok', result: { value: kv === undefined ? null : decoder.decode(kv.value) } });
    });
  }

  proposeConfChange(cc: ConfChange): boolean {
    return this.store.proposeConfChange(SIM_RANGE, cc).kind === 'appended';
  }

  transferLeader(to: NodeId): void {
    this.store.transferLeader(SIM_RANGE, to);
  }

  /** A digest of the visible key space and the member table, for comparing replicas. */
  digest(): string {
    const kvs = this.sm.mvcc.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) }).kvs;
    const members = this.memberIds().join(',');
    return `${kvs.map((kv) => `${decoder.decode(kv.key)}=${decoder.decode(kv.value)}`).join(';')} members ${members}`;
  }

  /** The ids in the replicated member table, sorted. */
  memberIds(): number[] {
    return this.sm.members.all().map((m) => m.id);
  }

  /** The members of the applied incoming configuration (the member table must list exactly these), sorted. */
  incomingConfIds(): number[] {
    const cs = this.store.replica(SIM_RANGE)?.currentConfState();
    return [...new Set([...(cs?.voters ?? []), ...(cs?.learners ?? []), ...(cs?.learnersNext ?? [])])].sort((a, b) => a - b);
  }

  mvccStore(): MvccStore {
    return this.sm.mvcc;
  }

  applied(): number {
    return this.store.replica(SIM_RANGE)?.appliedIndex() ?? 0;
  }
}

function toTxn(command: KvCommand): TxnRequest {
  const key = encoder.encode(command.key);
  switch (command.op) {
    case 'put':
      return { compare: [], success: [{ type: 'put', put: { key, value: encoder.encode(command.value) } }], failure: [] };
    case 'delete':
      return { compare: [], success: [{ type: 'deleteRange', deleteRange: { key } }], failure: [] };
    case 'cas': {
      // Absent is "version 0"; present compares the value (values are unique per key).
      const compare =
        command.expected === null
          ? { key, target: 'VERSION' as const, result: 'EQUAL' as const, operand: 0 }
          : { key, target: 'VALUE' as const, result: 'EQUAL' as const, value: encoder.encode(command.expected) };
      return { compare: [compare], success: [{ type: 'put', put: { key, value: encoder.encode(command.value) } }], failure: [] };
    }
  }
}

const LOG_PREFIX = keys.logStart(SIM_RANGE).subarray(0, 10);

/** Whether `key` is one of the sim range's Raft log entries (the tail records a torn append cuts short). */
export function isSimLogEntryKey(key: Uint8Array): boolean {
  if (key.length !== LOG_PREFIX.length + 8) return false;
  for (let i = 0; i < LOG_PREFIX.length; i++) if (key[i] !== LOG_PREFIX[i]) return false;
  return true;
}

/** The member record the simulator gives node `id` (founders at bootstrap, others when added). */
export function simMemberRecord(id: NodeId): MemberRecord {
  return { id, name: `s${id}`, peerUrls: [`http://sim-${id}:2380`], clientUrls: [] };
}
