import { assert, SeededRng, TesseraError } from '../../base/index.js';
import { DEFAULT_RAFT_OPTIONS, type RaftConfig, type ReadOnlyOption } from '../config.js';
import { RawNode } from '../raw_node.js';
import { MemoryLogStorage } from '../storage.js';
import type { ConfChangeSingle, ConfState, Entry, HardState, Message, MessageType, NodeId, Snapshot } from '../types.js';
import { formatEntry, formatMessage, formatReady } from './format.js';

/**
 * A scripted environment for interaction tests (in the manner of
 * etcd-io/raft's rafttest): nodes with in-memory storage, a message queue per
 * node, and commands that print what happened, for golden files.
 */
export interface Command {
  readonly name: string;
  readonly args: readonly string[];
  readonly kv: ReadonlyMap<string, string>;
}

interface EnvNode {
  raw: RawNode;
  storage: EnvStorage;
  config: RaftConfig;
  /** Data of the normal entries this node applied, in order. */
  applied: string[];
}

/**
 * The application's state after each applied index (as etcd's rafttest keeps
 * it): the snapshot a leader sends is always its latest applied state, and a
 * node restarts with the membership as of the index it applied. Keeping this
 * beside MemoryLogStorage (rather than overwriting the storage snapshot's
 * ConfState on every conf change) keeps a snapshot's index and membership
 * consistent, so a follower never re-applies a change the snapshot already holds.
 */
class EnvStorage extends MemoryLogStorage {
  readonly history: Snapshot[] = [];

  latest(): Snapshot {
    const s = this.history[this.history.length - 1];
    assert(s !== undefined, 'history is never empty');
    return s;
  }

  /** The application state as of `index` (the last history entry at or below it). */
  at(index: number): Snapshot {
    for (let i = this.history.length - 1; i >= 0; i--) {
      const s = this.history[i] as Snapshot;
      if (s.metadata.index <= index) return s;
    }
    throw new TesseraError('INVALID_ARGUMENT', `no application state at or below index ${index}`);
  }

