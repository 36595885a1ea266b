/**
 * Wire-independent Raft types. The transport (server or simulator) encodes
 * these as it likes; the library only produces and consumes them.
 */

/** A node id. 0 means "nobody" (no vote, no leader). */
export type NodeId = number;
export const NONE: NodeId = 0;

export type EntryType = 'normal' | 'conf-change';

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** The command for a normal entry; empty for the leader's no-op of a new term. */
  readonly data: Uint8Array;
  /** Present iff type is 'conf-change'. */
  readonly confChange?: ConfChange;
}

export type ConfChangeType = 'add-node' | 'remove-node' | 'add-learner';

export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/**
 * A membership change. Zero changes means "leave the joint configuration".
 * - 'auto': joint consensus if more than one voter changes, left automatically;
 * - 'implicit': always joint, left automatically once applied;
 * - 'explicit': always joint, left only by a later empty change.
 */
export interface ConfChange {
  readonly transition: 'auto' | 'implicit' | 'explicit';
  readonly changes: readonly ConfChangeSingle[];
  /** Opaque to Raft: the application's own record of the change (e.g. peer address). */
  readonly context?: string;
}

/** The membership as persisted in snapshots and reported after a change is applied. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  /** Non-empty only in a joint configuration: the voters of the outgoing config. */
  readonly votersOutgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Voters of the outgoing config that become learners when the joint config is left. */
  readonly learnersNext: readonly NodeId[];
  readonly autoLeave: boolean;
}

export const EMPTY_CONF_STATE: ConfState = {
  voters: [],
  votersOutgoing: [],
  learners: [],
  learnersNext: [],
  autoLeave: false,
};

/** What must be on disk before any message that depends on it is sent (Figure 2, "persistent state"). */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: NONE, commit: 0 };

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

export type MessageType =
  | 'MsgHup' // local: start an election
  | 'MsgBeat' // local: leader sends heartbeats
  | 'MsgProp' // a proposal, local or forwarded
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgSnap'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgUnreachable' // local: the transport could not reach a peer
  | 'MsgSnapStatus' // local: the transport finished (or failed) sending a snapshot
  | 'MsgCheckQuorum' // local: leader checks it still hears from a quorum
  | 'MsgTransferLeader'
  | 'MsgTimeoutNow'
  | 'MsgReadIndex'
  | 'MsgReadIndexResp';

export interface Message {
  readonly type: MessageType;
  readonly to: NodeId;
  readonly from: NodeId;
  readonly term: number;
  /** MsgApp: term of the entry at `index`. Votes: the candidate's last term. */
  readonly logTerm: number;
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly snapshot?: Snapshot;
  readonly reject: boolean;
  /** On a rejected MsgAppResp: the follower's hint for where the logs may match. */
  readonly rejectHint: number;
  /** ReadIndex request id, or the campaign-transfer marker on votes. */
  readonly context?: string;
  /** Heartbeats: the leader's tick when it sent it, echoed back for lease reads. */
  readonly leaseTick?: number;
  /**
   * MsgHeartbeat only: the leader's last heartbeat before it stops ticking an
   * idle group (quiescence, raft.ts `maybeQuiesce`). It carries the leader's
   * last index and its term in `index` and `logTerm`; a follower whose log
   * ends exactly there stops ticking too, and sends no answer.
   */
  readonly quiesce?: boolean;
}

export function message(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...fields,
  };
}

/**
 * A peer's answer to what this node sent. It carries the tick it answers, so
 * a host may step it before ticks it still owes after a pause (ADR 0002).
 */
export function isAck(m: Message): boolean {
  return m.type === 'MsgAppResp' || m.type === 'MsgHeartbeatResp';
}

/** Whether a message is local to a node and never crosses the network. */
export function isLocalMessage(type: MessageType): boolean {
  return (
    type === 'MsgHup' ||
    type === 'MsgBeat' ||
    type === 'MsgUnreachable' ||
    type === 'MsgSnapStatus' ||
    type === 'MsgCheckQuorum'
  );
}

export function isResponseMessage(type: MessageType): boolean {
  return (
    type === 'MsgAppResp' ||
    type === 'MsgVoteResp' ||
    type === 'MsgHeartbeatResp' ||
    type === 'MsgUnreachable' ||
    type === 'MsgPreVoteResp'
  );
}

export function voteResponseType(type: MessageType): MessageType {
  return type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp';
}

/** Bytes an entry counts for in size limits: the payload plus a fixed header estimate. */
export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + 24;
}

/** Bytes of payload an entry adds to the uncommitted tail (the leader's no-op adds 0). */
export function entryPayloadBytes(entry: Entry): number {
  return entry.data.byteLength;
}

export function isEmptySnapshot(snapshot: Snapshot | undefined): boolean {
  return snapshot === undefined || snapshot.metadata.index === 0;
}

export function isHardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Limits entries to maxBytes, but always keeps at least one. */
export function limitSize(entries: readonly Entry[], maxBytes: number): readonly Entry[] {
  if (entries.length === 0) return entries;
  let size = entrySizeBytes(entries[0] as Entry);
  let limit = 1;
  for (; limit < entries.length; limit++) {
    size += entrySizeBytes(entries[limit] as Entry);
    if (size > maxBytes) break;
  }
  return limit === entries.length ? entries : entries.slice(0, limit);
}
