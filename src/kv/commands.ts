import { Packr } from 'msgpackr';
import { TesseraError } from '../base/index.js';
import { MAX_META_UPDATE_DESCRIPTORS } from './meta_table.js';
import { localityProblem } from './members.js';
import { COMPARE_RESULTS, COMPARE_TARGETS, SORT_ORDERS, SORT_TARGETS, type PrepareRequest, type TxnRequest, MAX_PREPARE_KEYS, prepareProblem, txnIdProblem } from '../mvcc/index.js';

/**
 * Commands replicated through a range's log. Each carries the id of the
 * request it answers, so the proposing node can route the result back and
 * a command delivered twice takes effect once.
 */
export type KvCommand =
  | { readonly kind: 'txn'; readonly requestId: string; readonly txn: TxnRequest }
  | { readonly kind: 'compact'; readonly requestId: string; readonly revision: number }
  | { readonly kind: 'lease-grant'; readonly requestId: string; readonly id: number; readonly ttlSeconds: number }
  | { readonly kind: 'lease-revoke'; readonly requestId: string; readonly id: number }
  | { readonly kind: 'lease-checkpoint'; readonly requestId: string; readonly checkpoints: readonly { readonly id: number; readonly remainingMs: number }[] }
  /** etcd's MemberUpdate: new peer URLs for a member (its Raft membership does not change). */
  | { readonly kind: 'member-update'; readonly requestId: string; readonly id: number; readonly peerUrls: readonly string[] }
  /** A member publishes its name and client URLs once it serves (etcd's publish). */
  | { readonly kind: 'member-attrs'; readonly requestId: string; readonly id: number; readonly name: string; readonly clientUrls: readonly string[]; readonly locality?: string }
  /** Marks a member as being decommissioned: the other ranges drop it first, then range 1 removes it (placement's Drainer). */
  | { readonly kind: 'member-decommission'; readonly requestId: string; readonly id: number }
  /** Hands out a fresh range id (on the metadata range, which keeps the counter). */
  | { readonly kind: 'alloc-range-id'; readonly requestId: string }
  /**
   * Splits the range at `splitKey`: it keeps the keys below, range `newRangeId`
   * gets the rest. Applied only if the range's epoch version is still
   * `version` (the proposer chose the key from that descriptor).
   */
  | { readonly kind: 'split'; readonly requestId: string; readonly splitKey: Uint8Array; readonly newRangeId: number; readonly version: number }
  /** The meta range's TSO window (ADR 0009 §2): revisions below `bound` may be handed out (revisions.ts). */
  | { readonly kind: 'tso-window'; readonly requestId: string; readonly bound: number }
  /**
   * Closes the range at the entry's revision stamp (ADR 0009 §4): the range's
   * revision rises to it without a change, so no later write in the range
   * takes a revision at or below it. A watch or a read over many ranges waits
   * for each to be closed at its revision.
   */
  | { readonly kind: 'close'; readonly requestId: string }
  /** Brings the meta range's descriptor table up to date with ranges that changed (meta_table.ts); encoded descriptors. */
  | { readonly kind: 'meta-update'; readonly requestId: string; readonly descriptors: readonly Uint8Array[] }
  /**
   * The first step of a merge (ADR 0009 §6): the range, the right-hand side
   * of a merge, stops serving. Applied only at epoch version `version`;
   * every later command is refused (RANGE_MISMATCH), membership changes
   * too, until the left neighbour's merge retires the range or an
   * `unfreeze` ends the freeze. It names the one left range, at the one
   * epoch version, that may take it over (ADR 0014).
   */
  | { readonly kind: 'freeze'; readonly requestId: string; readonly version: number; readonly leftRangeId: number; readonly leftVersion: number }
  /**
   * The second step (ADR 0009 §6), in the left range's log: the range takes
   * over `rightRangeId`, frozen at version `rightVersion` by its entry at
   * `rightFrozenIndex` (of term `rightFrozenTerm`). A replica applies it only
   * once its replica of the right range applied that entry, and only while
   * the range's membership is still at `leftConfVersion` (every replica of
   * it then held the right range's log through the freeze) and its epoch
   * version is still `leftVersion` (the version the freeze names).
   */
  | { readonly kind: 'merge'; readonly requestId: string; readonly rightRangeId: number; readonly rightVersion: number; readonly rightFrozenIndex: number; readonly rightFrozenTerm: number; readonly leftConfVersion: number; readonly leftVersion: number }
  /**
   * The way back from a freeze, first step (ADR 0014), in the left range's
   * log: if the range is still at epoch version `leftVersion` it moves to
   * the next version, so no merge naming `leftVersion` (the freeze of
   * `rightRangeId` names it) applies after this entry.
   */
  | { readonly kind: 'abort-merge'; readonly requestId: string; readonly rightRangeId: number; readonly leftVersion: number }
  /**
   * The way back, second step (ADR 0014), in the frozen range's log: the
   * freeze at `frozenIndex`/`frozenTerm` (version `version`) ends, the range
   * serves again at the next epoch version. Proposed only by a node that
   * saw the merge can no longer apply (KvNode.abortFrozenMerge).
   */
  | { readonly kind: 'unfreeze'; readonly requestId: string; readonly version: number; readonly frozenIndex: number; readonly frozenTerm: number }
  /** A transaction across ranges (ADR 0017; src/mvcc/participant.ts): its intents and read locks in this range, and its PENDING record if the primary is here. */
  | { readonly kind: 'txn-prepare'; readonly requestId: string; readonly prepare: PrepareRequest }
  /** The commit point, in the primary's range: the record becomes COMMITTED at `commitRevision` unless it ended. */
  | { readonly kind: 'txn-commit'; readonly requestId: string; readonly primary: Uint8Array; readonly txnId: string; readonly commitRevision: number }
  /** Aborts a PENDING record; with `ifHeartbeat` ≥ 0, only if its heartbeat is still that (a pusher's expiry, ADR 0017 §5). */
  | { readonly kind: 'txn-abort'; readonly requestId: string; readonly primary: Uint8Array; readonly txnId: string; readonly ifHeartbeat: number }
  | { readonly kind: 'txn-heartbeat'; readonly requestId: string; readonly primary: Uint8Array; readonly txnId: string }
  /** Resolves the transaction's intents on `keys`: at `commitRevision`, or dropped when it is 0. */
  | { readonly kind: 'txn-resolve'; readonly requestId: string; readonly txnId: string; readonly keys: readonly Uint8Array[]; readonly commitRevision: number }
  /** Deletes an ended record once every range resolved the transaction. */
  | { readonly kind: 'txn-forget'; readonly requestId: string; readonly primary: Uint8Array; readonly txnId: string };

