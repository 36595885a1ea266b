import { encodeMemberContext, META_RANGE, type RangeId } from '../kv/index.js';
import { AssertionError, SeededRng } from '../base/index.js';
import type { MvccStore } from '../mvcc/index.js';
import { checkOperations, checkTxnHistory, kvCasModel, type KvCasInput, type KvCasOutput, type Operation } from '../check/index.js';
import { type Member, SimCluster } from './cluster.js';
import { Nemesis } from './nemesis.js';
import { type OptionOverrides, type SimOptions, deriveOptions } from './options.js';
import type { AckedWrite } from './commands.js';
import type { ViolationKind } from './violation.js';
import { WatchClient } from './watch_client.js';
import { Workload, type WorkloadStats } from './workload.js';
import { TxnWorkload } from './txn_workload.js';

/** A key range 1 always holds: below every workload key, and splits are at workload keys only. */
const META_RANGE_KEY = 'a0';

export interface SeedResult {
  readonly seed: number;
  readonly options: SimOptions;
  readonly violations: readonly string[];
  readonly violationKinds: readonly ViolationKind[];
  readonly faults: Readonly<Record<string, number>>;
  readonly ops: WorkloadStats;
  /** The client history that was checked (for replaying the check alone). */
  readonly history: readonly Operation<KvCasInput, KvCasOutput>[];
  readonly opsChecked: number;
  readonly checkVerdict: 'linearizable' | 'not-linearizable' | 'unknown';
  readonly events: number;
  readonly virtualMs: number;
  readonly traceHash: string;
  readonly trace?: readonly string[];
}

/** Search steps the linearizability check may take per seed before answering "unknown". */
export const CHECK_MAX_STEPS = 20_000_000;
/**
 * How many times an undecided check is rerun, each with CHECK_BUDGET_FACTOR
 * times the previous budget. A seed still undecided after that fails the run
 * ("undecided"): an unchecked history proves nothing.
 */
export const CHECK_ESCALATIONS = 2;
export const CHECK_BUDGET_FACTOR = 4;

/**
 * One simulated run: a fault phase with clients and the nemesis, then the
 * liveness phase (heal; a write must commit within 10 election timeouts; a
 * partial partition must not depose the leader), then convergence and the
 * linearizability check of everything the clients saw.
 */
export interface RunSeedExtras {
  readonly trace?: boolean;
  /** First linearizability budget; tests lower it to prove an undecided check fails the seed. */
  readonly checkMaxSteps?: number;
}

