import { TesseraError, type Rng, type Timers } from '../base/index.js';
import type { ConfChange, ConfState, NodeId, RawNode } from '../raft/index.js';
import { encodeCommand } from './commands.js';
import type { RangeId } from './keys.js';
import { encodeMemberContext, type MemberRecord } from './members.js';
import type { Sabotage } from '../raft/sabotage.js';
import type { CommandResult, MvccStateMachine } from './mvcc_state_machine.js';
import type { ProposalOutcome, Store } from './store.js';

/** etcd 3.4 allows one learner at a time (its maxLearners). */
export const MAX_LEARNERS = 1;
/** etcd promotes a learner only once its log has reached this share of the leader's (its readyPercent). */
export const LEARNER_READY_FRACTION = 0.9;
/** How often a joint configuration is checked for having been left, while a change waits for it. */
export const JOINT_POLL_MS = 10;
/** How often MemberRemove of a member being drained looks whether it has left or holds no replica any more. */
export const DRAIN_POLL_MS = 100;
/** A removed member stops this long after noticing, so the answer to the request that removed it can still go out. */
export const REMOVED_STOP_DELAY_MS = 1_000;
/** A member republishes its name and client URLs at most this often while they differ from its record. */
export const PUBLISH_RETRY_MS = 1_000;

/** Why a membership request was refused; the etcd layer maps each to etcd's status and message. */
export type MembershipErrorReason =
  | 'member-exists'
  | 'peer-url-exists'
  | 'member-not-found'
  | 'member-not-learner'
  | 'learner-not-ready'
  | 'too-many-learners'
  | 'bad-urls'
  | 'not-enough-started'
  | 'not-leader'
  /** Under placement, the member still holds replicas other members need for a quorum (ADR 0012). */
  | 'member-holds-replicas';

export class MembershipError extends TesseraError {
  readonly reason: MembershipErrorReason;

  constructor(reason: MembershipErrorReason, message: string) {
    super(reason === 'member-not-found' ? 'NOT_FOUND' : 'INVALID_ARGUMENT', message);
    this.reason = reason;
  }
}

/** A member as the Cluster API lists it. */
export interface MemberView {
  readonly id: NodeId;
  /** Empty until the member has started and published it. */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

/** How a membership request ended: its value, or a TesseraError (a MembershipError for etcd's refusals). */
export type MembershipOutcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: TesseraError };

/** What the membership logic logs; pino's logger has this shape. */
export interface MembershipLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

export interface MembershipOptions {
  readonly store: Store;
  readonly rangeId: RangeId;
  readonly stateMachine: MvccStateMachine;
  readonly self: NodeId;
  readonly name: string;
  readonly requestTimeoutMs: number;
  readonly requestIdPrefix: string;
  readonly timers: Timers;
  /** Draws fresh member ids. */
  readonly rng: Rng;
  readonly log: MembershipLog;
  /** This node's client URLs, to publish; empty while it has no client listener. */
  readonly clientUrls: () => readonly string[];
  /** This member's `--locality` (absent or empty: none), published with its name. */
  readonly locality?: string;
  /** Called once, REMOVED_STOP_DELAY_MS after this node learns it was removed from the cluster. */
  readonly onRemoved: () => void;
  /**
   * Why member `id` may not be removed now, or undefined. Under placement a
   * range has its own few voters, and removing two of them from the cluster
   * in a row would leave it without a quorum for good: a member is removed
   * once its replicas have moved (decommission, or dead-after).
   */
  readonly removalRefusal?: (id: NodeId) => string | undefined;
  /** Deliberate bugs, for the simulator only (sabotage.ts). */
  readonly sabotage?: Sabotage;
}

/**
 * The cluster's membership as etcd's Cluster API sees it, on the range that
 * holds the cluster's metadata. Raft's configuration says who votes; the
 * replicated member table says names and URLs. Every change of voters or
 * learners goes through joint consensus (an implicit joint configuration,
 * left automatically; Raft thesis §4.3), and a request is answered once the
 * joint configuration has been left. A node also publishes its own name and
 * client URLs, and notices when it has been removed.
 *
 * Callback-based on injected Timers and Rng, so that the simulator drives the
 * same logic as a real node (issue 12); the server wraps it in promises and
 * validates URLs (src/server/membership.ts). Peer URLs reach it already
 * checked.
 */
export class MembershipCore {
  private seq = 0;
  private wasMember = false;
  private removed = false;
  private publishing = false;
  private lastPublishMs = -Infinity;

  constructor(private readonly o: MembershipOptions) {}

