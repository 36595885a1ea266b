/**
 * src/placement: where ranges are and how they change — the map of range
 * descriptors (splits, merges, replica changes, routing checks) and the
 * load-based split key finder (ADR 0009). Pure:
 * time and randomness are injected. The descriptors themselves live in kv
 * (kv/range_map.ts), which applies splits, and so does the timestamp oracle
 * (kv/tso.ts), which kv drives; both are re-exported here.
 */
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
} from '../kv/index.js';
export {
  type CandidateScore,
  LoadSplitDecider,
  type LoadSplitDeciderOptions,
  type NoSplitReason,
  QPS_WINDOW_MS,
  RANGE_SPLIT_QPS,
  type RangeBounds,
  SPLIT_KEY_MIN_COUNT,
  SPLIT_KEY_SAMPLE_SIZE,
  SPLIT_MAX_CROSSING_FRACTION,
  SPLIT_MAX_IMBALANCE,
  SPLIT_SAMPLE_WINDOW_MS,
  SplitKeyFinder,
  type SplitKeyChoice,
  type SplitKeyFinderOptions,
} from './split_finder.js';
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
} from '../kv/index.js';
export { DEFAULT_RANGE_MAX_BYTES, SPLIT_CHECK_INTERVAL_MS, SplitQueue, type SplitQueueOptions } from './split_queue.js';
export { MERGE_AFTER_SPLIT_DELAY_MS, MERGE_CHECK_INTERVAL_MS, type MergePlans, MergeQueue, type MergeQueueOptions, RELOCATION_HOLD_CHECKS } from './merge_queue.js';
export { BYTE_MOVE_COUNT_SLACK, type BalanceMove, PROMOTE_MAX_LAG_ENTRIES, ReplicaReconciler, type ReplicaReconcilerOptions, chooseReplicas, nextStep, relocationGoal } from './replica_reconciler.js';
export { PRESPLIT_KEY_PREFIX, PRESPLIT_MAX_IN_FLIGHT, Presplitter, type PresplitterOptions, presplitKeys } from './presplit.js';
export { LEADER_BALANCE_INTERVAL_MS, LEADER_BALANCE_SLACK, LeaderBalancer, type LeaderBalancerOptions, type LeaderQps, type LeaderView, chooseLeaderTransfer } from './leader_balancer.js';
export { DEFAULT_MIN_BYTES_IMBALANCE, DEFAULT_MIN_QPS_IMBALANCE, type LoadFigures, MIN_MOVE_SHARE_OF_EXCESS, NodeLoadReporter, type NodeLoadReporterOptions, OVERFULL_RATIO, RECEIVER_MAX_RATIO, UNDERFULL_RATIO, mayReceive, meanOver, overfull, underfull } from './load_balance.js';
export { DRAIN_RETRY_MS, type DrainState, Drainer, type DrainerOptions } from './drainer.js';
