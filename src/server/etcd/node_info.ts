import { assert } from '../../base/index.js';
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

/** What the etcd API needs to know about the node that serves it. */
export interface EtcdNodeInfo {
  readonly nodeId: number;
  readonly clusterId?: number;
  readonly name?: string;
  readonly peerUrls?: string[];
  readonly clientUrls?: string[];
  /** The cluster's members, for MemberList; absent: this node alone. */
  readonly members?: () => readonly EtcdMember[];
  /** Bytes the node's storage holds, for Maintenance.Status; absent: 0. */
  readonly dbSizeBytes?: () => number;
}

/** A member or cluster id on the wire: uint64, here always a number below 2^53. */
export function wireId(id: number, what: string): Int64Out {
  assert(Number.isSafeInteger(id) && id >= 0, () => `${what} must be an integer in [0, 2^53), got ${id}`);
  return id;
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

/** The members to list: the node's own list, or the node alone, reachable at the address it serves. */
export function membersOf(node: EtcdNodeInfo, address: string): readonly EtcdMember[] {
  if (node.members !== undefined) return node.members();
  const self: EtcdMember = {
    nodeId: node.nodeId,
    name: node.name ?? `node-${node.nodeId}`,
    peerUrls: node.peerUrls ?? [],
    clientUrls: node.clientUrls ?? [`http://${address}`],
  };
  return [self];
}
