/**
 * The tessera package entry (`import { startNode } from 'tessera'`): run a
 * node inside the calling process (DESIGN.md decision 10).
 *
 *   const node = await startNode({ name: 'n1', dataDir: './data' });
 *   await node.kv.txn({ compare: [], success: [{ type: 'put', put: { key, value } }], failure: [] });
 *   await node.close();
 */
export {
  startNode,
  DEFAULT_DATA_DIR,
  DEFAULT_LISTEN_CLIENT,
  DEFAULT_LISTEN_PEER,
  DEFAULT_TICK_MS,
  DEFAULT_ELECTION_TICKS,
  DEFAULT_HEARTBEAT_TICKS,
  type StartNodeOptions,
  type NodeHandle,
  type NodeContext,
  type NodeStatus,
  type NodeEndpoints,
  type MemberStatus,
  type ClientServer,
  type ClientServerFactory,
} from './server/node.js';
export { KvApi, DEFAULT_REQUEST_TIMEOUT_MS } from './kv/index.js';
export { nodeIdFromName, parseInitialCluster } from './server/address.js';
export { DEFAULT_TRANSPORT_LIMITS, type TransportLimits } from './server/transport.js';
export { PeerError, type PeerErrorReason } from './server/errors.js';
export { TesseraError, isTesseraError, type TesseraErrorCode } from './base/index.js';
export { type RangeOptions, type RangeResult, type TxnRequest, type TxnResponse } from './mvcc/index.js';
