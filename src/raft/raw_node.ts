import { assert, TesseraError } from '../base/index.js';
import type { RaftConfig } from './config.js';
import { type DropReason, Raft, type StateType } from './raft.js';
import type { ReadState } from './read_only.js';
import { configToString } from './tracker.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type Snapshot,
  type SnapshotMetadata,
  NONE,
  isHardStateEqual,
  isLocalMessage,
  isResponseMessage,
  message,
} from './types.js';

export interface SoftState {
  readonly lead: NodeId;
  readonly state: StateType;
}

/**
 * What the application must do, in this order (the contract of etcd-io/raft's
 * Ready, in its synchronous form):
 * 1. persist `snapshot`, `entries` and `hardState` — synced to disk if `mustSync`;
 * 2. send `messages`;
 * 3. apply `snapshot`, then `committedEntries`, to the state machine, calling
 *    `applyConfChange` for each conf-change entry;
 * 4. serve `readStates` once applied ≥ their index;
 * 5. call `advance()`.
 * Messages go out only after step 1, so no vote or acknowledgement is sent for
 * data that is not yet durable.
 */
export interface Ready {
  readonly softState?: SoftState;
  readonly hardState?: HardState;
  readonly readStates: readonly ReadState[];
  readonly entries: readonly Entry[];
  readonly snapshot?: Snapshot;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly mustSync: boolean;
}

export type ProposeResult =
  | { readonly kind: 'appended'; readonly index: number; readonly term: number }
  | { readonly kind: 'forwarded'; readonly leader: NodeId }
  | { readonly kind: 'dropped'; readonly reason: DropReason; readonly error: TesseraError };

export interface Status {
  readonly id: NodeId;
  readonly hardState: HardState;
  readonly softState: SoftState;
  readonly applied: number;
  readonly lastIndex: number;
  readonly config: string;
  readonly progress: ReadonlyMap<NodeId, string>;
  readonly leadTransferee: NodeId;
}

