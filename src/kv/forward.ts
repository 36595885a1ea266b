import { Packr } from 'msgpackr';
import { TesseraError, type TesseraErrorCode, type Timers, isTesseraError } from '../base/index.js';
import type { KeyValue, MvccEvent, RangeOptions, RangeResult, ResponseOp, TxnRequest, TxnResponse } from '../mvcc/index.js';
import type { NodeId } from '../raft/index.js';
import { rangeOptionsProblem, txnRequestProblem } from './commands.js';
import type { RangeId } from './keys.js';
import { MAX_RANGE_REPLICAS } from './range_map.js';

/**
 * Requests for ranges this node holds no replica of (issue 13: "requests
 * reach the range leader over the peer transport"; ADR 0012). The node that
 * took the client's request sends one operation on one range to a node that
 * holds it, which serves it from its own replica (forwarding a proposal to
 * its leader through Raft, as it would its own client's) and answers. The
 * operations are the parts a client API needs to serve a request over
 * ranges it may not hold: a whole request of one range, and the steps of a
 * read at one revision over many.
 */
export type ForwardOp =
  /** etcd's Range, over keys of this one range. */
  | { readonly op: 'range'; readonly options: RangeOptions; readonly serializable: boolean }
  /** etcd's Txn, every key of it in this one range (a write is proposed, a read-only one served as a read). */
  | { readonly op: 'txn'; readonly request: TxnRequest }
  /** The range's current revision, after a read barrier unless `serializable`. */
  | { readonly op: 'current'; readonly serializable: boolean }
  /** A part of a read over many ranges: the range closed at `options.revision` (> 0), then read at it. */
  | { readonly op: 'read-at'; readonly options: RangeOptions }
  /** The range closed at `revision`, then compacted at it (etcd's Compact over many ranges). */
  | { readonly op: 'compact'; readonly revision: number }
  /** The range's members as its leader knows them (replica GC asks before dropping a replica, ADR 0012). */
  | { readonly op: 'members' }
  /**
   * A snapshot of the range, sent by its leader to the calling node now if
   * the leader applied through `fromIndex` (a replica held at a merge it
   * cannot apply, ADR 0014); the answer is the snapshot's index.
   */
  | { readonly op: 'snapshot'; readonly fromIndex: number }
  /**
   * A page of the range's history for a watch on a node that holds no
   * replica of it (a remote range feed, ADR 0013): the changes to keys in
   * [key, rangeEnd) from `fromRevision` on, up to the serving replica's
   * current revision. With `waitMs`, a replica with nothing at or past
   * `fromRevision` waits that long for it (a long poll); with `closeTo`, it
   * first has the range closed at a revision at least that high.
   */
  | { readonly op: 'events'; readonly key: Uint8Array; readonly rangeEnd: Uint8Array | undefined; readonly fromRevision: number; readonly prevKv: boolean; readonly waitMs: number; readonly closeTo: number };

/**
 * A page of a range's history (the `events` op): the changes in
 * [fromRevision, nextRevision), complete for the keys asked, from a replica
 * whose current revision was `currentRevision` (every change of the range at
 * or below it was applied there) and compacted at `compactedRevision`. A
 * `fromRevision` below the compacted revision gets no events.
 */
export interface EventsPage {
  readonly events: readonly MvccEvent[];
  readonly nextRevision: number;
  readonly currentRevision: number;
  readonly compactedRevision: number;
}

/** The longest a remote range feed's long poll waits on the serving node. */
export const MAX_FEED_WAIT_MS = 10_000;

/** What answers an op: a RangeResult, a TxnResponse, a revision (`current`, `compact`), node ids (`members`), a log index (`snapshot`), or a history page (`events`). */
export type ForwardValue = RangeResult | TxnResponse | number | readonly number[] | EventsPage;

/** A node-level message between forwarders: a call on a range, or its reply (a packed ForwardOp or outcome). */
export type ForwardMessage =
  | { readonly kind: 'call'; readonly id: string; readonly rangeId: RangeId; readonly body: Uint8Array }
  | { readonly kind: 'reply'; readonly id: string; readonly body: Uint8Array };

/** A forwarded request waits this much longer than the request timeout, so the serving node's own deadline answers first. */
export const FORWARD_GRACE_MS = 1_000;

/** The longest call id (a node's request id prefix and a counter). */
export const MAX_FORWARD_ID_BYTES = 128;
/** Calls this node has outstanding at once; past it a request is refused (RESOURCE_EXHAUSTED) rather than queued without bound. */
export const MAX_FORWARD_OUTSTANDING = 10_000;
/** Calls from peers being served at once on this node; past it a call is answered RESOURCE_EXHAUSTED. */
export const MAX_FORWARD_SERVING = 10_000;

