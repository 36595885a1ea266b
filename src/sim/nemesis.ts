import type { Member, SimCluster } from './cluster.js';
import type { PartitionKind } from './network.js';
import type { FaultKind } from './options.js';
import type { ConfState, NodeId } from '../raft/index.js';
import { encodeMemberContext, type MemberRecord, MembershipError, type MembershipOutcome } from '../kv/index.js';
import { SIM_RANGE, isSimLogEntryKey, type SimStoreNode, simMemberRecord } from './store_node.js';
import { isTesseraError, TesseraError } from '../base/index.js';
import { compareBytes } from '../mvcc/index.js';

/** Share of the nemesis's actions that split a range, in seeds with splits on. */
export const SPLIT_ACTION_SHARE = 0.15;
/** How long a merge the nemesis wants under placement stays wanted: long enough for a replica move or two. */
export const MERGE_WANTED_MS = 1_500;
/** Share of the nemesis's other actions that merge two ranges, in seeds with splits on: about as many merges as splits. */
export const MERGE_ACTION_SHARE = 0.3;
/** Share of splits whose key is drawn from every workload key, not only those inside the range: some are refused. */
const SPLIT_ANY_KEY_SHARE = 0.2;

const PARTITIONS: readonly PartitionKind[] = ['isolate', 'isolate-leader', 'mute-leader', 'majority-split', 'one-way', 'bridge', 'ring'];

/**
 * Injects faults on a schedule drawn from the seed: partitions that come and
 * heal, crashes with lost unsynced writes, pauses, clock drift, membership
 * changes and leader transfers, and bursts of loss and duplication.
 */
export class Nemesis {
  private healAtMs = 0;
  private confChangeBusyUntilMs = 0;
  private confChangeSeq = 0;
  private apiMemberSeq = 0;
  /** Peer URLs of members added through the API whose node has not been started yet. */
  private readonly awaitingStart = new Set<string>();
  private watchingAwaitingStart = false;
  private untilMs = 0;
  /** Until then every new leader is cut off soon after it is elected. */
  private churnUntilMs = 0;

  constructor(private readonly c: SimCluster) {}

  /**
   * Leader flapping: a newly elected leader is sometimes killed or cut off
   * within a few milliseconds, before it has replicated its first entries.
   * This leaves the partly replicated, diverging logs of the paper's Figure 8.
   */
  onLeaderElected(id: NodeId): void {
    const c = this.c;
    const churning = c.sched.nowMs < this.churnUntilMs;
    if (c.sched.nowMs >= this.untilMs || !(churning || c.rng.chance(0.25))) return;
    const faults = c.options.faults;
    const useCrash = faults.has('crash') && (!faults.has('partition') || c.rng.chance(0.5));
    if (!useCrash && !faults.has('partition')) return;
    c.sched.after(c.rng.float() * 15, () => {
      const m = c.members.get(id);
      if (m === undefined || m.node === undefined || m.node.raw.raft.state !== 'leader' || c.sched.nowMs >= this.untilMs) return;
      c.count('leader-flap');
      if (useCrash) this.crashMember(m, this.untilMs);
      else this.isolate(m.id, this.untilMs);
    });
  }

  /** Schedules fault actions until `untilMs`. */
  start(untilMs: number): void {
    this.untilMs = untilMs;
    const c = this.c;
    c.onNodeStopped = (m) => {
      const downMs = 20 + c.rng.float() * 300;
      c.sched.after(Math.max(0, Math.min(untilMs - c.sched.nowMs, downMs)), () => this.restart(m));
    };
    if (c.options.faults.has('crash')) {
      // Crash while a vote or entries are on their way to disk, now and then.
      c.midSyncCrashRate = (vote) => (c.sched.nowMs >= untilMs ? 0 : vote ? 0.05 : 0.002);
      c.midSyncCrash = (m, incarnation) => {
        if (m.incarnation !== incarnation || c.sched.nowMs >= untilMs) return;
        c.count('crash-mid-sync');
        this.crashMember(m, untilMs);
      };
    }
    const next = (): void => {
      const now = this.c.sched.nowMs;
      if (now >= untilMs) return;
      // Only seeds with splits draw for them, so the other seeds' runs are what they were.
      if (c.options.splits && c.rng.chance(SPLIT_ACTION_SHARE)) this.split();
      else if (c.options.splits && c.options.merges && c.rng.chance(MERGE_ACTION_SHARE)) this.merge();
      else this.act(untilMs);
      this.c.sched.after(20 + this.c.rng.float() * 180, next);
    };
    this.c.sched.after(50, next);
  }

