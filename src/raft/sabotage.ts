/**
 * Deliberate bugs, one per bug class of research/reliability.md §4, used
 * only to prove that the simulator and checkers catch them. A `Sabotage` can
 * only be made here, and the layering lint lets only src/sim and tests import
 * this file, so production code cannot switch a bug on.
 */
export type BugName =
  | 'commit-old-term'
  | 'vote-before-persist'
  | 'ack-before-sync'
  | 'read-without-quorum'
  | 'lease-read-drift'
  | 'no-prevote-checkquorum'
  | 'apply-uncommitted'
  | 'snapshot-drops-entries'
  | 'double-vote'
  | 'ignore-sync-failure'
  | 'append-skips-match'
  | 'timeout-as-failure'
  | 'member-add-without-record'
  | 'tso-serves-before-persist'
  | 'split-skips-key-check'
  | 'merge-skips-freeze'
  | 'unfreeze-without-abort'
  | 'snapshot-over-newer-descriptor'
  | 'watch-ignores-watermark'
  | 'quiesce-keeps-lease'
  | 'quiesce-ignores-leader-death'
  | 'forward-read-skips-barrier';

export const BUG_DESCRIPTIONS: Readonly<Record<BugName, string>> = {
  'commit-old-term': 'a new leader commits earlier-term entries by counting replicas, without first committing a no-op of its own term (Raft §5.4.2, Figure 8)',
  'vote-before-persist': 'a node sends its vote before the vote and term are on disk',
  'ack-before-sync': 'appended entries are acknowledged before they are synced to disk',
  'read-without-quorum': 'ReadIndex is served without confirming leadership with a quorum',
  'lease-read-drift': 'lease reads ignore the clock-drift bound, last two election timeouts, and count the lease from the ack',
  'no-prevote-checkquorum': 'PreVote and CheckQuorum are off, so a partly partitioned node deposes leaders',
  'apply-uncommitted': 'entries are handed to the state machine before they are committed',
  'snapshot-drops-entries': 'a snapshot claims an index whose last entry it does not contain',
  'double-vote': 'a node grants a second vote in the same term',
  'ignore-sync-failure': 'the store takes a failed sync for a good one and goes on serving (fsyncgate)',
  'append-skips-match': "a follower appends a leader's entries after an entry of another term (skips the §5.3 consistency check)",
  'timeout-as-failure': 'a request still in flight at its deadline is reported as certainly not done, though it may yet commit',
  'member-add-without-record': "etcd's MemberAdd changes the Raft configuration without the new member's record, so the member table no longer follows it",
  'tso-serves-before-persist': 'the timestamp oracle hands out revisions from a window it has asked to persist before the window is persisted, so a new meta leader hands them out again',
  'merge-skips-freeze': 'a merge neither freezes the right-hand range nor waits for this node\'s replica of it to catch up, so writes the right range takes during the merge, or has not applied here yet, are missing from the merged range',
  'unfreeze-without-abort': 'a range frozen for a merge for two request timeouts is unfrozen at once, without first seeing the merge made impossible in the left range\'s log (no abort-merge), so a merge that commits meanwhile and the unfrozen range both serve its keys',
  'split-skips-key-check': 'a range applies a txn for keys it gave away in a split (the apply-time RANGE_MISMATCH check is skipped), so the write lands in a range that no longer owns the key',
  'watch-ignores-watermark': "the watch hub gives a watcher every buffered change as soon as it is applied, not only up to the lowest closed revision of the ranges it covers, so a change another range applies later at a lower revision is skipped or comes out of order",
  'snapshot-over-newer-descriptor': "a replica installs a range's snapshot whose bounds overlap another range on the node (Store.snapshotFits always says yes), so one node holds a key in two ranges",
  'quiesce-keeps-lease': "a leader that quiesces keeps its lease, whose clock (the leader's ticks) stops while it is quiet, so when a read wakes it the lease still looks valid however long it slept",
  'quiesce-ignores-leader-death': "followers of a quiesced range never wake when their leader's node falls silent (the store's liveness check is skipped), so a range whose leader died stays leaderless until a request or a peer's message reaches one of them",
  'forward-read-skips-barrier': "a node serving a linearizable read another node forwarded to it (placement: the first node holds no replica of the range) skips the read barrier and answers from its own replica, which may be behind",
};

export const BUG_NAMES: readonly BugName[] = Object.keys(BUG_DESCRIPTIONS) as BugName[];

declare const sabotageBrand: unique symbol;

export class Sabotage {
  declare private readonly [sabotageBrand]: true;
  private readonly bugs: ReadonlySet<BugName>;

  private constructor(bugs: ReadonlySet<BugName>) {
    this.bugs = bugs;
  }

  static of(...bugs: BugName[]): Sabotage {
    return new Sabotage(new Set(bugs));
  }

  has(bug: BugName): boolean {
    return this.bugs.has(bug);
  }

  names(): BugName[] {
    return [...this.bugs];
  }
}

export function isBugName(name: string): name is BugName {
  return Object.hasOwn(BUG_DESCRIPTIONS, name);
}