/** Serves a peer's op on a range this node holds (the client API of this node). */
export type ForwardHandler = (rangeId: RangeId, op: ForwardOp, from: NodeId) => Promise<ForwardValue>;

export interface ForwarderOptions {
  readonly nodeId: NodeId;
  readonly send: (to: NodeId, message: ForwardMessage) => void;
  readonly timers: Timers;
  /** Unique per start of the node, so a late reply to an earlier boot's call matches nothing. */
  readonly idPrefix: string;
  /** The leader this node knows of for a range it holds, told to callers with each reply (0 or absent: none). */
  readonly leaderOf?: (rangeId: RangeId) => NodeId | undefined;
}

/** Ranges whose leader a node remembers from replies at most; past it the memory starts again. */
export const MAX_LEADER_HINTS = 100_000;

// Maps, not records: a body must decode without state shared with the sender.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** The error codes a reply may carry; any other becomes RANGE_UNAVAILABLE (a peer's word is not trusted to name a bug). */
const REPLY_CODES: ReadonlySet<string> = new Set<TesseraErrorCode>([
  'RANGE_MISMATCH', 'RANGE_UNAVAILABLE', 'NOT_LEADER', 'TIMEOUT', 'RESOURCE_EXHAUSTED', 'CLOSED', 'STORAGE_FAILED', 'CROSS_RANGE',
  'INVALID_ARGUMENT', 'ALREADY_EXISTS', 'LEASE_NOT_FOUND', 'COMPACTED', 'FUTURE_REVISION', 'EMPTY_KEY', 'KEY_NOT_FOUND',
  'VALUE_PROVIDED', 'LEASE_PROVIDED', 'TOO_MANY_OPS', 'DUPLICATE_KEY', 'INVALID_SORT_OPTION',
]);

/**
 * A node's side of forwarding: `call` sends an op to a node holding the
 * range and settles when it replies or the deadline passes (TIMEOUT: the
 * outcome of a write is then unknown, as for any proposal); `receive` takes
 * a peer's call (served by the handler) or reply. Everything a peer sends
 * is checked before use: a malformed call is answered INVALID_ARGUMENT, a
 * malformed reply fails the call with RANGE_UNAVAILABLE.
 */
export class Forwarder {
  private seq = 0;
  private serving = 0;
  private readonly outstanding = new Map<string, { readonly op: ForwardOp['op']; readonly rangeId: RangeId; readonly settle: (outcome: ForwardValue | TesseraError) => void }>();
  private handler: ForwardHandler | undefined;
  /** Per range, the leader the last node that answered for it knew of. */
  private readonly hints = new Map<RangeId, NodeId>();
  readonly stats = { calls: 0, served: 0, timeouts: 0, refused: 0 };

  constructor(private readonly o: ForwarderOptions) {}

  /** The leader of a range another node named in its last reply for it, if any. */
  leaderHint(rangeId: RangeId): NodeId | undefined {
    return this.hints.get(rangeId);
  }

  /** Whether a call is out or a peer's call is being served (the simulator runs promise continuations while so). */
  get busy(): boolean {
    return this.serving > 0 || this.outstanding.size > 0;
  }

  /** The client API that serves peers' calls; until it is set, calls are answered RANGE_UNAVAILABLE. */
  serveWith(handler: ForwardHandler): void {
    this.handler = handler;
  }

  call(to: NodeId, rangeId: RangeId, op: ForwardOp, timeoutMs: number): Promise<ForwardValue> {
    if (this.outstanding.size >= MAX_FORWARD_OUTSTANDING) return Promise.reject(new TesseraError('RESOURCE_EXHAUSTED', `too many requests forwarded to other nodes (${MAX_FORWARD_OUTSTANDING})`));
    const id = `${this.o.idPrefix}.fwd:${++this.seq}`;
    this.stats.calls++;
    return new Promise<ForwardValue>((resolve, reject) => {
      const timer = this.o.timers.after(timeoutMs, () => {
        this.stats.timeouts++;
        // A leader that does not answer is no leader to send the next call to.
        if (this.hints.get(rangeId) === to) this.hints.delete(rangeId);
        settle(new TesseraError('TIMEOUT', `node ${to} did not answer a ${op.op} on range ${rangeId} within ${timeoutMs} ms`));
      });
      const settle = (outcome: ForwardValue | TesseraError): void => {
        if (!this.outstanding.delete(id)) return;
        timer.cancel();
        if (outcome instanceof TesseraError) reject(outcome);
        else resolve(outcome);
      };
      this.outstanding.set(id, { op: op.op, rangeId, settle });
      this.o.send(to, { kind: 'call', id, rangeId, body: packr.pack(op) });
    });
  }