const KINDS: ReadonlySet<string> = new Set(['txn', 'compact', 'lease-grant', 'lease-revoke', 'lease-checkpoint', 'member-update', 'member-attrs', 'member-decommission', 'alloc-range-id', 'split', 'tso-window', 'close', 'meta-update', 'freeze', 'merge', 'abort-merge', 'unfreeze', 'txn-prepare', 'txn-commit', 'txn-abort', 'txn-heartbeat', 'txn-resolve', 'txn-forget']);

// Records as maps (no shared structures): an entry must decode the same on any node and after restarts.
const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeCommand(command: KvCommand): Uint8Array {
  return packr.pack(command);
}

export function decodeCommand(data: Uint8Array): KvCommand {
  const command = readCommand(data);
  if (typeof command === 'string') throw new TesseraError('CORRUPT_DATA', `${command} in the log`);
  return command;
}

/**
 * The command `data` holds, or why it holds none. Log entries are
 * checksummed, so a command that fails here was proposed so, by a peer
 * (issue 12: a forwarded proposal comes off the network) or a bug; every
 * replica refuses it alike. Every field is checked, so applying a command
 * that passes never meets a value of the wrong type.
 */
export function readCommand(data: Uint8Array): KvCommand | string {
  let value: unknown;
  try {
    value = packr.unpack(data);
  } catch {
    return 'undecodable command';
  }
  const problem = commandProblem(value);
  return problem === undefined ? (value as KvCommand) : `malformed command: ${problem}`;
}

/** Nesting allowed for txns inside txns; etcd's own op limits keep real ones far shallower. */
const MAX_TXN_DEPTH = 64;