export async function runSeed(seed: number, overrides: OptionOverrides & RunSeedExtras = {}): Promise<SeedResult> {
  const rng = new SeededRng(seed);
  const options = deriveOptions(seed, rng, overrides);
  const c = new SimCluster(options, rng, overrides.trace === true);
  const workload = new Workload(c);
  const txnWorkload = options.txnClients > 0 ? new TxnWorkload(c, options.keys + 1) : undefined;
  const nemesis = new Nemesis(c);
  c.onLeaderElected = (id) => nemesis.onLeaderElected(id);
  const etMs = options.electionTimeoutTicks * options.tickMs;
  const livenessWindowMs = 10 * etMs;
  c.log(`seed ${seed} nodes ${options.nodeCount} read ${options.readOnlyOption} bug ${options.bug ?? 'none'} replicas ${options.replicas || 'all'}`);
  // Under placement a node holds some of a watch's ranges, and reads the others through remote feeds (ADR 0013).
  const watchers = [new WatchClient(c, 'w1'), new WatchClient(c, 'w2')];
  if (options.replicas > 0) c.count('placement');
  if (options.localities) c.count('placement-localities');
  try {
    for (const w of watchers) w.start(50);
    workload.start(options.clients, options.faultPhaseMs + 2 * livenessWindowMs);
    txnWorkload?.start(options.txnClients, options.faultPhaseMs + 2 * livenessWindowMs);
    nemesis.start(options.faultPhaseMs);
    await c.sched.runUntil(options.faultPhaseMs, () => c.violations.length > 0);
    if (c.violations.length === 0) healEverything(c, nemesis);
    if (c.violations.length === 0) await checkWriteCommits(c, workload, livenessWindowMs, 'after the heal');
    if (c.violations.length === 0) await leaveJointConfiguration(c, livenessWindowMs);
    if (c.violations.length === 0) await checkPartialPartition(c, workload, livenessWindowMs);
    workload.stop();
    txnWorkload?.stop();
    if (c.violations.length === 0) await checkConvergence(c, livenessWindowMs);
    if (c.violations.length === 0) checkAckedWrites(c, workload.acked);
    if (c.violations.length === 0) checkWatches(c, watchers);
    if (c.violations.length === 0) await checkQuiescedFailover(c, workload, livenessWindowMs);
  } catch (err) {
    if (!(err instanceof AssertionError)) throw err;
    c.violation('raft-invariant', `assertion: ${err.message}`);
  }
  let checkVerdict: SeedResult['checkVerdict'] = 'linearizable';
  if (c.violations.length === 0 || options.bug !== undefined) {
    let maxSteps = overrides.checkMaxSteps ?? CHECK_MAX_STEPS;
    let result = checkOperations(kvCasModel, workload.history, { maxSteps });
    for (let i = 0; i < CHECK_ESCALATIONS && result.verdict === 'unknown'; i++) {
      maxSteps *= CHECK_BUDGET_FACTOR;
      c.log(`check undecided, rerun with maxSteps=${maxSteps}`);
      result = checkOperations(kvCasModel, workload.history, { maxSteps });
    }
    checkVerdict = result.verdict;
    if (result.verdict === 'not-linearizable') {
      c.violation('linearizability', `linearizability: ${result.failure?.message ?? 'history is not linearizable'}`);
    } else if (result.verdict === 'unknown') {
      c.violation('undecided', `undecided: the linearizability check gave up after ${maxSteps} steps on ${workload.history.length} operations`);
    }
  }
  if (txnWorkload !== undefined && c.violations.length === 0) checkTxnWorkload(c, txnWorkload);
  c.log(`end ops=${workload.history.length} verdict=${checkVerdict}`);
  return {
    seed,
    options,
    violations: c.violations,
    violationKinds: c.violationKinds,
    faults: c.faults,
    ops: workload.stats,
    opsChecked: workload.history.length,
    history: workload.history,
    checkVerdict,
    events: c.sched.eventsRun,
    virtualMs: c.sched.nowMs,
    traceHash: c.trace.digest(),
    ...(c.traceLines === undefined ? {} : { trace: c.traceLines }),
  };
}

function healEverything(c: SimCluster, nemesis: Nemesis): void {
  c.log('phase heal');
  c.net.healAll();
  c.net.conditions = { ...c.net.conditions, lossRate: 0, dupRate: 0, slowRate: 0 };
  for (const m of c.members.values()) {
    m.clockRate = 1;
    if (m.removed) continue;
    if (m.node === undefined) nemesis.restart(m);
    else nemesis.resume(m);
  }
}

/**
 * The operator finishes a membership change the fault phase left half done:
 * an explicit joint configuration waits for someone to leave it, and its
 * outgoing members are still needed for quorum (a removed one may meanwhile
 * stop itself, src/kv/membership.ts). The partial-partition check that
 * follows assumes one plain configuration.
 */
async function leaveJointConfiguration(c: SimCluster, windowMs: number): Promise<void> {
  const deadline = c.sched.nowMs + windowMs;
  const joint = (): boolean => c.latestConf.cs.votersOutgoing.length > 0;
  let seq = 0;
  const attempt = (): void => {
    if (!joint() || c.sched.nowMs >= deadline) return;
    c.leader()?.node?.proposeConfChange({ transition: 'explicit', changes: [], context: encodeMemberContext({ requestId: `sim-heal-leave-${++seq}` }) });
    c.sched.after(50, attempt);
  };
  if (!joint()) return;
  c.log('phase leave joint configuration');
  attempt();
  await c.sched.runUntil(deadline, () => !joint() || c.violations.length > 0);
  if (joint() && c.violations.length === 0) c.violation('liveness', 'liveness: the joint configuration was not left within 10 election timeouts after the heal');
}

