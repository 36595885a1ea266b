/**
 * Operating errors: expected failures that callers handle. Each has a stable
 * string code that survives the wire and reaches the client unchanged.
 * Bugs are not operating errors; they are `AssertionError`s.
 */
export type TesseraErrorCode =
  | 'INVALID_CONFIG'
  | 'INVALID_ARGUMENT'
  | 'NOT_LEADER'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'PROPOSAL_DROPPED'
  | 'LOG_COMPACTED'
  | 'LOG_UNAVAILABLE'
  | 'SNAPSHOT_OUT_OF_DATE'
  | 'SNAPSHOT_TEMPORARILY_UNAVAILABLE'
  | 'CONF_CHANGE_PENDING'
  | 'RESOURCE_EXHAUSTED'
  | 'TIMEOUT'
  | 'PARSE_ERROR'
  | 'CORRUPT_DATA'
  /** The storage device refused a write or a sync; the engine stops accepting writes. */
  | 'IO_ERROR'
  /** The store stopped serving because its storage failed (a refused sync, a corrupt record); restart the node. */
  | 'STORAGE_FAILED'
  | 'CLOSED'
  /**
   * A request reached a range replica with a stale (or newer) descriptor epoch,
   * or for a key outside the range's bounds. Thrown as a RangeMismatchError
   * (src/placement) carrying the replica's current descriptor; the routing
   * node refreshes its cache and retries, so it never reaches a client.
   */
  | 'RANGE_MISMATCH'
  /**
   * A write whose keys lie in more than one range (a Txn, a DeleteRange, a
   * lease revocation): it needs the cross-range transactions of issue 14, and
   * until then it is refused whole, never half applied.
   */
  | 'CROSS_RANGE'
  /** A transaction across ranges gave up (ADR 0017): it took no effect; the client may run it again. */
  | 'TXN_ABORTED'
  /** A transaction across ranges lost touch before it knew its end: it may or may not have committed. */
  | 'TXN_OUTCOME_UNKNOWN'
  /** No range on this node holds the key yet (a split's new range is still being set up here); retry. */
  | 'RANGE_UNAVAILABLE'
  // The refusals of the MVCC key space and of etcd's KV request checks. They
  // are finer than the generic codes above because etcd answers each with its
  // own status and message (src/server/etcd/errors.ts), and because a refused
  // command's code is its result on every replica (src/kv/mvcc_state_machine.ts).
  /** A read or watch at a revision the store has compacted away (not the Raft log's LOG_COMPACTED). */
  | 'COMPACTED'
  /** A read or compaction at a revision the store has not reached yet. */
  | 'FUTURE_REVISION'
  /** A request's key is empty. */
  | 'EMPTY_KEY'
  /** A put with ignore_value or ignore_lease found no key to keep; etcd also answers an empty txn op with it. */
  | 'KEY_NOT_FOUND'
  /** A put with ignore_value also gave a value. */
  | 'VALUE_PROVIDED'
  /** A put with ignore_lease also gave a lease. */
  | 'LEASE_PROVIDED'
  /** A txn with more operations (or deeper nesting) than the limit allows. */
  | 'TOO_MANY_OPS'
  /** A txn that writes one key twice in a branch. */
  | 'DUPLICATE_KEY'
  /** A range with a sort order or sort target that does not exist. */
  | 'INVALID_SORT_OPTION'
  /** A lease id that names no lease (a put's lease, a revoke, a keep-alive); kept apart from NOT_FOUND because etcd answers it with its own message. */
  | 'LEASE_NOT_FOUND';

export class TesseraError extends Error {
  override readonly name = 'TesseraError';
  readonly code: TesseraErrorCode;

  constructor(code: TesseraErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isTesseraError(value: unknown, code?: TesseraErrorCode): value is TesseraError {
  return value instanceof TesseraError && (code === undefined || value.code === code);
}
