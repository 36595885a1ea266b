import { type ChannelCredentials, type Client as GrpcClient, type ServiceError, credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { etcdPackage, etcdService, type WireRangeResponse } from '../../server/etcd/proto.js';
import { BENCH_KEY, BENCH_VALUE, type ChildMessage, type ParentMessage, RANGE_PATH, serverKindOf, TRANSPORTS, type Transport } from './protocol_common.js';
import { H2GrpcClient } from './protocol_h2.js';
import { MsgpackClient, packPayload, unpackPayload } from './protocol_msgpack.js';

/**
 * The client protocol benchmark behind ADR 0004: the same unary call (an
 * etcd RangeRequest for one key, answered from a one-node tessera's KvApi
 * with a 256-byte value, serializable so no Raft round is involved) over
 *
 *   grpc-js      a grpc-js server with KV.Range only, and the grpc-js client;
 *   etcd-server  the production etcd listener that startNode runs (our own
 *                HTTP/2 and gRPC code, ADR 0008; every service registered);
 *   h2           gRPC served by our own handler on node:http2, same codec,
 *                still called by the grpc-js client (so wire-compatible);
 *   h2-raw       that same server, called by our own node:http2 client;
 *   msgpackr     msgpackr frames over one TCP connection, pipelined by id.
 *
 * The server runs in a forked process; this process is the client. Each
 * cell (transport × concurrency × run) warms up, then counts calls that
 * complete inside the window, their latencies, and both processes' CPU time.
 *
 *   npm run bench:protocol -- [--seconds 3] [--warmup 1] [--runs 2]
 *     [--concurrency 1,16,64] [--transports grpc-js,etcd-server,h2,h2-raw,msgpackr] [--json]
 */

export interface BenchOptions {
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly runs: number;
  readonly concurrencies: readonly number[];
  readonly transports: readonly Transport[];
}

export interface CellResult {
  readonly transport: Transport;
  readonly concurrency: number;
  readonly run: number;
  readonly ops: number;
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly serverCpuMicrosPerOp: number;
  readonly clientCpuMicrosPerOp: number;
}

/** The call under test; resolves with the decoded response. */
interface RangeCaller {
  range(): Promise<WireRangeResponse>;
  close(): void;
}

interface ServerProcess {
  readonly port: number;
  cpuMicros(): Promise<number>;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const SERVER_START_TIMEOUT_MS = 30_000;
const ETCDCTL_TIMEOUT_MS = 15_000;
/** The request every transport sends: one key, served from the local replica. */
const RANGE_REQUEST = { key: BENCH_KEY, serializable: true };

function parseOptions(argv: readonly string[]): BenchOptions & { readonly json: boolean } {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seconds: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '1' },
      runs: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '1,16,64' },
      transports: { type: 'string', default: TRANSPORTS.join(',') },
      json: { type: 'boolean', default: false },
    },
  });
  const positive = (name: string, text: string): number => {
    const n = Number(text);
    if (!(n > 0) || !Number.isFinite(n)) throw new Error(`--${name} must be a positive number, got '${text}'`);
    return n;
  };
  const transports = values.transports.split(',').map((t) => {
    if (!(TRANSPORTS as readonly string[]).includes(t)) throw new Error(`unknown transport '${t}'; one of ${TRANSPORTS.join(', ')}`);
    return t as Transport;
  });
  return {
    seconds: positive('seconds', values.seconds),
    warmupSeconds: positive('warmup', values.warmup),
    runs: Math.floor(positive('runs', values.runs)),
    concurrencies: values.concurrency.split(',').map((c) => Math.floor(positive('concurrency', c))),
    transports,
    json: values.json,
  };
}

