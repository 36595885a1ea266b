import { SeededRng } from '../../base/index.js';
import { DEFAULT_RAFT_OPTIONS, type RaftConfig } from '../config.js';
import type { Raft } from '../raft.js';
import { RawNode } from '../raw_node.js';
import { MemoryLogStorage } from '../storage.js';
import { type Entry, type Message, type NodeId, message } from '../types.js';
import { InteractionEnv, parseCommand } from './interaction.js';

/**
 * Helpers for tests that drive Raft programmatically: a single node with a
 * chosen log, term and vote (for the receiver rules of Figure 2), and a
 * cluster on top of InteractionEnv that runs harness commands silently.
 */

/** Entries with the given terms, at indexes first, first+1, … */
export function ents(terms: readonly number[], first = 1): Entry[] {
  return terms.map((term, i) => ({ term, index: first + i, type: 'normal', data: new Uint8Array() }));
}

export interface NodeOptions {
  readonly voters?: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  /** Terms of the entries of the stored log, from index 1. */
  readonly terms?: readonly number[];
  readonly term?: number;
  readonly vote?: NodeId;
  readonly commit?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  readonly electionTimeoutTicks?: number;
}

/** A fresh node whose storage holds the given log and hard state (plain Raft: no PreVote, no CheckQuorum unless asked). */
export function newRaft(id: NodeId, options: NodeOptions = {}): Raft {
  const storage = new MemoryLogStorage();
  storage.setConfState({ voters: [...(options.voters ?? [1, 2, 3])], votersOutgoing: [], learners: [...(options.learners ?? [])], learnersNext: [], autoLeave: false });
  storage.append(ents(options.terms ?? []));
  storage.setHardState({ term: options.term ?? 0, vote: options.vote ?? 0, commit: options.commit ?? 0 });
  const config: RaftConfig = {
    ...DEFAULT_RAFT_OPTIONS,
    id,
    storage,
    rng: new SeededRng(id),
    preVote: options.preVote ?? false,
    checkQuorum: options.checkQuorum ?? false,
    electionTimeoutTicks: options.electionTimeoutTicks ?? 10,
  };
  return new RawNode(config).raft;
}

/** Takes the messages a node has queued. */
export function drain(r: Raft): Message[] {
  const out = r.msgs;
  r.msgs = [];
  return out;
}

/** The terms of a node's whole log (stable and unstable), index 1 first; 0 for compacted positions is not expected. */
export function logTerms(r: Raft): number[] {
  return r.raftLog.allEntries().map((e) => e.term);
}

export { message };

/** A cluster driven by harness commands, without output. */
export class Cluster {
  readonly env = new InteractionEnv();

  /** `n` voters booted at index 2 in term 1; `options` are add-nodes key=value pairs. */
  constructor(n: number, options = '') {
    this.run('log-level none');
    const ids = Array.from({ length: n }, (_, i) => i + 1).join(' ');
    this.run(`add-nodes ${n} voters=(${ids}) index=2 ${options}`);
  }

  /** Runs one harness command; an operating error fails the test. */
  run(line: string): string {
    const out = this.env.run(parseCommand(line));
    if (out.startsWith('error: ')) throw new Error(`${line}: ${out}`);
    return out;
  }

  /** Runs several commands, one per line. */
  script(lines: string): void {
    for (const line of lines.split('\n')) if (line.trim() !== '' && !line.trim().startsWith('#')) this.run(line.trim());
  }

  raft(id: NodeId): Raft {
    return this.env.node(id).raw.raft;
  }

  ids(): NodeId[] {
    return this.env.ids();
  }

  /** Campaigns and delivers everything. */
  elect(id: NodeId): void {
    this.run(`campaign ${id}`);
    this.run('stabilize');
  }

  applied(id: NodeId): string[] {
    return [...this.env.node(id).applied];
  }

  leaders(): NodeId[] {
    return this.ids().filter((id) => this.raft(id).state === 'leader');
  }
}