  private act(untilMs: number): void {
    const c = this.c;
    const enabled = [...this.c.options.faults];
    const kind = this.c.pick(enabled) as FaultKind;
    switch (kind) {
      case 'network':
        return this.networkBurst(untilMs);
      case 'partition':
        if (c.rng.chance(0.4)) return this.churn(untilMs);
        return this.partition(untilMs);
      case 'crash':
        return this.crash(untilMs);
      case 'pause':
        return this.pause();
      case 'clock':
        return this.clock();
      case 'membership':
        return this.membership();
      case 'transfer':
        return this.transfer();
      case 'disk':
        return this.disk(untilMs);
    }
  }

  /**
   * Leader churn: for a while, each new leader is muted or cut off within a few
   * milliseconds of its election, so successive leaders leave diverging,
   * partly replicated tails (the logs of Figures 7 and 8 in the paper).
   */
  private churn(untilMs: number): void {
    const c = this.c;
    this.churnUntilMs = Math.min(untilMs, c.sched.nowMs + 300 + c.rng.float() * 700);
    c.count('leader-churn');
    c.log(`nemesis leader churn until ${this.churnUntilMs.toFixed(0)}ms`);
    const leader = c.leader();
    if (leader !== undefined) this.isolate(leader.id, untilMs);
  }

  private networkBurst(untilMs: number): void {
    const c = this.c;
    const lossRate = c.rng.chance(0.5) ? c.rng.float() * 0.3 : 0;
    const dupRate = c.rng.chance(0.5) ? c.rng.float() * 0.2 : 0;
    const slowRate = c.rng.chance(0.5) ? c.rng.float() * 0.2 : 0;
    c.net.conditions = { ...c.net.conditions, lossRate, dupRate, slowRate };
    c.count('network-burst');
    c.log(`nemesis network loss=${lossRate.toFixed(2)} dup=${dupRate.toFixed(2)} slow=${slowRate.toFixed(2)}`);
    const endMs = Math.min(untilMs, c.sched.nowMs + 100 + c.rng.float() * 500);
    c.sched.at(endMs, () => {
      c.net.conditions = { ...c.net.conditions, lossRate: 0, dupRate: 0, slowRate: 0 };
    });
  }

  private partition(untilMs: number): void {
    const c = this.c;
    if (c.sched.nowMs < this.healAtMs) return;
    const kind = c.pick(PARTITIONS) as PartitionKind;
    const leader = c.leader()?.id;
    const desc = c.net.partition(kind, c.memberIds(), leader);
    c.count(`partition-${kind}`);
    c.log(`nemesis partition ${desc}`);
    if (kind === 'isolate-leader' && leader !== undefined) this.maybeSkewAgainstLease(leader);
    this.healAtMs = Math.min(untilMs, c.sched.nowMs + 100 + c.rng.float() * 1200);
    c.sched.at(this.healAtMs, () => {
      c.net.healAll();
      c.log('nemesis heal');
    });
  }

  private isolate(id: NodeId, untilMs: number): void {
    const c = this.c;
    if (c.sched.nowMs < this.healAtMs && c.sched.nowMs >= this.churnUntilMs) return;
    const kind = c.rng.chance(0.5) ? 'isolate-leader' : 'mute-leader';
    c.net.partition(kind, c.memberIds(), id);
    c.log(`nemesis partition ${kind} ${id} (flap)`);
    this.maybeSkewAgainstLease(id);
    this.healAtMs = Math.min(untilMs, c.sched.nowMs + 50 + c.rng.float() * 600);
    c.sched.at(this.healAtMs, () => {
      c.net.healAll();
      c.log('nemesis heal');
    });
  }

  private crash(untilMs: number): void {
    const c = this.c;
    const leader = c.leader();
    // Half the crashes hit a node in the middle of a disk sync (etcd's failpoints before and
    // after saving), where lost unsynced writes hurt most.
    const syncing = c.running().filter((m) => m.engine.hasUnsynced());
    const roll = c.rng.float();
    const victim = roll < 0.5 && syncing.length > 0 ? c.pick(syncing) : leader !== undefined && roll < 0.7 ? leader : c.pick(c.running());
    if (victim === undefined) return;
    this.crashMember(victim, untilMs);
  }

