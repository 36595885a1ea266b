/**
 * The one gRPC client the benchmark drives both systems with: raw grpc-js
 * stubs of etcdserverpb.KV and Maintenance, built from the vendored protos
 * with the loader options the tessera server uses (see server/etcd/proto.ts),
 * so encoding costs the same for either system. No retries, no load
 * balancing policy: every call goes once to the endpoint its channel names.
 */
import { type ChannelCredentials, type Client as GrpcClient, type ServiceError, credentials, loadPackageDefinition, status } from '@grpc/grpc-js';
import { etcdPackage, type WireCompare, type WireRangeResponse, type WireTxnRequest } from '../../server/etcd/proto.js';

type Ctor = new (address: string, creds: ChannelCredentials, options?: Record<string, unknown>) => GrpcClient;
type UnaryFn = (request: unknown, options: { deadline: number }, callback: (error: ServiceError | null, value: unknown) => void) => void;

/** A call that takes longer than this failed as far as the benchmark is concerned (it counts as an error). */
export const CALL_TIMEOUT_MS = 10_000;

/**
 * Each channel gets its own TCP connection: grpc-js otherwise shares one
 * subchannel among clients with the same target and options, and 64 workers
 * would queue on one HTTP/2 connection, which is not how etcd's own
 * benchmark tool (several conns) loads a server.
 */
const CHANNEL_OPTIONS = {
  'grpc.use_local_subchannel_pool': 1,
  'grpc.enable_retries': 0,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
} as const;

let ctors: { kv: Ctor; maintenance: Ctor } | undefined;

function stubs(): { kv: Ctor; maintenance: Ctor } {
  if (ctors === undefined) {
    const pkg = loadPackageDefinition(etcdPackage()) as unknown as { etcdserverpb: { KV: Ctor; Maintenance: Ctor } };
    ctors = { kv: pkg.etcdserverpb.KV, maintenance: pkg.etcdserverpb.Maintenance };
  }
  return ctors;
}

/** The gRPC status name and details of a failed call, for error summaries. */
export function describeGrpcError(error: unknown): string {
  const e = error as Partial<ServiceError>;
  if (typeof e.code === 'number') return `${status[e.code] ?? e.code}: ${e.details ?? ''}`;
  return error instanceof Error ? error.message : String(error);
}

/** Compare.CompareResult.Equal and Compare.CompareTarget.Mod in rpc.proto. */
const COMPARE_EQUAL = 0;
const COMPARE_TARGET_MOD = 2;

/** One connection to one endpoint. */
export class KvChannel {
  private readonly kv: GrpcClient;
  private readonly rangeFn: UnaryFn;
  private readonly putFn: UnaryFn;
  private readonly txnFn: UnaryFn;

  constructor(readonly endpoint: string) {
    this.kv = new (stubs().kv)(endpoint, credentials.createInsecure(), CHANNEL_OPTIONS);
    const method = (name: string): UnaryFn => {
      const fn = (this.kv as unknown as Record<string, UnaryFn | undefined>)[name];
      if (fn === undefined) throw new Error(`etcdserverpb.KV has no method ${name}`);
      return fn.bind(this.kv);
    };
    this.rangeFn = method('Range');
    this.putFn = method('Put');
    this.txnFn = method('Txn');
  }

