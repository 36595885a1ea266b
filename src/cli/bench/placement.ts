/**
 * How a benchmark cluster's ranges are placed, read from every member's
 * admin `/ranges`: shared by bench:scale and bench --ranges, which wait for
 * placement to settle before they measure.
 */
import { adminUrl } from '../admin_http.js';
import type { RangeInfo } from '../../server/ranges.js';
import type { Cluster } from './clusters.js';

async function rangesOf(endpoint: string): Promise<RangeInfo[]> {
  try {
    const res = await fetch(adminUrl(endpoint, '/ranges'), { signal: AbortSignal.timeout(10_000) });
    return (await res.json()) as RangeInfo[];
  } catch {
    return [];
  }
}

export interface Placement {
  readonly ranges: number;
  readonly replicasPerNode: number[];
  readonly leadersPerNode: number[];
  readonly problem: string | undefined;
}

/**
 * Every range as its leader reports it (else as any holder does), and how
 * even the nodes are: replicas within one of each other, and no node
 * leading more than the mean plus one (the LeaderBalancer's own bound).
 */
export async function placement(cluster: Cluster, rangeCount: number, replicas: number): Promise<Placement> {
  const byId = new Map<number, RangeInfo>();
  const answers = await Promise.all(cluster.members.map((m) => (m.adminEndpoint === undefined ? [] : rangesOf(m.adminEndpoint))));
  answers.forEach((list, i) => {
    for (const r of list) if (!byId.has(r.id) || r.leader === cluster.members[i]?.name) byId.set(r.id, r);
  });
  const ranges = [...byId.values()];
  const names = cluster.members.map((m) => m.name);
  const want = Math.min(replicas, names.length);
  const replicasPerNode = names.map((n) => ranges.filter((r) => r.id !== 1 && r.replicas.some((x) => x.node === n)).length);
  const leadersPerNode = names.map((n) => ranges.filter((r) => r.leader === n).length);
  const unplaced = ranges.filter((r) => r.id !== 1 && (r.replicas.length !== want || r.replicas.some((x) => x.role !== 'voter')));
  const problem =
    ranges.length < rangeCount
      ? `${ranges.length} of ${rangeCount} ranges`
      : unplaced.length > 0
        ? `${unplaced.length} ranges not on ${want} voters`
        : Math.max(...replicasPerNode) - Math.min(...replicasPerNode) > 1
          ? `replicas per node ${replicasPerNode.join('/')}`
          : ranges.some((r) => r.leader === null)
            ? 'a range without a leader'
            : Math.max(...leadersPerNode) > ranges.length / names.length + 1
              ? `leaders per node ${leadersPerNode.join('/')}`
              : undefined;
  return { ranges: ranges.length, replicasPerNode, leadersPerNode, problem };
}