  /** `whole`: part of a crash of several nodes at once (a power cut in the rack), which may take every one. */
  private crashMember(victim: Member, untilMs: number, whole = false): void {
    const c = this.c;
    // A lone crash never takes the last ones standing; the cluster-wide crash does.
    if (victim.node === undefined || (!whole && c.running().length <= 2)) return;
    victim.node.stop();
    victim.node = undefined;
    victim.paused = false;
    victim.pausedWork = [];
    victim.incarnation++;
    const report = victim.engine.crash(c.rng, { tailRecord: isSimLogEntryKey });
    c.count(report.torn ? 'crash-torn-write' : 'crash');
    if (report.partialRecord) c.count('crash-partial-record');
    // Now and then the restarted node reads a flipped bit in one of its first log reads: it must refuse
    // to start or stop serving, never use the record.
    if (c.options.faults.has('disk') && c.rng.chance(0.2)) this.armReadFlip(victim, c.rng.intBelow(4));
    c.log(`nemesis crash ${victim.id} (pending ${report.pendingBatches}, survived ${report.survived}${report.torn ? ', torn' : ''})`);
    // Some restarts are near-instant (a supervisor restarting the process at once): the node is
    // back while messages sent to its previous incarnation are still arriving.
    const downMs = c.rng.chance(0.2) ? 0.5 + c.rng.float() * 5 : 20 + c.rng.float() * 600;
    c.sched.at(Math.min(untilMs, c.sched.nowMs + downMs), () => this.restart(victim));
  }

  restart(m: Member): void {
    if (m.node !== undefined || m.removed) return;
    this.c.log(`nemesis restart ${m.id}`);
    try {
      this.c.start(m);
    } catch (error) {
      // A node that finds a corrupt record while starting refuses to start. The faults here only
      // flip bits on read, so the operator's retry reads clean data; anything else is a bug.
      if (!isTesseraError(error, 'CORRUPT_DATA')) throw error;
      m.node = undefined;
      m.incarnation++;
      // The process exited: what it committed while starting (a torn-tail repair) is lost unless synced,
      // and the engine forgets the sync it asked for, which the dead process will never run.
      m.engine.crash(this.c.rng);
      this.c.count('start-refused-corrupt');
      this.c.log(`node ${m.id} refused to start: ${error.message}`);
      this.c.sched.after(50, () => this.restart(m));
    }
  }

  /**
   * Disk faults: a sync that fails (EIO; the store must stop serving), a bit
   * flipped in a log record as it is read (its checksum must catch it), a
   * slow disk for a while, or a power cut of several nodes at once, up to
   * the whole cluster (every acknowledged write must survive it).
   */
  private disk(untilMs: number): void {
    const c = this.c;
    const victim = c.pick(c.running());
    if (victim === undefined) return;
    const roll = c.rng.float();
    if (roll < 0.25) {
      victim.engine.failSyncs(1);
      c.count('disk-sync-fails');
      c.log(`nemesis disk: the next sync of ${victim.id} fails`);
    } else if (roll < 0.5) {
      this.armReadFlip(victim);
    } else if (roll < 0.8) {
      const slowed = c.rng.chance(0.3) ? c.running() : [victim];
      const slowSyncMs = 100 + c.rng.float() * 200;
      const until = Math.min(untilMs, c.sched.nowMs + 300 + c.rng.float() * 1200);
      for (const m of slowed) {
        m.slowSyncMs = slowSyncMs;
        m.slowDiskUntilMs = until;
      }
      c.count('disk-slow');
      c.log(`nemesis disk: syncs of ${slowed.map((m) => m.id).join(',')} take ${slowSyncMs.toFixed(0)}ms more until ${until.toFixed(0)}ms`);
    } else {
      this.crashMany(untilMs);
    }
  }

