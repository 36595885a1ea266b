import { assert, type Rng } from '../base/index.js';
import {
  DEFAULT_RAFT_OPTIONS,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type Ready,
  RawNode,
} from '../raft/index.js';
import type { Sabotage } from '../raft/sabotage.js';
import type { DiskOp, SimDisk } from './disk.js';
import { type KvCommand, type KvResult, KvStateMachine, decodeCommand, encodeCommand } from './state_machine.js';

/** What a node answers a client: a definite result, or a definite failure (the op did not happen). */
export type ClientReply = { readonly kind: 'ok'; readonly result: KvResult } | { readonly kind: 'fail'; readonly reason: string };

export interface NodeEnv {
  readonly id: NodeId;
  readonly rng: Rng;
  readonly disk: SimDisk;
  readonly sabotage: Sabotage;
  readonly raft: Pick<
    RaftConfig,
    'electionTimeoutTicks' | 'heartbeatIntervalTicks' | 'preVote' | 'checkQuorum' | 'readOnlyOption' | 'maxClockDriftRatio' | 'maxSizePerMsgBytes'
  >;
  /** Apply entries this many past the last snapshot, then snapshot and compact. */
  readonly snapshotEveryEntries: number;
  /** Entries kept in the log below the snapshot, so slightly lagging followers avoid a snapshot. */
  readonly compactionMarginEntries: number;
  send(messages: readonly Message[]): void;
  /** Schedules the end of a disk sync; the node continues its loop turn then. `vote`: it persists a vote. */
  scheduleSync(done: () => void, vote: boolean): void;
  onApply(id: NodeId, entry: Entry): void;
  onLeader(id: NodeId, term: number): void;
  onConfState(id: NodeId, cs: ConfState, index: number): void;
  trace(line: string): void;
}

interface PendingRead {
  readonly key: string;
  readonly reply: (r: ClientReply) => void;
  index?: number;
}

/**
 * A replica of the key-value store on one simulated node: a RawNode, its disk
 * and the state machine, driven by one ready loop (persist → sync → send →
 * apply → advance). The same loop will live in src/kv's Store.
 */
export class SimKvNode {
  readonly raw: RawNode;
  private sm: KvStateMachine;
  private confState: ConfState;
  private lastSnapshotIndex: number;
  private readonly pendingWrites = new Map<string, (r: ClientReply) => void>();
  private readonly pendingReads = new Map<string, PendingRead>();
  private syncing = false;
  /** A membership change was applied since the last snapshot (see maybeSnapshot). */
  private confChangedSinceSnapshot = false;
  private stopped = false;
  private readonly env: NodeEnv;

  constructor(env: NodeEnv) {
    this.env = env;
    const storage = env.disk.live;
    const snap = storage.snapshot();
    this.sm = KvStateMachine.restore(snap.data);
    // Requests applied inside the snapshot were never applied here one by one, so their answers
    // are unknown: stop waiting and let the clients time out.
    for (const id of [...this.pendingWrites.keys()]) if (this.sm.hasApplied(id)) this.pendingWrites.delete(id);
    this.confState = snap.metadata.confState;
    this.lastSnapshotIndex = snap.metadata.index;
    const noGuard = env.sabotage.has('no-prevote-checkquorum');
    this.raw = new RawNode({
      ...DEFAULT_RAFT_OPTIONS,
      ...env.raft,
      ...(noGuard ? { preVote: false, checkQuorum: false, readOnlyOption: 'safe' as const } : {}),
      id: env.id,
      storage,
      appliedIndex: snap.metadata.index,
      rng: env.rng,
      maxInflightMsgs: 16,
      maxInflightBytes: 64 * 1024,
      maxUncommittedEntriesSizeBytes: 256 * 1024,
      sabotage: env.sabotage,
      logger: (line) => env.trace(line),
    });
  }

  stop(): void {
    this.stopped = true;
  }

  isStopped(): boolean {
    return this.stopped;
  }

  tick(): void {
    this.raw.tick();
    this.loop();
  }

  step(m: Message): void {
    this.raw.step(m);
    this.loop();
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    this.raw.reportSnapshot(to, ok);
    this.loop();
  }

  write(requestId: string, command: KvCommand, reply: (r: ClientReply) => void): void {
    const res = this.raw.propose(encodeCommand(requestId, command));
    if (res.kind === 'dropped') {
      // Never appended anywhere, so it can never commit: a definite failure.
      reply({ kind: 'fail', reason: res.reason });
    } else {
      this.pendingWrites.set(requestId, reply);
    }
    this.loop();
  }

  read(requestId: string, key: string, reply: (r: ClientReply) => void): void {
    const reason = this.raw.readIndex(requestId);
    if (reason !== undefined) {
      reply({ kind: 'fail', reason });
    } else {
      this.pendingReads.set(requestId, { key, reply });
    }
    this.loop();
  }

  proposeConfChange(cc: Parameters<RawNode['proposeConfChange']>[0]): boolean {
    const res = this.raw.proposeConfChange(cc);
    this.loop();
    return res.kind === 'appended';
  }

  transferLeader(to: NodeId): void {
    this.raw.transferLeader(to);
    this.loop();
  }

  digest(): string {
    return this.sm.digest();
  }

  applied(): number {
    return this.raw.raft.raftLog.applied;
  }

