import { Server, ServerCredentials, type ServiceError, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { type NodeHandle, startNode } from '../../server/node.js';
import { KvService } from '../../server/etcd/kv_service.js';
import { toEtcdStatus } from '../../server/etcd/errors.js';
import { DEFAULT_ETCD_LIMITS, GRPC_OVERHEAD_BYTES } from '../../server/etcd/limits.js';
import { wireId } from '../../server/etcd/node_info.js';
import { etcdService, type WireRangeRequest, type WireResponseHeader } from '../../server/etcd/proto.js';
import { startH2GrpcServer } from './protocol_h2.js';
import { startMsgpackServer } from './protocol_msgpack.js';
import { BENCH_KEY, BENCH_VALUE, type ChildMessage, type ParentMessage, RANGE_PATH, SERVER_KINDS, type ServerKind } from './protocol_common.js';

/**
 * The server half of the protocol benchmark, run as a forked child so that
 * client and server do not share an event loop or a CPU account. It starts
 * a one-node tessera (memory engine, no client listener of its own), writes
 * the bench key, then serves KV.Range over the transport named in argv[2].
 * IPC: it sends { ready, port }; it answers { cpu } with its process CPU
 * time; { stop } ends it.
 */

const READY_TIMEOUT_MS = 10_000;
const HOST = '127.0.0.1';

interface Served {
  readonly port: number;
  close(): Promise<void>;
}

async function main(): Promise<void> {
  const transport = process.argv[2] as ServerKind;
  if (!SERVER_KINDS.includes(transport)) throw new Error(`unknown server kind '${process.argv[2]}'; one of ${SERVER_KINDS.join(', ')}`);
  const node = await startNode({
    name: 'bench',
    engine: 'memory',
    listenPeer: `${HOST}:0`,
    listenClient: `${HOST}:0`,
    logLevel: 'silent',
    // etcd-server measures the production listener as the node starts it; the others put their own in front of the same KvApi.
    ...(transport === 'etcd-server' ? {} : { clientServer: false as const }),
    // Fast ticks only shorten the wait for the lone node's election; they are idle otherwise.
    tickMs: 10,
  });
  await waitUntilLeader(node);
  await node.kv.txn({ compare: [], success: [{ type: 'put', put: { key: BENCH_KEY, value: BENCH_VALUE } }], failure: [] });
  const served = await serve(transport, node);
  send({ type: 'ready', port: served.port });
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'cpu') {
      const cpu = process.cpuUsage();
      send({ type: 'cpu', userMicros: cpu.user, systemMicros: cpu.system });
    } else {
      void served
        .close()
        .then(() => node.close())
        .finally(() => process.exit(0));
    }
  });
}

async function serve(transport: ServerKind, node: NodeHandle): Promise<Served> {
  if (transport === 'etcd-server') {
    const address = node.endpoints.client;
    if (address === undefined) throw new Error('the node started without its etcd listener');
    return { port: Number(address.slice(address.lastIndexOf(':') + 1)), close: async () => {} };
  }
  const headerFor = headerSource(node);
  const kvService = new KvService(node.kv, headerFor, DEFAULT_ETCD_LIMITS);
  const statusOf = (error: unknown): { code: number; details: string } =>
    toEtcdStatus(error, (bug) => {
      console.error('bench server bug', bug);
    });
  const range = (request: unknown): Promise<unknown> => kvService.range(request as WireRangeRequest);
  switch (transport) {
    case 'grpc-js':
      return serveGrpcJs(range, statusOf);
    case 'h2': {
      const def = etcdService('KV')['Range'];
      if (def === undefined) throw new Error('etcdserverpb.KV/Range missing');
      // The very codec grpc-js uses (proto-loader over protobufjs), so the two differ in transport only.
      const method = { decode: def.requestDeserialize, encode: def.responseSerialize, handle: range };
      return startH2GrpcServer({
        methods: new Map([[RANGE_PATH, method]]),
        statusOf,
        maxRequestBytes: DEFAULT_ETCD_LIMITS.maxRequestBytes + GRPC_OVERHEAD_BYTES,
        host: HOST,
        port: 0,
      });
    }
    case 'msgpackr':
      return startMsgpackServer(
        (method, body) => (method === 'range' ? range(body) : Promise.reject(new Error(`unknown method ${method}`))),
        statusOf,
        HOST,
        0,
      );
  }
}

/** grpc-js with only KV.Range registered (grpc-js answers UNIMPLEMENTED for the rest), as the production server registers it. */
async function serveGrpcJs(range: (r: unknown) => Promise<unknown>, statusOf: (e: unknown) => { code: number; details: string }): Promise<Served> {
  const server = new Server({
    'grpc.max_receive_message_length': DEFAULT_ETCD_LIMITS.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    'grpc.max_send_message_length': -1,
  });
  server.addService(etcdService('KV'), {
    Range: (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      range(call.request).then(
        (response) => callback(null, response),
        (error: unknown) => {
          const s = statusOf(error);
          callback({ code: s.code, details: s.details } as ServiceError);
        },
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${HOST}:0`, ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  return { port, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

function headerSource(node: NodeHandle): (revision: number) => WireResponseHeader {
  const clusterId = wireId(node.clusterId, 'cluster id');
  const memberId = wireId(node.nodeId, 'member id');
  return (revision) => ({ cluster_id: clusterId, member_id: memberId, revision, raft_term: node.kv.raftTerm() });
}

async function waitUntilLeader(node: NodeHandle): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    try {
      await node.kv.readBarrier();
      return;
    } catch (error) {
      // Before the lone node elects itself a read is refused; try again shortly.
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

if (process.send !== undefined) {
  main().catch((error: unknown) => {
    send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  });
}
