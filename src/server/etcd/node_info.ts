import { assert, TesseraError } from '../../base/index.js';
import type { Int64Out, WireMember } from './proto.js';

/** A cluster member as MemberList shows it. */
export interface EtcdMember {
  readonly nodeId: number;
  /** Empty while the member has not started (etcdctl prints "unstarted"). */
  readonly name?: string;
  readonly peerUrls?: readonly string[];
  readonly clientUrls?: readonly string[];
  readonly isLearner?: boolean;
}

/** A member as the node runtime's status reports it (addresses as host:port). */
export interface NodeMemberStatus {
  readonly id: number;
  readonly name: string;
  readonly peer?: string;
  readonly client?: string;
  readonly learner: boolean;
}

/**
 * What the etcd API needs to know about the node that serves it. The node
 * runtime's NodeContext (src/server/node.ts) fits this shape as it is.
 */
export interface EtcdNodeInfo {
  readonly nodeId: number;
  /** A uint64; a string is read as hex, the way etcd prints cluster ids. Absent: 0. */
  readonly clusterId?: number | bigint | string;
  readonly name?: string;
  readonly peerUrls?: readonly string[];
  readonly clientUrls?: readonly string[];
  /** The range whose Raft state Maintenance.Status reports; absent: the node's lowest range. */
  readonly rangeId?: number;
  /** The cluster's members, for MemberList. */
  readonly members?: () => readonly EtcdMember[];
  /** The node runtime's status; its members are listed when `members` is absent. */
  readonly status?: () => { readonly members: readonly NodeMemberStatus[] };
  /** Bytes the node's storage holds, for Maintenance.Status; absent: 0. */
  readonly dbSizeBytes?: () => number;
  /** Where internal errors (bugs) are reported; absent: the console. */
  readonly logger?: { error(fields: object, message: string): void };
}

const MAX_UINT64 = (1n << 64n) - 1n;
const HEX_ID = /^(?:0x)?[0-9a-f]{1,16}$/i;

/** A uint64 id for the wire: a number when it is safe, else its exact decimal string. */
export function wireId(id: number | bigint | string, what: string): Int64Out {
  if (typeof id === 'number') {
    assert(Number.isSafeInteger(id) && id >= 0, () => `${what} must be an integer in [0, 2^53), got ${id}`);
    return id;
  }
  if (typeof id === 'string' && !HEX_ID.test(id)) throw new TesseraError('INVALID_CONFIG', `${what} '${id}' is not a hex uint64`);
  const big = typeof id === 'bigint' ? id : BigInt(id.startsWith('0x') || id.startsWith('0X') ? id : `0x${id}`);
  if (big < 0n || big > MAX_UINT64) throw new TesseraError('INVALID_CONFIG', `${what} ${id} is not a uint64`);
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big.toString();
}

export function toWireMember(m: EtcdMember): WireMember {
  return {
    ID: wireId(m.nodeId, 'member id'),
    name: m.name ?? '',
    peerURLs: [...(m.peerUrls ?? [])],
    clientURLs: [...(m.clientUrls ?? [])],
    isLearner: m.isLearner === true,
  };
}

/** etcd lists URLs; the runtime knows host:port. */
function asUrl(address: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `http://${address}`;
}

/** The members to list: the node's own list, the runtime's status, or the node alone at the address it serves. */
export function membersOf(node: EtcdNodeInfo, address: string): readonly EtcdMember[] {
  if (node.members !== undefined) return node.members();
  if (node.status !== undefined) {
    return node.status().members.map((m) => ({
      nodeId: m.id,
      name: m.name,
      peerUrls: m.peer === undefined ? [] : [asUrl(m.peer)],
      clientUrls: m.client === undefined ? [] : [asUrl(m.client)],
      isLearner: m.learner,
    }));
  }
  const self: EtcdMember = {
    nodeId: node.nodeId,
    name: node.name ?? `node-${node.nodeId}`,
    peerUrls: node.peerUrls ?? [],
    clientUrls: node.clientUrls ?? [asUrl(address)],
  };
  return [self];
}
