import { createHash } from 'node:crypto';
import { TesseraError } from '../base/index.js';
import type { NodeId } from '../raft/index.js';

/**
 * Addresses and identities of cluster members: `host:port` parsing, the
 * `--initial-cluster` list, and the ids every member derives alike from
 * names, so that no coordination is needed to agree on them.
 */

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface InitialMember {
  readonly name: string;
  readonly nodeId: NodeId;
  /** The member's peer address, `host:port`. */
  readonly peer: string;
}

/** Names end up in logs, status output and ids; keep them short and printable. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MAX_PORT = 65_535;

/** Parses `host:port`, `[v6]:port`, or a URL such as `http://host:port` (etcd's peer URL form). */
export function parseHostPort(text: string, what = 'address'): HostPort {
  const bare = text.trim().replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(bare);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (m === null || host === undefined || !Number.isInteger(port) || port > MAX_PORT) {
    throw new TesseraError('INVALID_CONFIG', `${what} '${text}' is not host:port (port 0-${MAX_PORT}; IPv6 as [::1]:port)`);
  }
  return { host, port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** A URL or host:port as the transport dials it (`host:port`), or undefined when it is not one. */
export function dialAddressOf(text: string): string | undefined {
  try {
    return formatHostPort(parseHostPort(text));
  } catch {
    return undefined;
  }
}

export function checkName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new TesseraError('INVALID_CONFIG', `node name '${name}' must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return name;
}

/**
 * A member's Raft id from its name: the first 53 bits of SHA-256, so it is a
 * safe integer, never 0 (Raft's "nobody"), and the same on every member.
 */
export function nodeIdFromName(name: string): NodeId {
  const digest = createHash('sha256').update(`tessera-node:${name}`).digest();
  const id = (digest.readUInt32BE(0) & 0x1fffff) * 0x100000000 + digest.readUInt32BE(4);
  return id === 0 ? 1 : id;
}

/** Parses `n1=127.0.0.1:2380,n2=...`; names and addresses must be unique. */
export function parseInitialCluster(text: string): InitialMember[] {
  const members: InitialMember[] = [];
  for (const part of text.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new TesseraError('INVALID_CONFIG', `initial cluster entry '${part}' is not name=host:port`);
    const name = checkName(part.slice(0, eq));
    const peer = formatHostPort(parseHostPort(part.slice(eq + 1), `peer address of ${name}`));
    members.push({ name, nodeId: nodeIdFromName(name), peer });
  }
  if (members.length === 0) throw new TesseraError('INVALID_CONFIG', 'initial cluster is empty');
  const unique = (values: readonly (string | number)[]): boolean => new Set(values).size === values.length;
  if (!unique(members.map((m) => m.name))) throw new TesseraError('INVALID_CONFIG', `initial cluster '${text}' repeats a name`);
  if (!unique(members.map((m) => m.peer))) throw new TesseraError('INVALID_CONFIG', `initial cluster '${text}' repeats a peer address`);
  if (!unique(members.map((m) => m.nodeId))) throw new TesseraError('INVALID_CONFIG', `initial cluster '${text}': two names hash to one node id; rename one`);
  return members;
}

/**
 * The cluster id: a digest of the founding members (sorted, so the order in
 * the flag does not matter) and an optional token, as etcd derives its
 * cluster id. Peers of another cluster are refused at the handshake.
 */
export function clusterIdOf(members: readonly InitialMember[], token = ''): string {
  const lines = members.map((m) => `${m.name}=${m.peer}`).sort();
  return createHash('sha256').update(`tessera-cluster:${token}\n${lines.join('\n')}`).digest('hex').slice(0, 16);
}