  /** A peer's message; the transport checked its frame (kind, id, range id, body bytes), the body is checked here. */
  receive(from: NodeId, message: ForwardMessage): void {
    if (message.kind === 'call') return this.serve(from, message.id, message.rangeId, message.body);
    const waiting = this.outstanding.get(message.id);
    if (waiting === undefined) return; // timed out, or from an earlier boot
    const { outcome, leader } = readReply(waiting.op, message.body);
    if (leader !== undefined) {
      if (this.hints.size >= MAX_LEADER_HINTS) this.hints.clear();
      this.hints.set(waiting.rangeId, leader);
    } else {
      // The node knows no leader: the hint may name one that lost leadership or left the range,
      // and kept, it would have every next call go there first (seed 2003 under placement: a
      // removed leader's node, asked first for good, answered NOT_LEADER each time).
      this.hints.delete(waiting.rangeId);
    }
    waiting.settle(outcome);
  }

  private serve(from: NodeId, id: string, rangeId: RangeId, body: Uint8Array): void {
    const reply = (outcome: { ok: true; value: ForwardValue } | { ok: false; code: string; message: string }): void => {
      const leader = this.o.leaderOf?.(rangeId) ?? 0;
      this.o.send(from, { kind: 'reply', id, body: packr.pack(leader > 0 ? { ...outcome, leader } : outcome) });
    };
    const op = decodeOp(body);
    if (typeof op === 'string') return reply({ ok: false, code: 'INVALID_ARGUMENT', message: `malformed forwarded request: ${op}` });
    if (this.handler === undefined) return reply({ ok: false, code: 'RANGE_UNAVAILABLE', message: 'this node is not serving requests yet' });
    if (this.serving >= MAX_FORWARD_SERVING) {
      this.stats.refused++;
      return reply({ ok: false, code: 'RESOURCE_EXHAUSTED', message: `too many forwarded requests being served (${MAX_FORWARD_SERVING})` });
    }
    this.serving++;
    this.stats.served++;
    this.handler(rangeId, op, from).then(
      (value) => {
        this.serving--;
        reply({ ok: true, value });
      },
      (error: unknown) => {
        this.serving--;
        if (isTesseraError(error)) reply({ ok: false, code: error.code, message: error.message });
        else reply({ ok: false, code: 'RANGE_UNAVAILABLE', message: `forwarded request failed: ${error instanceof Error ? error.message : String(error)}` });
      },
    );
  }
}

/** A call's op, or why it is malformed. */
export function decodeOp(body: Uint8Array): ForwardOp | string {
  let v: unknown;
  try {
    v = packr.unpack(body);
  } catch {
    return 'not msgpack';
  }
  if (!isObj(v)) return 'not a map';
  switch (v['op']) {
    case 'range': {
      const problem = rangeOptionsProblem(v['options']);
      if (problem !== undefined || typeof v['serializable'] !== 'boolean') return problem ?? 'range serializable';
      return { op: 'range', options: v['options'] as RangeOptions, serializable: v['serializable'] };
    }
    case 'txn': {
      const problem = txnRequestProblem(v['request']);
      return problem ?? { op: 'txn', request: v['request'] as TxnRequest };
    }
    case 'current':
      return typeof v['serializable'] === 'boolean' ? { op: 'current', serializable: v['serializable'] } : 'current serializable';
    case 'read-at': {
      const problem = rangeOptionsProblem(v['options']);
      if (problem !== undefined) return problem;
      const options = v['options'] as RangeOptions;
      return (options.revision ?? 0) > 0 ? { op: 'read-at', options } : 'read-at revision';
    }
    case 'compact':
      return Number.isSafeInteger(v['revision']) && (v['revision'] as number) > 0 ? { op: 'compact', revision: v['revision'] as number } : 'compact revision';
    case 'members':
      return { op: 'members' };
    case 'snapshot':
      return Number.isSafeInteger(v['fromIndex']) && (v['fromIndex'] as number) > 0 ? { op: 'snapshot', fromIndex: v['fromIndex'] as number } : 'snapshot index';
    case 'events':
      return eventsOp(v);
    default:
      return 'unknown op';
  }
}

function eventsOp(v: Record<string, unknown>): ForwardOp | string {
  const { key, rangeEnd, fromRevision, prevKv, waitMs, closeTo } = v;
  if (!(key instanceof Uint8Array) || !(rangeEnd === undefined || rangeEnd instanceof Uint8Array)) return 'events key or range end';
  if (!Number.isSafeInteger(fromRevision) || (fromRevision as number) < 1 || !isRevision(closeTo)) return 'events revisions';
  if (typeof prevKv !== 'boolean' || !Number.isSafeInteger(waitMs) || (waitMs as number) < 0 || (waitMs as number) > MAX_FEED_WAIT_MS) return 'events prev_kv or wait';
  return { op: 'events', key, rangeEnd, fromRevision: fromRevision as number, prevKv, waitMs: waitMs as number, closeTo: closeTo as number };
}

