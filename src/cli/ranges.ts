import type { RangeInfo } from '../server/ranges.js';
import { adminUrl, unreachableReason } from './admin_http.js';

/** How long `tessera ranges` waits for each node. */
export const RANGES_TIMEOUT_MS = 3_000;

type Answer =
  | { readonly endpoint: string; readonly node: string; readonly ranges: readonly RangeInfo[] }
  | { readonly endpoint: string; readonly error: string };

/**
 * `tessera ranges`: asks each node's admin endpoint (`GET /ranges`, and
 * `GET /status` for the node's name) and lists every range once. A range is
 * shown as its leader sees it when the leader answered (the leader counts
 * the range's writes and linearizable reads), else as the first node that
 * holds it. Exit status 1 if any node did not answer.
 */
export async function runRanges(endpoints: readonly string[], json: boolean): Promise<number> {
  const answers = await Promise.all(endpoints.map((e) => fetchRanges(e)));
  const ranges = mergeRanges(answers);
  if (json) process.stdout.write(`${JSON.stringify(ranges, null, 2)}\n`);
  else process.stdout.write(`${formatRanges(ranges, answers)}\n`);
  return answers.some((a) => 'error' in a) ? 1 : 0;
}

async function fetchRanges(endpoint: string): Promise<Answer> {
  try {
    const get = async (path: string): Promise<unknown> => {
      const res = await fetch(adminUrl(endpoint, path), { signal: AbortSignal.timeout(RANGES_TIMEOUT_MS) });
      if (!res.ok) throw new Error(`HTTP ${res.status} for ${path}`);
      return res.json();
    };
    const [status, ranges] = await Promise.all([get('/status'), get('/ranges')]);
    if (!Array.isArray(ranges)) return { endpoint, error: '/ranges is not a list' };
    const node = typeof (status as { name?: unknown }).name === 'string' ? (status as { name: string }).name : endpoint;
    return { endpoint, node, ranges: ranges as RangeInfo[] };
  } catch (error) {
    return { endpoint, error: unreachableReason(error) };
  }
}

/** One entry per range id, sorted by start key; the leader's own view wins. */
export function mergeRanges(answers: readonly Answer[]): RangeInfo[] {
  const byId = new Map<number, { info: RangeInfo; fromLeader: boolean }>();
  for (const a of answers) {
    if ('error' in a) continue;
    for (const info of a.ranges) {
      const fromLeader = info.leader === a.node;
      const held = byId.get(info.id);
      if (held === undefined || (fromLeader && !held.fromLeader)) byId.set(info.id, { info, fromLeader });
    }
  }
  return [...byId.values()].map((x) => x.info).sort((x, y) => Buffer.compare(Buffer.from(x.start, 'base64'), Buffer.from(y.start, 'base64')));
}

export function formatRanges(ranges: readonly RangeInfo[], answers: readonly Answer[]): string {
  const header = ['ID', 'START', 'END', 'REPLICAS', 'LEADER', 'KEYS', 'BYTES', 'QPS'];
  const key = (b64: string, end: boolean): string => (b64 === '' ? (end ? '(end)' : '(start)') : printable(Buffer.from(b64, 'base64')));
  const lines = ranges.map((r) => [
    String(r.id),
    key(r.start, false),
    key(r.end, true),
    r.replicas.map((x) => (x.role === 'learner' ? `${x.node}(learner)` : x.node)).join(','),
    r.leader ?? 'none',
    String(r.keys),
    String(r.bytes),
    String(r.qps),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (cols: readonly string[]): string => cols.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const out = [fmt(header), ...lines.map(fmt)];
  for (const a of answers) if ('error' in a) out.push(`${a.endpoint}: unreachable: ${a.error}`);
  return out.join('\n');
}

/** A key as text when it is printable ASCII, else as 0x-hex. */
function printable(key: Buffer): string {
  return /^[\x21-\x7e]*$/.test(key.toString('latin1')) ? key.toString('latin1') : `0x${key.toString('hex')}`;
}
