import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import { TesseraError } from '../base/index.js';
import type { ConfChange, ConfState, NodeId, RawNode } from '../raft/index.js';
import {
  encodeCommand,
  type RangeId,
  encodeMemberContext,
  MAX_MEMBER_URL_BYTES,
  MAX_MEMBER_URLS,
  type MemberRecord,
  type CommandResult,
  type MvccStateMachine,
  type ProposalOutcome,
  type Store,
} from '../kv/index.js';
import { dialAddressOf, formatHostPort, parseHostPort } from './address.js';
import type { JoinMember } from './wire.js';

/** etcd 3.4 allows one learner at a time (its maxLearners). */
export const MAX_LEARNERS = 1;
/** etcd promotes a learner only once its log has reached this share of the leader's (its readyPercent). */
export const LEARNER_READY_FRACTION = 0.9;
/** How often a joint configuration is checked for having been left, while a change waits for it. */
const JOINT_POLL_MS = 10;
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
  | 'not-leader';

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

export interface MembershipOptions {
  readonly store: Store;
  readonly rangeId: RangeId;
  readonly stateMachine: MvccStateMachine;
  readonly self: NodeId;
  readonly name: string;
  readonly requestTimeoutMs: number;
  readonly requestIdPrefix: string;
  readonly logger: Logger;
  /** This node's client URLs, to publish; empty while it has no client listener. */
  readonly clientUrls: () => readonly string[];
  /** Where peers' addresses go when the member table changes. */
  readonly peers: { setPeer(id: NodeId, address: string): void; removePeer(id: NodeId): void };
  /** Called once when an applied change removes this node from the cluster. */
  readonly onRemoved: () => void;
  /** The monotonic clock, in ms. */
  readonly nowMs: () => number;
}

/**
 * The cluster's membership as etcd's Cluster API sees it, on the range that
 * holds the cluster's metadata. Raft's configuration says who votes; the
 * replicated member table says names and URLs. Every change of voters or
 * learners goes through joint consensus (an implicit joint configuration,
 * left automatically; Raft thesis §4.3), and a request is answered once the
 * joint configuration has been left. The node also keeps its transport's
 * peer addresses in step with the table, publishes its own name and client
 * URLs, and notices when it has been removed.
 */
export class Membership {
  private seq = 0;
  private wasMember = false;
  private removed = false;
  private knownPeers = new Map<NodeId, string>();
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

  /** The member list a joining node is sent, or undefined while this node holds no membership yet. */
  joinInfo(): JoinMember[] | undefined {
    const members = this.list();
    if (members.length === 0) return undefined;
    return members.map((m) => ({ id: m.id, name: m.name, peerUrls: m.peerUrls, learner: m.isLearner }));
  }

  /** etcd's MemberAdd: a new member (voter or learner) with a fresh id, reachable at `peerUrls`. */
  async add(peerUrls: readonly string[], isLearner: boolean): Promise<{ member: MemberView; members: MemberView[] }> {
    const urls = checkPeerUrls(peerUrls);
    const members = this.list();
    if (members.some((m) => m.peerUrls.some((u) => urls.includes(u)))) throw new MembershipError('peer-url-exists', 'etcdserver: Peer URLs already exists');
    if (isLearner && members.filter((m) => m.isLearner).length >= MAX_LEARNERS) {
      throw new MembershipError('too-many-learners', 'etcdserver: too many learner members in cluster');
    }
    if (!isLearner) this.checkStartedAfter(members.filter((m) => !m.isLearner).length + 1, undefined);
    const id = this.freshId(members);
    const record: MemberRecord = { id, name: '', peerUrls: urls, clientUrls: [] };
    await this.change([{ type: isLearner ? 'add-learner' : 'add-node', nodeId: id }], record);
    const member = this.list().find((m) => m.id === id) ?? { id, name: '', peerUrls: urls, clientUrls: [], isLearner };
    return { member, members: this.list() };
  }

  /** etcd's MemberRemove. */
  async remove(id: NodeId): Promise<MemberView[]> {
    const member = this.mustMember(id);
    if (!member.isLearner) this.checkStartedAfter(this.list().filter((m) => !m.isLearner).length - 1, id);
    await this.change([{ type: 'remove-node', nodeId: id }], undefined);
    return this.list();
  }

