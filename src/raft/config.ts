import { TesseraError, type Rng } from '../base/index.js';
import type { LogStorage } from './storage.js';
import type { Sabotage } from './sabotage.js';
import type { Message, NodeId } from './types.js';

export type ReadOnlyOption = 'safe' | 'lease-based';

export interface RaftConfig {
  readonly id: NodeId;
  /** A follower that hears nothing from a leader for a random time in [this, 2×this) ticks campaigns. */
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  readonly storage: LogStorage;
  /** The last index the application applied (on restart). 0 for a fresh node. */
  readonly appliedIndex?: number;
  /** Upper bound on the bytes of entries in one MsgApp. */
  readonly maxSizePerMsgBytes: number;
  /** Upper bound on the bytes of committed entries in one Ready. */
  readonly maxCommittedSizePerReadyBytes: number;
  /** Upper bound on the payload bytes of proposals not yet committed; past it proposals are dropped. 0 = no limit. */
  readonly maxUncommittedEntriesSizeBytes: number;
  /** Max MsgApp in flight to one follower while replicating. */
  readonly maxInflightMsgs: number;
  /** Max bytes in flight to one follower; 0 = no byte limit. */
  readonly maxInflightBytes: number;
  /** The leader steps down when it has not heard from a quorum for an election timeout (thesis §6.2). */
  readonly checkQuorum: boolean;
  /** Candidates first ask whether they could win, without raising terms (thesis §9.6). */
  readonly preVote: boolean;
  /**
   * 'safe' confirms leadership with a heartbeat round per read batch
   * (ReadIndex, thesis §6.4). 'lease-based' serves reads while the leader
   * holds a lease, safe only if clocks drift less than maxClockDriftRatio.
   */
  readonly readOnlyOption: ReadOnlyOption;
  /**
   * Bound d on how far any node's tick rate may stray from true time, e.g. 0.1
   * for ±10% (ticks must be delivered in proportion to elapsed monotonic time,
   * catching up after a pause). Lease reads shorten the lease to
   * electionTimeoutTicks × (1 − d) / (1 + d), minus one tick for granularity.
   */
  readonly maxClockDriftRatio: number;
  /**
   * Quiescence: a leader whose group has been idle this many ticks (nothing
   * proposed or read, every follower caught up, everything applied) sends a
   * last heartbeat marked `quiesce` and stops ticking; followers that agree
   * stop too (CockroachDB's quiescence, ADR 0010). Any other message,
   * proposal, read or campaign wakes the node. 0 = never quiesce. The host
   * must wake followers whose leader's node went silent (Store.receiveLiveness).
   */
  readonly quiesceAfterTicks?: number;
  /** Told when this node quiesces (true) or wakes (false), so the host stops or resumes ticking it. */
  readonly onQuiescenceChange?: (quiesced: boolean) => void;
  /** Followers drop proposals instead of forwarding them to the leader. */
  readonly disableProposalForwarding: boolean;
  /** The source of randomized election timeouts. */
  readonly rng: Rng;
  /** Receives a line per protocol decision (for traces and golden tests). */
  readonly logger?: (line: string) => void;
  /** Deliberate bugs, for simulator self-tests only. */
  readonly sabotage?: Sabotage;
  /**
   * Called after every step and tick with the node itself: the simulator
   * checks each node's invariants and records each leadership here, so a
   * leader that wins and steps down before its next Ready is still seen.
   * `message` is the one just stepped (undefined after a tick).
   */
  readonly afterStep?: (node: StepView, message?: Message) => void;
}

/** What `afterStep` sees of a node. */
export interface StepView {
  readonly id: NodeId;
  readonly term: number;
  readonly state: 'follower' | 'pre-candidate' | 'candidate' | 'leader';
  /** The node's log as the log-matching oracle reads it. */
  readonly raftLog: { firstIndex(): number; lastIndex(): number; termOrUndefined(index: number): number | undefined };
  checkInvariants(): void;
}