/** Liveness: a new write through the leader (or any node) commits within the window. */
/** The transactional workload's list-append history, checked as Elle checks it (strict serializability). */
function checkTxnWorkload(c: SimCluster, w: TxnWorkload): void {
  const result = checkTxnHistory(w.history, { model: 'list-append', maxSteps: 5_000_000 });
  c.count(`txn-ok`, w.stats.ok);
  if (result.valid === false) c.violation('txn-anomaly', `transactions: ${result.names.join(', ')}: ${result.anomalies[0]?.explanation ?? ''}`);
  else if (result.valid === 'unknown') c.violation('undecided', `undecided: the transactional check gave up (${result.reason ?? 'budget'}) on ${w.history.length} transactions`);
}

async function checkWriteCommits(c: SimCluster, workload: Workload, windowMs: number, when: string, via?: Member): Promise<boolean> {
  // Through a given node (range 1's leader): a key of range 1, whose leader it is; another range's leader
  // may be the follower cut off from it, and a proposal it forwards there is lost.
  const key = via === undefined ? 'k0' : META_RANGE_KEY;
  const deadline = c.sched.nowMs + windowMs;
  let committed = false;
  const attempt = (): void => {
    if (committed || c.sched.nowMs >= deadline) return;
    const target = via ?? c.leader() ?? c.pick(c.running());
    if (target === undefined) {
      c.sched.after(10, attempt);
      return;
    }
    const input = { kind: 'put' as const, key, value: workload.uniqueValue() };
    workload.invoke(workload.newProcess(), input, target.id, (outcome) => {
      if (outcome === 'ok') committed = true;
      else c.sched.after(5, attempt);
    });
  };
  attempt();
  await c.sched.runUntil(deadline, () => committed || c.violations.length > 0);
  if (!committed && c.violations.length === 0) {
    c.violation('liveness', `liveness: no write committed within 10 election timeouts ${when}`);
  }
  return committed;
}

/**
 * Cuts one follower off from the leader only. With PreVote and CheckQuorum the
 * follower cannot depose the leader (its pre-votes are refused by peers that
 * still hear the leader), so the leader must keep its term and keep committing.
 */
async function checkPartialPartition(c: SimCluster, workload: Workload, windowMs: number): Promise<void> {
  // Let elections that were under way at the heal finish first.
  await c.sched.runUntil(c.sched.nowMs + windowMs / 5, () => c.violations.length > 0);
  // The liveness phase just committed a write, so a healed cluster must have a leader within the
  // window; none is a liveness failure, never a reason to skip the check (issue 12).
  await c.sched.runUntil(c.sched.nowMs + windowMs, () => c.violations.length > 0 || c.leader()?.node !== undefined);
  const leader = c.leader();
  if (leader === undefined || leader.node === undefined) {
    c.violation('liveness', `liveness: no leader within ${windowMs} ms of the partial-partition phase on a healed cluster`);
    return;
  }
  const term = leader.node.raw.raft.term;
  const voters = c.latestConf.cs.voters.filter((v) => v !== leader.id && c.members.get(v)?.node !== undefined);
  const follower = c.pick(voters);
  if (follower === undefined || c.latestConf.cs.voters.length < 3) return;
  c.log(`phase partial partition: cut ${leader.id} <-> ${follower}`);
  c.count('liveness-partial-partition');
  c.net.block(leader.id, follower);
  c.net.block(follower, leader.id);
  await c.sched.runUntil(c.sched.nowMs + windowMs / 2, () => c.violations.length > 0);
  await checkWriteCommits(c, workload, windowMs / 2, 'under a partial partition', leader);
  const now = c.leader();
  if (c.violations.length === 0 && (now !== leader || leader.node?.raw.raft.term !== term)) {
    c.violation(
      'liveness',
      `liveness: leader ${leader.id} (term ${term}) lost leadership under a partial partition cutting only ${follower} from it; now leader ${now?.id ?? 'none'} term ${now?.node?.raw.raft.term ?? '-'}`,
    );
  }
  c.net.healAll();
}

/**
 * Quiescence (ADR 0010): on the idle cluster ranges quiesce; then the node
 * leading the most quiesced ranges is cut off from every other node, for
 * good. Nothing wakes their followers but the silence of its node (no
 * client writes, no votes): each of those ranges must elect a leader among
 * the others within the window. Then a write through a new leader, and a
 * read of that key at the cut-off node, which still believes it leads: it
 * must not answer from the lease it held when it went quiet (the history's
 * linearizability check judges). Last, since the node stays cut off.
 */
