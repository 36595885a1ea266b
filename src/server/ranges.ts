import type { KvNode } from '../kv/index.js';
import type { MemberView } from './membership.js';

/**
 * One range as `GET /ranges` and `tessera ranges` show it. `start` and `end`
 * are base64, as etcd's JSON gateway writes keys; an empty `end` is the end
 * of the key space. `bytes` are the key and value bytes of the live keys.
 */
export interface RangeInfo {
  readonly id: number;
  readonly start: string;
  readonly end: string;
  readonly replicas: readonly { readonly node: string; readonly role: 'voter' | 'learner' }[];
  /** The leader's node name, or null when this node knows none. */
  readonly leader: string | null;
  readonly bytes: number;
  readonly keys: number;
  /** Intents of transactions across ranges the replica holds (ADR 0017): none once every transaction is resolved. */
  readonly intents: number;
  /** Requests per second: the range's own over the last second when load splits are on, else every range's through this node over the last LOAD_WINDOW_SECONDS. */
  readonly qps: number;
}

/**
 * The ranges this node holds a replica of, as it sees them. Keys and bytes
 * are the local MVCC store's at its current revision, from the live stats
 * its meta record keeps (MvccStore.liveKeysAndBytes), so the answer costs no
 * walk over the data: at 10M keys a walk over the record heads did not
 * answer in 300 s, since the heads sit on every leaf page of a disk larger
 * than memory.
 */
export function describeRanges(kvNode: KvNode, members: readonly MemberView[], qpsOf: (rangeId: number) => number | undefined = () => undefined): RangeInfo[] {
  const nameOf = (id: number): string => members.find((m) => m.id === id)?.name || String(id);
  const out: RangeInfo[] = [];
  for (const rangeId of kvNode.store.rangeIds()) {
    const replica = kvNode.store.replica(rangeId);
    if (replica === undefined) continue;
    const sm = kvNode.stateMachineOf(rangeId);
    // A replica made for a peer's message holds nothing until its snapshot: not a range here yet.
    if (sm.descriptor === undefined) continue;
    const cs = replica.currentConfState();
    const voters = [...new Set([...cs.voters, ...cs.votersOutgoing])];
    const learners = [...new Set([...cs.learners, ...cs.learnersNext])].filter((id) => !voters.includes(id));
    const lead = replica.raw.raft.lead;
    const { keys, bytes } = sm.mvcc.liveKeysAndBytes();
    out.push({
      id: rangeId,
      start: Buffer.from(sm.span.start).toString('base64'),
      end: sm.span.end === undefined ? '' : Buffer.from(sm.span.end).toString('base64'),
      replicas: [...voters.map((id) => ({ node: nameOf(id), role: 'voter' as const })), ...learners.map((id) => ({ node: nameOf(id), role: 'learner' as const }))],
      leader: lead === 0 ? null : nameOf(lead),
      bytes,
      keys,
      intents: sm.mvcc.intentCount,
      qps: Math.round((qpsOf(rangeId) ?? kvNode.load.qps()) * 10) / 10,
    });
  }
  return out;
}
