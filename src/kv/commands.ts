import { Packr } from 'msgpackr';
import { TesseraError } from '../base/index.js';
import type { TxnRequest } from '../mvcc/index.js';

/**
 * Commands replicated through a range's log. Each carries the id of the
 * request it answers, so the proposing node can route the result back and
 * a command delivered twice takes effect once.
 */
export type KvCommand =
  | { readonly kind: 'txn'; readonly requestId: string; readonly txn: TxnRequest }
  | { readonly kind: 'compact'; readonly requestId: string; readonly revision: number }
  | { readonly kind: 'lease-grant'; readonly requestId: string; readonly id: number; readonly ttlSeconds: number }
  | { readonly kind: 'lease-revoke'; readonly requestId: string; readonly id: number }
  | { readonly kind: 'lease-checkpoint'; readonly requestId: string; readonly checkpoints: readonly { readonly id: number; readonly remainingMs: number }[] }
  /** etcd's MemberUpdate: new peer URLs for a member (its Raft membership does not change). */
  | { readonly kind: 'member-update'; readonly requestId: string; readonly id: number; readonly peerUrls: readonly string[] }
  /** A member publishes its name and client URLs once it serves (etcd's publish). */
  | { readonly kind: 'member-attrs'; readonly requestId: string; readonly id: number; readonly name: string; readonly clientUrls: readonly string[] };

const KINDS: ReadonlySet<string> = new Set(['txn', 'compact', 'lease-grant', 'lease-revoke', 'lease-checkpoint', 'member-update', 'member-attrs']);

// Records as maps (no shared structures): an entry must decode the same on any node and after restarts.
const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeCommand(command: KvCommand): Uint8Array {
  return packr.pack(command);
}

export function decodeCommand(data: Uint8Array): KvCommand {
  let value: unknown;
  try {
    value = packr.unpack(data);
  } catch (err) {
    throw new TesseraError('CORRUPT_DATA', 'undecodable command in the log', { cause: err });
  }
  const c = value as Partial<KvCommand> | null;
  if (c === null || typeof c !== 'object' || typeof c.requestId !== 'string' || typeof c.kind !== 'string' || !KINDS.has(c.kind)) {
    throw new TesseraError('CORRUPT_DATA', 'malformed command in the log');
  }
  return c as KvCommand;
}