async function checkQuiescedFailover(c: SimCluster, workload: Workload, windowMs: number): Promise<void> {
  await c.sched.runUntil(c.sched.nowMs + windowMs / 2, () => c.violations.length > 0);
  if (c.latestConf.cs.voters.length < 3 || c.running().length < 3) return;
  const ledQuiesced = (m: Member): RangeId[] => {
    const node = m.node;
    if (node === undefined) return [];
    return node.rangeIds().filter((id) => {
      const raw = node.kv.store.replica(id)?.raw;
      return raw !== undefined && raw.quiesced && raw.raft.state === 'leader';
    });
  };
  let victim: Member | undefined;
  let ranges: RangeId[] = [];
  for (const m of c.running()) {
    const led = ledQuiesced(m);
    if (led.length > ranges.length) [victim, ranges] = [m, led];
  }
  if (victim === undefined || victim.node === undefined) {
    c.count('quiesced-failover-none-quiet');
    return;
  }
  c.log(`phase quiesced failover: cut off ${victim.id}, leader of quiesced ranges ${ranges.join(',')}`);
  c.count('quiesced-failover');
  const cut = victim;
  for (const m of c.members.values()) {
    if (m === cut) continue;
    c.net.block(cut.id, m.id);
    c.net.block(m.id, cut.id);
  }
  const leaderOf = (rangeId: RangeId): Member | undefined => c.running().find((m) => m !== cut && m.node?.kv.store.replica(rangeId)?.raw.raft.state === 'leader');
  await c.sched.runUntil(c.sched.nowMs + windowMs, () => c.violations.length > 0 || ranges.every((id) => leaderOf(id) !== undefined));
  const leaderless = ranges.filter((id) => leaderOf(id) === undefined);
  if (leaderless.length > 0) {
    if (c.violations.length === 0) c.violation('liveness', `liveness: ranges ${leaderless.join(',')} elected no leader within 10 election timeouts after their quiesced leader ${cut.id} was cut off`);
    return;
  }
  // A key of one of those ranges, as the cut-off node routes it.
  let key: string | undefined;
  for (let i = 0; i < c.options.keys && key === undefined; i++) {
    const range = cut.node?.rangeOfKey(`k${i}`);
    if (range !== undefined && ranges.includes(range)) key = `k${i}`;
  }
  const range = key === undefined ? undefined : cut.node?.rangeOfKey(key);
  const writer = range === undefined ? undefined : leaderOf(range);
  if (key === undefined || writer === undefined) return;
  let wrote = false;
  workload.invoke(workload.newProcess(), { kind: 'put', key, value: workload.uniqueValue() }, writer.id, (outcome) => void (wrote = outcome === 'ok'));
  await c.sched.runUntil(c.sched.nowMs + c.options.clientTimeoutMs + 1, () => wrote || c.violations.length > 0);
  if (!wrote) return;
  let read = false;
  // Strictly after the write returned (at the same instant the checker takes them as concurrent).
  await c.sched.runUntil(c.sched.nowMs + 1, () => c.violations.length > 0);
  workload.invoke(workload.newProcess(), { kind: 'get', key }, cut.id, () => void (read = true));
  await c.sched.runUntil(c.sched.nowMs + c.options.clientTimeoutMs + 1, () => read || c.violations.length > 0);
  c.count('quiesced-failover-read');
}

/**
 * Every watch client saw exactly the history, in order, across its resumes:
 * the history of every range, merged in revision order, through splits.
 */
function checkWatches(c: SimCluster, watchers: readonly WatchClient[]): void {
  const reference = c.running().find((m) => m.node !== undefined);
  const ranges = c.options.replicas > 0 ? placedRangeStores(c) : reference?.node?.rangeStores();
  if (ranges === undefined) return;
  if (ranges.length > 1) c.count('watch-check-split');
  for (const w of watchers) {
    c.count('watch-resumes', w.resumes);
    w.check(ranges);
  }
}