  /** The log entry read after the next `skipReads` ones on `m` returns the record with one bit flipped. */
  private armReadFlip(m: Member, skipReads = 0): void {
    const c = this.c;
    const bit = c.rng.intBelow(1 << 20);
    let skip = skipReads;
    c.count('disk-read-flip');
    c.log(`nemesis disk: log read ${skipReads + 1} of ${m.id} from now flips a bit`);
    m.engine.readFault = (key, value) => {
      if (!isSimLogEntryKey(key) || value.length === 0 || skip-- > 0) return value;
      m.engine.readFault = undefined;
      const copy = value.slice();
      const i = bit % (copy.length * 8);
      copy[i >> 3] = (copy[i >> 3] as number) ^ (1 << (i & 7));
      return copy;
    };
  }

  /** A power cut of a majority or of every node at once; each comes back on its own schedule. */
  private crashMany(untilMs: number): void {
    const c = this.c;
    const running = c.running();
    const all = c.rng.chance(0.5);
    const count = all ? running.length : Math.floor(running.length / 2) + 1;
    const first = c.rng.intBelow(running.length);
    const victims = running.map((_, i) => running[(first + i) % running.length] as Member).slice(0, count);
    c.count(all ? 'crash-whole-cluster' : 'crash-majority');
    c.log(`nemesis power cut: ${victims.map((m) => m.id).join(',')}`);
    for (const m of victims) this.crashMember(m, untilMs, true);
  }

  private pause(): void {
    const c = this.c;
    const victim = c.pick(c.running().filter((m) => !m.paused));
    if (victim === undefined) return;
    victim.paused = true;
    c.count('pause');
    const ms = 20 + c.rng.float() * 400;
    c.log(`nemesis pause ${victim.id} for ${ms.toFixed(0)}ms`);
    const inc = victim.incarnation;
    c.sched.after(ms, () => {
      if (victim.incarnation === inc) this.resume(victim);
    });
  }

  resume(m: Member): void {
    if (!m.paused) return;
    m.paused = false;
    this.c.log(`nemesis resume ${m.id} (${m.missedTicks} ticks, ${m.pausedWork.length} queued)`);
    // As the node runtime does (ADR 0002): peers' acks first (they carry the tick they answer, so a
    // leader that reads them late loses nothing of its lease and keeps its quorum), then the clock,
    // then the rest of the buffered input, which must see the time that passed.
    const ticks = m.missedTicks;
    m.missedTicks = 0;
    const work = m.pausedWork;
    m.pausedWork = [];
    for (const w of work) if (w.ack) this.c.guard(m, w.work);
    if (ticks > 0) this.c.guard(m, () => m.node?.catchUpTicks(ticks));
    for (const w of work) if (!w.ack) this.c.guard(m, w.work);
  }

  /**
   * With lease reads on, cutting off the leader is paired with the clock skew
   * that a lease must survive: the old leader's clock slow and everyone else's
   * fast, both at the configured bound.
   */
  private maybeSkewAgainstLease(leader: NodeId): void {
    const c = this.c;
    if (c.options.readOnlyOption !== 'lease-based' || !c.options.faults.has('clock') || !c.rng.chance(0.7)) return;
    const d = c.options.maxClockDriftRatio;
    for (const m of c.running()) m.clockRate = m.id === leader ? 1 - d : 1 + d;
    c.count('clock-skew-leader-slow');
    c.log(`nemesis clock: isolated leader ${leader} slow (${(1 - d).toFixed(2)}), others fast (${(1 + d).toFixed(2)})`);
  }

  private clock(): void {
    const c = this.c;
    const d = c.options.maxClockDriftRatio;
    const leader = c.leader();
    if (leader !== undefined && c.rng.chance(0.5)) {
      // The worst case for a leader lease: the leader's clock slow, everyone else's fast, at the bound.
      for (const m of c.running()) m.clockRate = m === leader ? 1 - d : 1 + d;
      c.count('clock-skew-leader-slow');
      c.log(`nemesis clock: leader ${leader.id} slow (${(1 - d).toFixed(2)}), others fast (${(1 + d).toFixed(2)})`);
      return;
    }
    const m = c.pick(c.running());
    if (m === undefined) return;
    // Strobe within the configured bound: the lease is safe only for drift within it.
    m.clockRate = 1 - d + c.rng.float() * 2 * d;
    c.count('clock-drift');
    c.log(`nemesis clock ${m.id} rate ${m.clockRate.toFixed(3)}`);
  }

