import type { GrpcServerCall, RequestMetadata } from './grpc_server.js';
import {
  type ChannelCredentials,
  type Client as GrpcClient,
  type ClientDuplexStream,
  type ServiceError,
  Metadata,
  status as GrpcStatus,
  credentials,
  loadPackageDefinition,
} from '@grpc/grpc-js';
import { isTesseraError } from '../../base/index.js';
import { MAX_LEASE_TTL_SECONDS } from '../../kv/index.js';
import { fromKeyString } from '../../mvcc/bytes.js';
import { mvccError } from '../../mvcc/index.js';
import type { KvApi } from '../../kv/index.js';
import { ETCD_STATUS, type EtcdStatus, EtcdApiError } from './errors.js';
import type { HeaderFor } from './kv_service.js';
import { type Int64, type Int64Out, type Sized, type WireResponseHeader, etcdPackage } from './proto.js';

/**
 * The shortest TTL a lease is granted with, in seconds; shorter (or
 * non-positive) requests get this, as in etcd. etcd's minimum is 1.5 election
 * timeouts rounded up: 2 s with its defaults, and with tessera's (1 s).
 */
export const DEFAULT_MIN_LEASE_TTL_SECONDS = 2;

/** Keep-alive answers a stream may have waiting to be sent before its requests are no longer read. */
export const MAX_PENDING_KEEPALIVE_RESPONSES = 64;

/** A fresh id chosen by the node may collide with an existing lease; it is chosen again this many times. */
const GRANT_ATTEMPTS = 3;

/** How long a follower waits for the leader to answer a forwarded request. */
export const FORWARD_TIMEOUT_MS = 5_000;

/** Set on requests a follower forwards, so that the receiver never forwards them again. */
export const FORWARDED_METADATA = 'tessera-forwarded-from';

export interface LeaseServiceOptions {
  readonly minTtlSeconds: number;
}

/** Who leads the node's range, as the node knows it: `leader` 0 when nobody does; `address` its etcd API, if known. */
export interface LeaderInfo {
  readonly self: boolean;
  readonly leader: number;
  readonly address?: string | undefined;
}

export const DEFAULT_LEASE_SERVICE_OPTIONS: LeaseServiceOptions = { minTtlSeconds: DEFAULT_MIN_LEASE_TTL_SECONDS };

export interface WireLeaseGrantRequest extends Sized {
  TTL?: Int64;
  ID?: Int64;
}

export interface WireLeaseGrantResponse {
  header: WireResponseHeader;
  ID: Int64Out;
  TTL: Int64Out;
}

export interface WireLeaseIdRequest extends Sized {
  ID?: Int64;
}

export interface WireLeaseTimeToLiveRequest extends WireLeaseIdRequest {
  keys?: boolean;
}

export interface WireLeaseTimeToLiveResponse {
  header: WireResponseHeader;
  ID: Int64Out;
  TTL: Int64Out;
  grantedTTL?: Int64Out;
  keys?: Uint8Array[];
}

export interface WireLeaseKeepAliveResponse {
  header: WireResponseHeader;
  ID?: Int64Out;
  TTL?: Int64Out;
}

const TTL_TOO_LARGE: EtcdStatus = { code: GrpcStatus.OUT_OF_RANGE, details: 'etcdserver: too large lease TTL' };

/**
 * A lease id from the wire: tessera's ids are in (0, 2^53) (DESIGN.md
 * decision 3), so any other int64 names no lease and gets undefined.
 */