/**
 * Under placement no member holds every range: each range the meta table
 * lists, read from one of its holders (after convergence they hold the same
 * history). Undefined if some range has no holder (checkPlacement reports it).
 */
function placedRangeStores(c: SimCluster): MvccStore[] | undefined {
  const members = c.memberIds()
    .map((id) => c.members.get(id))
    .filter((m): m is Member => m !== undefined && m.node !== undefined);
  const listed = members[0]?.node?.kv.stateMachine.metaTable?.all() ?? [];
  const stores: MvccStore[] = [];
  for (const d of listed) {
    const holder = holdersOf(members, d.rangeId, true).find((m) => m.node?.kv.stateMachineOf(d.rangeId).descriptor !== undefined);
    const node = holder?.node;
    if (node === undefined) return undefined;
    stores.push(node.kv.stateMachineOf(d.rangeId).mvcc);
  }
  return stores;
}

/**
 * No acknowledged write is lost (issue 13's oracle): on every running
 * member, a write a client was told succeeded at revision R is what its key
 * holds at R (a delete: nothing), unless R has been compacted away. Runs
 * after convergence, so every member has applied every acknowledged write.
 */
function checkAckedWrites(c: SimCluster, acked: readonly AckedWrite[]): void {
  // The members convergence compared: those of the configuration that run.
  const members = c.memberIds()
    .map((id) => c.members.get(id))
    .filter((m): m is Member => m !== undefined && m.node !== undefined);
  for (const id of c.memberIds()) {
    const node = c.members.get(id)?.node;
    if (node === undefined) continue;
    for (const w of acked) {
      if (c.options.replicas > 0) {
        // Under placement, only the members of the key's range hold it (another may keep a
        // replica placement moved away until replica GC drops it).
        const rangeId = node.rangeOfKey(w.key);
        if (rangeId === undefined || !holdersOf(members, rangeId, true).some((m) => m.id === id)) continue;
      }
      const held = node.readAt(w.key, w.revision);
      if (held === 'compacted') continue;
      const lost = held === 'not-yet' || (w.value === null ? held !== null : held === null || held.value !== w.value || held.modRevision !== w.revision);
      if (!lost) continue;
      const what = held === null ? 'nothing' : held === 'not-yet' ? 'an older revision' : `${held.value}@${held.modRevision}`;
      c.violation('lost-write', `lost write: member ${id} holds ${what} for ${w.key} at revision ${w.revision}, where a client was told ${w.value === null ? 'a delete' : w.value} succeeded`);
      return;
    }
  }
}

/**
 * After a quiet period every running member holds every range, and each
 * range's replicas have applied the same entries and hold the same data
 * (bounds, epoch, keys; range 1 the member table too); each member's ranges
 * partition the key space.
 */
async function checkConvergence(c: SimCluster, windowMs: number): Promise<void> {
  c.log('phase convergence');
  // Leadership moves made to balance leaders are traffic too: the quiet period has none.
  for (const m of c.running()) m.node?.stopBalancing();
  await c.sched.runUntil(c.sched.nowMs + windowMs, () => c.violations.length > 0);
  const members = c.memberIds()
    .map((id) => c.members.get(id))
    .filter((m): m is Member => m !== undefined && m.node !== undefined);
  const rangeIds = [...new Set(members.flatMap((m) => m.node?.rangeIds() ?? []))].sort((a, b) => a - b);
  const placed = c.options.replicas > 0;
  // Background work may still append an entry late in the window (a close a watcher asked for, a
  // TSO window, a meta table repair): what is in flight then gets one more window to apply everywhere.
  const settled = (): boolean => rangeIds.every((id) => new Set(holdersOf(members, id, placed).map((m) => m.node?.applied(id) ?? 0)).size === 1);
  if (!settled()) {
    c.count('convergence-extra-window');
    await c.sched.runUntil(c.sched.nowMs + windowMs, () => c.violations.length > 0 || settled());
  }
  for (const rangeId of rangeIds) checkRangeConverged(c, holdersOf(members, rangeId, placed), rangeId);
  if (placed) checkPlacement(c, members, rangeIds);
  for (const m of members) {
    const node = m.node;
    if (node === undefined) continue;
    // The member table follows the Raft configuration: every membership change carries its record.
    const table = node.memberIds().join(',');
    const conf = node.incomingConfIds().join(',');
    if (table !== conf) c.violation('membership', `membership: member ${m.id} lists members [${table}] but its configuration holds [${conf}]`);
    c.ranges.checkPartition(m.id, node, placed);
    if (!c.ranges.metaTableMatches(node, placed)) c.violation('range-partition', `range partition: member ${m.id}'s meta table does not list its ranges as they are after a quiet period`);
  }
}