/** Defaults that follow etcd's; callers set id, storage and rng. */
export const DEFAULT_RAFT_OPTIONS = {
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  maxSizePerMsgBytes: 1024 * 1024,
  maxCommittedSizePerReadyBytes: 16 * 1024 * 1024,
  maxUncommittedEntriesSizeBytes: 64 * 1024 * 1024,
  maxInflightMsgs: 256,
  maxInflightBytes: 32 * 1024 * 1024,
  checkQuorum: true,
  preVote: true,
  readOnlyOption: 'safe',
  maxClockDriftRatio: 0.1,
  disableProposalForwarding: false,
  quiesceAfterTicks: 0,
} as const satisfies Partial<RaftConfig>;

/** Validates a config once, at the edge; each message names the rule broken. */
export function validateRaftConfig(config: RaftConfig): void {
  const fail = (rule: string): never => {
    throw new TesseraError('INVALID_CONFIG', `invalid raft config: ${rule}`);
  };
  const positiveInt = (name: string, value: number): void => {
    if (!Number.isSafeInteger(value) || value <= 0) fail(`${name} must be a positive integer, got ${value}`);
  };
  if (!Number.isSafeInteger(config.id) || config.id <= 0) fail(`id must be a positive integer (0 means none), got ${config.id}`);
  positiveInt('heartbeatIntervalTicks', config.heartbeatIntervalTicks);
  positiveInt('electionTimeoutTicks', config.electionTimeoutTicks);
  if (config.electionTimeoutTicks <= config.heartbeatIntervalTicks) {
    fail(`electionTimeoutTicks (${config.electionTimeoutTicks}) must be greater than heartbeatIntervalTicks (${config.heartbeatIntervalTicks})`);
  }
  positiveInt('maxSizePerMsgBytes', config.maxSizePerMsgBytes);
  positiveInt('maxCommittedSizePerReadyBytes', config.maxCommittedSizePerReadyBytes);
  positiveInt('maxInflightMsgs', config.maxInflightMsgs);
  if (!Number.isSafeInteger(config.maxInflightBytes) || config.maxInflightBytes < 0) fail('maxInflightBytes must be ≥ 0');
  if (config.maxInflightBytes > 0 && config.maxInflightBytes < config.maxSizePerMsgBytes) {
    fail(`maxInflightBytes (${config.maxInflightBytes}) must be ≥ maxSizePerMsgBytes (${config.maxSizePerMsgBytes}) so one full message fits`);
  }
  if (!Number.isSafeInteger(config.maxUncommittedEntriesSizeBytes) || config.maxUncommittedEntriesSizeBytes < 0) {
    fail('maxUncommittedEntriesSizeBytes must be ≥ 0');
  }
  if (!(config.maxClockDriftRatio >= 0 && config.maxClockDriftRatio < 0.5)) {
    fail(`maxClockDriftRatio must be in [0, 0.5), got ${config.maxClockDriftRatio}`);
  }
  if (config.readOnlyOption === 'lease-based') {
    if (!config.checkQuorum) fail("readOnlyOption 'lease-based' requires checkQuorum, or a deposed leader would keep serving reads");
    if (leaseTicks(config) < 1) {
      fail(`electionTimeoutTicks ${config.electionTimeoutTicks} is too short for lease reads with maxClockDriftRatio ${config.maxClockDriftRatio}`);
    }
  }
  const quiesceAfter = config.quiesceAfterTicks ?? 0;
  if (!Number.isSafeInteger(quiesceAfter) || quiesceAfter < 0) fail(`quiesceAfterTicks must be an integer ≥ 0, got ${quiesceAfter}`);
  const applied = config.appliedIndex ?? 0;
  if (!Number.isSafeInteger(applied) || applied < 0) fail(`appliedIndex must be ≥ 0, got ${applied}`);
}

/**
 * How many of its own ticks a leader may serve lease reads after the tick at
 * which it sent a heartbeat that a quorum acknowledged. A follower refuses
 * votes for electionTimeoutTicks of its own ticks after hearing from the
 * leader; with rates differing by at most d, the leader's lease must end
 * before the fastest follower's refusal does.
 */
export function leaseTicks(config: Pick<RaftConfig, 'electionTimeoutTicks' | 'maxClockDriftRatio'>): number {
  const d = config.maxClockDriftRatio;
  return Math.floor((config.electionTimeoutTicks * (1 - d)) / (1 + d)) - 1;
}
