import { status as GrpcStatus } from '@grpc/grpc-js';
import type { KvApi } from '../../kv/index.js';
import { MembershipError, type MembershipErrorReason, type MemberView } from '../membership.js';
import { ETCD_STATUS, type EtcdStatus, EtcdApiError } from './errors.js';
import type { HeaderFor } from './kv_service.js';
import { toWireMember } from './node_info.js';
import type { WireMember, WireResponseHeader } from './proto.js';

/** What the Cluster service needs of the node's membership (src/server/membership.ts). */
export interface ClusterMembership {
  list(): readonly MemberView[];
  add(peerUrls: readonly string[], isLearner: boolean): Promise<{ member: MemberView; members: readonly MemberView[] }>;
  remove(id: number): Promise<readonly MemberView[]>;
  update(id: number, peerUrls: readonly string[]): Promise<readonly MemberView[]>;
  promote(id: number): Promise<readonly MemberView[]>;
}

/** etcd's statuses for refused membership changes (api/v3rpc/rpctypes). */
const MEMBERSHIP_STATUS: Record<MembershipErrorReason, EtcdStatus> = {
  'member-exists': { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: member ID already exist' },
  'peer-url-exists': { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: Peer URLs already exists' },
  'member-not-found': { code: GrpcStatus.NOT_FOUND, details: 'etcdserver: member not found' },
  'member-not-learner': { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: can only promote a learner member' },
  'learner-not-ready': { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: can only promote a learner member which is in sync with leader' },
  'too-many-learners': { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: too many learner members in cluster' },
  'bad-urls': { code: GrpcStatus.INVALID_ARGUMENT, details: 'etcdserver: given member URLs are invalid' },
  'not-enough-started': { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: re-configuration failed due to not enough started members' },
  'not-leader': ETCD_STATUS.NOT_LEADER,
  // etcd has no such refusal: FAILED_PRECONDITION, which clients do not retry, with tessera's reason.
  'member-holds-replicas': { code: GrpcStatus.FAILED_PRECONDITION, details: 'tessera: the member still holds replicas of ranges; it is being drained (as by tessera node decommission) and leaves the cluster by itself once it holds none' },
};

interface Members {
  header: WireResponseHeader;
  members: WireMember[];
}

/**
 * etcd's Cluster service: MemberList, and MemberAdd/Remove/Update/Promote,
 * which change the Raft membership through joint consensus (the node's
 * Membership) and answer once the change is in force.
 */
export class ClusterService {
  constructor(
    private readonly kv: KvApi,
    private readonly membership: ClusterMembership,
    private readonly headerFor: HeaderFor,
  ) {}

  async memberList(): Promise<Members> {
    return this.reply(this.membership.list());
  }

  async memberAdd(r: { peerURLs?: string[]; isLearner?: boolean }): Promise<Members & { member: WireMember }> {
    const { member, members } = await refusals(() => this.membership.add(r.peerURLs ?? [], r.isLearner === true));
    return { ...this.reply(members), member: wire(member) };
  }

  async memberRemove(r: { ID?: string | number }): Promise<Members> {
    return this.reply(await refusals(() => this.membership.remove(memberId(r.ID))));
  }

  async memberUpdate(r: { ID?: string | number; peerURLs?: string[] }): Promise<Members> {
    return this.reply(await refusals(() => this.membership.update(memberId(r.ID), r.peerURLs ?? [])));
  }

  async memberPromote(r: { ID?: string | number }): Promise<Members> {
    return this.reply(await refusals(() => this.membership.promote(memberId(r.ID))));
  }

  private reply(members: readonly MemberView[]): Members {
    return { header: this.headerFor(this.kv.currentRevision()), members: members.map(wire) };
  }
}

function wire(m: MemberView): WireMember {
  return toWireMember({ nodeId: m.id, name: m.name, peerUrls: m.peerUrls, clientUrls: m.clientUrls, isLearner: m.isLearner });
}

/** A uint64 member id; one above 2^53 names no tessera member (ids are below it). */
function memberId(raw: string | number | undefined): number {
  const id = Number(raw ?? 0);
  if (!Number.isSafeInteger(id) || id <= 0) throw new EtcdApiError(MEMBERSHIP_STATUS['member-not-found']);
  return id;
}

async function refusals<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof MembershipError) throw new EtcdApiError(MEMBERSHIP_STATUS[error.reason]);
    throw error;
  }
}
