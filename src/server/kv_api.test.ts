import { realTimers } from './timers.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { TesseraError, isTesseraError } from '../base/index.js';
import { encodeCommand } from '../kv/commands.js';
import { type CommandResult, MvccStateMachine } from '../kv/mvcc_state_machine.js';
import type { ProposalOutcome, Store } from '../kv/store.js';
import { INITIAL_REVISION, type RangeOptions, type RequestOp, type TxnRequest, type TxnResponse, isMvccRefusal } from '../mvcc/index.js';
import type { Entry } from '../raft/index.js';
import { MemoryEngine } from '../storage/memory.js';
import { AdminService } from './etcd/admin_services.js';
import { toEtcdStatus } from './etcd/errors.js';
import { KvApi } from '../kv/index.js';
import { DEFAULT_RANGE, startNode } from './node.js';

const enc = new TextEncoder();
const RANGE = 1;

const get = (key: string, extra: Partial<RangeOptions> = {}): RequestOp => ({ type: 'range', range: { key: enc.encode(key), ...extra } });
const put = (key: string, value: string): RequestOp => ({ type: 'put', put: { key: enc.encode(key), value: enc.encode(value) } });
const txn = (request: Partial<TxnRequest>): TxnRequest => ({ compare: [], success: [], failure: [], ...request });
const nested = (request: Partial<TxnRequest>): RequestOp => ({ type: 'txn', txn: txn(request) });
const versionIs = (key: string, version: number) => ({ key: enc.encode(key), target: 'VERSION' as const, result: 'EQUAL' as const, operand: version });
const serializable = { serializable: true };

/**
 * A Store stand-in without Raft: a proposal is applied at once by the real
 * state machine (what every replica does with the committed entry), and a
 * read barrier answers at once, or with `barrierError`. It counts both, so a
 * test can tell which path a request took.
 */
class DirectStore {
  proposals = 0;
  barriers = 0;
  barrierError: TesseraError | undefined;
  /** The entries applied, as the replica's log would hold them: the state machine reads its dedupe window from it. */
  private readonly log: Entry[] = [];

  constructor(
    private readonly engine: MemoryEngine,
    private readonly sm: MvccStateMachine,
  ) {
    sm.attachLog({ firstIndex: () => 1, entries: (lo, hi) => this.log.slice(lo - 1, hi - 1) });
  }

  propose(rangeId: number, _requestId: string, data: Uint8Array, done: (outcome: ProposalOutcome) => void): void {
    assert.equal(rangeId, RANGE);
    this.proposals++;
    const batch = this.engine.newBatch();
    const entry: Entry = { term: 1, index: this.log.length + 1, type: 'normal', data };
    this.log.push(entry);
    const result = this.sm.apply(batch, entry);
    this.engine.commit(batch, () => {});
    queueMicrotask(() => done({ kind: 'applied', result }));
  }

  linearizableRead(rangeId: number, done: (error: TesseraError | undefined) => void): void {
    assert.equal(rangeId, RANGE);
    this.barriers++;
    queueMicrotask(() => done(this.barrierError));
  }

  abandon(): void {}

  /** What the proposed path answers for `request`: the state machine applying it as a committed entry. */
  proposeDirectly(request: TxnRequest): Promise<CommandResult> {
    return new Promise((resolve) => {
      const requestId = `direct:${this.log.length}`;
      this.propose(RANGE, requestId, encodeCommand({ kind: 'txn', requestId, txn: request }), (o) => resolve((o as { result: CommandResult }).result));
    });
  }
}

function setup(requestTimeoutMs = 5_000): { kv: KvApi; store: DirectStore; sm: MvccStateMachine } {
  const engine = new MemoryEngine({ scheduleSync: (flush) => queueMicrotask(flush) });
  const sm = new MvccStateMachine(engine, RANGE);
  const store = new DirectStore(engine, sm);
  // Only propose, linearizableRead and abandon are reached; the cast stands in for the rest of Store.
  const kv = new KvApi({ timers: realTimers, store: store as unknown as Store, stateMachine: sm, rangeId: RANGE, requestTimeoutMs, requestIdPrefix: 'test' });
  return { kv, store, sm };
}

/** A txn's response, or its refusal as the MVCC refusal code the proposed path reports too. */
async function outcome(answer: Promise<TxnResponse>): Promise<TxnResponse | { error: string }> {
  try {
    return await answer;
  } catch (error) {
    if (isMvccRefusal(error)) return { error: error.code };
    throw error;
  }
}

function proposedOutcome(result: CommandResult): TxnResponse | { error: string } {
  if (result.kind === 'txn') return result.response;
  assert.equal(result.kind, 'error');
  return { error: (result as { code: string }).code };
}

