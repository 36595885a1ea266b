/**
 * src/mvcc: a multi-version key space with etcd v3's semantics — revisions,
 * history, compaction, change events, hashes — over a StorageEngine.
 */
export { MvccStore, type BeginWriteOptions, type MvccOpenOptions } from './store.js';
export type { MvccLocation } from './state.js';
export { KEY_HEAD_CACHE_BYTES, KeyHeadBudget } from './state.js';
export { CHANGE_KEY_BOUNDS, WHOLE_KEY_SPAN, dataKeyBounds, isStoreKeyInSpan, isWholeKeySpan, spanContains, type EngineSpan, type KeySpan } from './codec.js';
export {
  WriteTxn,
  type MvccEvent,
  type PutOptions,
  type PutResult,
  type DeleteRangeResult,
  type WriteResult,
} from './write-txn.js';
export {
  SORT_ORDERS,
  SORT_TARGETS,
  type KeyValue,
  type RangeOptions,
  type RangeResult,
  type SortOrder,
  type SortTarget,
  mergeRangeResults,
} from './range.js';
export {
  COMPARE_RESULTS,
  COMPARE_TARGETS,
  DEFAULT_MAX_TXN_OPS,
  applyCompare,
  executeTxn,
  isTxnReadOnly,
  txnIntervals,
  isTxnSerializable,
  type Compare,
  type CompareResult,
  type CompareTarget,
  type DeleteRangeRequest,
  type PutRequest,
  type RequestOp,
  type ResponseOp,
  type TxnOptions,
  type TxnRequest,
  type TxnResponse,
  type TxnTarget,
} from './txn.js';
export { validateTxnRequest } from './txn-validate.js';
export { COMPACTION_BATCH_LIMIT } from './compaction.js';
export { EVENTS_SCAN_LIMIT, type EventsOptions, type EventsResult } from './events.js';
export { Crc32c, type HashKVResult } from './hash.js';
export { MVCC_ERROR_MESSAGES, isMvccErrorCode, isMvccRefusal, mvccError, type MvccErrorCode } from './errors.js';
export { INITIAL_REVISION, MAX_REVISION, MAX_SUB_REVISION, type Revision, compareRevisions } from './revision.js';
export { keyInterval, prefixEnd, compareBytes, concatBytes, utf8, type KeyInterval } from './bytes.js';
export {
  INTENT_TAG,
  MAX_TXN_ID_BYTES,
  TXN_RECORD_TAG,
  intentFloor,
  txnFamilyBounds,
  intentProblem,
  txnIdProblem,
  type Intent,
  type IntentWrite,
  type TxnRecord,
  type TxnStatus,
} from './intents.js';
export {
  MAX_PREPARE_KEYS,
  abortRecord,
  commitProblem,
  commitRecord,
  forgetRecord,
  heartbeatRecord,
  prepare,
  prepareProblem,
  resolveIntents,
  resolveProblem,
  type CommitOutcome,
  type PrepareOutcome,
  type PrepareRequest,
  type PreparedWrite,
} from './participant.js';
