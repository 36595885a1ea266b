import { META_RANGE } from '../../kv/index.js';
import type { KvApi } from '../../kv/index.js';
import { ETCD_STATUS, EtcdApiError, unimplemented } from './errors.js';
import type { HeaderFor } from './kv_service.js';
import { ETCD_API_VERSION } from './limits.js';
import { type EtcdNodeInfo, membersOf, toWireMember, wireId } from './node_info.js';
import type { Int64Out, WireMember, WireResponseHeader } from './proto.js';

export interface WireStatusResponse {
  header: WireResponseHeader;
  version: string;
  dbSize: Int64Out;
  leader: Int64Out;
  raftIndex: Int64Out;
  raftTerm: Int64Out;
  raftAppliedIndex: Int64Out;
  errors: string[];
  dbSizeInUse: Int64Out;
  isLearner: boolean;
}

/** How long MoveLeader waits for the target to take over before answering "request timed out". */
export const MOVE_LEADER_TIMEOUT_MS = 5_000;

/** AlarmRequest.AlarmAction, by protobuf number. */
const ALARM_GET = 0;
const ALARM_DEACTIVATE = 2;

/**
 * Maintenance.Status and Alarm, and Cluster.MemberList: enough for etcdctl's
 * `endpoint status`, `endpoint health` (which lists alarms after its read)
 * and `member list`. The Raft figures are those of the node's range
 * (node.rangeId, else its lowest range; today it has one).
 */
export class AdminService {
  constructor(
    private readonly kv: KvApi,
    private readonly node: EtcdNodeInfo,
    private readonly headerFor: HeaderFor,
    private readonly address: () => string,
  ) {}

  async status(): Promise<WireStatusResponse> {
    const rangeId = this.node.rangeId ?? META_RANGE; // Status and MoveLeader speak for the metadata range, as etcd for its one group
    const replica = this.kv.store.replica(rangeId);
    const raft = replica?.raw.raft;
    const dbSize = this.node.dbSizeBytes?.() ?? this.kv.dbSizeBytes();
    return {
      header: this.headerFor(this.kv.currentRevision()),
      version: ETCD_API_VERSION,
      dbSize,
      leader: wireId(raft?.lead ?? 0, 'leader id'),
      raftIndex: raft?.raftLog.committed ?? 0,
      raftTerm: raft?.term ?? 0,
      raftAppliedIndex: replica?.appliedIndex() ?? 0,
      errors: [],
      dbSizeInUse: dbSize,
      isLearner: raft?.trk.config.learners.has(this.node.nodeId) ?? false,
    };
  }

  /** No alarms are raised yet (no space quota): GET and DEACTIVATE see none. */
  async alarm(r: { action?: number }): Promise<{ header: WireResponseHeader; alarms: never[] }> {
    const action = r.action ?? ALARM_GET;
    if (action !== ALARM_GET && action !== ALARM_DEACTIVATE) throw new EtcdApiError(unimplemented('Maintenance.Alarm ACTIVATE'));
    return { header: this.headerFor(this.kv.currentRevision()), alarms: [] };
  }

  /** HashKV: the MVCC history's CRC-32C up to a revision, as etcd compares replicas by it. */
  async hashKV(r: { revision?: string | number }): Promise<{ header: WireResponseHeader; hash: number; compact_revision: Int64Out }> {
    const revision = Number(r.revision ?? 0);
    const h = this.kv.hashKV(Number.isSafeInteger(revision) && revision > 0 ? revision : 0);
    return { header: this.headerFor(this.kv.currentRevision()), hash: h.hash, compact_revision: h.compactRevision };
  }

  /**
   * Hash: etcd hashes its whole backend file; tessera hashes the key space's history at the
   * current revision (the same value HashKV(0) gives), which compares replicas just as well.
   */
  async hash(): Promise<{ header: WireResponseHeader; hash: number }> {
    return { header: this.headerFor(this.kv.currentRevision()), hash: this.kv.hashKV(0).hash };
  }

  /** Defragment: LMDB reuses freed pages itself, so there is nothing to do and the node keeps serving. */
  async defragment(): Promise<{ header: WireResponseHeader }> {
    return { header: this.headerFor(this.kv.currentRevision()) };
  }

  /** MoveLeader: only the leader can hand leadership over; it answers once the target leads. */
  async moveLeader(r: { targetID?: string | number }): Promise<{ header: WireResponseHeader }> {
    const rangeId = this.node.rangeId ?? META_RANGE; // Status and MoveLeader speak for the metadata range, as etcd for its one group
    const replica = this.kv.store.replica(rangeId);
    const target = Number(r.targetID ?? 0);
    if (replica === undefined || replica.raw.raft.state !== 'leader') throw new EtcdApiError(ETCD_STATUS.NOT_LEADER);
    if (!Number.isSafeInteger(target) || target === 0 || !replica.raw.raft.trk.isVoter(target)) throw new EtcdApiError(ETCD_STATUS.BAD_LEADER_TRANSFEREE);
    this.kv.store.transferLeader(replica.rangeId, target);
    const deadline = Date.now() + MOVE_LEADER_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (replica.raw.raft.lead === target) return { header: this.headerFor(this.kv.currentRevision()) };
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new EtcdApiError(ETCD_STATUS.TIMEOUT);
  }

  async memberList(): Promise<{ header: WireResponseHeader; members: WireMember[] }> {
    const members = membersOf(this.node, this.address()).map(toWireMember);
    return { header: this.headerFor(this.kv.currentRevision()), members };
  }
}
