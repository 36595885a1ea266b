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
  | 'CLOSED';

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