  /** Resolves once the connection is up, so connecting is not timed as part of a workload. */
  connect(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.kv.waitForReady(Date.now() + timeoutMs, (error) => (error === undefined || error === null ? resolve() : reject(error)));
    });
  }

  private call<T>(fn: UnaryFn, request: unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      fn(request, { deadline: Date.now() + CALL_TIMEOUT_MS }, (error, value) => (error === null ? resolve(value as T) : reject(error)));
    });
  }

  async put(key: Buffer, value: Buffer): Promise<void> {
    await this.call(this.putFn, { key, value });
  }

  async get(key: Buffer, serializable: boolean): Promise<WireRangeResponse> {
    return this.call<WireRangeResponse>(this.rangeFn, serializable ? { key, serializable: true } : { key });
  }

  /**
   * If `key`'s mod revision is still `modRevision`, puts `value`. Either way
   * returns the key's mod revision afterwards: the revision of the put, or
   * what the failure branch's read saw, so a worker can compare again.
   */
  async casPut(key: Buffer, value: Buffer, modRevision: string): Promise<{ succeeded: boolean; modRevision: string }> {
    const compare: WireCompare = { result: COMPARE_EQUAL, target: COMPARE_TARGET_MOD, key, mod_revision: modRevision };
    const request: WireTxnRequest = {
      compare: [compare],
      success: [{ request_put: { key, value } }],
      failure: [{ request_range: { key } }],
    };
    const res = await this.call<{ succeeded?: boolean; header?: { revision?: string }; responses?: { response_range?: WireRangeResponse }[] }>(this.txnFn, request);
    if (res.succeeded === true) return { succeeded: true, modRevision: String(res.header?.revision ?? '0') };
    const seen = res.responses?.[0]?.response_range?.kvs?.[0]?.mod_revision;
    return { succeeded: false, modRevision: String(seen ?? '0') };
  }

  /**
   * Compare-and-swap of two keys in one Txn: if both mod revisions are still
   * the ones given, puts `value` to both. Returns both keys' mod revisions
   * afterwards (the Txn's revision, or what the failure branch read).
   */
  async casPut2(keys: readonly [Buffer, Buffer], value: Buffer, modRevisions: readonly [string, string]): Promise<{ succeeded: boolean; modRevisions: [string, string] }> {
    const request: WireTxnRequest = {
      compare: keys.map((key, i) => ({ result: COMPARE_EQUAL, target: COMPARE_TARGET_MOD, key, mod_revision: modRevisions[i] as string })),
      success: keys.map((key) => ({ request_put: { key, value } })),
      failure: keys.map((key) => ({ request_range: { key } })),
    };
    const res = await this.call<{ succeeded?: boolean; header?: { revision?: string }; responses?: { response_range?: WireRangeResponse }[] }>(this.txnFn, request);
    if (res.succeeded === true) {
      const revision = String(res.header?.revision ?? '0');
      return { succeeded: true, modRevisions: [revision, revision] };
    }
    const seen = (i: number): string => String(res.responses?.[i]?.response_range?.kvs?.[0]?.mod_revision ?? '0');
    return { succeeded: false, modRevisions: [seen(0), seen(1)] };
  }

  /** Puts every pair in one Txn (the preload: fewer round trips, not timed). */
  async putMany(pairs: readonly (readonly [Buffer, Buffer])[]): Promise<void> {
    const request: WireTxnRequest = { success: pairs.map(([key, value]) => ({ request_put: { key, value } })) };
    await this.call(this.txnFn, request);
  }

  close(): void {
    this.kv.close();
  }
}

export interface MemberStatus {
  readonly memberId: string;
  readonly leaderId: string;
  readonly version: string;
}

/** Maintenance.Status of one endpoint: who it is, whom it follows. */
export function memberStatus(endpoint: string, timeoutMs: number): Promise<MemberStatus> {
  const client = new (stubs().maintenance)(endpoint, credentials.createInsecure(), CHANNEL_OPTIONS);
  const fn = (client as unknown as Record<string, UnaryFn>)['Status'] as UnaryFn;
  return new Promise<MemberStatus>((resolve, reject) => {
    fn.call(client, {}, { deadline: Date.now() + timeoutMs }, (error, value) => {
      client.close();
      if (error !== null) return reject(error);
      const v = value as { header?: { member_id?: string }; leader?: string; version?: string };
      resolve({ memberId: String(v.header?.member_id ?? '0'), leaderId: String(v.leader ?? '0'), version: v.version ?? '' });
    });
  });
}
