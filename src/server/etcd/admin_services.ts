import type { KvApi } from '../kv_api.js';
import { EtcdApiError, unimplemented } from './errors.js';
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
    const rangeId = this.node.rangeId ?? this.kv.store.rangeIds()[0];
    const replica = rangeId === undefined ? undefined : this.kv.store.replica(rangeId);
    const raft = replica?.raw.raft;
    const dbSize = this.node.dbSizeBytes?.() ?? 0;
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

  async memberList(): Promise<{ header: WireResponseHeader; members: WireMember[] }> {
    const members = membersOf(this.node, this.address()).map(toWireMember);
    return { header: this.headerFor(this.kv.currentRevision()), members };
  }
}