  private membership(): void {
    const c = this.c;
    const now = c.sched.nowMs;
    const leader = c.leader();
    if (leader === undefined || leader.node === undefined || now < this.confChangeBusyUntilMs) return;
    const cs = c.latestConf.cs;
    if (cs.votersOutgoing.length > 0) {
      // An explicit joint config waits for us to leave it.
      if (leader.node.proposeConfChange({ transition: 'explicit', changes: [], context: this.ccContext() })) c.count('membership-leave-joint');
      return;
    }
    // Under placement only through the API, as an operator can: a raw removal of two voters of a
    // range placed on three leaves it without a quorum for good, which the API refuses (ADR 0012).
    if (c.options.replicas > 0 || c.rng.chance(0.5)) {
      this.membershipViaApi(leader.node, cs);
      return;
    }
    const voters = cs.voters;
    const learners = cs.learners;
    const roll = c.rng.float();
    let proposed = false;
    let label = '';
    if (learners.length > 0 && roll < 0.4) {
      const id = c.pick(learners) as NodeId;
      proposed = leader.node.proposeConfChange({ transition: 'auto', changes: [{ type: 'add-node', nodeId: id }], context: this.ccContext() });
      label = `promote ${id}`;
    } else if (voters.length + learners.length < 7 && roll < 0.7) {
      const id = c.nextNodeId++;
      c.addMember(id, undefined);
      proposed = leader.node.proposeConfChange({ transition: 'auto', changes: [{ type: 'add-learner', nodeId: id }], context: this.ccContext(simMemberRecord(id)) });
      label = `add learner ${id}`;
      if (!proposed) this.retire(id);
    } else if (voters.length > 3) {
      const id = c.pick(voters) as NodeId;
      const explicit = c.rng.chance(0.5);
      proposed = leader.node.proposeConfChange({ transition: explicit ? 'explicit' : 'auto', changes: [{ type: 'remove-node', nodeId: id }], context: this.ccContext() });
      label = `remove ${id}${explicit ? ' (explicit joint)' : ''}`;
    } else if (learners.length > 0) {
      // Replace a voter with a learner in one joint step: demote one, promote the other.
      const out = c.pick(voters.filter((v) => v !== leader.id)) as NodeId;
      const inn = c.pick(learners) as NodeId;
      proposed = leader.node.proposeConfChange({
        transition: 'implicit',
        changes: [{ type: 'add-node', nodeId: inn }, { type: 'add-learner', nodeId: out }],
        context: this.ccContext(),
      });
      label = `swap voter ${out} for ${inn} (joint)`;
    }
    if (!proposed) return;
    c.count('membership-change');
    c.log(`nemesis membership ${label} via ${leader.id}`);
    this.confChangeBusyUntilMs = now + 200;
  }

  /**
   * A membership change through etcd's Cluster API logic on the leader
   * (src/kv/membership.ts), as etcdctl member add/remove/promote reach a
   * real node: its checks (strict reconfiguration, learner limits and
   * readiness), fresh member ids, joint consensus left before it answers,
   * deadlines. A member added this way is started once the add returns, as
   * an operator starts a node after `member add`.
   */
  private membershipViaApi(node: SimStoreNode, cs: ConfState): void {
    const c = this.c;
    const roll = c.rng.float();
    const api = node.membership;
    const report = (what: string) => (o: MembershipOutcome<unknown>): void => {
      const how = o.ok ? 'ok' : o.error instanceof MembershipError ? o.error.reason : o.error.code;
      c.count(`membership-api-${what}-${how}`);
      c.log(`nemesis membership api ${what}: ${how}${o.ok ? '' : ` (${o.error.message})`}`);
    };
    let what: string;
    if (cs.learners.length > 0 && roll < 0.4) {
      what = 'promote';
      api.promote(c.pick(cs.learners) as NodeId, report(what));
    } else if (cs.voters.length + cs.learners.length < 7 && roll < 0.75) {
      what = 'add';
      const url = `http://sim-api-${++this.apiMemberSeq}:2380`;
      this.awaitingStart.add(url);
      this.watchAwaitingStart();
      api.add([url], c.rng.chance(0.7), (o) => {
        report(what)(o);
        if (o.ok) this.startAdded(url, o.value.member.id);
        // A definite refusal added nobody; an unknown outcome is looked up in the member list.
        else if (o.error.code !== 'TIMEOUT') this.awaitingStart.delete(url);
      });
    } else if (cs.voters.length > 3 && roll < 0.875) {
      what = 'remove';
      api.remove(c.pick(cs.voters) as NodeId, report(what));
    } else if (cs.voters.length > 3) {
      // `tessera node decommission`: the member drains and is removed from every range, range 1 last.
      const id = c.pick(cs.voters) as NodeId;
      const target = c.members.get(id)?.node;
      if (target === undefined) return;
      what = 'decommission';
      target.decommission();
      c.count('membership-api-decommission');
    } else {
      return;
    }
    c.count('membership-change');
    c.log(`nemesis membership api ${what} via ${node.raw.raft.id}`);
    this.confChangeBusyUntilMs = c.sched.nowMs + 200;
  }