  /** Voters, then learners, with their records; a member without a record (added outside this API) shows its id only. */
  list(): MemberView[] {
    const cs = this.confState();
    const voters = [...new Set([...cs.voters, ...cs.votersOutgoing])];
    const learners = [...new Set([...cs.learners, ...cs.learnersNext])].filter((id) => !voters.includes(id));
    const view = (id: NodeId, isLearner: boolean): MemberView => {
      const r = this.o.stateMachine.members.get(id);
      return { id, name: r?.name ?? '', peerUrls: r?.peerUrls ?? [], clientUrls: r?.clientUrls ?? [], isLearner };
    };
    return [...voters.map((id) => view(id, false)), ...learners.map((id) => view(id, true))].sort((a, b) => a.id - b.id);
  }

  /** etcd's MemberAdd: a new member (voter or learner) with a fresh id, reachable at `peerUrls` (checked by the caller). */
  add(peerUrls: readonly string[], isLearner: boolean, done: (o: MembershipOutcome<{ member: MemberView; members: MemberView[] }>) => void): void {
    const members = this.list();
    const refused = this.refuseAdd(members, peerUrls, isLearner);
    if (refused !== undefined) return done({ ok: false, error: refused });
    const id = this.freshId(members);
    const record: MemberRecord = { id, name: '', peerUrls: [...peerUrls], clientUrls: [] };
    const carried = this.o.sabotage?.has('member-add-without-record') === true ? undefined : record;
    this.change([{ type: isLearner ? 'add-learner' : 'add-node', nodeId: id }], carried, (error) => {
      if (error !== undefined) return done({ ok: false, error });
      const member = this.list().find((m) => m.id === id) ?? { id, name: '', peerUrls: [...peerUrls], clientUrls: [], isLearner };
      done({ ok: true, value: { member, members: this.list() } });
    });
  }

  /** etcd's MemberRemove. */
  remove(id: NodeId, done: (o: MembershipOutcome<MemberView[]>) => void): void {
    const member = this.list().find((x) => x.id === id);
    if (member === undefined) return done({ ok: false, error: notFound() });
    const refused = member.isLearner ? undefined : this.refuseUnlessStartedAfter(this.list().filter((m) => !m.isLearner).length - 1, id);
    if (refused !== undefined) return done({ ok: false, error: refused });
    if (this.o.removalRefusal?.(id) !== undefined) return this.drainThenRemove(id, done);
    this.change([{ type: 'remove-node', nodeId: id }], undefined, (error) => done(error === undefined ? { ok: true, value: this.list() } : { ok: false, error }));
  }

  /**
   * MemberRemove of a member that still holds replicas of data ranges
   * (placement): it is marked decommissioning, so every range moves its
   * replica off it and range 1's leader removes it once it holds none
   * (KvNode.finishDecommissions). The request waits for that up to its
   * timeout; past it the answer says the drain goes on (FAILED_PRECONDITION,
   * `member-holds-replicas`), and the member leaves by itself.
   */
  private drainThenRemove(id: NodeId, done: (o: MembershipOutcome<MemberView[]>) => void): void {
    const deadlineMs = this.o.timers.nowMs() + this.o.requestTimeoutMs;
    const wait = (): void => {
      if (!this.list().some((m) => m.id === id)) return done({ ok: true, value: this.list() });
      const holds = this.o.removalRefusal?.(id);
      if (holds === undefined) return this.remove(id, done);
      if (this.o.timers.nowMs() >= deadlineMs) {
        return done({ ok: false, error: new MembershipError('member-holds-replicas', `${holds}; it is being drained, and leaves the cluster by itself once it holds none`) });
      }
      this.o.timers.after(DRAIN_POLL_MS, wait);
    };
    if (this.o.stateMachine.members.get(id)?.decommissioning === true) return wait();
    this.command(
      (requestId) => encodeCommand({ kind: 'member-decommission', requestId, id }),
      (error) => (error === undefined ? wait() : done({ ok: false, error })),
    );
  }

  /** etcd's MemberPromote: a learner becomes a voter, once its log has nearly caught up with the leader's. */
  promote(id: NodeId, done: (o: MembershipOutcome<MemberView[]>) => void): void {
    const refused = this.refusePromote(id);
    if (refused !== undefined) return done({ ok: false, error: refused });
    this.change([{ type: 'add-node', nodeId: id }], undefined, (error) => done(error === undefined ? { ok: true, value: this.list() } : { ok: false, error }));
  }

