import type { KvCasInput, KvCasOutput, Operation } from '../check/index.js';
import type { NodeId } from '../raft/index.js';
import type { SimCluster } from './cluster.js';
import type { ClientReply } from './store_node.js';
import type { AckedWrite, KvCommand } from './commands.js';

export type HistoryOp = Operation<KvCasInput, KvCasOutput>;

export interface WorkloadStats {
  invoked: number;
  ok: number;
  failed: number;
  unknown: number;
}

/**
 * Closed-loop clients issuing get, put, delete and compare-and-set on a few
 * keys, with timeouts. Each written value is unique, so a read names its
 * writer. A timed-out operation is recorded as unknown, never as failed, and
 * the client continues under a new process id (Knossos' rule).
 */
export class Workload {
  readonly history: HistoryOp[] = [];
  /** Writes acknowledged to their client, with the revision they were told. */
  readonly acked: AckedWrite[] = [];
  readonly stats: WorkloadStats = { invoked: 0, ok: 0, failed: 0, unknown: 0 };
  private nextProcess = 0;
  private seq = 0;
  private stopAtMs = 0;

  constructor(private readonly c: SimCluster) {}

  start(clients: number, stopAtMs: number): void {
    this.stopAtMs = stopAtMs;
    for (let i = 0; i < clients; i++) this.loop(this.nextProcess++);
  }

  private loop(process: number): void {
    const c = this.c;
    if (c.sched.nowMs >= this.stopAtMs) return;
    const input = this.nextInput();
    const target = c.pick(c.memberIds());
    if (target === undefined) return;
    this.invoke(process, input, target, (outcome) => {
      const nextProcess = outcome === 'unknown' ? this.nextProcess++ : process;
      // Load comes in bursts: now and then a client goes quiet for a while, so the cluster also
      // spends time idle (where a leader has no entry of its own term yet).
      const thinkMs = c.rng.chance(0.03) ? 50 + c.rng.float() * 300 : c.rng.float() * 5;
      c.sched.after(thinkMs, () => this.loop(nextProcess));
    });
  }

  uniqueValue(): string {
    return `v${this.seq++}`;
  }

  private nextInput(): KvCasInput {
    const c = this.c;
    const key = `k${c.rng.intBelow(c.options.keys)}`;
    const value = `v${this.seq++}`;
    const roll = c.rng.float();
    if (roll < 0.45) return { kind: 'get', key };
    if (roll < 0.75) return { kind: 'put', key, value };
    if (roll < 0.85) return { kind: 'delete', key };
    // CAS from a recently written value, or from absent, so that some succeed.
    const expected = c.rng.chance(0.2) ? null : `v${Math.max(0, this.seq - 1 - c.rng.intBelow(8))}`;
    return { kind: 'cas', key, expected, value };
  }

  /** Issues one operation; `done` runs when it returns or times out. */
  invoke(process: number, input: KvCasInput, target: NodeId, done: (outcome: 'ok' | 'fail' | 'unknown') => void): void {
    const c = this.c;
    const callMs = c.sched.nowMs;
    const opId = `r${this.seq++}`;
    let finished = false;
    this.stats.invoked++;
    const finish = (reply: ClientReply | undefined): void => {
      if (finished) return;
      finished = true;
      if (reply === undefined || reply.kind === 'unknown') {
        this.stats.unknown++;
        // A read that never returned changed nothing and constrains nothing: leaving it out keeps
        // the check's search small without changing its verdict.
        if (input.kind !== 'get') this.history.push({ clientId: process, input, output: { kind: 'unknown' }, callMs, returnMs: Infinity });
        done('unknown');
      } else if (reply.kind === 'fail') {
        // Definitely did not happen: leave it out of the history.
        this.stats.failed++;
        done('fail');
      } else {
        this.stats.ok++;
        const output: KvCasOutput = input.kind === 'get' ? { kind: 'ok', value: reply.result.value ?? null } : input.kind === 'cas' ? { kind: 'ok', succeeded: reply.result.succeeded === true } : { kind: 'ok' };
        this.history.push({ clientId: process, input, output, callMs, returnMs: c.sched.nowMs });
        const revision = reply.result.revision;
        if (revision !== undefined && (input.kind === 'put' || input.kind === 'delete' || (input.kind === 'cas' && reply.result.succeeded === true))) {
          this.acked.push({ key: input.key, value: input.kind === 'delete' ? null : input.value, revision });
        }
        done('ok');
      }
    };
    c.sched.after(c.options.clientTimeoutMs, () => finish(undefined));
    c.log(`client ${process} ${input.kind} ${input.key} -> node ${target} (${opId})`);
    if (input.kind === 'get') {
      c.request(target, (node, reply) => node.read(input.key, reply), finish);
    } else {
      const command: KvCommand =
        input.kind === 'put'
          ? { op: 'put', key: input.key, value: input.value }
          : input.kind === 'delete'
            ? { op: 'delete', key: input.key }
            : { op: 'cas', key: input.key, expected: input.expected, value: input.value };
      c.request(target, (node, reply) => node.write(command, reply), finish);
    }
  }

  /** Clients finish their current operation and issue no more. */
  stop(): void {
    this.stopAtMs = this.c.sched.nowMs;
  }

  /** A fresh process id, for one-off operations such as the liveness marker. */
  newProcess(): number {
    return this.nextProcess++;
  }
}