/**
 * The members that should hold range `rangeId`: every running member, or
 * under placement those in its configuration as the replica that applied
 * the most of it holds it (a replica placement moved off a node is dropped
 * there by replica GC, in its own time).
 */
function holdersOf(members: readonly Member[], rangeId: RangeId, placed: boolean): Member[] {
  if (!placed || rangeId === META_RANGE) return [...members];
  let best: Member | undefined;
  const initialized = (m: Member): boolean => m.node?.store.replica(rangeId) !== undefined && m.node.kv.stateMachineOf(rangeId).descriptor !== undefined;
  for (const m of members) if (initialized(m) && (best === undefined || (m.node?.applied(rangeId) ?? 0) > (best.node?.applied(rangeId) ?? 0))) best = m;
  // Only empty replicas (made for a late message after the range moved off a node, or merged away): no holder.
  // checkPlacement makes sure every range of the meta table has holders.
  const cs = best?.node?.store.replica(rangeId)?.currentConfState();
  if (cs === undefined) return [];
  const ids = new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext]);
  return members.filter((m) => ids.has(m.id));
}

/**
 * Under placement, after the quiet period: every data range has as many
 * voters as `replicas` asks, or every voter of range 1 if there are fewer,
 * all running members (a dead member's replicas were made again).
 */
function checkPlacement(c: SimCluster, members: readonly Member[], rangeIds: readonly RangeId[]): void {
  const voters1 = c.latestConf.cs.voters.length;
  const want = Math.min(c.options.replicas, voters1);
  // Every range the meta table lists is held by some running member: placement never drops a range's last replica.
  const listed = members[0]?.node?.kv.stateMachine.metaTable?.all() ?? [];
  for (const d of listed) {
    if (holdersOf(members, d.rangeId, true).length === 0) c.violation('convergence', `placement: range ${d.rangeId} is in the meta table but no running member holds it after a quiet period`);
  }
  for (const rangeId of rangeIds) {
    if (rangeId === META_RANGE) continue;
    const holders = holdersOf(members, rangeId, true);
    const best = holders.find((m) => m.node?.store.replica(rangeId)?.raw.raft.state === 'leader') ?? holders[0];
    const cs = best?.node?.store.replica(rangeId)?.currentConfState();
    if (cs === undefined || best?.node?.kv.stateMachineOf(rangeId).descriptor === undefined) continue;
    if (cs.voters.length !== want) c.violation('convergence', `placement: range ${rangeId} has ${cs.voters.length} voters (${cs.voters.join(',')}), not ${want}, after a quiet period`);
  }
  c.count('placement-checked');
}

function checkRangeConverged(c: SimCluster, members: readonly Member[], rangeId: number): void {
  const maxApplied = Math.max(...members.map((m) => m.node?.applied(rangeId) ?? 0));
  let reference: { id: number; digest: string } | undefined;
  for (const m of members) {
    const node = m.node;
    if (node === undefined) continue;
    const applied = node.applied(rangeId);
    const digest = node.rangeDigest(rangeId);
    if (applied < maxApplied || digest === undefined) {
      c.violation('convergence', `convergence: member ${m.id} applied ${applied} < ${maxApplied} of range ${rangeId}${digest === undefined ? ' (its replica holds nothing)' : ''} after a quiet period`);
      continue;
    }
    const stats = node.liveStatsProblem(rangeId);
    if (stats !== undefined) c.violation('state-machine-safety', `live stats: member ${m.id} range ${rangeId} ${stats} after a quiet period`);
    if (reference === undefined) reference = { id: m.id, digest };
    else if (reference.digest !== digest) c.violation('convergence', `convergence: member ${m.id} range ${rangeId} state ${digest} differs from member ${reference.id} state ${reference.digest} at index ${maxApplied}`);
  }
}