  /** etcd's MemberUpdate: new peer URLs (checked by the caller); the Raft configuration does not change. */
  update(id: NodeId, peerUrls: readonly string[], done: (o: MembershipOutcome<MemberView[]>) => void): void {
    if (!this.list().some((m) => m.id === id)) return done({ ok: false, error: notFound() });
    if (this.list().some((m) => m.id !== id && m.peerUrls.some((u) => peerUrls.includes(u)))) {
      return done({ ok: false, error: new MembershipError('peer-url-exists', 'etcdserver: Peer URLs already exists') });
    }
    const urls = [...peerUrls];
    this.command(
      (requestId) => encodeCommand({ kind: 'member-update', requestId, id, peerUrls: urls }),
      (error) => done(error === undefined ? { ok: true, value: this.list() } : { ok: false, error }),
    );
  }

  /** Runs after every tick: notices this node's removal, and publishes its name and client URLs while its record lacks them (etcd's publish). */
  tick(): void {
    this.noticeRemoval();
    this.maybePublish();
  }

  /**
   * Whether `id` was removed from the cluster (and not added back): its peer
   * connections are refused. Not while it is still in any part of the Raft
   * configuration: a joint configuration's outgoing half may need its votes.
   */
  isRemovedMember(id: NodeId): boolean {
    if (!this.o.stateMachine.members.isRemoved(id)) return false;
    const cs = this.confState();
    return ![...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext].includes(id);
  }

  /**
   * A peer refused this node as removed from the cluster. A member removed
   * while it was down never applies its own removal (the leader no longer
   * sends it anything), so this is how it learns, as etcd's does from a
   * peer's 410 Gone. The peer knows it from applied state, so it is final.
   */
  removedByPeer(peer: NodeId): void {
    this.stopAsRemoved('a peer reports that this member was removed from the cluster; stopping', { peer });
  }

  private refuseAdd(members: readonly MemberView[], urls: readonly string[], isLearner: boolean): TesseraError | undefined {
    if (members.some((m) => m.peerUrls.some((u) => urls.includes(u)))) return new MembershipError('peer-url-exists', 'etcdserver: Peer URLs already exists');
    if (isLearner && members.filter((m) => m.isLearner).length >= MAX_LEARNERS) {
      return new MembershipError('too-many-learners', 'etcdserver: too many learner members in cluster');
    }
    return isLearner ? undefined : this.refuseUnlessStartedAfter(members.filter((m) => !m.isLearner).length + 1, undefined);
  }

  private refusePromote(id: NodeId): TesseraError | undefined {
    const member = this.list().find((x) => x.id === id);
    if (member === undefined) return notFound();
    if (!member.isLearner) return new MembershipError('member-not-learner', 'etcdserver: can only promote a learner member');
    const raft = this.raft();
    if (raft === undefined || raft.state !== 'leader') return new MembershipError('not-leader', 'etcdserver: not leader');
    const match = raft.trk.progress.get(id)?.match ?? 0;
    const leaderMatch = raft.trk.progress.get(this.o.self)?.match ?? raft.raftLog.lastIndex();
    if (match < leaderMatch * LEARNER_READY_FRACTION) {
      return new MembershipError('learner-not-ready', 'etcdserver: can only promote a learner member which is in sync with leader');
    }
    return undefined;
  }

  /**
   * etcd's strict reconfiguration check: after the change, the voters this
   * leader has heard from recently must still form a quorum, or the cluster
   * could not commit anything. Only the leader knows who is active; a
   * follower leaves the check to the leader's Raft.
   */
  private refuseUnlessStartedAfter(votersAfter: number, leaving: NodeId | undefined): TesseraError | undefined {
    const raft = this.raft();
    if (raft === undefined || raft.state !== 'leader') return undefined;
    let active = 0;
    for (const [id, pr] of raft.trk.progress) if (!pr.isLearner && id !== leaving && (id === this.o.self || pr.recentActive)) active++;
    if (active >= Math.floor(votersAfter / 2) + 1) return undefined;
    return new MembershipError('not-enough-started', 'etcdserver: re-configuration failed due to not enough started members');
  }

  private stopAsRemoved(message: string, fields: object = {}): void {
    if (this.removed) return;
    this.removed = true;
    this.o.log.warn(fields, message);
    this.o.timers.after(REMOVED_STOP_DELAY_MS, () => this.o.onRemoved());
  }

  private noticeRemoval(): void {
    const cs = this.confState();
    // Only the incoming configuration counts: a joint configuration is never rolled back, and once
    // it is left the leader stops sending to a removed member, which would never learn of the leave.
    const member = [...cs.voters, ...cs.learners, ...cs.learnersNext].includes(this.o.self);
    if (member) this.wasMember = true;
    else if (this.wasMember) this.stopAsRemoved('this member has been removed from the cluster; stopping');
  }