  /** One turn of the ready loop. While a sync is outstanding, new work waits for the next turn. */
  private loop(): void {
    if (this.stopped || this.syncing || !this.raw.hasReady()) return;
    const rd = this.raw.ready();
    if (rd.softState?.state === 'leader') this.env.onLeader(this.env.id, this.raw.raft.term);
    this.persist(rd);
    const early = this.messagesBeforeSync(rd);
    if (early.length > 0) this.env.send(early);
    if (this.env.disk.hasPending() && rd.mustSync) {
      this.syncing = true;
      this.env.scheduleSync(() => {
        if (this.stopped) return;
        this.env.disk.sync();
        this.syncing = false;
        this.finish(rd, early);
      }, rd.hardState !== undefined && rd.hardState.vote !== 0);
    } else {
      this.finish(rd, early);
    }
  }

  private persist(rd: Ready): void {
    // One transaction per Ready: the snapshot, entries and hard state land together or not at all.
    const ops: DiskOp[] = [];
    if (rd.snapshot !== undefined) ops.push({ kind: 'apply-snapshot', snapshot: rd.snapshot });
    if (rd.entries.length > 0) ops.push({ kind: 'append', entries: rd.entries });
    if (rd.hardState !== undefined) ops.push({ kind: 'hard-state', hardState: rd.hardState });
    this.env.disk.write(ops);
  }

  /** Correct nodes send nothing before the sync. The deliberate bugs send some messages early. */
  private messagesBeforeSync(rd: Ready): readonly Message[] {
    const sab = this.env.sabotage;
    if (sab.has('ack-before-sync')) return rd.messages;
    if (sab.has('vote-before-persist')) return rd.messages.filter((m) => m.type === 'MsgVoteResp' || m.type === 'MsgPreVoteResp' || m.type === 'MsgVote');
    return [];
  }

  private finish(rd: Ready, alreadySent: readonly Message[]): void {
    const rest = alreadySent.length === 0 ? rd.messages : rd.messages.filter((m) => !alreadySent.includes(m));
    if (rest.length > 0) this.env.send(rest);
    if (rd.snapshot !== undefined) this.applySnapshot(rd);
    for (const e of rd.committedEntries) this.applyEntry(e);
    for (const rs of rd.readStates) {
      const pending = this.pendingReads.get(rs.context);
      if (pending !== undefined) pending.index = rs.index;
    }
    this.raw.advance();
    this.raw.checkInvariants();
    this.serveReads();
    this.maybeSnapshot();
    this.loop();
  }

  private applySnapshot(rd: Ready): void {
    const snap = rd.snapshot;
    assert(snap !== undefined, 'no snapshot to apply');
    this.sm = KvStateMachine.restore(snap.data);
    // Requests applied inside the snapshot were never applied here one by one, so their answers
    // are unknown: stop waiting and let the clients time out.
    for (const id of [...this.pendingWrites.keys()]) if (this.sm.hasApplied(id)) this.pendingWrites.delete(id);
    this.confState = snap.metadata.confState;
    this.lastSnapshotIndex = snap.metadata.index;
    this.env.onConfState(this.env.id, this.confState, snap.metadata.index);
  }

  private applyEntry(e: Entry): void {
    this.env.onApply(this.env.id, e);
    if (e.type === 'conf-change') {
      assert(e.confChange !== undefined, 'conf-change entry without change');
      this.confState = this.raw.applyConfChange(e.confChange);
      this.confChangedSinceSnapshot = true;
      this.env.onConfState(this.env.id, this.confState, e.index);
      return;
    }
    if (e.data.byteLength === 0) return; // a leader's no-op
    const { requestId, command } = decodeCommand(e.data);
    const result = this.sm.apply(requestId, command);
    const reply = this.pendingWrites.get(requestId);
    if (reply !== undefined) {
      this.pendingWrites.delete(requestId);
      // `undefined`: a duplicate whose first copy this node never applied itself (it came inside
      // a snapshot), so the answer is lost; the client times out and records "unknown".
      if (result !== undefined) reply({ kind: 'ok', result });
    }
  }

  private serveReads(): void {
    const applied = this.applied();
    for (const [id, pr] of this.pendingReads) {
      if (pr.index === undefined || pr.index > applied) continue;
      this.pendingReads.delete(id);
      pr.reply({ kind: 'ok', result: { value: this.sm.get(pr.key) } });
    }
  }

  private maybeSnapshot(): void {
    const applied = this.applied();
    // After a membership change, snapshot at once: a new member can only install a snapshot whose
    // configuration includes it, and the leader sends it the latest one.
    const due = applied - this.lastSnapshotIndex >= this.env.snapshotEveryEntries || this.confChangedSinceSnapshot;
    if (!due || applied <= this.lastSnapshotIndex) return;
    this.confChangedSinceSnapshot = false;
    const data = this.sm.snapshot(this.env.sabotage.has('snapshot-drops-entries'));
    const ops: DiskOp[] = [{ kind: 'create-snapshot', index: applied, confState: this.confState, data }];
    this.lastSnapshotIndex = applied;
    const compactTo = applied - this.env.compactionMarginEntries;
    if (compactTo > this.env.disk.live.firstIndex()) ops.push({ kind: 'compact', index: compactTo });
    this.env.disk.write(ops);
    this.env.trace(`${this.env.id} snapshot at ${applied}, compact to ${compactTo}`);
  }
}
