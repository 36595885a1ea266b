import type { TesseraError } from '../base/index.js';
import type { NodeId } from '../raft/index.js';
import {
  MAX_MEMBER_URL_BYTES,
  MAX_MEMBER_URLS,
  type MembershipCore,
  MembershipError,
  type MembershipOutcome,
  type MemberView,
  type MvccStateMachine,
} from '../kv/index.js';
import { dialAddressOf, formatHostPort, parseHostPort } from './address.js';
import type { JoinMember } from './wire.js';

export { MembershipError, type MembershipErrorReason, type MemberView } from '../kv/index.js';

export interface MembershipOptions {
  /** The node's membership logic (KvNode.membership). */
  readonly core: MembershipCore;
  readonly stateMachine: MvccStateMachine;
  readonly self: NodeId;
  /** Where peers' addresses go when the member table changes. */
  readonly peers: { setPeer(id: NodeId, address: string): void; removePeer(id: NodeId): void };
}

/**
 * etcd's Cluster API on a node: the membership logic of src/kv/membership.ts
 * (which the simulator drives too) behind promises, with peer URLs checked
 * here, and the transport's peer addresses kept in step with the member
 * table.
 */
export class Membership {
  private readonly core: MembershipCore;
  private knownPeers = new Map<NodeId, string>();

  constructor(private readonly o: MembershipOptions) {
    this.core = o.core;
  }

  list(): MemberView[] {
    return this.core.list();
  }

  /** The member list a joining node is sent, or undefined while this node holds no membership yet. */
  joinInfo(): JoinMember[] | undefined {
    const members = this.list();
    if (members.length === 0) return undefined;
    return members.map((m) => ({ id: m.id, name: m.name, peerUrls: m.peerUrls, learner: m.isLearner }));
  }

  /** etcd's MemberAdd. */
  async add(peerUrls: readonly string[], isLearner: boolean): Promise<{ member: MemberView; members: MemberView[] }> {
    const urls = checkPeerUrls(peerUrls);
    return promised((done) => this.core.add(urls, isLearner, done));
  }

  /** etcd's MemberRemove. */
  async remove(id: NodeId): Promise<MemberView[]> {
    return promised((done) => this.core.remove(id, done));
  }

  /** etcd's MemberPromote. */
  async promote(id: NodeId): Promise<MemberView[]> {
    return promised((done) => this.core.promote(id, done));
  }

  /** etcd's MemberUpdate. */
  async update(id: NodeId, peerUrls: readonly string[]): Promise<MemberView[]> {
    const urls = checkPeerUrls(peerUrls);
    return promised((done) => this.core.update(id, urls, done));
  }

  /** Runs after every tick (the core's own duties run in KvNode.tick): keeps transport peers in step with the table. */
  tick(): void {
    this.syncPeers();
  }

  /** Seeds the transport with addresses known from flags before the table has any (a joining node). */
  notePeers(addresses: ReadonlyMap<NodeId, string>): void {
    for (const [id, address] of addresses) this.knownPeers.set(id, address);
  }

  isRemovedMember(id: NodeId): boolean {
    return this.core.isRemovedMember(id);
  }

  removedByPeer(peer: NodeId): void {
    this.core.removedByPeer(peer);
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
}

function promised<T>(start: (done: (o: MembershipOutcome<T>) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject: (error: TesseraError) => void) => start((o) => (o.ok ? resolve(o.value) : reject(o.error))));
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