  private maybePublish(): void {
    const own = this.o.stateMachine.members.get(this.o.self);
    const clientUrls = [...this.o.clientUrls()];
    if (own === undefined || this.publishing || this.removed) return;
    const locality = this.o.locality ?? '';
    if (own.name === this.o.name && sameList(own.clientUrls, clientUrls) && (own.locality ?? '') === locality) return;
    const nowMs = this.o.timers.nowMs();
    if (nowMs - this.lastPublishMs < PUBLISH_RETRY_MS || (this.raft()?.lead ?? 0) === 0) return;
    this.publishing = true;
    this.lastPublishMs = nowMs;
    this.command(
      (requestId) => encodeCommand({ kind: 'member-attrs', requestId, id: this.o.self, name: this.o.name, clientUrls, ...(locality === '' ? {} : { locality }) }),
      (error) => {
        this.publishing = false;
        if (error === undefined) this.o.log.info({ clientUrls, ...(locality === '' ? {} : { locality }) }, "published this member's name and client URLs");
        else this.o.log.debug({ err: error }, 'publishing member attributes failed; will retry');
      },
    );
  }

  private freshId(members: readonly MemberView[]): NodeId {
    for (;;) {
      // 53 bits (a safe integer), never 0 (Raft's "nobody").
      const id = (this.o.rng.nextUint32() % 2 ** 21) * 2 ** 32 + this.o.rng.nextUint32();
      if (id !== 0 && !members.some((m) => m.id === id) && this.o.stateMachine.members.get(id) === undefined) return id;
    }
  }

  /** Proposes an implicit-joint change and reports once it has applied and the joint configuration is left. */
  private change(changes: ConfChange['changes'], member: MemberRecord | undefined, done: (error: TesseraError | undefined) => void): void {
    const requestId = this.nextRequestId();
    const cc: ConfChange = { transition: 'implicit', changes, context: encodeMemberContext(member === undefined ? { requestId } : { requestId, member }) };
    const deadlineMs = this.o.timers.nowMs() + this.o.requestTimeoutMs;
    const waitForLeave = (): void => {
      if (this.confState().votersOutgoing.length === 0) return done(undefined);
      if (this.o.timers.nowMs() >= deadlineMs) return done(timeout('leaving the joint configuration'));
      this.o.timers.after(JOINT_POLL_MS, waitForLeave);
    };
    this.withDeadline(
      deadlineMs,
      requestId,
      (answer) => this.o.store.proposeConfChange(this.o.rangeId, cc, { requestId, done: answer }),
      (error) => (error === undefined ? waitForLeave() : done(error)),
    );
  }

  private command(encode: (requestId: string) => Uint8Array, done: (error: TesseraError | undefined, result?: CommandResult) => void): void {
    const requestId = this.nextRequestId();
    const data = encode(requestId);
    this.withDeadline(this.o.timers.nowMs() + this.o.requestTimeoutMs, requestId, (answer) => this.o.store.propose(this.o.rangeId, requestId, data, answer), done);
  }

  private withDeadline(
    deadlineMs: number,
    requestId: string,
    start: (answer: (o: ProposalOutcome) => void) => void,
    done: (error: TesseraError | undefined, result?: CommandResult) => void,
  ): void {
    let settled = false;
    const settle = (error: TesseraError | undefined, result?: CommandResult): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      done(error, result);
    };
    const timer = this.o.timers.after(Math.max(0, deadlineMs - this.o.timers.nowMs()), () => {
      if (settled) return;
      this.o.store.abandon(requestId);
      settle(timeout('membership change'));
    });
    start((outcome) => {
      if (outcome.kind === 'dropped') {
        const pending = outcome.error.code === 'CONF_CHANGE_PENDING';
        return settle(pending ? new TesseraError('RESOURCE_EXHAUSTED', 'another membership change is in progress; retry') : new TesseraError('NOT_LEADER', outcome.error.message, { cause: outcome.error }));
      }
      const result = outcome.result as CommandResult;
      if (result.kind === 'error') settle(new MembershipError('member-not-found', result.message));
      else settle(undefined, result);
    });
  }

  private nextRequestId(): string {
    return `${this.o.requestIdPrefix}.member:${++this.seq}`;
  }

  private confState(): ConfState {
    return this.o.store.replica(this.o.rangeId)?.currentConfState() ?? { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  }

  private raft(): RawNode['raft'] | undefined {
    return this.o.store.replica(this.o.rangeId)?.raw.raft;
  }
}

function notFound(): MembershipError {
  return new MembershipError('member-not-found', 'etcdserver: member not found');
}

function timeout(what: string): TesseraError {
  return new TesseraError('TIMEOUT', `${what} timed out; its outcome is unknown`);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
