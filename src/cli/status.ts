import type { NodeStatus } from '../server/node.js';
import { adminUrl, unreachableReason } from './admin_http.js';

/** How long `tessera status` waits for each node. */
export const STATUS_TIMEOUT_MS = 3_000;

type Row = { endpoint: string; status: NodeStatus } | { endpoint: string; error: string };

/**
 * `tessera status`: asks each node's admin endpoint (`GET /status`) and
 * prints one line per node (name, id, state, leader, term, raft index,
 * applied index, revision) and the members as the first node that answered
 * sees them. Exit status 1 if any node did not answer.
 */
export async function runStatus(endpoints: readonly string[], json: boolean): Promise<number> {
  const rows: Row[] = await Promise.all(endpoints.map((e) => fetchStatus(e)));
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatTable(rows)}\n`);
  }
  return rows.some((r) => 'error' in r) ? 1 : 0;
}

async function fetchStatus(endpoint: string): Promise<Row> {
  try {
    const res = await fetch(adminUrl(endpoint, '/status'), { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
    if (!res.ok) return { endpoint, error: `HTTP ${res.status}` };
    return { endpoint, status: (await res.json()) as NodeStatus };
  } catch (error) {
    return { endpoint, error: unreachableReason(error) };
  }
}

export function formatTable(rows: readonly Row[]): string {
  const header = ['ENDPOINT', 'NAME', 'ID', 'STATE', 'LEADER', 'TERM', 'RAFT INDEX', 'APPLIED', 'REVISION'];
  const lines = rows.map((r) => {
    if ('error' in r) return [r.endpoint, '-', '-', `unreachable: ${r.error}`, '', '', '', '', ''];
    const s = r.status;
    return [r.endpoint, s.name, String(s.nodeId), s.state, s.leaderName ?? (s.leader === 0 ? 'none' : String(s.leader)), String(s.term), String(s.raftIndex), String(s.appliedIndex), String(s.revision)];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cols: readonly string[]): string => cols.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const out = [fmt(header), ...lines.map(fmt)];
  const first = rows.find((r): r is Extract<Row, { status: NodeStatus }> => 'status' in r);
  if (first !== undefined) {
    out.push('', `members (as ${first.status.name} sees them):`);
    for (const m of first.status.members) {
      const role = m.id === first.status.leader ? 'leader' : m.learner ? 'learner' : 'voter';
      out.push(`  ${m.name}  id ${m.id}  ${role}  peer ${m.peer ?? '?'}  client ${m.client ?? '?'}`);
    }
  }
  return out.join('\n');
}
