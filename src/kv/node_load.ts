/**
 * What a node tells its peers about its load with every liveness message
 * (ADR 0015), as CockroachDB gossips each store's capacity (range count,
 * bytes, QPS) for its allocator: placement weighs bytes and QPS with it.
 * Nothing is written to a range: a figure is at most LIVENESS_ANNOUNCE_MS
 * plus NODE_LOAD_REFRESH_MS old, and costs a few bytes per message.
 */
export interface NodeLoad {
  /** Approximate bytes of the data-range replicas the node holds (range 1, on every member, left out). */
  readonly bytes: number;
  /** Requests per second, as the node meters them, on the data ranges it leads. */
  readonly leaderQps: number;
  /**
   * How many ranges the node leads, range 1 included: the leader balancer's
   * counts for other nodes (its own replicas show only the leaders of the
   * ranges it holds). Absent from an older node's report.
   */
  readonly leaders?: number;
}

/** The largest figure a peer may report: anything above is refused as malformed. */
export const MAX_NODE_LOAD_FIGURE = Number.MAX_SAFE_INTEGER;

/** How often a node works out its own load again (a sum over its replicas: not every announcement). */
export const NODE_LOAD_REFRESH_MS = 1_000;

/** A peer's load is used while its last report is at most this old (a dozen announcements), then forgotten: a silent node's figures go stale with it. */
export const NODE_LOAD_FRESH_MS = 3_000;

/** Why `v` is not a NodeLoad a peer may send, or undefined. */
export function nodeLoadProblem(v: unknown): string | undefined {
  if (v === null || typeof v !== 'object') return 'not a map';
  const o = v as Record<string, unknown>;
  for (const field of ['bytes', 'leaderQps']) {
    const x = o[field];
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0 || x > MAX_NODE_LOAD_FIGURE) return `${field} is not a figure in [0, ${MAX_NODE_LOAD_FIGURE}]`;
  }
  const leaders = o['leaders'];
  if (leaders !== undefined && (typeof leaders !== 'number' || !Number.isSafeInteger(leaders) || leaders < 0)) return `leaders is not a count in [0, ${MAX_NODE_LOAD_FIGURE}]`;
  return undefined;
}