/** A reply's outcome for an op of kind `op`, checked: a value of the wrong shape is refused, never handed on. */
export function decodeReply(op: ForwardOp['op'], body: Uint8Array): ForwardValue | TesseraError {
  return readReply(op, body).outcome;
}

/** A reply's outcome, and the range's leader it names (a positive safe integer), if any. */
function readReply(op: ForwardOp['op'], body: Uint8Array): { readonly outcome: ForwardValue | TesseraError; readonly leader: NodeId | undefined } {
  let v: unknown;
  try {
    v = packr.unpack(body);
  } catch {
    return { outcome: malformed('not msgpack'), leader: undefined };
  }
  const leader = isObj(v) && Number.isSafeInteger(v['leader']) && (v['leader'] as number) > 0 ? (v['leader'] as number) : undefined;
  return { outcome: outcomeOf(op, v), leader };
}

function outcomeOf(op: ForwardOp['op'], v: unknown): ForwardValue | TesseraError {
  if (!isObj(v) || typeof v['ok'] !== 'boolean') return malformed('not an outcome');
  if (!v['ok']) {
    const code = v['code'];
    const message = typeof v['message'] === 'string' ? v['message'].slice(0, 1024) : '';
    return new TesseraError(typeof code === 'string' && REPLY_CODES.has(code) ? (code as TesseraErrorCode) : 'RANGE_UNAVAILABLE', message);
  }
  const value = v['value'];
  switch (op) {
    case 'range':
    case 'read-at':
      return isRangeResult(value) ? value : malformed('range result');
    case 'txn':
      return isTxnResponse(value, 0) ? value : malformed('txn response');
    case 'current':
    case 'compact':
    case 'snapshot':
      return Number.isSafeInteger(value) && (value as number) >= 0 ? (value as number) : malformed('revision');
    case 'events':
      return isEventsPage(value) ? value : malformed('events page');
    case 'members':
      return Array.isArray(value) && value.length <= MAX_RANGE_REPLICAS && value.every((id) => Number.isSafeInteger(id) && (id as number) > 0) ? (value as number[]) : malformed('members');
  }
}

function malformed(what: string): TesseraError {
  return new TesseraError('RANGE_UNAVAILABLE', `malformed forwarded reply (${what})`);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function isRevision(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function isKeyValue(v: unknown): v is KeyValue {
  return isObj(v) && v['key'] instanceof Uint8Array && v['value'] instanceof Uint8Array && isRevision(v['createRevision']) && isRevision(v['modRevision']) && isRevision(v['version']) && Number.isSafeInteger(v['lease']);
}

function isKeyValues(v: unknown): v is KeyValue[] {
  return Array.isArray(v) && v.every(isKeyValue);
}

function isEvent(v: unknown): v is MvccEvent {
  return isObj(v) && (v['type'] === 'PUT' || v['type'] === 'DELETE') && isKeyValue(v['kv']) && (v['prevKv'] === undefined || isKeyValue(v['prevKv']));
}

/** A history page whose events are in revision order inside [fromRevision, nextRevision) (checked by the feed, which knows fromRevision). */
function isEventsPage(v: unknown): v is EventsPage {
  if (!isObj(v) || !Array.isArray(v['events']) || !v['events'].every(isEvent)) return false;
  return isRevision(v['nextRevision']) && isRevision(v['currentRevision']) && isRevision(v['compactedRevision']);
}

function isRangeResult(v: unknown): v is RangeResult {
  return isObj(v) && isKeyValues(v['kvs']) && typeof v['more'] === 'boolean' && isRevision(v['count']) && isRevision(v['revision']);
}

/** Nesting a reply may have: the request it answers was checked against the same depth (commands.ts). */
const MAX_REPLY_DEPTH = 64;

function isTxnResponse(v: unknown, depth: number): v is TxnResponse {
  if (depth > MAX_REPLY_DEPTH || !isObj(v) || typeof v['succeeded'] !== 'boolean' || !isRevision(v['revision']) || !Array.isArray(v['responses'])) return false;
  return v['responses'].every((r) => isResponseOp(r, depth));
}

function isResponseOp(v: unknown, depth: number): v is ResponseOp {
  if (!isObj(v)) return false;
  const body = v[v['type'] as string];
  switch (v['type']) {
    case 'range':
      return isRangeResult(body);
    case 'put':
      return isObj(body) && isRevision(body['revision']) && (body['prevKv'] === undefined || isKeyValue(body['prevKv']));
    case 'deleteRange':
      return isObj(body) && isRevision(body['deleted']) && isRevision(body['revision']) && isKeyValues(body['prevKvs']);
    case 'txn':
      return isTxnResponse(body, depth + 1);
    default:
      return false;
  }
}
