import type { MicroOp, Txn } from '../check/index.js';
import type { RequestOp, TxnRequest, TxnResponse } from '../mvcc/index.js';
import type { SimCluster } from './cluster.js';

/** What a node answers a client's etcd Txn: the response, or a definite failure, or an unknown outcome. */
export type TxnReply = { readonly kind: 'ok'; readonly response: TxnResponse } | { readonly kind: 'fail'; readonly reason: string } | { readonly kind: 'unknown'; readonly reason: string };

export interface TxnWorkloadStats {
  invoked: number;
  ok: number;
  failed: number;
  unknown: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Elle's list-append through the etcd API of the simulated nodes (issue
 * 14), over keys that lie between the workload's split points (`k<i>/t`
 * sorts after `k<i>`, where the nemesis splits), so a transaction spans
 * ranges while they split, merge and move. Each transaction reads its keys
 * (a read-only Txn), then commits a Txn whose compares hold those keys'
 * mod revisions and whose puts append to their lists: the reads of the
 * history are what the first Txn saw, valid at the commit because nothing
 * changed between. A failed compare, or a refusal, did not take effect
 * (:fail); a timeout may have (:info, and the client continues as a new
 * process). The history is checked by src/check/txn.
 */
export class TxnWorkload {
  readonly history: Txn[] = [];
  readonly stats: TxnWorkloadStats = { invoked: 0, ok: 0, failed: 0, unknown: 0 };
  private position = 0;
  private nextProcess = 0;
  private element = 1;
  private stopAtMs = 0;

  constructor(
    private readonly c: SimCluster,
    private readonly keys: number,
  ) {}

  start(clients: number, stopAtMs: number): void {
    this.stopAtMs = stopAtMs;
    for (let i = 0; i < clients; i++) this.loop(this.nextProcess++);
  }

  stop(): void {
    this.stopAtMs = this.c.sched.nowMs;
  }

  /** Elle's `:process` of the workload's clients, apart from the other workload's. */
  private loop(process: number): void {
    const c = this.c;
    if (c.sched.nowMs >= this.stopAtMs) return;
    const target = c.pick(c.memberIds());
    if (target === undefined) return;
    const ops: MicroOp[] = Array.from({ length: 1 + c.rng.intBelow(3) }, () => {
      const key = c.rng.intBelow(this.keys);
      return c.rng.chance(0.5) ? { f: 'append', key, value: this.element++ } : { f: 'r', key, value: undefined };
    });
    const id = this.history.length;
    this.history.push({ id, process, status: 'info', ops, invokeAt: this.position++, completeAt: Infinity, index: id });
    this.stats.invoked++;
    let finished = false;
    const finish = (status: 'ok' | 'fail' | 'info', done?: MicroOp[]): void => {
      if (finished) return;
      finished = true;
      if (status === 'info') this.stats.unknown++;
      else if (status === 'fail') this.stats.failed++;
      else this.stats.ok++;
      if (status !== 'info') this.history[id] = { ...this.history[id]!, status, ops: done ?? ops, completeAt: this.position++ };
      const next = status === 'info' ? this.nextProcess++ : process;
      c.sched.after(c.rng.float() * 5, () => this.loop(next));
    };
    c.sched.after(c.options.clientTimeoutMs, () => finish('info'));
    const keys = [...new Set(ops.map((op) => op.key as number))];
    const read: TxnRequest = { compare: [], success: keys.map((k) => rangeOp(k)), failure: [] };
    c.request<TxnReply>(target, (node, reply) => node.apiTxn(read, reply), (r) => {
      if (finished) return;
      // The read changed nothing: whatever became of it, the transaction did not happen.
      if (r.kind !== 'ok') return finish('fail');
      const seen = new Map(keys.map((k, i) => [k, firstKv(r.response, i)]));
      const lists = new Map(keys.map((k) => [k, decodeList(seen.get(k)?.value)]));
      const done: MicroOp[] = ops.map((op) => {
        const list = lists.get(op.key as number)!;
        if (op.f !== 'append') return { f: 'r', key: op.key, value: [...list] };
        lists.set(op.key as number, [...list, op.value as number]);
        return op;
      });
      // In key order, as a transaction across ranges numbers its changes: the watch oracle compares histories in that order.
      const appended = [...new Set(ops.filter((op) => op.f === 'append').map((op) => op.key as number))].sort((a, b) => a - b);
      if (appended.length === 0) return finish('ok', done);
      const commit: TxnRequest = {
        compare: keys.map((k) => ({ key: keyOf(k), target: 'MOD', result: 'EQUAL', operand: seen.get(k)?.modRevision ?? 0 })),
        success: appended.map((k): RequestOp => ({ type: 'put', put: { key: keyOf(k), value: encoder.encode(lists.get(k)!.join(',')) } })),
        failure: [],
      };
      c.request<TxnReply>(target, (node, reply) => node.apiTxn(commit, reply), (w) => {
        if (w.kind === 'unknown') return finish('info');
        if (w.kind === 'fail' || !w.response.succeeded) return finish('fail');
        finish('ok', done);
      });
    });
  }
}

function keyOf(k: number): Uint8Array {
  return encoder.encode(`k${k}/t`);
}

function rangeOp(k: number): RequestOp {
  return { type: 'range', range: { key: keyOf(k) } };
}

function firstKv(response: TxnResponse, i: number): { value: Uint8Array; modRevision: number } | undefined {
  const r = response.responses[i];
  return r?.type === 'range' ? r.range.kvs[0] : undefined;
}

function decodeList(value: Uint8Array | undefined): number[] {
  if (value === undefined || value.byteLength === 0) return [];
  return decoder.decode(value).split(',').map(Number);
}
