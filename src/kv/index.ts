/**
 * src/kv: the replicated store — ranges of Raft replicas over one
 * StorageEngine, the MVCC state machine they apply, leases, members, watches
 * and snapshot streaming. Other layers import kv through this file only
 * (scripts/lint-layers.mjs enforces it; tests and test libraries may reach
 * further in), so what is exported here is kv's public surface.
 */
export { type KvCommand, encodeCommand } from './commands.js';
// `keys` is the on-disk key layout; the simulator reads the Raft log range with it.
export { type RangeId, keys } from './keys.js';
export {
  DESCRIPTOR_FORMAT,
  INITIAL_RANGE_EPOCH,
  MAX_RANGE_REPLICAS,
  type MergeResult,
  type RangeDescriptor,
  type RangeEpoch,
  RangeMap,
  RangeMismatchError,
  type RangeMismatchReason,
  type ReplicaChangeResult,
  type ReplicaDescriptor,
  type ReplicaRole,
  type SplitResult,
  checkRangeRequest,
  decodeDescriptor,
  descriptorProblem,
  encodeDescriptor,
  isStaleEpoch,
  partitionProblem,
  rangeContainsKey,
  replicasProblem,
} from './range_map.js';
export { KvNode, type KvNodeOptions, META_RANGE } from './kv_node.js';
export { type CrossRangeTxns, DEFAULT_REQUEST_TIMEOUT_MS, FORWARD_GRACE_MS, type IntentSettler, type KeyAtRevision, KvApi, type KvApiOptions, MAX_PREFETCH_ROUNDS, MAX_REROUTES } from './kv_api.js';
export { type RoutableRange, type RoutedSpan, Router } from './router.js';
export { LOG_RETAIN_BYTES, SPLIT_INITIAL_INDEX } from './replica.js';
export { MAX_RANGES_PER_NODE } from './store.js';
export { DEFAULT_LEASE_CHECKPOINT_INTERVAL_MS, LeaseKeeper } from './lease_keeper.js';
export { MAX_LEASE_TTL_SECONDS } from './leases.js';
export { LOAD_WINDOW_SECONDS, LoadMeter } from './load.js';
export {
  MAX_MEMBER_URLS,
  MAX_MEMBER_URL_BYTES,
  MAX_LOCALITY_BYTES,
  localityProblem,
  type MemberChangeContext,
  type MemberRecord,
  decodeMemberContext,
  encodeMemberContext,
} from './members.js';
export {
  type MemberView,
  MembershipCore,
  MembershipError,
  type MembershipErrorReason,
  type MembershipLog,
  type MembershipOutcome,
} from './membership.js';
export { type CommandResult, MvccStateMachine, snapshotDataProblem } from './mvcc_state_machine.js';
export { type Applied, type ReplicaRaftOptions } from './replica.js';
export {
  BytesSnapshotReader,
  SNAPSHOT_MEASURE_SLICE_PAIRS,
  type SnapshotDataReader,
  snapshotReaderOf,
} from './snapshot_stream.js';
export { MAX_REVISION_REQUEST_ID_BYTES, type RevisionMessage, RevisionService, type RevisionServiceOptions, type RevisionHost } from './revisions.js';
export {
  type ForwardHandler,
  type ForwardMessage,
  type ForwardOp,
  type ForwardValue,
  Forwarder,
  MAX_FORWARD_ID_BYTES,
  MAX_FORWARD_OUTSTANDING,
  MAX_FORWARD_SERVING,
  decodeOp,
  decodeReply,
} from './forward.js';
export { PROPOSAL_RETRY_MS, RequestRunner, type RequestEvent, type RequestOutcome } from './requests.js';
export { type ProposalOutcome, type ProposalWindow, type QuiescenceEvent, type RangeMessage, type RevisionSource, Store, type StoreOptions, type Transport } from './store.js';
export { MAX_NODE_LOAD_FIGURE, NODE_LOAD_FRESH_MS, NODE_LOAD_REFRESH_MS, type NodeLoad, nodeLoadProblem } from './node_load.js';
export { MAX_WATCHERS, WatchHub, type WatchOutput, type WatchRequest } from './watch_hub.js';
export {
  MAX_REVISION,
  type PersistWindow,
  TSO_MAX_BATCH_REVISIONS,
  TSO_MAX_QUEUED_REQUESTS,
  TSO_REFILL_BELOW,
  TSO_SERVES_BEFORE_PERSIST,
  TSO_WINDOW_REVISIONS,
  TimestampOracle,
  type TimestampOracleOptions,
  type TsoAnswer,
  type TsoDone,
  type TsoSabotage,
  closedRevision,
} from './tso.js';
