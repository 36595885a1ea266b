/**
 * src/placement: where ranges are and how they change — the map of range
 * descriptors (splits, merges, replica changes, routing checks) and the
 * load-based split key finder. Pure: time and randomness are injected.
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
} from './range_map.js';