export function wireLeaseId(value: Int64 | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * etcd's Lease service over one node's KvApi. Grants and revocations go
 * through Raft (a follower's proposals reach the leader there). Keep-alives
 * renew on the leader's LeaseKeeper; as in etcd, a follower forwards them
 * to the leader (over the leader's etcd API, a keep-alive stream per
 * leader) and answers with the leader's TTL, and forwards LeaseTimeToLive
 * too, since only the leader knows the remaining time. Without a known
 * leader the answer is UNAVAILABLE "etcdserver: no leader". Ids outside
 * (0, 2^53) are refused as not found (etcd takes any non-zero int64).
 */
export class LeaseService {
  private readonly streams = new Set<GrpcServerCall<WireLeaseIdRequest, WireLeaseKeepAliveResponse>>();
  private readonly forwarder: LeaderForwarder;

  constructor(
    private readonly kv: KvApi,
    private readonly headerFor: HeaderFor,
    private readonly options: LeaseServiceOptions,
    private readonly toStatus: (error: unknown) => EtcdStatus,
    private readonly leader: () => LeaderInfo,
    nodeId: number,
  ) {
    this.forwarder = new LeaderForwarder(String(nodeId));
  }

  async grant(r: WireLeaseGrantRequest): Promise<WireLeaseGrantResponse> {
    const requested = Number(r.TTL ?? 0);
    if (requested > MAX_LEASE_TTL_SECONDS) throw new EtcdApiError(TTL_TOO_LARGE);
    const ttl = Math.max(Number.isSafeInteger(requested) ? requested : 0, this.options.minTtlSeconds);
    const chosen = r.ID === undefined || r.ID === '0';
    const id = chosen ? 0 : wireLeaseId(r.ID);
    if (id === undefined) throw mvccError('LEASE_NOT_FOUND');
    for (let attempt = 1; ; attempt++) {
      try {
        const granted = await this.kv.leaseGrant(id, ttl);
        return { header: this.headerFor(granted.revision), ID: granted.id, TTL: granted.ttlSeconds };
      } catch (error) {
        // Only an id the node chose is chosen again; a client's own id that exists is the client's error.
        if (!chosen || attempt >= GRANT_ATTEMPTS || !isTesseraError(error) || error.code !== 'ALREADY_EXISTS') throw error;
      }
    }
  }

  async revoke(r: WireLeaseIdRequest): Promise<{ header: WireResponseHeader }> {
    const id = wireLeaseId(r.ID);
    if (id === undefined) throw mvccError('LEASE_NOT_FOUND');
    const revision = await this.kv.leaseRevoke(id);
    return { header: this.headerFor(revision) };
  }

  /** A missing lease answers TTL -1, as etcd's does; the keys only when asked for. */
  async timeToLive(r: WireLeaseTimeToLiveRequest, metadata?: RequestMetadata): Promise<WireLeaseTimeToLiveResponse> {
    const leader = this.leader();
    if (!leader.self && !isForwarded(metadata)) {
      if (leader.address === undefined) throw new EtcdApiError(leader.leader === 0 ? ETCD_STATUS.NO_LEADER : NOT_LEADER);
      const remote = await this.forwarder.timeToLive(leader.address, r);
      // As etcd: the leader's answer under this node's header.
      return { ...remote, header: this.headerFor(this.kv.currentRevision()) };
    }
    await this.kv.readBarrier();
    const id = wireLeaseId(r.ID);
    const lease = id === undefined ? undefined : this.kv.leaseTimeToLive(id);
    const header = this.headerFor(this.kv.currentRevision());
    const echo = r.ID ?? 0;
    if (lease === undefined) return { header, ID: echo, TTL: -1 };
    const out: WireLeaseTimeToLiveResponse = { header, ID: echo, TTL: lease.remainingSeconds, grantedTTL: lease.ttlSeconds };
    if (r.keys === true) out.keys = lease.keys.map(fromKeyString);
    return out;
  }

  async leases(): Promise<{ header: WireResponseHeader; leases: { ID: Int64Out }[] }> {
    return { header: this.headerFor(this.kv.currentRevision()), leases: this.kv.leaseIds().map((id) => ({ ID: id })) };
  }

  /**
   * LeaseKeepAlive: every request renews its lease and is answered, in
   * order, with the TTL, or TTL 0 if the lease does not exist (etcd's
   * answer, not an error). The header is taken before the renewal, as etcd
   * does, so a client never sees a renewal at a revision after the lease's
   * revocation. A client that sends without reading stops being read once
   * MAX_PENDING_KEEPALIVE_RESPONSES answers wait.
   */
  keepAlive(call: GrpcServerCall<WireLeaseIdRequest, WireLeaseKeepAliveResponse>): void {
    this.streams.add(call);
    const forwarded = isForwarded(call.metadata);
    let ended = false;
    let pending = 0;
    let paused = false;
    let queue = Promise.resolve();
    const end = (status?: EtcdStatus): void => {
      if (ended) return;
      ended = true;
      this.streams.delete(call);
      if (status !== undefined) call.fail(status);
    };
    const answer = async (r: WireLeaseIdRequest): Promise<void> => {
      if (ended) return;
      const response: WireLeaseKeepAliveResponse = { header: this.headerFor(this.kv.currentRevision()) };
      if (r.ID !== undefined && r.ID !== '0') response.ID = r.ID;
      let ttl: number;
      try {
        ttl = await this.renew(r.ID, forwarded);
      } catch (error) {
        end(this.toStatus(error));
        return;
      }
      if (ended) return;
      if (ttl !== 0) response.TTL = ttl;
      call.write(response, () => {
        pending--;
        if (paused && pending <= MAX_PENDING_KEEPALIVE_RESPONSES / 2) {
          paused = false;
          call.resume();
        }
      });
    };
    call.on('data', (r: WireLeaseIdRequest) => {
      if (ended) return;
      pending++;
      if (pending > MAX_PENDING_KEEPALIVE_RESPONSES && !paused) {
        paused = true;
        call.pause();
      }
      // Answers go out in request order, also while one waits for the leader; a bug ends the stream, never the process.
      queue = queue.then(() => answer(r)).catch((error: unknown) => end(this.toStatus(error)));
    });
    // The client closed its side: etcd ends the call with OK once the answers are out.
    call.on('end', () => {
      void queue.then(() => {
        if (ended) return;
        end();
        call.end();
      });
    });
    call.on('cancelled', () => end());
    call.on('close', () => end());
  }

  /** Ends every keep-alive stream with etcd's "server stopped" and drops the link to the leader (the node is closing). */
  close(): void {
    for (const call of [...this.streams]) call.fail(ETCD_STATUS.STOPPED);
    this.streams.clear();
    this.forwarder.close();
  }

  /** The lease's TTL after renewal, or 0 if it does not exist; renewed by the leader when this node is not it. */
  private async renew(wire: Int64 | undefined, forwarded: boolean): Promise<number> {
    const id = wireLeaseId(wire);
    if (id === undefined) return 0;
    const leader = this.leader();
    // A forwarded request is never forwarded again: two nodes that each think the other leads must not bounce it.
    if (!leader.self && !forwarded) {
      if (leader.address === undefined) throw new EtcdApiError(leader.leader === 0 ? ETCD_STATUS.NO_LEADER : NOT_LEADER);
      return this.forwarder.renew(leader.address, id);
    }
    try {
      return this.kv.leaseKeepAlive(id);
    } catch (error) {
      if (isTesseraError(error, 'LEASE_NOT_FOUND')) return 0;
      if (isTesseraError(error) && error.code === 'NOT_LEADER') throw new EtcdApiError(NOT_LEADER);
      throw error;
    }
  }
}

/** etcd's ErrGRPCNotLeader. */
const NOT_LEADER: EtcdStatus = { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: not leader' };

function isForwarded(metadata: RequestMetadata | undefined): boolean {
  return metadata !== undefined && metadata.get(FORWARDED_METADATA).length > 0;
}

interface Waiter {
  readonly resolve: (ttl: number) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

interface LeaderLink {
  readonly address: string;
  readonly client: GrpcClient;
  readonly stream: ClientDuplexStream<{ ID: number }, WireLeaseKeepAliveResponse>;
}

type LeaseClient = GrpcClient & {
  LeaseKeepAlive(metadata: Metadata): ClientDuplexStream<{ ID: number }, WireLeaseKeepAliveResponse>;
  LeaseTimeToLive(
    request: WireLeaseTimeToLiveRequest,
    metadata: Metadata,
    options: { deadline: number },
    callback: (error: ServiceError | null, response: WireLeaseTimeToLiveResponse) => void,
  ): void;
};

/**
 * A follower's link to the leader's etcd API: one keep-alive stream, shared
 * by all the follower's clients (answers for one lease come back in the
 * order asked), and unary LeaseTimeToLive calls. Moving to another leader
 * drops the old link; its waiting renewals fail as "leader changed".
 */
class LeaderForwarder {
  private link: LeaderLink | undefined;
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(private readonly from: string) {}

  renew(address: string, id: number): Promise<number> {
    const link = this.linkTo(address);
    return new Promise<number>((resolve, reject) => {
      const key = String(id);
      const timer = setTimeout(() => {
        const queue = this.waiting.get(key) ?? [];
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        reject(new EtcdApiError(ETCD_STATUS.TIMEOUT));
      }, FORWARD_TIMEOUT_MS);
      const waiter: Waiter = { resolve, reject, timer };
      this.waiting.set(key, [...(this.waiting.get(key) ?? []), waiter]);
      link.stream.write({ ID: id });
    });
  }

  timeToLive(address: string, r: WireLeaseTimeToLiveRequest): Promise<WireLeaseTimeToLiveResponse> {
    const client = this.linkTo(address).client as LeaseClient;
    const request: WireLeaseTimeToLiveRequest = { ID: r.ID ?? '0', keys: r.keys === true };
    return new Promise((resolve, reject) => {
      client.LeaseTimeToLive(request, this.metadata(), { deadline: Date.now() + FORWARD_TIMEOUT_MS }, (error, response) => {
        if (error === null) resolve(response);
        else reject(remoteError(error));
      });
    });
  }

  close(): void {
    this.drop(new EtcdApiError(ETCD_STATUS.STOPPED));
  }

  private metadata(): Metadata {
    const md = new Metadata();
    md.set(FORWARDED_METADATA, this.from);
    return md;
  }

  private linkTo(address: string): LeaderLink {
    if (this.link?.address === address) return this.link;
    this.drop(new EtcdApiError(LEADER_CHANGED));
    const client = newLeaseClient(address);
    const stream = client.LeaseKeepAlive(this.metadata());
    const link: LeaderLink = { address, client, stream };
    stream.on('data', (r: WireLeaseKeepAliveResponse) => {
      const key = String(r.ID ?? '0');
      const queue = this.waiting.get(key);
      const waiter = queue?.shift();
      if (queue !== undefined && queue.length === 0) this.waiting.delete(key);
      if (waiter === undefined) return;
      clearTimeout(waiter.timer);
      waiter.resolve(Number(r.TTL ?? 0));
    });
    const broken = (error: Error): void => {
      if (this.link === link) this.drop(error);
    };
    stream.on('error', (e: ServiceError) => broken(remoteError(e)));
    stream.on('end', () => broken(new EtcdApiError(LEADER_CHANGED)));
    this.link = link;
    return link;
  }

  private drop(error: Error): void {
    for (const queue of this.waiting.values()) {
      for (const w of queue) {
        clearTimeout(w.timer);
        w.reject(error);
      }
    }
    this.waiting.clear();
    const link = this.link;
    this.link = undefined;
    if (link === undefined) return;
    link.stream.on('error', () => {});
    link.stream.cancel();
    link.client.close();
  }
}

/** etcd's ErrGRPCLeaderChanged. */
const LEADER_CHANGED: EtcdStatus = { code: GrpcStatus.UNAVAILABLE, details: 'etcdserver: leader changed' };

/** The leader's own etcd answer passes through; a failure to reach it is a timeout (the renewal's outcome is unknown). */
function remoteError(error: ServiceError): EtcdApiError {
  if (typeof error.details === 'string' && error.details.startsWith('etcdserver: ')) return new EtcdApiError({ code: error.code, details: error.details });
  return new EtcdApiError(ETCD_STATUS.TIMEOUT);
}

function newLeaseClient(address: string): LeaseClient {
  const pkg = loadPackageDefinition(etcdPackage()) as unknown as { etcdserverpb: { Lease: new (address: string, creds: ChannelCredentials) => LeaseClient } };
  return new pkg.etcdserverpb.Lease(address, credentials.createInsecure());
}
