import assert from 'node:assert/strict';
import { SeededRng, type TesseraError, type TimerHandle, type Timers } from '../base/index.js';
import type { ConfState, NodeId } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { encodeCommand } from './commands.js';
import { KvNode } from './kv_node.js';
import { KvApi } from './kv_api.js';
import { META_RANGE } from './keys.js';
import type { CommandResult } from './mvcc_state_machine.js';
import type { RangeDescriptor } from './range_map.js';
import type { RangeId } from './keys.js';
import type { RangeMessage } from './store.js';
import type { ForwardMessage } from './forward.js';
import { SNAPSHOT_MEASURE_SLICE_PAIRS, snapshotReaderOf } from './snapshot_stream.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Hand-driven KvNodes on in-memory engines: loops, syncs, messages and timers run only in `settle`, in order. */
export class Cluster {
  readonly tasks: (() => void)[] = [];
  readonly engines = new Map<NodeId, MemoryEngine>();
  readonly nodes = new Map<NodeId, KvNode>();
  nowMs = 0;
  /** Messages between these node pairs are dropped (a partition). */
  cut = new Set<NodeId>();
  private timers: { atMs: number; run: () => void; cancelled: boolean }[] = [];
  private boots = 0;

  /** With `forward`, nodes' forwarded calls (ADR 0012) are carried and served; without, they go nowhere. */
  constructor(
    readonly ids: NodeId[],
    private readonly options: { readonly forward?: boolean } = {},
  ) {
    for (const id of ids) {
      this.engines.set(id, new MemoryEngine({ scheduleSync: (f) => this.tasks.push(f) }));
      this.start(id, true);
    }
  }

  start(id: NodeId, founder: boolean): void {
    const t: Timers = {
      nowMs: () => this.nowMs,
      after: (ms, run): TimerHandle => {
        const timer = { atMs: this.nowMs + ms, run, cancelled: false };
        this.timers.push(timer);
        return { cancel: () => void (timer.cancelled = true) };
      },
    };
    const cs: ConfState = { voters: this.ids, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    const quiet = { info: () => {}, warn: () => {}, debug: () => {} };
    const node = new KvNode({
      nodeId: id,
      name: `n${id}`,
      engine: this.engines.get(id) as MemoryEngine,
      transport: {
        send: (to, msgs) => this.send(id, to, msgs),
        sendRevisions: (to, message) => {
          if (!this.cut.has(id) && !this.cut.has(to)) this.tasks.push(() => this.nodes.get(to)?.receiveRevisions(id, message));
        },
        ...(this.options.forward !== true
          ? {}
          : {
              sendForward: (to: NodeId, message: ForwardMessage) => {
                if (!this.cut.has(id) && !this.cut.has(to)) this.tasks.push(() => this.nodes.get(to)?.receiveForward(id, message));
              },
            }),
      },
      rng: new SeededRng(id * 7919 + this.boots++),
      timers: t,
      raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 },
      scheduleLoop: (loop) => this.tasks.push(loop),
      logRetainEntries: 5,
      requestTimeoutMs: 5_000,
      requestIdPrefix: `n${id}.${this.boots}`,
      onStorageFailed: (e) => assert.fail(e),
      ...(founder ? { bootstrap: { confState: cs, founders: [] } } : {}),
      membershipLog: quiet,
      clientUrls: () => [],
      onRemoved: () => {},
    });
    this.nodes.set(id, node);
    // Serves peers' forwarded calls, as the server's and the simulator's client API does.
    if (this.options.forward === true) {
      new KvApi({ timers: t, store: node.store, stateMachine: node.stateMachine, rangeId: META_RANGE, requestTimeoutMs: 5_000, requestIdPrefix: `n${id}.${this.boots}.api`, leaseKeeper: node.leaseKeeper, requests: node.requests, ranges: node });
    }
  }