  override initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: super.initialState().hardState, confState: this.latest().metadata.confState };
  }

  override snapshot(): Snapshot {
    return this.latest();
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class InteractionEnv {
  readonly nodes = new Map<NodeId, EnvNode>();
  /** Messages in flight, in send order. */
  messages: Message[] = [];
  private out: string[] = [];
  private logLevel: 'info' | 'none' = 'info';
  private readonly cut = new Set<string>();

  run(cmd: Command): string {
    this.out = [];
    try {
      this.dispatch(cmd);
    } catch (err) {
      if (!(err instanceof TesseraError)) throw err;
      this.out.push(`error: ${err.code}: ${err.message}`);
    }
    // quiet=true runs a setup step without printing it; errors still show.
    if (cmd.kv.get('quiet') === 'true') this.out = this.out.filter((l) => l.startsWith('error: '));
    return this.out.map((l) => (l === '' ? '.' : l)).join('\n');
  }

  private dispatch(cmd: Command): void {
    const ids = (): NodeId[] => cmd.args.map(Number).filter((n) => Number.isInteger(n) && n > 0);
    switch (cmd.name) {
      case 'log-level':
        this.logLevel = cmd.args[0] === 'none' ? 'none' : 'info';
        return;
      case 'add-nodes':
        return this.addNodes(cmd);
      case 'campaign':
        return this.node(first(cmd)).raw.campaign();
      case 'propose':
        return this.propose(first(cmd), cmd.args[1] ?? '');
      case 'propose-n': {
        // propose-n <id> <count> [prefix]: proposes prefix1 … prefixN (default prefix "v").
        const count = Number(cmd.args[1]);
        if (!Number.isInteger(count) || count <= 0) throw new TesseraError('INVALID_ARGUMENT', 'propose-n needs a positive count');
        for (let i = 1; i <= count; i++) this.propose(first(cmd), `${cmd.args[2] ?? 'v'}${i}`);
        return;
      }
      case 'set-randomized-election-timeout': {
        const timeout = Number(cmd.kv.get('timeout'));
        if (!Number.isInteger(timeout) || timeout <= 0) throw new TesseraError('INVALID_ARGUMENT', 'timeout=N must be a positive integer');
        this.node(first(cmd)).raw.raft.randomizedElectionTimeout = timeout;
        return;
      }
      case 'timeouts':
        for (const id of this.ids()) {
          const r = this.node(id).raw.raft;
          this.out.push(`${id}: elapsed=${r.electionElapsed} randomized-timeout=${r.randomizedElectionTimeout}`);
        }
        return;
      case 'print-msgs':
        for (const m of this.messages) if (ids().length === 0 || ids().includes(m.to)) this.out.push(formatMessage(m));
        return;
      case 'report-snapshot':
        // report-snapshot <leader> <follower> [failed]: the transport finished sending a snapshot.
        return this.node(first(cmd)).raw.reportSnapshot(Number(cmd.args[1]), cmd.args[2] !== 'failed');
      case 'lease':
        for (const id of ids()) this.out.push(`${id}: lease ${this.node(id).raw.leaseValid() ? 'valid' : 'not valid'}`);
        return;
      case 'propose-conf-change':
        return this.proposeConfChange(cmd);
      case 'process-ready':
        for (const id of ids()) this.processReady(id);
        return;
      case 'deliver-msgs':
        return this.deliverCommand(cmd, ids());
      case 'stabilize':
        return this.stabilize(ids().length > 0 ? ids() : this.ids());
      case 'tick-heartbeat':
        return this.tickTimes(first(cmd), this.node(first(cmd)).config.heartbeatIntervalTicks);
      case 'tick-election':
        return this.tickElection(first(cmd));
      case 'tick':
        return this.tickTimes(first(cmd), Number(cmd.args[1] ?? '1'));
      case 'raft-state':
        return this.raftState();
      case 'raft-log':
        return this.raftLog(first(cmd));
      case 'status':
        return this.status(first(cmd));
      case 'applied':
        return this.printApplied(first(cmd));
      case 'transfer-leadership':
        return this.node(Number(cmd.kv.get('from'))).raw.transferLeader(Number(cmd.kv.get('to')));
      case 'read-index':
        return this.readIndex(first(cmd), cmd.args[1] ?? '');
      case 'compact':
        return this.compact(first(cmd), Number(cmd.args[1]));
      case 'cut':
        return this.setCut(Number(cmd.args[0]), Number(cmd.args[1]), true);
      case 'isolate':
        for (const other of this.ids()) if (other !== first(cmd)) this.setCut(first(cmd), other, true);
        return;
      case 'heal':
        this.cut.clear();
        return;
      case 'report-unreachable':
        return this.node(first(cmd)).raw.reportUnreachable(Number(cmd.args[1]));
      case 'restart':
        return this.restart(first(cmd));
      case 'check-invariants':
        for (const n of this.nodes.values()) n.raw.checkInvariants();
        this.out.push('ok');
        return;
      default:
        throw new TesseraError('INVALID_ARGUMENT', `unknown command ${cmd.name}`);
    }
  }

  ids(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  node(id: NodeId): EnvNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new TesseraError('INVALID_ARGUMENT', `no node ${id}`);
    return n;
  }

  private logger(id: NodeId): (line: string) => void {
    void id;
    return (line: string): void => {
      if (this.logLevel === 'info') this.out.push(`INFO ${line}`);
    };
  }

  private addNodes(cmd: Command): void {
    const count = Number(cmd.args[0]);
    const voters = list(cmd.kv.get('voters'));
    const learners = list(cmd.kv.get('learners'));
    const index = Number(cmd.kv.get('index') ?? '0');
    const base = this.nodes.size;
    for (let i = 1; i <= count; i++) {
      const id = base + i;
      const storage = new EnvStorage();
      const cs: ConfState = { voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false };
      const boot: Snapshot = { metadata: { index, term: index > 0 ? 1 : 0, confState: cs }, data: new Uint8Array() };
      if (index > 0) {
        // Like etcd's Bootstrap (and the simulator's disks): a node that starts from a term-1
        // snapshot is in term 1, so its current term is never below its last log term.
        storage.applySnapshot(boot);
        storage.setHardState({ term: 1, vote: 0, commit: index });
      } else {
        storage.setConfState(cs);
      }
      storage.history.push(boot);
      const config = this.makeConfig(id, storage, cmd, index);
      this.nodes.set(id, { raw: new RawNode(config), storage, config, applied: [] });
    }
  }

  private makeConfig(id: NodeId, storage: EnvStorage, cmd: Command, applied: number): RaftConfig {
    const kv = cmd.kv;
    const bool = (k: string, d: boolean): boolean => (kv.has(k) ? kv.get(k) === 'true' : d);
    return {
      ...DEFAULT_RAFT_OPTIONS,
      id,
      storage,
      appliedIndex: applied,
      rng: new SeededRng(id),
      logger: this.logger(id),
      preVote: bool('prevote', false),
      checkQuorum: bool('checkquorum', false),
      readOnlyOption: (kv.get('read-only') === 'lease' ? 'lease-based' : 'safe') as ReadOnlyOption,
      maxInflightMsgs: Number(kv.get('max-inflight') ?? DEFAULT_RAFT_OPTIONS.maxInflightMsgs),
      maxSizePerMsgBytes: Number(kv.get('max-size') ?? DEFAULT_RAFT_OPTIONS.maxSizePerMsgBytes),
      electionTimeoutTicks: Number(kv.get('election') ?? 10),
      heartbeatIntervalTicks: Number(kv.get('heartbeat') ?? 1),
      maxUncommittedEntriesSizeBytes: Number(kv.get('max-uncommitted') ?? DEFAULT_RAFT_OPTIONS.maxUncommittedEntriesSizeBytes),
      maxInflightBytes: Number(kv.get('max-inflight-bytes') ?? DEFAULT_RAFT_OPTIONS.maxInflightBytes),
      disableProposalForwarding: kv.get('forwarding') === 'false',
    };
  }

  private restart(id: NodeId): void {
    const n = this.node(id);
    // Unpersisted state is lost: the new RawNode sees only what storage holds.
    const applied = Math.min(n.storage.initialState().hardState.commit, n.raw.raft.raftLog.applied);
    const config = { ...n.config, appliedIndex: Math.max(applied, n.storage.firstIndex() - 1) };
    n.raw = new RawNode(config);
    this.messages = this.messages.filter((m) => m.to !== id && m.from !== id);
  }

  private propose(id: NodeId, data: string): void {
    const res = this.node(id).raw.propose(encoder.encode(data));
    if (res.kind === 'dropped') this.out.push(`dropped: ${res.reason}`);
  }

  private proposeConfChange(cmd: Command): void {
    const id = first(cmd);
    const changes: ConfChangeSingle[] = cmd.args.slice(1).map((tok) => {
      const nodeId = Number(tok.slice(1));
      const kind = tok[0];
      if (kind === 'v') return { type: 'add-node', nodeId };
      if (kind === 'l') return { type: 'add-learner', nodeId };
      if (kind === 'r') return { type: 'remove-node', nodeId };
      throw new TesseraError('INVALID_ARGUMENT', `bad conf change token ${tok}`);
    });
    const transition = (cmd.kv.get('transition') ?? 'auto') as 'auto' | 'implicit' | 'explicit';
    const res = this.node(id).raw.proposeConfChange({ transition, changes });
    if (res.kind === 'dropped') this.out.push(`dropped: ${res.reason}`);
  }

  /** Handles one Ready: persist, queue messages, apply, advance. Returns whether there was one. */
  processReady(id: NodeId): boolean {
    const n = this.node(id);
    if (!n.raw.hasReady()) return false;
    const rd = n.raw.ready();
    this.out.push(`> ${id} handling Ready`);
    for (const line of formatReady(rd)) this.out.push(`  ${line}`);
    if (rd.snapshot !== undefined) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
    this.messages.push(...rd.messages);
    if (rd.snapshot !== undefined) {
      const data = decoder.decode(rd.snapshot.data);
      n.applied = data === '' ? [] : data.split(',');
      n.storage.history.push(rd.snapshot);
    }
    for (const e of rd.committedEntries) this.apply(n, e);
    n.raw.advance();
    n.raw.checkInvariants();
    return true;
  }

  private apply(n: EnvNode, e: Entry): void {
    let confState = n.storage.latest().metadata.confState;
    if (e.type === 'conf-change' && e.confChange !== undefined) {
      confState = n.raw.applyConfChange(e.confChange);
    } else if (e.data.byteLength > 0) {
      n.applied.push(decoder.decode(e.data));
    }
    n.storage.history.push({ metadata: { index: e.index, term: e.term, confState }, data: encoder.encode(n.applied.join(',')) });
  }

  private deliverCommand(cmd: Command, ids: NodeId[]): void {
    const drop = cmd.kv.has('drop') ? list(cmd.kv.get('drop')) : [];
    // type=MsgX delivers (or drops) only messages of that type; the rest stay queued.
    const type = cmd.kv.get('type') as MessageType | undefined;
    // order=reverse delivers the newest message first (reordering); dup=true delivers each twice.
    const options = { reverse: cmd.kv.get('order') === 'reverse', duplicate: cmd.kv.get('dup') === 'true' };
    for (const id of drop) this.deliver(id, true, type);
    for (const id of ids) this.deliver(id, false, type, options);
  }

  /** Delivers (or drops) every queued message for `id` (of `type`, if given). Returns how many. */
  deliver(id: NodeId, drop: boolean, type?: MessageType, options: { reverse?: boolean; duplicate?: boolean } = {}): number {
    const wanted = (m: Message): boolean => m.to === id && (type === undefined || m.type === type);
    let mine = this.messages.filter(wanted);
    if (mine.length === 0) return 0;
    this.messages = this.messages.filter((m) => !wanted(m));
    if (options.reverse === true) mine = mine.reverse();
    if (options.duplicate === true) mine = mine.flatMap((m) => [m, m]);
    for (const m of mine) {
      const blocked = this.cut.has(`${m.from}-${m.to}`);
      if (drop || blocked) {
        this.out.push(`dropped: ${formatMessage(m)}`);
        continue;
      }
      this.out.push(formatMessage(m));
      const target = this.nodes.get(id);
      if (target !== undefined) target.raw.step(m);
    }
    return mine.length;
  }

  private stabilize(ids: NodeId[]): void {
    for (let round = 0; round < 10_000; round++) {
      let busy = false;
      for (const id of ids) if (this.processReady(id)) busy = true;
      for (const id of ids) {
        if (this.messages.some((m) => m.to === id)) {
          this.out.push(`> ${id} receiving messages`);
          this.deliver(id, false);
          busy = true;
        }
      }
      if (!busy) return;
    }
    assert(false, 'stabilize did not converge in 10000 rounds');
  }

  private tickTimes(id: NodeId, times: number): void {
    for (let i = 0; i < times; i++) this.node(id).raw.tick();
  }

  private tickElection(id: NodeId): void {
    const r = this.node(id).raw.raft;
    const times = r.state === 'leader' ? this.node(id).config.electionTimeoutTicks : Math.max(1, r.randomizedElectionTimeout - r.electionElapsed);
    this.tickTimes(id, times);
  }

  private raftState(): void {
    for (const id of this.ids()) {
      const r = this.node(id).raw.raft;
      const role = r.isLearner ? 'Learner' : r.trk.isVoter(id) ? 'Voter' : 'Non-member';
      this.out.push(`${id}: ${r.state} (${role}) Term:${r.term} Lead:${r.lead}`);
    }
  }

  private raftLog(id: NodeId): void {
    const log = this.node(id).raw.raft.raftLog;
    const entries = log.allEntries();
    if (entries.length === 0) this.out.push(`log is empty: first index=${log.firstIndex()}, last index=${log.lastIndex()}`);
    for (const e of entries) this.out.push(formatEntry(e));
  }

  private status(id: NodeId): void {
    const st = this.node(id).raw.status();
    this.out.push(`${st.config} term=${st.hardState.term} commit=${st.hardState.commit} applied=${st.applied}`);
    for (const [pid, pr] of st.progress) this.out.push(`${pid}: ${pr}`);
  }

  private printApplied(id: NodeId): void {
    this.out.push(`applied: [${this.node(id).applied.join(' ')}]`);
  }

  private readIndex(id: NodeId, ctx: string): void {
    const reason = this.node(id).raw.readIndex(ctx);
    if (reason !== undefined) this.out.push(`dropped: ${reason}`);
  }

  private compact(id: NodeId, index: number): void {
    const n = this.node(id);
    if (index > n.raw.raft.raftLog.applied) throw new TesseraError('INVALID_ARGUMENT', `cannot compact ${index}: beyond applied ${n.raw.raft.raftLog.applied}`);
    // The snapshot holds the application state as of `index`.
    const state = n.storage.at(index);
    n.storage.createSnapshot(index, state.metadata.confState, state.data);
    n.storage.compact(index);
    this.raftLog(id);
  }

  private setCut(a: NodeId, b: NodeId, on: boolean): void {
    for (const key of [`${a}-${b}`, `${b}-${a}`]) {
      if (on) this.cut.add(key);
      else this.cut.delete(key);
    }
  }
}

function first(cmd: Command): NodeId {
  const id = Number(cmd.args[0]);
  if (!Number.isInteger(id) || id <= 0) throw new TesseraError('INVALID_ARGUMENT', `${cmd.name} needs a node id`);
  return id;
}

function list(value: string | undefined): NodeId[] {
  if (value === undefined || value === '()' || value === '') return [];
  return value.replace(/[()]/g, '').split(/[ ,]+/).filter(Boolean).map(Number);
}

/** Parses a command line: `name arg arg key=value key=(a b)`. */
export function parseCommand(line: string): Command {
  const tokens = line.match(/\S+=\([^)]*\)|\S+/g) ?? [];
  const [name, ...rest] = tokens;
  const args: string[] = [];
  const kv = new Map<string, string>();
  for (const t of rest) {
    const eq = t.indexOf('=');
    if (eq > 0) kv.set(t.slice(0, eq), t.slice(eq + 1));
    else args.push(t);
  }
  return { name: name ?? '', args, kv };
}
