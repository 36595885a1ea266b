import type { BugName } from '../raft/sabotage.js';

/** Which oracle found a violation, so a bug-switch test can demand the oracle it exists to prove. */
export type ViolationKind =
  | 'election-safety'
  | 'leader-completeness'
  | 'state-machine-safety'
  | 'log-matching'
  | 'linearizability'
  | 'undecided'
  | 'raft-invariant'
  | 'crash'
  | 'liveness'
  | 'convergence'
  | 'membership'
  | 'watch'
  | 'lost-write'
  | 'revision'
  | 'range-partition'
  | 'range-epoch'
  | 'wire'
  /** The transactional workload's history (src/check/txn) shows an anomaly. */
  | 'txn-anomaly';

/**
 * The kinds that must catch each deliberate bug: the oracle the bug exists
 * to prove able to fire, not whichever check trips first.
 */
export const BUG_CAUGHT_BY: Readonly<Record<BugName, readonly ViolationKind[]>> = {
  'commit-old-term': ['leader-completeness', 'state-machine-safety', 'linearizability'],
  'vote-before-persist': ['election-safety'],
  'ack-before-sync': ['state-machine-safety', 'linearizability', 'leader-completeness'],
  'read-without-quorum': ['linearizability'],
  'lease-read-drift': ['linearizability'],
  'no-prevote-checkquorum': ['liveness'],
  'apply-uncommitted': ['state-machine-safety', 'linearizability'],
  // The replica that installed the short snapshot is one write behind: the next entries it applies take
  // revisions other replicas gave to earlier entries (the revision oracle), or its watchers see it first.
  'snapshot-drops-entries': ['revision', 'convergence', 'state-machine-safety', 'linearizability', 'watch'],
  'double-vote': ['election-safety'],
  // A lost batch the node took for durable shows first as a hole in its own log (a local check).
  'ignore-sync-failure': ['raft-invariant', 'state-machine-safety', 'linearizability', 'convergence'],
  // Checked as each append is stepped, before the bad entry can be committed or applied.
  'append-skips-match': ['log-matching'],
  // A write reported as not done that commits later: the checker sees an effect nobody may have caused.
  'timeout-as-failure': ['linearizability'],
  // Through the Cluster API logic the simulator drives (src/kv/membership.ts).
  'member-add-without-record': ['membership'],
  // A new meta leader hands out again what its deposed predecessor served from an unpersisted window.
  'tso-serves-before-persist': ['revision'],
  // The write reaches the old range's MVCC store, whose own span check asserts (a raft-invariant crash), unless
  // the client's history or the acknowledged write's range shows it first.
  'split-skips-key-check': ['raft-invariant', 'lost-write', 'linearizability'],
  // The overlap is checked as each snapshot is installed; what it wipes shows at convergence or in a lost write.
  // The merged range misses the right range's last writes on the nodes whose right replica lagged (or the
  // right range takes a write during the merge that the merged range never sees): replicas differ, or an
  // acknowledged write is gone.
  'merge-skips-freeze': ['convergence', 'lost-write', 'linearizability', 'state-machine-safety', 'raft-invariant'],
  'unfreeze-without-abort': ['convergence', 'lost-write', 'linearizability', 'state-machine-safety', 'raft-invariant'],
  'snapshot-over-newer-descriptor': ['range-partition', 'convergence', 'lost-write'],
  // Only the watch streams see the order in which ranges applied their changes.
  'watch-ignores-watermark': ['watch'],
  // A read wakes the cut-off quiesced leader, whose lease still looks valid: a stale read.
  'quiesce-keeps-lease': ['linearizability'],
  // A range whose leader died while it was quiet stays leaderless: caught by the simulator's last phase (quiesced failover).
  'quiesce-ignores-leader-death': ['liveness'],
  // A follower behind its leader answers a read forwarded to it with a value older than an acknowledged write.
  'forward-read-skips-barrier': ['linearizability'],
};