/** The application's handle on one Raft group: no I/O, no timers, no clock. */
export class RawNode {
  readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private inflightReady: Ready | undefined;
  /** For the apply-uncommitted bug: the highest index handed out for apply. */
  private handedOutIndex = 0;
  /** Committed entries from this index on are not handed out for apply (see holdApplyFrom); undefined: none held. */
  private applyHeldFrom: number | undefined;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.softState();
    this.prevHardState = this.raft.hardState();
    this.handedOutIndex = this.raft.raftLog.applied;
  }

  /** Advances logical time by one tick (heartbeat interval and election timeout count ticks). */
  tick(): void {
    this.raft.tick();
  }

  /** Delivers the ticks of a pause at once (see Raft.tickAfterPause). */
  tickAfterPause(ticks: number): void {
    this.raft.tickAfterPause(ticks);
  }

  /** Whether this node stopped ticking an idle group (ADR 0010). */
  get quiesced(): boolean {
    return this.raft.quiesced;
  }

  /**
   * Wakes a quiesced node from outside Raft: the host noticed that the
   * leader's node went silent (ADR 0010). The node ticks again, so it
   * campaigns after an election timeout if no leader is heard.
   */
  unquiesce(): void {
    this.raft.unquiesce(true);
  }

  /** Campaigns for leadership now. */
  campaign(): void {
    this.raft.step(message({ type: 'MsgHup', from: this.raft.id }));
  }

  propose(data: Uint8Array): ProposeResult {
    return this.proposeEntries([{ term: 0, index: 0, type: 'normal', data }]);
  }

  /**
   * Proposes several commands as one MsgProp: the leader appends them
   * together and sends each follower one append for all of them, rather than
   * one per command. All are appended, forwarded or dropped together.
   */
  proposeBatch(datas: readonly Uint8Array[]): ProposeResult {
    assert(datas.length > 0, 'a batch proposes at least one command');
    return this.proposeEntries(datas.map((data) => ({ term: 0, index: 0, type: 'normal', data })));
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    return this.proposeEntries([{ term: 0, index: 0, type: 'conf-change', data: new Uint8Array(), confChange: cc }]);
  }

  private proposeEntries(entries: Entry[]): ProposeResult {
    const before = this.raft.raftLog.lastIndex();
    const wasLeader = this.raft.state === 'leader';
    const reason = this.raft.step(message({ type: 'MsgProp', from: this.raft.id, entries }));
    if (reason !== undefined) {
      return { kind: 'dropped', reason, error: new TesseraError('PROPOSAL_DROPPED', `proposal dropped: ${reason}`) };
    }
    if (wasLeader) {
      const index = before + entries.length;
      assert(this.raft.raftLog.lastIndex() === index, 'accepted proposals are appended at the next indexes');
      return { kind: 'appended', index, term: this.raft.term };
    }
    return { kind: 'forwarded', leader: this.raft.lead };
  }

  /** Steps a message from a peer. Local message types are refused. */
  step(m: Message): void {
    if (isLocalMessage(m.type)) throw new TesseraError('INVALID_ARGUMENT', `cannot step local message ${m.type}`);
    // A response from a peer we no longer track is harmless noise.
    if (isResponseMessage(m.type) && !this.raft.trk.progress.has(m.from) && this.raft.state === 'leader') return;
    this.raft.step(m);
  }

  /** Asks for a linearizable read point; the answer arrives as a ReadState carrying `context`. */
  readIndex(context: string): DropReason | undefined {
    return this.raft.step(message({ type: 'MsgReadIndex', from: this.raft.id, entries: [], context }));
  }

  transferLeader(transferee: NodeId): void {
    this.raft.step(message({ type: 'MsgTransferLeader', from: transferee }));
  }

  reportUnreachable(id: NodeId): void {
    this.raft.step(message({ type: 'MsgUnreachable', from: id }));
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(message({ type: 'MsgSnapStatus', from: id, reject: !ok }));
  }

  /**
   * On a leader: sends `to` a snapshot of the applied state now, whatever its
   * progress (Raft.sendSnapshotOnRequest). Its index, or undefined if none went.
   */
  sendSnapshot(to: NodeId): number | undefined {
    return this.raft.sendSnapshotOnRequest(to);
  }

  /**
   * The application installed a leader's snapshot whose last entry its log
   * holds, in place of the committed entries up to it (Raft.restoreInLog):
   * entries are handed out for apply from the one after it, none held.
   * Only between Readys.
   */
  restoreInLog(metadata: SnapshotMetadata): void {
    assert(this.inflightReady === undefined, 'restoreInLog() between ready() and advance()');
    this.raft.restoreInLog(metadata);
    this.applyHeldFrom = undefined;
    this.handedOutIndex = Math.max(this.handedOutIndex, metadata.index);
  }

  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  hasReady(): boolean {
    const r = this.raft;
    if (!isSoftStateEqual(this.softState(), this.prevSoftState)) return true;
    if (!isHardStateEqual(r.hardState(), this.prevHardState)) return true;
    if (r.raftLog.unstable.snapshot !== undefined) return true;
    if (r.msgs.length > 0 || r.raftLog.unstableEntries().length > 0 || r.readStates.length > 0) return true;
    return this.nextCommittedEntries().length > 0;
  }

  ready(): Ready {
    assert(this.inflightReady === undefined, 'ready() called again before advance()');
    const r = this.raft;
    const soft = this.softState();
    const hard = r.hardState();
    const entries = [...r.raftLog.unstableEntries()];
    const hardChanged = !isHardStateEqual(hard, this.prevHardState);
    const rd: Ready = {
      ...(isSoftStateEqual(soft, this.prevSoftState) ? {} : { softState: soft }),
      ...(hardChanged ? { hardState: hard } : {}),
      readStates: r.readStates,
      entries,
      ...(r.raftLog.unstable.snapshot === undefined ? {} : { snapshot: r.raftLog.unstable.snapshot }),
      committedEntries: this.nextCommittedEntries(),
      messages: r.msgs,
      // A commit-index change alone need not be synced: it can be recomputed after a crash. A
      // snapshot must be, since the follower acknowledges it as its new log (Figure 13).
      mustSync:
        entries.length > 0 ||
        r.raftLog.unstable.snapshot !== undefined ||
        hard.term !== this.prevHardState.term ||
        hard.vote !== this.prevHardState.vote,
    };
    r.msgs = [];
    r.readStates = [];
    this.inflightReady = rd;
    return rd;
  }

  /**
   * Hands out no committed entry from `index` on until releaseApply: the
   * application cannot apply that entry yet (a merge whose other range lags
   * on this node). Entries before it are handed out as usual; the held ones
   * come again in a later Ready once released.
   */
  holdApplyFrom(index: number): void {
    assert(index > this.raft.raftLog.applied, () => `hold from ${index}, at or below applied ${this.raft.raftLog.applied}`);
    this.applyHeldFrom = index;
  }

  releaseApply(): void {
    this.applyHeldFrom = undefined;
  }

  /** The index committed entries are held from, if any (see holdApplyFrom). */
  get heldFrom(): number | undefined {
    return this.applyHeldFrom;
  }

  private nextCommittedEntries(): readonly Entry[] {
    const held = this.applyHeldFrom;
    const entries = this.committedToHandOut();
    if (held === undefined) return entries;
    const cut = entries.findIndex((e) => e.index >= held);
    return cut < 0 ? entries : entries.slice(0, cut);
  }

  private committedToHandOut(): readonly Entry[] {
    const log = this.raft.raftLog;
    if (this.raft.hasBug('apply-uncommitted')) {
      const from = Math.max(log.applied, this.handedOutIndex);
      if (from < log.applied || from + 1 < log.firstIndex()) return [];
      const ents = log.entriesAfterApplied(log.lastIndex());
      return ents.filter((e) => e.index > from);
    }
    return log.nextCommittedEntries();
  }

  /**
   * Tells Raft the last Ready was persisted, sent and applied; with
   * `appliedIndex`, that its committed entries were applied only through
   * that index (the application stopped at one it must hold back, see
   * holdApplyFrom): the rest are handed out again by a later Ready.
   */
  advance(appliedIndex?: number): void {
    const rd = this.inflightReady;
    assert(rd !== undefined, 'advance() without a ready()');
    this.inflightReady = undefined;
    const r = this.raft;
    if (rd.softState !== undefined) this.prevSoftState = rd.softState;
    if (rd.hardState !== undefined) this.prevHardState = rd.hardState;
    const lastEntry = rd.entries[rd.entries.length - 1];
    if (lastEntry !== undefined) r.raftLog.stableTo(lastEntry.index, lastEntry.term);
    if (rd.snapshot !== undefined) {
      r.raftLog.stableSnapTo(rd.snapshot.metadata.index);
      r.raftLog.appliedTo(Math.min(rd.snapshot.metadata.index, r.raftLog.committed));
    }
    const applied = appliedIndex === undefined ? rd.committedEntries : rd.committedEntries.filter((e) => e.index <= appliedIndex);
    const lastApplied = applied[applied.length - 1];
    if (lastApplied !== undefined && lastApplied.index > r.raftLog.applied) {
      this.handedOutIndex = Math.max(this.handedOutIndex, lastApplied.index);
      r.raftLog.appliedTo(Math.min(lastApplied.index, r.raftLog.committed));
      r.reduceUncommittedSize(applied);
      this.maybeAutoLeaveJoint();
    }
  }

  /** With autoLeave, the leader proposes leaving the joint config once entering it is applied (thesis §4.3). */
  private maybeAutoLeaveJoint(): void {
    const r = this.raft;
    if (!r.trk.config.autoLeave || r.raftLog.applied < r.pendingConfIndex || r.state !== 'leader') return;
    const reason = r.step(message({
      type: 'MsgProp',
      from: r.id,
      entries: [{ term: 0, index: 0, type: 'conf-change', data: new Uint8Array(), confChange: { transition: 'auto', changes: [] } }],
    }));
    r.logLine(
      reason === undefined
        ? `${r.id} initiating automatic transition out of joint configuration ${configToString(r.trk.config)}`
        : `${r.id} not initiating automatic transition out of joint configuration: ${reason}`,
    );
  }

  softState(): SoftState {
    return { lead: this.raft.lead, state: this.raft.state };
  }

  status(): Status {
    const r = this.raft;
    const progress = new Map<NodeId, string>();
    if (r.state === 'leader') for (const id of r.trk.ids()) progress.set(id, (r.trk.progress.get(id) ?? { toString: () => '' }).toString());
    return {
      id: r.id,
      hardState: r.hardState(),
      softState: this.softState(),
      applied: r.raftLog.applied,
      lastIndex: r.raftLog.lastIndex(),
      config: configToString(r.trk.config),
      progress,
      leadTransferee: r.leadTransferee,
    };
  }

  checkInvariants(): void {
    this.raft.checkInvariants();
  }

  /** Whether this node is leader with a valid lease (lease-based reads). */
  leaseValid(): boolean {
    return this.raft.leaseValid();
  }

  get id(): NodeId {
    return this.raft.id;
  }

  get lead(): NodeId {
    return this.raft.lead;
  }
}

function isSoftStateEqual(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.state === b.state;
}

export { NONE };