async function startServer(transport: Transport): Promise<ServerProcess> {
  const child = fork(new URL('./protocol_server.js', import.meta.url), [serverKindOf(transport)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${transport} server did not start within ${SERVER_START_TIMEOUT_MS} ms`)), SERVER_START_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`${transport} server exited with ${code} before it was ready`)));
    child.once('message', (m: ChildMessage) => {
      clearTimeout(timer);
      if (m.type === 'ready') resolve(m.port);
      else reject(new Error(`${transport} server failed: ${m.type === 'error' ? m.message : m.type}`));
    });
  });
  return {
    port,
    cpuMicros: () => requestCpu(child),
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        sendTo(child, { type: 'stop' });
      }),
  };
}

function requestCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    const onMessage = (m: ChildMessage): void => {
      if (m.type !== 'cpu') return;
      child.off('message', onMessage);
      resolve(m.userMicros + m.systemMicros);
    };
    child.on('message', onMessage);
    sendTo(child, { type: 'cpu' });
  });
}

function sendTo(child: ChildProcess, message: ParentMessage): void {
  child.send(message);
}

function connect(transport: Transport, port: number): Promise<RangeCaller> {
  if (transport === 'msgpackr') return connectMsgpack(port);
  if (transport === 'h2-raw') return connectH2Raw(port);
  return Promise.resolve(connectGrpc(port));
}

async function connectH2Raw(port: number): Promise<RangeCaller> {
  const client = await H2GrpcClient.connect(HOST, port);
  const def = etcdService('KV')['Range'];
  if (def === undefined) throw new Error('etcdserverpb.KV/Range missing from the protos');
  // The codec grpc-js's generated client uses, so h2-raw and h2 differ in the client's transport only.
  const { requestSerialize, responseDeserialize } = def;
  return {
    range: async () => responseDeserialize(await client.unary(RANGE_PATH, requestSerialize(RANGE_REQUEST))) as WireRangeResponse,
    close: () => client.close(),
  };
}

function connectGrpc(port: number): RangeCaller {
  const pkg = loadPackageDefinition(etcdPackage()) as unknown as { etcdserverpb: Record<string, new (address: string, creds: ChannelCredentials) => GrpcClient> };
  const KV = pkg.etcdserverpb['KV'];
  if (KV === undefined) throw new Error('etcdserverpb.KV missing from the protos');
  const client = new KV(`${HOST}:${port}`, credentials.createInsecure());
  const rangeFn = (client as unknown as { Range: (r: unknown, cb: (e: ServiceError | null, v: WireRangeResponse) => void) => void }).Range.bind(client);
  return {
    range: () => new Promise((resolve, reject) => rangeFn(RANGE_REQUEST, (error, value) => (error === null ? resolve(value) : reject(error)))),
    close: () => client.close(),
  };
}

async function connectMsgpack(port: number): Promise<RangeCaller> {
  const client = await MsgpackClient.connect(HOST, port);
  return {
    range: () => client.call('range', RANGE_REQUEST) as Promise<WireRangeResponse>,
    close: () => client.close(),
  };
}

/** Every answer must carry the bench key and value byte for byte; a transport that garbles one is not measured. */
function checkResponse(response: WireRangeResponse): void {
  const kv = response.kvs?.[0];
  if (kv?.key === undefined || kv.value === undefined || !BENCH_KEY.equals(kv.key) || !BENCH_VALUE.equals(kv.value)) {
    throw new Error(`unexpected RangeResponse: ${JSON.stringify(response).slice(0, 200)}`);
  }
}

async function runCell(server: ServerProcess, caller: RangeCaller, transport: Transport, concurrency: number, run: number, o: BenchOptions): Promise<CellResult> {
  let phase: 'warmup' | 'measure' | 'stop' = 'warmup';
  const latenciesMs: number[] = [];
  const worker = async (): Promise<void> => {
    while (phase !== 'stop') {
      const startMs = performance.now();
      checkResponse(await caller.range());
      // Counted by completion: a call finishing inside the window counts, wherever it started.
      if (phase === 'measure') latenciesMs.push(performance.now() - startMs);
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  await sleep(o.warmupSeconds * 1000);
  const serverCpuStart = await server.cpuMicros();
  const clientCpuStart = process.cpuUsage();
  const windowStartMs = performance.now();
  phase = 'measure';
  await sleep(o.seconds * 1000);
  phase = 'stop';
  const windowMs = performance.now() - windowStartMs;
  const clientCpu = process.cpuUsage(clientCpuStart);
  const serverCpuMicros = (await server.cpuMicros()) - serverCpuStart;
  await Promise.all(workers);
  const ops = latenciesMs.length;
  latenciesMs.sort((a, b) => a - b);
  return {
    transport,
    concurrency,
    run,
    ops,
    opsPerSecond: ops / (windowMs / 1000),
    p50Ms: percentile(latenciesMs, 0.5),
    p99Ms: percentile(latenciesMs, 0.99),
    // NB: the server's idle ticks (10 ms) are in here too; they are a rounding error at these rates.
    serverCpuMicrosPerOp: serverCpuMicros / ops,
    clientCpuMicrosPerOp: (clientCpu.user + clientCpu.system) / ops,
  };
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** etcdctl 3.4's `get` (a linearizable Range) against the server; proves the wire is etcd's. */
function etcdctlGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'etcdctl',
      [`--endpoints=${HOST}:${port}`, '--dial-timeout=5s', '--command-timeout=10s', 'get', BENCH_KEY.toString(), '--print-value-only'],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: ETCDCTL_TIMEOUT_MS },
      (error, stdout, stderr) => (error === null ? resolve(stdout.trimEnd()) : reject(new Error(`etcdctl get failed: ${error.message}; ${stderr}`))),
    );
  });
}

async function checkEtcdctl(transport: Transport, port: number): Promise<string> {
  if (transport === 'msgpackr') return 'n/a';
  try {
    const value = await etcdctlGet(port);
    return value === BENCH_VALUE.toString() ? 'etcdctl get: ok' : `etcdctl get: WRONG VALUE '${value.slice(0, 40)}…'`;
  } catch (error) {
    return `etcdctl get: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
  }
}

/** Calls per codec measurement; enough for the JIT to settle and the timing to be stable. */
const CODEC_ITERATIONS = 200_000;

/**
 * The server's codec work per call, alone and in this process: decode the
 * request, encode the response. Separates what a transport costs from what
 * its serialization costs (the cells include both).
 */
export function measureCodecs(): { readonly protobufMicrosPerOp: number; readonly msgpackrMicrosPerOp: number } {
  const def = etcdService('KV')['Range'];
  if (def === undefined) throw new Error('etcdserverpb.KV/Range missing from the protos');
  const response: WireRangeResponse = {
    header: { cluster_id: 0x1234_5678_9abc, member_id: 0x9abc_def0_1234, revision: 2, raft_term: 2 },
    kvs: [{ key: BENCH_KEY, create_revision: 2, mod_revision: 2, version: 1, value: BENCH_VALUE }],
    count: 1,
  };
  const protobufRequest = def.requestSerialize(RANGE_REQUEST);
  const msgpackrRequest = packPayload([1, 'range', RANGE_REQUEST]);
  // CPU time, not wall time: on a shared machine the process may wait for a core mid-loop.
  const time = (once: () => unknown): number => {
    for (let i = 0; i < CODEC_ITERATIONS / 10; i++) once();
    const start = process.cpuUsage();
    for (let i = 0; i < CODEC_ITERATIONS; i++) once();
    const used = process.cpuUsage(start);
    return (used.user + used.system) / CODEC_ITERATIONS;
  };
  return {
    protobufMicrosPerOp: time(() => {
      def.requestDeserialize(protobufRequest);
      return def.responseSerialize(response);
    }),
    msgpackrMicrosPerOp: time(() => {
      unpackPayload(msgpackrRequest);
      return packPayload([1, 0, response]);
    }),
  };
}

/** Per transport and concurrency, the median of the runs for each figure (runs vary a lot on a shared machine). */
export function medians(results: readonly CellResult[]): CellResult[] {
  const groups = new Map<string, CellResult[]>();
  for (const r of results) {
    const key = `${r.transport}\u0000${r.concurrency}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const first = g[0] as CellResult;
    const median = (pick: (r: CellResult) => number): number => {
      const sorted = g.map(pick).sort((a, b) => a - b);
      const mid = Math.floor(sorted.length / 2);
      return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
    };
    return {
      transport: first.transport,
      concurrency: first.concurrency,
      run: 0,
      ops: median((r) => r.ops),
      opsPerSecond: median((r) => r.opsPerSecond),
      p50Ms: median((r) => r.p50Ms),
      p99Ms: median((r) => r.p99Ms),
      serverCpuMicrosPerOp: median((r) => r.serverCpuMicrosPerOp),
      clientCpuMicrosPerOp: median((r) => r.clientCpuMicrosPerOp),
    };
  });
}

function formatRow(r: CellResult): string {
  const f = (n: number, digits: number): string => n.toFixed(digits);
  return `| ${r.transport} | ${r.concurrency} | ${r.run === 0 ? 'median' : r.run} | ${Math.round(r.opsPerSecond)} | ${f(r.p50Ms, 3)} | ${f(r.p99Ms, 3)} | ${f(r.serverCpuMicrosPerOp, 1)} | ${f(r.clientCpuMicrosPerOp, 1)} |`;
}

export async function runProtocolBench(o: BenchOptions, log: (line: string) => void): Promise<CellResult[]> {
  const results: CellResult[] = [];
  // Runs are the outer loop, so a noisy minute spoils one run of every transport rather than both runs of one.
  for (let run = 1; run <= o.runs; run++) {
    for (const transport of o.transports) {
      const server = await startServer(transport);
      try {
        if (run === 1 && transport !== 'h2-raw') log(`${transport}: ${await checkEtcdctl(transport, server.port)}`);
        for (const concurrency of o.concurrencies) {
          const caller = await connect(transport, server.port);
          try {
            const result = await runCell(server, caller, transport, concurrency, run, o);
            results.push(result);
            log(formatRow(result));
          } finally {
            caller.close();
          }
        }
      } finally {
        await server.stop();
      }
    }
  }
  return results;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`# protocol bench ${new Date().toISOString()} node ${process.version} ${cpu} × ${cpus().length}; load average ${load()}`);
  console.log(`# ${o.seconds} s per cell after ${o.warmupSeconds} s warm-up, ${o.runs} runs; Range of one key, 256-byte value, serializable`);
  console.log('| transport | concurrency | run | ops/s | p50 ms | p99 ms | server CPU µs/op | client CPU µs/op |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  const results = await runProtocolBench(o, (line) => console.log(line));
  console.log(`# medians of ${o.runs} runs; load average now ${load()}`);
  for (const m of medians(results)) console.log(formatRow(m));
  const codecs = measureCodecs();
  console.log(
    `# server codec alone (decode request + encode response, in-process, CPU time): protobuf via proto-loader ${codecs.protobufMicrosPerOp.toFixed(2)} µs/op, msgpackr ${codecs.msgpackrMicrosPerOp.toFixed(2)} µs/op`,
  );
  if (o.json) console.log(JSON.stringify(results));
}

await main();