function commandProblem(value: unknown): string | undefined {
  if (!isObj(value) || typeof value['requestId'] !== 'string' || typeof value['kind'] !== 'string' || !KINDS.has(value['kind'])) return 'no request id or kind';
  const c = value;
  switch (c['kind'] as KvCommand['kind']) {
    case 'txn':
      return txnProblem(c['txn'], 0);
    case 'compact':
      return int(c['revision']) ? undefined : 'compact revision';
    case 'lease-grant':
      return int(c['id']) && int(c['ttlSeconds']) ? undefined : 'lease grant';
    case 'lease-revoke':
      return int(c['id']) ? undefined : 'lease revoke';
    case 'lease-checkpoint':
      return Array.isArray(c['checkpoints']) && c['checkpoints'].every((p) => isObj(p) && int(p['id']) && Number.isFinite(p['remainingMs'])) ? undefined : 'lease checkpoint';
    case 'member-update':
      return int(c['id']) && strings(c['peerUrls']) ? undefined : 'member update';
    case 'member-decommission':
      return int(c['id']) ? undefined : 'member decommission';
    case 'member-attrs':
      return int(c['id']) && typeof c['name'] === 'string' && strings(c['clientUrls']) && (c['locality'] === undefined || (typeof c['locality'] === 'string' && localityProblem(c['locality']) === undefined)) ? undefined : 'member attributes';
    case 'alloc-range-id':
    case 'close':
      return undefined;
    case 'split':
      return bytes(c['splitKey']) && positive(c['newRangeId']) && int(c['version']) ? undefined : 'split';
    case 'freeze':
      return int(c['version']) && positive(c['leftRangeId']) && int(c['leftVersion']) ? undefined : 'freeze';
    case 'merge':
      return positive(c['rightRangeId']) && int(c['rightVersion']) && positive(c['rightFrozenIndex']) && positive(c['rightFrozenTerm']) && int(c['leftConfVersion']) && int(c['leftVersion']) ? undefined : 'merge';
    case 'abort-merge':
      return positive(c['rightRangeId']) && int(c['leftVersion']) ? undefined : 'abort merge';
    case 'unfreeze':
      return int(c['version']) && positive(c['frozenIndex']) && positive(c['frozenTerm']) ? undefined : 'unfreeze';
    case 'meta-update':
      return Array.isArray(c['descriptors']) && c['descriptors'].length > 0 && c['descriptors'].length <= MAX_META_UPDATE_DESCRIPTORS && c['descriptors'].every(bytes) ? undefined : 'meta update';
    case 'tso-window':
      return int(c['bound']) && (c['bound'] as number) >= 0 ? undefined : 'tso window';
    case 'txn-prepare':
      return prepareCommandProblem(c['prepare']);
    case 'txn-commit':
      return txnRef(c) && positive(c['commitRevision']) ? undefined : 'txn commit';
    case 'txn-abort':
      return txnRef(c) && int(c['ifHeartbeat']) && (c['ifHeartbeat'] as number) >= -1 ? undefined : 'txn abort';
    case 'txn-heartbeat':
    case 'txn-forget':
      return txnRef(c) ? undefined : 'txn record';
    case 'txn-resolve':
      return txnIdProblem(c['txnId']) === undefined && Array.isArray(c['keys']) && c['keys'].length > 0 && c['keys'].length <= MAX_PREPARE_KEYS && c['keys'].every(nonEmptyBytes) && int(c['commitRevision']) && (c['commitRevision'] as number) >= 0
        ? undefined
        : 'txn resolve';
  }
}

/** A command naming a transaction record: its primary key and id. */
function txnRef(c: Record<string, unknown>): boolean {
  return nonEmptyBytes(c['primary']) && txnIdProblem(c['txnId']) === undefined;
}

