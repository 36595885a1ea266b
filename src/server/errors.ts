import { TesseraError, type TesseraErrorCode } from '../base/index.js';

/**
 * Why the peer transport refused a connection or a frame. Each reason maps to
 * one of base's stable codes, so callers that only know TesseraError still
 * get a meaningful code; logs and tests use the finer `reason`.
 */
export type PeerErrorReason =
  | 'frame-too-large'
  | 'malformed-frame'
  | 'unexpected-frame'
  | 'protocol-version'
  | 'cluster-mismatch'
  | 'wrong-node'
  | 'handshake-timeout'
  | 'snapshot-too-large'
  | 'not-ready'
  /** The peer was removed from the cluster: it must stop (etcd answers such a peer 410 Gone). */
  | 'member-removed'
  /** A hello from, or a join by, a node that is not a member of this cluster. */
  | 'unknown-member'
  /** Handling the frame failed on this side (a bug, not bad input); the connection is closed. */
  | 'internal-error';

const CODE_OF: Record<PeerErrorReason, TesseraErrorCode> = {
  'frame-too-large': 'RESOURCE_EXHAUSTED',
  'malformed-frame': 'PARSE_ERROR',
  'unexpected-frame': 'PARSE_ERROR',
  'protocol-version': 'INVALID_CONFIG',
  'cluster-mismatch': 'INVALID_CONFIG',
  'wrong-node': 'INVALID_CONFIG',
  'handshake-timeout': 'TIMEOUT',
  'snapshot-too-large': 'RESOURCE_EXHAUSTED',
  'not-ready': 'NOT_FOUND',
  'member-removed': 'INVALID_CONFIG',
  'unknown-member': 'INVALID_CONFIG',
  'internal-error': 'IO_ERROR',
};

export function isPeerErrorReason(value: string): value is PeerErrorReason {
  return Object.hasOwn(CODE_OF, value);
}

export class PeerError extends TesseraError {
  readonly reason: PeerErrorReason;

  constructor(reason: PeerErrorReason, message: string, options?: { cause?: unknown }) {
    super(CODE_OF[reason], message, options);
    this.reason = reason;
  }
}

export function isPeerError(value: unknown, reason?: PeerErrorReason): value is PeerError {
  return value instanceof PeerError && (reason === undefined || value.reason === reason);
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
