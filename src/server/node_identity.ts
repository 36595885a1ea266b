import { TesseraError } from '../base/index.js';
import type { NodeId } from '../raft/index.js';
import type { StorageEngine } from '../storage/engine.js';
import { LmdbEngine } from '../storage/lmdb/engine.js';
import { MemoryEngine } from '../storage/memory.js';
import { messageOf } from './errors.js';

/**
 * Which node and cluster a data directory belongs to. It is written once,
 * durably, at the first start; later starts must match it, so a data
 * directory is never served under another node's name, and a restarted
 * member keeps its cluster id whatever --initial-cluster now says (as etcd
 * ignores --initial-cluster once data exists).
 */
export interface NodeIdentity {
  readonly name: string;
  readonly nodeId: NodeId;
  readonly clusterId: string;
  /** The --initial-cluster-token the cluster was founded with (absent in directories written before it was kept). */
  readonly clusterToken?: string;
}

/**
 * Stored outside the ranges' key space: every range key starts with 'r'
 * (src/kv/keys.ts), node-level keys with 'n'.
 */
export const NODE_IDENTITY_KEY = new TextEncoder().encode('n/identity');

export type EngineKind = 'lmdb' | 'memory';

/** Opens the node's engine; a foreign, damaged or non-empty unrelated directory is refused with the engine's coded error. */
export async function openEngine(kind: EngineKind, dataDir: string): Promise<StorageEngine> {
  // The in-memory engine keeps nothing across restarts; its "sync" is the next turn of the event loop.
  if (kind === 'memory') return new MemoryEngine({ scheduleSync: (flush) => setImmediate(flush) });
  try {
    return await LmdbEngine.open({ path: dataDir });
  } catch (error) {
    const code = error instanceof TesseraError ? error.code : 'IO_ERROR';
    throw new TesseraError(code, `cannot use data directory ${dataDir}: ${messageOf(error)}`, { cause: error });
  }
}

/** The identity stored in the data directory, if any; a stored identity for another name is refused. */
export function readIdentity(engine: StorageEngine, name: string, dataDir: string): NodeIdentity | undefined {
  const raw = engine.get(NODE_IDENTITY_KEY);
  if (raw === undefined) return undefined;
  const stored = parseIdentity(raw, dataDir);
  if (stored.name !== name) {
    throw new TesseraError(
      'INVALID_CONFIG',
      `data directory ${dataDir} belongs to node '${stored.name}' (id ${stored.nodeId}) of cluster ${stored.clusterId}; refusing to start it as '${name}'`,
    );
  }
  return stored;
}

/** Records the identity of a fresh data directory, durably. */
export async function writeIdentity(engine: StorageEngine, identity: NodeIdentity): Promise<NodeIdentity> {
  const batch = engine.newBatch();
  batch.put(NODE_IDENTITY_KEY, new TextEncoder().encode(JSON.stringify(identity)));
  await new Promise<void>((resolve, reject) => engine.commit(batch, (error) => (error === undefined ? resolve() : reject(error))));
  return identity;
}

/** Checks the stored identity against `wanted`'s name, or records `wanted` on a fresh directory. Returns the identity to run as. */
export async function checkIdentity(engine: StorageEngine, wanted: NodeIdentity, dataDir: string): Promise<NodeIdentity> {
  return readIdentity(engine, wanted.name, dataDir) ?? (await writeIdentity(engine, wanted));
}

function parseIdentity(raw: Uint8Array, dataDir: string): NodeIdentity {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(raw));
  } catch (error) {
    throw new TesseraError('CORRUPT_DATA', `data directory ${dataDir}: unreadable node identity record`, { cause: error });
  }
  const o = v as Partial<NodeIdentity> | null;
  if (o === null || typeof o !== 'object' || typeof o.name !== 'string' || typeof o.clusterId !== 'string' || !Number.isSafeInteger(o.nodeId)) {
    throw new TesseraError('CORRUPT_DATA', `data directory ${dataDir}: malformed node identity record`);
  }
  if (o.clusterToken !== undefined && typeof o.clusterToken !== 'string') throw new TesseraError('CORRUPT_DATA', `data directory ${dataDir}: malformed node identity record`);
  return { name: o.name, nodeId: o.nodeId as number, clusterId: o.clusterId, ...(o.clusterToken === undefined ? {} : { clusterToken: o.clusterToken }) };
}