/** Why a peer's prepare is malformed: its shape here, its content by prepareProblem. */
function prepareCommandProblem(p: unknown): string | undefined {
  if (!isObj(p) || !Array.isArray(p['writes']) || !Array.isArray(p['reads']) || typeof p['holdsRecord'] !== 'boolean') return 'txn prepare';
  if (!int(p['startRevision']) || !int(p['priority']) || !nonEmptyBytes(p['primary'])) return 'txn prepare';
  if (p['writes'].length + p['reads'].length > MAX_PREPARE_KEYS) return 'txn prepare: too many keys';
  for (const w of p['writes'] as unknown[]) if (!isObj(w) || !nonEmptyBytes(w['key']) || !int(w['sub']) || !isObj(w['write'])) return 'txn prepare write';
  if (!(p['reads'] as unknown[]).every(nonEmptyBytes)) return 'txn prepare read';
  const problem = prepareProblem(p as unknown as PrepareRequest);
  return problem === undefined ? undefined : `txn prepare: ${problem}`;
}

function nonEmptyBytes(v: unknown): boolean {
  return v instanceof Uint8Array && v.byteLength > 0;
}

/** Why a peer's etcd Txn request is malformed, or undefined (the checks a forwarded proposal's txn gets). */
export function txnRequestProblem(t: unknown): string | undefined {
  return txnProblem(t, 0);
}

/** Why a peer's etcd Range options are malformed, or undefined (the checks a txn's Range op gets). */
export function rangeOptionsProblem(options: unknown): string | undefined {
  return opProblem({ type: 'range', range: options }, 0);
}

function txnProblem(t: unknown, depth: number): string | undefined {
  if (depth > MAX_TXN_DEPTH) return 'txn nested too deep';
  if (!isObj(t) || !Array.isArray(t['compare']) || !Array.isArray(t['success']) || !Array.isArray(t['failure'])) return 'txn';
  for (const cmp of t['compare'] as unknown[]) {
    if (!isObj(cmp) || !bytes(cmp['key']) || !optBytes(cmp['rangeEnd']) || !optBytes(cmp['value']) || !optNum(cmp['operand'])) return 'txn compare';
    if (!oneOf(COMPARE_TARGETS, cmp['target']) || !oneOf(COMPARE_RESULTS, cmp['result'])) return 'txn compare';
  }
  for (const op of [...(t['success'] as unknown[]), ...(t['failure'] as unknown[])]) {
    const problem = opProblem(op, depth);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function opProblem(op: unknown, depth: number): string | undefined {
  if (!isObj(op)) return 'txn op';
  const body = op[op['type'] as string];
  switch (op['type']) {
    case 'range':
      return isObj(body) && bytes(body['key']) && optBytes(body['rangeEnd']) && RANGE_NUMBERS.every((k) => optNum(body[k])) && RANGE_FLAGS.every((k) => optBool(body[k])) &&
        (body['sortOrder'] === undefined || oneOf(SORT_ORDERS, body['sortOrder'])) && (body['sortTarget'] === undefined || oneOf(SORT_TARGETS, body['sortTarget']))
        ? undefined
        : 'txn range';
    case 'put':
      return isObj(body) && bytes(body['key']) && bytes(body['value']) && optNum(body['lease']) && optBool(body['prevKv']) && optBool(body['ignoreValue']) && optBool(body['ignoreLease']) ? undefined : 'txn put';
    case 'deleteRange':
      return isObj(body) && bytes(body['key']) && optBytes(body['rangeEnd']) && optBool(body['prevKv']) ? undefined : 'txn delete';
    case 'txn':
      return txnProblem(body, depth + 1);
    default:
      return 'txn op type';
  }
}

const RANGE_NUMBERS = ['revision', 'limit', 'minModRevision', 'maxModRevision', 'minCreateRevision', 'maxCreateRevision'] as const;
const RANGE_FLAGS = ['keysOnly', 'countOnly', 'serializable'] as const;

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}
function bytes(v: unknown): boolean {
  return v instanceof Uint8Array;
}
function optBytes(v: unknown): boolean {
  return v === undefined || v instanceof Uint8Array;
}
function optNum(v: unknown): boolean {
  return v === undefined || Number.isSafeInteger(v);
}
function optBool(v: unknown): boolean {
  return v === undefined || typeof v === 'boolean';
}
function positive(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) > 0;
}
function int(v: unknown): boolean {
  return Number.isSafeInteger(v);
}
function strings(v: unknown): boolean {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}
function oneOf(values: readonly string[], v: unknown): boolean {
  return typeof v === 'string' && values.includes(v);
}