  /** etcd's MemberPromote: a learner becomes a voter, once its log has nearly caught up with the leader's. */
  async promote(id: NodeId): Promise<MemberView[]> {
    const member = this.mustMember(id);
    if (!member.isLearner) throw new MembershipError('member-not-learner', 'etcdserver: can only promote a learner member');
    const raft = this.raft();
    if (raft === undefined || raft.state !== 'leader') throw new MembershipError('not-leader', 'etcdserver: not leader');
    const match = raft.trk.progress.get(id)?.match ?? 0;
    const leaderMatch = raft.trk.progress.get(this.o.self)?.match ?? raft.raftLog.lastIndex();
    if (match < leaderMatch * LEARNER_READY_FRACTION) {
      throw new MembershipError('learner-not-ready', 'etcdserver: can only promote a learner member which is in sync with leader');
    }
    await this.change([{ type: 'add-node', nodeId: id }], undefined);
    return this.list();
  }

  /** etcd's MemberUpdate: new peer URLs; the Raft configuration does not change. */
  async update(id: NodeId, peerUrls: readonly string[]): Promise<MemberView[]> {
    const urls = checkPeerUrls(peerUrls);
    this.mustMember(id);
    if (this.list().some((m) => m.id !== id && m.peerUrls.some((u) => urls.includes(u)))) {
      throw new MembershipError('peer-url-exists', 'etcdserver: Peer URLs already exists');
    }
    await this.command((requestId) => encodeCommand({ kind: 'member-update', requestId, id, peerUrls: urls }));
    return this.list();
  }

  /**
   * Runs after every tick: keeps transport peers in step with the table,
   * notices this node's removal, and publishes its name and client URLs
   * while its record lacks them (etcd's publish).
   */
  tick(): void {
    this.syncPeers();
    this.noticeRemoval();
    this.maybePublish();
  }

  private syncPeers(): void {
    const records = this.o.stateMachine.members.all();
    const wanted = new Map<NodeId, string>();
    for (const r of records) {
      const address = peerAddressOf(r.peerUrls);
      if (r.id !== this.o.self && address !== undefined) wanted.set(r.id, address);
    }
    for (const [id, address] of wanted) if (this.knownPeers.get(id) !== address) this.o.peers.setPeer(id, address);
    // Peers are only dropped once the table knows the cluster: a joining node's table is empty until its snapshot.
    if (records.length > 0) {
      for (const id of this.knownPeers.keys()) if (!wanted.has(id)) this.o.peers.removePeer(id);
      this.knownPeers = wanted;
    }
  }