  /** Starts the node of a member added through the API, once. */
  private startAdded(url: string, id: NodeId): void {
    this.awaitingStart.delete(url);
    if (!this.c.members.has(id)) this.c.addMember(id, undefined);
  }

  /**
   * An add whose answer was lost (its leader crashed, or it timed out) may
   * still have happened: like an operator after a failed `member add`, look
   * the URL up in the member list now and then, and start the member found.
   */
  private watchAwaitingStart(): void {
    if (this.watchingAwaitingStart) return;
    this.watchingAwaitingStart = true;
    const look = (): void => {
      const node = this.c.leader()?.node;
      for (const url of this.awaitingStart) {
        const found = node?.membership.list().find((m) => m.peerUrls.includes(url));
        if (found !== undefined) this.startAdded(url, found.id);
      }
      if (this.awaitingStart.size > 0) this.c.sched.after(100, look);
      else this.watchingAwaitingStart = false;
    };
    this.c.sched.after(100, look);
  }

  /** The membership context the node runtime attaches: a request id and, for an addition, the member's record. */
  private ccContext(member?: MemberRecord): string {
    const requestId = `sim-cc-${++this.confChangeSeq}`;
    return encodeMemberContext(member === undefined ? { requestId } : { requestId, member });
  }

  /** A node that never became a member is shut down. */
  private retire(id: NodeId): void {
    const m = this.c.members.get(id);
    if (m === undefined) return;
    m.node?.stop();
    m.node = undefined;
    m.removed = true;
  }

  /**
   * The leader of some range splits it at a key drawn from the workload's
   * keys (KvNode.splitRange: a range id from range 1, then the split in the
   * range's own log), under whatever faults are on: the split may be
   * refused (a stale epoch, a key not inside the range, no leader) or its
   * outcome unknown (a deadline), and replicas that miss it learn of it
   * from snapshots.
   */
  private split(): void {
    const c = this.c;
    const leads: { readonly m: Member; readonly rangeId: number }[] = [];
    for (const m of c.running()) {
      if (m.paused || m.node === undefined) continue;
      for (const rangeId of m.node.rangeIds()) if (m.node.store.replica(rangeId)?.raw.raft.state === 'leader') leads.push({ m, rangeId });
    }
    const lead = c.pick(leads);
    const node = lead?.m.node;
    if (lead === undefined || node === undefined) return;
    const keys = Array.from({ length: c.options.keys }, (_, i) => `k${i}`);
    const d = node.kv.stateMachineOf(lead.rangeId).descriptor;
    const inside = keys.filter((k) => d !== undefined && compareBytes(d.start, utf8(k)) < 0 && (d.end === undefined || compareBytes(utf8(k), d.end) < 0));
    const key = c.pick(inside.length > 0 && !c.rng.chance(SPLIT_ANY_KEY_SHARE) ? inside : keys) as string;
    const { m, rangeId } = lead;
    c.count('split');
    c.log(`nemesis split range ${rangeId} at ${key} via ${m.id}`);
    c.onMember(m, m.incarnation, () =>
      node.splitRange(rangeId, key, (outcome) => {
        if (outcome instanceof TesseraError) {
          c.count('split-refused');
          c.count(`split-refused-${outcome.code}`);
          c.log(`nemesis split range ${rangeId} at ${key}: ${outcome.code} (${outcome.message})`);
          return;
        }
        c.count('split-ok');
        c.log(`nemesis split range ${rangeId} at ${key}: ranges ${outcome.left.rangeId} and ${outcome.right.rangeId} at version ${outcome.left.epoch.version}`);
      }),
    );
  }