test('KvApi: a read-only txn is served as a read, never proposed, and answers what the proposed txn answers', async () => {
  const { kv, store } = setup();
  const fresh = await kv.txn(txn({ success: [get('a')] }));
  assert.equal(fresh.revision, INITIAL_REVISION, 'a fresh store answers at revision 1, as etcd does');
  await kv.txn(txn({ success: [put('a', '1'), put('b', '1')] }));
  await kv.txn(txn({ success: [put('a', '2')] }));
  await kv.compact(INITIAL_REVISION + 1);
  const readOnly: TxnRequest[] = [
    txn({}),
    txn({ compare: [versionIs('a', 2)] }),
    txn({ compare: [versionIs('a', 2)], success: [get('a'), get('a', { rangeEnd: Uint8Array.of(0), countOnly: true })], failure: [get('b')] }),
    txn({ compare: [versionIs('a', 9)], success: [get('a')], failure: [get('b', { revision: INITIAL_REVISION + 1 }), get('a', { keysOnly: true })] }),
    txn({ success: [nested({ compare: [versionIs('b', 1)], success: [get('b'), nested({ failure: [get('a')] })] })] }),
    txn({ success: [get('a', { revision: INITIAL_REVISION + 9 })] }),
    txn({ success: [nested({ success: [get('a', { revision: INITIAL_REVISION })] })] }),
  ];
  for (const request of readOnly) {
    const before = { proposals: store.proposals, barriers: store.barriers };
    const read = await outcome(kv.txn(request));
    assert.deepEqual({ proposals: store.proposals, barriers: store.barriers }, { proposals: before.proposals, barriers: before.barriers + 1 }, 'one read barrier, no proposal');
    const proposed = proposedOutcome(await store.proposeDirectly(request));
    assert.deepEqual(read, proposed);
    if (!('error' in read)) assert.equal(read.revision, kv.currentRevision(), 'the header carries the current revision');
  }
  assert.deepEqual(
    await Promise.all([readOnly[5], readOnly[6]].map((r) => outcome(kv.txn(r!)))),
    [{ error: 'FUTURE_REVISION' }, { error: 'COMPACTED' }],
  );
});

test('KvApi: a command the state machine refuses comes back as its TesseraError code, and etcd gets the same status as for the check itself', async () => {
  const { kv } = setup();
  await kv.txn(txn({ success: [put('a', '1')] }));
  await kv.txn(txn({ success: [put('a', '2')] }));
  await kv.compact(INITIAL_REVISION + 1);
  const key = enc.encode('k');
  const refused: [string, () => Promise<unknown>, string][] = [
    ['a put on a lease that does not exist', () => kv.txn(txn({ success: [{ type: 'put', put: { key, value: key, lease: 7 } }] })), 'LEASE_NOT_FOUND'],
    ['a put keeping the value of a missing key', () => kv.txn(txn({ success: [{ type: 'put', put: { key, value: new Uint8Array(0), ignoreValue: true } }] })), 'KEY_NOT_FOUND'],
    ['one key put twice', () => kv.txn(txn({ success: [put('k', '1'), put('k', '2')] })), 'DUPLICATE_KEY'],
    ['an empty key', () => kv.txn(txn({ success: [put('', '1')] })), 'EMPTY_KEY'],
    ['a compaction already done', () => kv.compact(INITIAL_REVISION + 1), 'COMPACTED'],
    ['a compaction of the future', () => kv.compact(INITIAL_REVISION + 50), 'FUTURE_REVISION'],
    ['a revoke of a lease that does not exist', () => kv.leaseRevoke(99), 'LEASE_NOT_FOUND'],
  ];
  for (const [what, run, code] of refused) {
    const error = await run().then(
      () => assert.fail(`${what}: was not refused`),
      (e: unknown) => e,
    );
    assert.ok(isTesseraError(error), `${what}: ${String(error)}`);
    assert.equal(error.code, code, what);
    // The mapping is by code: the applied refusal answers exactly what the same refusal thrown before proposing answers.
    const bug = (e: unknown): void => assert.fail(`${what}: reported as a bug: ${String(e)}`);
    assert.deepEqual(toEtcdStatus(error, bug), toEtcdStatus(new TesseraError(error.code, 'thrown before proposing'), bug), what);
  }
});

test('KvApi: a txn that may write, on any branch or in a nested txn, is proposed', async () => {
  const { kv, store } = setup();
  const writing: TxnRequest[] = [
    txn({ success: [put('a', '1')] }),
    txn({ compare: [versionIs('a', 1)], success: [get('a')], failure: [put('untaken', 'x')] }),
    txn({ success: [get('a'), nested({ failure: [{ type: 'deleteRange', deleteRange: { key: enc.encode('z') } }] })] }),
  ];
  for (const request of writing) {
    const before = store.proposals;
    await kv.txn(request);
    assert.equal(store.proposals, before + 1);
  }
  assert.equal(kv.currentRevision(), INITIAL_REVISION + 1, 'only the first one changed something');
});