  private send(from: NodeId, to: NodeId, msgs: readonly RangeMessage[]): void {
    if (this.cut.has(from) || this.cut.has(to)) return;
    // A streamed snapshot is read whole here, as the server's carrier reads it in chunks.
    const carried = msgs.map((m) => {
      const snap = m.message.snapshot;
      const reader = snap === undefined ? undefined : snapshotReaderOf(snap);
      if (snap === undefined || reader === undefined) return m;
      while (!reader.measure(SNAPSHOT_MEASURE_SLICE_PAIRS));
      const chunks: Uint8Array[] = [];
      for (let chunk = reader.nextChunk(1 << 20); chunk !== undefined; chunk = reader.nextChunk(1 << 20)) chunks.push(chunk);
      reader.close();
      // As the server's carrier does once the data is sent; the receiver may still refuse it.
      this.tasks.push(() => this.nodes.get(from)?.store.reportSnapshot(m.rangeId, to, true));
      return { rangeId: m.rangeId, message: { ...m.message, snapshot: { metadata: snap.metadata, data: Buffer.concat(chunks) } } };
    });
    this.tasks.push(() => this.nodes.get(to)?.receive(carried));
  }

  settle(max = 200_000): void {
    for (let n = 0; n < max && this.tasks.length > 0; n++) (this.tasks.shift() as () => void)();
  }

  /** Ticks every node `times` times, 10 ms apart, running due timers and settling after each. */
  tick(times: number): void {
    for (let i = 0; i < times; i++) {
      this.nowMs += 10;
      const due = this.timers.filter((x) => x.atMs <= this.nowMs && !x.cancelled);
      this.timers = this.timers.filter((x) => x.atMs > this.nowMs && !x.cancelled);
      for (const x of due) x.run();
      for (const n of this.nodes.values()) n.tick();
      this.settle();
    }
  }

  leaderOf(rangeId: number): KvNode {
    const l = [...this.nodes.values()].find((n) => n.store.replica(rangeId)?.raw.raft.state === 'leader');
    assert.ok(l !== undefined, `no leader of range ${rangeId}`);
    return l;
  }

  put(node: KvNode, rangeId: number, key: string, value: string): CommandResult {
    let out: CommandResult | undefined;
    const txn = { compare: [], success: [{ type: 'put' as const, put: { key: enc.encode(key), value: enc.encode(value) } }], failure: [] };
    node.requests.propose(
      (requestId) => encodeCommand({ kind: 'txn', requestId, txn }),
      (o) => {
        assert.equal(o.kind, 'applied', `put ${key}`);
        if (o.kind === 'applied') out = o.result as CommandResult;
      },
      rangeId,
    );
    for (let i = 0; i < 50 && out === undefined; i++) this.tick(1);
    assert.ok(out !== undefined, `put ${key} answered`);
    return out;
  }

  split(node: KvNode, rangeId: number, key: string): { left: RangeDescriptor; right: RangeDescriptor } | TesseraError {
    let out: { left: RangeDescriptor; right: RangeDescriptor } | TesseraError | undefined;
    node.splitRange(rangeId, enc.encode(key), (o) => (out = o));
    for (let i = 0; i < 50 && out === undefined; i++) this.tick(1);
    assert.ok(out !== undefined, 'split answered');
    return out;
  }

  /** The value of `key` as the node's range holding it has applied it. */
  value(id: NodeId, key: string): string | undefined {
    const node = this.nodes.get(id) as KvNode;
    const rangeId = node.router.rangeOf(enc.encode(key));
    const kv = node.stateMachineOf(rangeId).mvcc.range({ key: enc.encode(key) }).kvs[0];
    return kv === undefined ? undefined : dec.decode(kv.value);
  }

  merge(node: KvNode, leftId: number): { merged: RangeDescriptor; rightRangeId: RangeId } | TesseraError {
    let out: { merged: RangeDescriptor; rightRangeId: RangeId } | TesseraError | undefined;
    node.mergeRanges(leftId, (o) => (out = o));
    for (let i = 0; i < 600 && out === undefined; i++) this.tick(1);
    assert.ok(out !== undefined, 'merge answered');
    return out;
  }
}

/** The node's routable ranges as `id:[start,end)`. */
export function bounds(node: KvNode): string[] {
  return node.router.list().map((r) => `${r.rangeId}:[${dec.decode(r.bounds.start)},${r.bounds.end === undefined ? '' : dec.decode(r.bounds.end)})`);
}