  /** Seeds the transport with addresses known from flags before the table has any (a joining node). */
  notePeers(addresses: ReadonlyMap<NodeId, string>): void {
    for (const [id, address] of addresses) this.knownPeers.set(id, address);
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

  private stopAsRemoved(message: string, fields: object = {}): void {
    if (this.removed) return;
    this.removed = true;
    this.o.logger.warn(fields, message);
    setTimeout(() => this.o.onRemoved(), REMOVED_STOP_DELAY_MS).unref();
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
    if (own.name === this.o.name && sameList(own.clientUrls, clientUrls)) return;
    if (this.o.nowMs() - this.lastPublishMs < PUBLISH_RETRY_MS || (this.raft()?.lead ?? 0) === 0) return;
    this.publishing = true;
    this.lastPublishMs = this.o.nowMs();
    this.command((requestId) => encodeCommand({ kind: 'member-attrs', requestId, id: this.o.self, name: this.o.name, clientUrls }))
      .then(() => this.o.logger.info({ clientUrls }, 'published this member\'s name and client URLs'))
      .catch((error: unknown) => this.o.logger.debug({ err: error }, 'publishing member attributes failed; will retry'))
      .finally(() => (this.publishing = false));
  }

  private mustMember(id: NodeId): MemberView {
    const m = this.list().find((x) => x.id === id);
    if (m === undefined) throw new MembershipError('member-not-found', 'etcdserver: member not found');
    return m;
  }

  /**
   * etcd's strict reconfiguration check: after the change, the voters this
   * leader has heard from recently must still form a quorum, or the cluster
   * could not commit anything. Only the leader knows who is active; a
   * follower leaves the check to the leader's Raft.
   */
  private checkStartedAfter(votersAfter: number, leaving: NodeId | undefined): void {
    const raft = this.raft();
    if (raft === undefined || raft.state !== 'leader') return;
    let active = 0;
    for (const [id, pr] of raft.trk.progress) if (!pr.isLearner && id !== leaving && (id === this.o.self || pr.recentActive)) active++;
    if (active < Math.floor(votersAfter / 2) + 1) {
      throw new MembershipError('not-enough-started', 'etcdserver: re-configuration failed due to not enough started members');
    }
  }

  private freshId(members: readonly MemberView[]): NodeId {
    for (;;) {
      // 53 bits (a safe integer), never 0 (Raft's "nobody").
      const id = randomInt(1, 2 ** 21) * 2 ** 32 + randomInt(0, 2 ** 32);
      if (!members.some((m) => m.id === id) && this.o.stateMachine.members.get(id) === undefined) return id;
    }
  }

  /** Proposes an implicit-joint change and waits until it has applied and the joint configuration is left. */
  private async change(changes: ConfChange['changes'], member: MemberRecord | undefined): Promise<void> {
    const requestId = this.nextRequestId();
    const cc: ConfChange = { transition: 'implicit', changes, context: encodeMemberContext(member === undefined ? { requestId } : { requestId, member }) };
    const deadline = this.o.nowMs() + this.o.requestTimeoutMs;
    await this.withDeadline(deadline, requestId, (done) => this.o.store.proposeConfChange(this.o.rangeId, cc, { requestId, done }));
    while (this.confState().votersOutgoing.length > 0) {
      if (this.o.nowMs() >= deadline) throw timeout('leaving the joint configuration');
      await new Promise((resolve) => setTimeout(resolve, JOINT_POLL_MS));
    }
  }

  private async command(encode: (requestId: string) => Uint8Array): Promise<CommandResult> {
    const requestId = this.nextRequestId();
    const data = encode(requestId);
    return this.withDeadline(this.o.nowMs() + this.o.requestTimeoutMs, requestId, (done) => this.o.store.propose(this.o.rangeId, requestId, data, done));
  }

  private withDeadline(deadlineMs: number, requestId: string, start: (done: (o: ProposalOutcome) => void) => void): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.o.store.abandon(requestId);
        reject(timeout('membership change'));
      }, Math.max(0, deadlineMs - this.o.nowMs()));
      start((outcome) => {
        clearTimeout(timer);
        if (outcome.kind === 'dropped') {
          const pending = outcome.error.code === 'CONF_CHANGE_PENDING';
          reject(pending ? new TesseraError('RESOURCE_EXHAUSTED', 'another membership change is in progress; retry') : new TesseraError('NOT_LEADER', outcome.error.message, { cause: outcome.error }));
          return;
        }
        const result = outcome.result as CommandResult;
        if (result.kind === 'error') reject(new MembershipError('member-not-found', result.message));
        else resolve(result);
      });
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

function timeout(what: string): TesseraError {
  return new TesseraError('TIMEOUT', `${what} timed out; its outcome is unknown`);
}

/** Peer URLs must be http(s)://host:port, unique, and few; etcd answers "given member URLs are invalid" otherwise. */
export function checkPeerUrls(urls: readonly string[]): string[] {
  const bad = (): MembershipError => new MembershipError('bad-urls', 'etcdserver: given member URLs are invalid');
  if (urls.length === 0 || urls.length > MAX_MEMBER_URLS || new Set(urls).size !== urls.length) throw bad();
  return urls.map((u) => {
    if (u.length > MAX_MEMBER_URL_BYTES || !/^https?:\/\/[^/]+\/?$/i.test(u)) throw bad();
    try {
      const hp = parseHostPort(u);
      if (hp.port === 0) throw bad();
      return `${u.toLowerCase().startsWith('https') ? 'https' : 'http'}://${formatHostPort(hp)}`;
    } catch {
      throw bad();
    }
  });
}

/** The host:port the transport dials for a member: its first peer URL. */
export function peerAddressOf(peerUrls: readonly string[]): string | undefined {
  const url = peerUrls[0];
  return url === undefined ? undefined : dialAddressOf(url);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
