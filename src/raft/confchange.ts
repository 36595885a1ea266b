import { assert, TesseraError } from '../base/index.js';
import { Progress, type TrackerConfig, isJoint } from './tracker.js';
import type { ConfChange, ConfChangeSingle, ConfState, NodeId } from './types.js';

export interface ChangerOptions {
  /** Index the leader uses as `next` for new peers (its last index). */
  readonly lastIndex: number;
  readonly maxInflight: number;
  readonly maxInflightBytes: number;
}

export interface ChangeResult {
  readonly config: TrackerConfig;
  readonly progress: Map<NodeId, Progress>;
}

interface MutableConfig {
  incoming: Set<NodeId>;
  outgoing: Set<NodeId>;
  learners: Set<NodeId>;
  learnersNext: Set<NodeId>;
  autoLeave: boolean;
}

/**
 * Computes configurations for membership changes (thesis §4.3, joint
 * consensus). It never mutates the current config or progress map; callers
 * switch to the result atomically. Invalid changes raise a TesseraError with
 * code 'INVALID_ARGUMENT' that names the rule.
 */
export class Changer {
  constructor(
    private readonly config: TrackerConfig,
    private readonly progress: ReadonlyMap<NodeId, Progress>,
    private readonly options: ChangerOptions,
  ) {}

  /** Enters a joint configuration: outgoing = current voters, incoming = current voters + changes. */
  enterJoint(autoLeave: boolean, changes: readonly ConfChangeSingle[]): ChangeResult {
    if (isJoint(this.config)) invalid('config is already joint; leave it before entering another');
    if (this.config.voters[0].size === 0) invalid('cannot make a zero-voter config joint');
    const { cfg, prs } = this.copy();
    cfg.outgoing = new Set(cfg.incoming);
    this.apply(cfg, prs, changes);
    cfg.autoLeave = autoLeave;
    return this.finish(cfg, prs);
  }

  /** Leaves the joint configuration: the outgoing voters are dropped, learnersNext become learners. */
  leaveJoint(): ChangeResult {
    if (!isJoint(this.config)) invalid("can't leave a non-joint config");
    const { cfg, prs } = this.copy();
    for (const id of cfg.learnersNext) {
      cfg.learners.add(id);
      const pr = prs.get(id);
      assert(pr !== undefined, () => `learnerNext ${id} has no progress`);
      pr.isLearner = true;
    }
    cfg.learnersNext.clear();
    for (const id of cfg.outgoing) {
      if (!cfg.incoming.has(id) && !cfg.learners.has(id)) prs.delete(id);
    }
    cfg.outgoing.clear();
    cfg.autoLeave = false;
    return this.finish(cfg, prs);
  }

  /** A change of at most one voter, without a joint config (the single-server change of §4.1 in the thesis). */
  simple(changes: readonly ConfChangeSingle[]): ChangeResult {
    if (isJoint(this.config)) invalid("can't apply a simple config change in a joint config");
    const { cfg, prs } = this.copy();
    this.apply(cfg, prs, changes);
    let changed = 0;
    for (const id of cfg.incoming) if (!this.config.voters[0].has(id)) changed++;
    for (const id of this.config.voters[0]) if (!cfg.incoming.has(id)) changed++;
    if (changed > 1) invalid('more than one voter changed without entering a joint configuration');
    return this.finish(cfg, prs);
  }

  private apply(cfg: MutableConfig, prs: Map<NodeId, Progress>, changes: readonly ConfChangeSingle[]): void {
    for (const cc of changes) {
      if (cc.nodeId === 0) continue; // etcd compatibility: a change naming node 0 is a no-op
      switch (cc.type) {
        case 'add-node':
          this.makeVoter(cfg, prs, cc.nodeId);
          break;
        case 'add-learner':
          this.makeLearner(cfg, prs, cc.nodeId);
          break;
        case 'remove-node':
          remove(cfg, prs, cc.nodeId);
          break;
      }
    }
    if (cfg.incoming.size === 0) invalid('removed all voters');
  }

  private makeVoter(cfg: MutableConfig, prs: Map<NodeId, Progress>, id: NodeId): void {
    const pr = prs.get(id);
    if (pr === undefined) {
      this.initProgress(cfg, prs, id, false);
      return;
    }
    pr.isLearner = false;
    cfg.learners.delete(id);
    cfg.learnersNext.delete(id);
    cfg.incoming.add(id);
  }

  private makeLearner(cfg: MutableConfig, prs: Map<NodeId, Progress>, id: NodeId): void {
    const pr = prs.get(id);
    if (pr === undefined) {
      this.initProgress(cfg, prs, id, true);
      return;
    }
    if (pr.isLearner) return;
    // Remove it as a voter but keep its progress: it stays a member, demoted.
    cfg.incoming.delete(id);
    cfg.learners.delete(id);
    cfg.learnersNext.delete(id);
    // A voter of the outgoing config stays a voter there until the joint config is left.
    if (cfg.outgoing.has(id)) {
      cfg.learnersNext.add(id);
    } else {
      pr.isLearner = true;
      cfg.learners.add(id);
    }
  }

