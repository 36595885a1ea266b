import type { NodeId } from './types.js';

export type VoteResult = 'pending' | 'won' | 'lost';

/**
 * The highest index that a majority of `voters` have acknowledged. An empty
 * config commits everything (so that a joint config with an empty half
 * behaves as the other half alone).
 */
export function majorityCommitted(voters: ReadonlySet<NodeId>, ackedIndex: (id: NodeId) => number | undefined): number {
  const n = voters.size;
  if (n === 0) return Number.MAX_SAFE_INTEGER;
  const acked: number[] = [];
  for (const id of voters) acked.push(ackedIndex(id) ?? 0);
  acked.sort((a, b) => b - a);
  return acked[Math.floor(n / 2)] as number;
}

export function majorityVoteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = Math.floor(voters.size / 2) + 1;
  if (granted >= q) return 'won';
  if (granted + missing >= q) return 'pending';
  return 'lost';
}

/** A configuration: incoming voters, and outgoing voters while joint (§6 / thesis §4.3). */
export type JointVoters = readonly [ReadonlySet<NodeId>, ReadonlySet<NodeId>];

export function jointCommitted(voters: JointVoters, ackedIndex: (id: NodeId) => number | undefined): number {
  return Math.min(majorityCommitted(voters[0], ackedIndex), majorityCommitted(voters[1], ackedIndex));
}

/** In a joint config a decision needs a majority in both halves. */
export function jointVoteResult(voters: JointVoters, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const a = majorityVoteResult(voters[0], votes);
  const b = majorityVoteResult(voters[1], votes);
  if (a === b) return a;
  if (a === 'lost' || b === 'lost') return 'lost';
  return 'pending';
}

export function jointIds(voters: JointVoters): NodeId[] {
  const ids = new Set<NodeId>([...voters[0], ...voters[1]]);
  return [...ids].sort((a, b) => a - b);
}
