import { type ServerDuplexStream, status as GrpcStatus } from '@grpc/grpc-js';
import { isTesseraError } from '../../base/index.js';
import { MAX_LEASE_TTL_SECONDS } from '../../kv/leases.js';
import { fromKeyString } from '../../mvcc/bytes.js';
import type { KvApi } from '../kv_api.js';
import { ETCD_STATUS, type EtcdStatus, EtcdApiError } from './errors.js';
import type { HeaderFor } from './kv_service.js';
import type { Int64, Int64Out, Sized, WireResponseHeader } from './proto.js';

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

export interface LeaseServiceOptions {
  readonly minTtlSeconds: number;
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

const LEASE_NOT_FOUND: EtcdStatus = { code: GrpcStatus.NOT_FOUND, details: 'etcdserver: requested lease not found' };
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
 * through Raft; keep-alives renew on the leader's LeaseKeeper. Differences
 * from etcd, all at the edges: ids outside (0, 2^53) are refused as not
 * found (etcd takes any non-zero int64), and a keep-alive sent to a follower
 * ends its stream with FAILED_PRECONDITION "etcdserver: not leader" (etcd's
 * ErrGRPCNotLeader) instead of being forwarded to the leader; clientv3 and
 * the etcd3 npm client open the stream again, and reach the leader once
 * their balancer picks it.
 */
export class LeaseService {
  private readonly streams = new Set<ServerDuplexStream<WireLeaseIdRequest, WireLeaseKeepAliveResponse>>();

  constructor(
    private readonly kv: KvApi,
    private readonly headerFor: HeaderFor,
    private readonly options: LeaseServiceOptions,
    private readonly toStatus: (error: unknown) => EtcdStatus,
  ) {}

  async grant(r: WireLeaseGrantRequest): Promise<WireLeaseGrantResponse> {
    const requested = Number(r.TTL ?? 0);
    if (requested > MAX_LEASE_TTL_SECONDS) throw new EtcdApiError(TTL_TOO_LARGE);
    const ttl = Math.max(Number.isSafeInteger(requested) ? requested : 0, this.options.minTtlSeconds);
    const chosen = r.ID === undefined || r.ID === '0';
    const id = chosen ? 0 : wireLeaseId(r.ID);
    if (id === undefined) throw new EtcdApiError(LEASE_NOT_FOUND);
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
    if (id === undefined) throw new EtcdApiError(LEASE_NOT_FOUND);
    const revision = await this.kv.leaseRevoke(id);
    return { header: this.headerFor(revision) };
  }

  /** A missing lease answers TTL -1, as etcd's does; the keys only when asked for. */
  async timeToLive(r: WireLeaseTimeToLiveRequest): Promise<WireLeaseTimeToLiveResponse> {
    // On a follower the read barrier makes a lease granted anywhere before this call visible.
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
   * LeaseKeepAlive: every request renews its lease and is answered with the
   * TTL, or TTL 0 if the lease does not exist (etcd's answer, not an error).
   * The header is taken before the renewal, as etcd does, so a client never
   * sees a renewal at a revision after the lease's revocation.
   */
  keepAlive(call: ServerDuplexStream<WireLeaseIdRequest, WireLeaseKeepAliveResponse>): void {
    this.streams.add(call);
    let ended = false;
    const end = (status?: EtcdStatus): void => {
      if (ended) return;
      ended = true;
      this.streams.delete(call);
      if (status !== undefined) call.emit('error', Object.assign(new Error(status.details), status));
    };
    call.on('data', (r: WireLeaseIdRequest) => {
      if (ended) return;
      const header = this.headerFor(this.kv.currentRevision());
      const response: WireLeaseKeepAliveResponse = { header };
      if (r.ID !== undefined && r.ID !== '0') response.ID = r.ID;
      try {
        const ttl = this.renew(r.ID);
        if (ttl !== 0) response.TTL = ttl;
      } catch (error) {
        end(this.toStatus(error));
        return;
      }
      // A client that sends but does not read: stop reading its requests until the answers drain.
      if (!call.write(response) || call.writableLength > MAX_PENDING_KEEPALIVE_RESPONSES) {
        call.pause();
        call.once('drain', () => call.resume());
      }
    });
    // The client closed its side: etcd ends the call with OK.
    call.on('end', () => {
      if (ended) return;
      end();
      call.end();
    });
    call.on('error', () => end());
    call.on('cancelled', () => end());
    call.on('close', () => end());
  }

  /** Ends every keep-alive stream with etcd's "server stopped" (the node is closing). */
  close(): void {
    for (const call of [...this.streams]) call.emit('error', Object.assign(new Error(ETCD_STATUS.STOPPED.details), ETCD_STATUS.STOPPED));
    this.streams.clear();
  }

  /** The lease's TTL after renewal, or 0 if it does not exist. */
  private renew(wire: Int64 | undefined): number {
    const id = wireLeaseId(wire);
    if (id === undefined) return 0;
    try {
      return this.kv.leaseKeepAlive(id);
    } catch (error) {
      if (isTesseraError(error) && error.code === 'NOT_FOUND') return 0;
      if (isTesseraError(error) && error.code === 'NOT_LEADER') throw new EtcdApiError(NOT_LEADER);
      throw error;
    }
  }
}

/** etcd's ErrGRPCNotLeader. */
const NOT_LEADER: EtcdStatus = { code: GrpcStatus.FAILED_PRECONDITION, details: 'etcdserver: not leader' };