test('KvApi: a read-only txn whose Ranges are all serializable needs no read barrier; one linearizable Range does', async () => {
  // A barrier refused for want of a leader is asked again until the deadline, then refused as NOT_LEADER.
  const { kv, store } = setup(200);
  await kv.txn(txn({ success: [put('a', '1')] }));
  store.barrierError = new TesseraError('NOT_LEADER', 'etcdserver: no leader');
  const before = store.barriers;
  const served = await kv.txn(txn({ success: [get('a', serializable), nested({ failure: [get('b', serializable)] })] }));
  assert.equal(store.barriers, before, 'no barrier');
  assert.equal(served.responses[0]?.type === 'range' && served.responses[0].range.kvs.length, 1);
  await assert.rejects(kv.txn(txn({ success: [get('a', serializable)], failure: [get('b')] })), (e: unknown) => isTesseraError(e, 'NOT_LEADER'));
  await assert.rejects(kv.txn(txn({ compare: [versionIs('a', 1)] })), (e: unknown) => isTesseraError(e, 'NOT_LEADER'), 'compares only: linearizable');
  assert.equal(store.proposals, 1);
});

test('KvApi: on a running node a read-only txn leaves the Raft log alone; a write appends one entry', async () => {
  const node = await startNode({
    name: 'solo',
    engine: 'memory',
    listenPeer: '127.0.0.1:0',
    listenClient: '127.0.0.1:0',
    logger: pino({ level: 'silent' }),
    tickMs: 20,
    electionTicks: 10,
    heartbeatTicks: 1,
    clientServer: false,
  });
  try {
    const deadline = Date.now() + 5_000;
    while (node.status().state !== 'leader') {
      assert.ok(Date.now() < deadline, 'the node did not become leader');
      await new Promise((r) => setTimeout(r, 10));
    }
    const lastIndex = (): number => {
      const replica = node.store.replica(DEFAULT_RANGE);
      assert.ok(replica !== undefined);
      return replica.raw.raft.raftLog.lastIndex();
    };
    const written = await node.kv.txn(txn({ success: [put('k', 'v')] }));
    assert.equal(written.revision, INITIAL_REVISION + 1);
    const before = lastIndex();
    for (const request of [
      txn({ compare: [versionIs('k', 1)], success: [get('k')], failure: [get('other')] }),
      txn({ success: [get('k', serializable)] }),
      txn({ success: [nested({ success: [get('k')] })] }),
    ]) {
      const r = await node.kv.txn(request);
      assert.equal(r.revision, written.revision, 'the header carries the current revision');
      assert.equal(lastIndex(), before, 'nothing was appended to the log');
    }
    await node.kv.txn(txn({ success: [put('k', 'w')] }));
    assert.equal(lastIndex(), before + 1);
  } finally {
    await node.close();
  }
});

test('KvApi: dbSizeBytes is the LMDB engine\'s size, which grows with what is written; Maintenance.Status reports it as dbSize and dbSizeInUse', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tessera-kvapi-'));
  const node = await startNode({
    name: 'solo',
    dataDir,
    engine: 'lmdb',
    listenPeer: '127.0.0.1:0',
    listenClient: '127.0.0.1:0',
    logger: pino({ level: 'silent' }),
    tickMs: 20,
    electionTicks: 10,
    heartbeatTicks: 1,
    clientServer: false,
  });
  try {
    const empty = node.kv.dbSizeBytes();
    assert.ok(empty > 0, 'an LMDB environment holds at least its meta pages');
    const valueBytes = 256 * 1024;
    const deadline = Date.now() + 5_000;
    while (node.status().state !== 'leader') {
      assert.ok(Date.now() < deadline, 'the node did not become leader');
      await new Promise((r) => setTimeout(r, 10));
    }
    await node.kv.txn(txn({ success: [{ type: 'put', put: { key: enc.encode('big'), value: new Uint8Array(valueBytes).fill(7) } }] }));
    // The size counts flushed pages; the write is in the log and in the MVCC store, flushed shortly after it applies.
    while (node.kv.dbSizeBytes() < empty + valueBytes) {
      assert.ok(Date.now() < deadline, `size ${node.kv.dbSizeBytes()} did not grow by ${valueBytes} from ${empty}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const admin = new AdminService(node.kv, { nodeId: node.nodeId, rangeId: DEFAULT_RANGE }, (revision) => ({ revision }), () => '127.0.0.1:0');
    const status = await admin.status();
    assert.ok(typeof status.dbSize === 'number' && status.dbSize >= empty + valueBytes, `dbSize ${String(status.dbSize)}`);
    assert.equal(status.dbSizeInUse, status.dbSize);
  } finally {
    await node.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