  private initProgress(cfg: MutableConfig, prs: Map<NodeId, Progress>, id: NodeId, isLearner: boolean): void {
    if (isLearner) cfg.learners.add(id);
    else cfg.incoming.add(id);
    const pr = new Progress({
      next: Math.max(this.options.lastIndex, 1),
      maxInflight: this.options.maxInflight,
      maxInflightBytes: this.options.maxInflightBytes,
      isLearner,
    });
    // A new peer counts as active, so CheckQuorum does not depose the leader before it is heard from.
    pr.recentActive = true;
    prs.set(id, pr);
  }

  private copy(): { cfg: MutableConfig; prs: Map<NodeId, Progress> } {
    const cfg: MutableConfig = {
      incoming: new Set(this.config.voters[0]),
      outgoing: new Set(this.config.voters[1]),
      learners: new Set(this.config.learners),
      learnersNext: new Set(this.config.learnersNext),
      autoLeave: this.config.autoLeave,
    };
    // Progress objects are copied shallowly: a change flips isLearner, which must not leak on failure.
    const prs = new Map<NodeId, Progress>();
    for (const [id, pr] of this.progress) {
      const clone = Object.assign(Object.create(Object.getPrototypeOf(pr) as object) as Progress, pr);
      prs.set(id, clone);
    }
    return { cfg, prs };
  }

  private finish(cfg: MutableConfig, prs: Map<NodeId, Progress>): ChangeResult {
    const config: TrackerConfig = {
      voters: [cfg.incoming, cfg.outgoing],
      learners: cfg.learners,
      learnersNext: cfg.learnersNext,
      autoLeave: cfg.autoLeave,
    };
    checkConfigInvariants(config, prs);
    return { config, progress: prs };
  }
}

function remove(cfg: MutableConfig, prs: Map<NodeId, Progress>, id: NodeId): void {
  if (!prs.has(id)) return;
  cfg.incoming.delete(id);
  cfg.learners.delete(id);
  cfg.learnersNext.delete(id);
  // Still a voter of the outgoing config: keep its progress until the joint config is left.
  if (!cfg.outgoing.has(id)) prs.delete(id);
}

function invalid(rule: string): never {
  throw new TesseraError('INVALID_ARGUMENT', `invalid membership change: ${rule}`);
}

/** The membership invariants; a violation is a bug. */
export function checkConfigInvariants(config: TrackerConfig, prs: ReadonlyMap<NodeId, Progress>): void {
  const [incoming, outgoing] = config.voters;
  for (const set of [incoming, outgoing, config.learners, config.learnersNext]) {
    for (const id of set) assert(prs.has(id), () => `member ${id} has no progress`);
  }
  for (const id of config.learnersNext) {
    assert(outgoing.has(id), () => `learnerNext ${id} is not an outgoing voter`);
    assert(!(prs.get(id) as Progress).isLearner, () => `learnerNext ${id} is already marked learner`);
  }
  for (const id of config.learners) {
    assert(!incoming.has(id) && !outgoing.has(id), () => `learner ${id} is also a voter`);
    assert((prs.get(id) as Progress).isLearner, () => `learner ${id} not marked as learner`);
  }
  for (const [id, pr] of prs) {
    const member = incoming.has(id) || outgoing.has(id) || config.learners.has(id);
    assert(member, () => `progress for non-member ${id}`);
    if (pr.isLearner) assert(config.learners.has(id), () => `${id} marked learner but not in learners`);
  }
  if (outgoing.size === 0) {
    assert(config.learnersNext.size === 0, 'learnersNext outside a joint config');
    assert(!config.autoLeave, 'autoLeave outside a joint config');
  }
}

/** Builds the config and progress a ConfState describes (at boot or from a snapshot). */
export function restoreConfig(cs: ConfState, options: ChangerOptions): ChangeResult {
  const prs = new Map<NodeId, Progress>();
  const add = (id: NodeId, isLearner: boolean): void => {
    if (prs.has(id)) return;
    prs.set(id, new Progress({ next: Math.max(options.lastIndex, 1), maxInflight: options.maxInflight, maxInflightBytes: options.maxInflightBytes, isLearner }));
  };
  for (const id of cs.voters) add(id, false);
  for (const id of cs.votersOutgoing) add(id, false);
  for (const id of cs.learners) add(id, true);
  for (const id of cs.learnersNext) add(id, false);
  const config: TrackerConfig = {
    voters: [new Set(cs.voters), new Set(cs.votersOutgoing)],
    learners: new Set(cs.learners),
    learnersNext: new Set(cs.learnersNext),
    autoLeave: cs.autoLeave,
  };
  checkConfigInvariants(config, prs);
  return { config, progress: prs };
}

/** The changes a ConfChange makes, and whether it enters a joint config (thesis §4.3). */
export function confChangeKind(cc: ConfChange): 'leave-joint' | 'enter-joint' | 'simple' {
  if (cc.changes.length === 0) return 'leave-joint';
  if (cc.transition !== 'auto' || cc.changes.length > 1) return 'enter-joint';
  return 'simple';
}