  /**
   * The leader of some range other than range 1 (the meta range is never a
   * merge's side, as in MergeQueue) merges it with its right neighbour
   * (KvNode.mergeRanges: the right range frozen, then the merge in the left
   * range's log), under whatever faults are on: refused (the neighbours'
   * replicas differ, a descriptor changed), or timed out waiting for every
   * replica of the right range to hold the freeze, which leaves it frozen
   * until a later merge of the same pair finishes the job.
   */
  private merge(): void {
    const c = this.c;
    if (c.options.replicas > 0) return this.mergeUnderPlacement();
    const leads: { readonly m: Member; readonly rangeId: number }[] = [];
    const leadsBoth: { readonly m: Member; readonly rangeId: number }[] = [];
    for (const m of c.running()) {
      if (m.paused || m.node === undefined) continue;
      const leader = (id: number): boolean => m.node?.store.replica(id)?.raw.raft.state === 'leader';
      for (const rangeId of m.node.rangeIds()) {
        if (rangeId === SIM_RANGE || !leader(rangeId)) continue;
        const right = m.node.kv.rightNeighbourOf(rangeId);
        if (right === undefined) continue;
        leads.push({ m, rangeId });
        if (leader(right)) leadsBoth.push({ m, rangeId });
      }
    }
    // Mostly from a node that leads both sides, as the merge queue's node would after its first try;
    // sometimes from one that must ask for the right range's leadership first.
    const lead = c.pick(leadsBoth.length > 0 && c.rng.chance(0.7) ? leadsBoth : leads);
    const node = lead?.m.node;
    if (lead === undefined || node === undefined) return;
    const { m, rangeId } = lead;
    c.count('merge');
    c.log(`nemesis merge range ${rangeId} with its right neighbour via ${m.id}`);
    c.onMember(m, m.incarnation, () =>
      node.mergeRanges(rangeId, (outcome) => {
        if (outcome instanceof TesseraError) {
          c.count('merge-refused');
          c.count(`merge-refused-${outcome.code}`);
          c.log(`nemesis merge range ${rangeId}: ${outcome.code} (${outcome.message})`);
          return;
        }
        c.count('merge-ok');
        c.log(`nemesis merge range ${rangeId}: took over range ${outcome.rightRangeId}, now at version ${outcome.merged.epoch.version}`);
      }),
    );
  }

  /**
   * Under placement (ADR 0014) the two neighbours may be on different
   * nodes: every node's merge queue is told the merge of some range with its
   * right neighbour is wanted for MERGE_WANTED_MS, as if both were small and
   * cold everywhere. The right range's leader moves it onto the left one's
   * voters (if it holds the left range; else the left's leader asks for its
   * leadership), and the left's leader merges once their voters are the
   * same, while placement, crashes and partitions go on.
   */
  private mergeUnderPlacement(): void {
    const c = this.c;
    const led: number[] = [];
    for (const m of c.running()) {
      if (m.paused || m.node === undefined) continue;
      for (const rangeId of m.node.rangeIds()) if (rangeId !== SIM_RANGE && m.node.store.replica(rangeId)?.raw.raft.state === 'leader') led.push(rangeId);
    }
    const rangeId = c.pick([...new Set(led)].sort((a, b) => a - b));
    if (rangeId === undefined) return;
    c.count('merge');
    c.count('merge-wanted');
    c.log(`nemesis wants range ${rangeId} merged with its right neighbour (placement)`);
    const untilMs = c.sched.nowMs + MERGE_WANTED_MS;
    for (const m of c.running()) m.node?.wantMerge(rangeId, untilMs);
  }

  private transfer(): void {
    const c = this.c;
    const leader = c.leader();
    if (leader === undefined || leader.node === undefined) return;
    const target = c.pick(c.latestConf.cs.voters.filter((v) => v !== leader.id));
    if (target === undefined) return;
    c.count('leader-transfer');
    c.log(`nemesis transfer leadership ${leader.id} -> ${target}`);
    leader.node.transferLeader(target);
  }
}


const encoder = new TextEncoder();

function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}
