import type { GrpcServerCall } from './grpc_server.js';
import { MAX_WATCHERS, type WatchHub, type WatchOutput, type WatchRequest } from '../../kv/index.js';
import { compareBytes } from '../../mvcc/bytes.js';
import type { MvccEvent } from '../../mvcc/index.js';
import type { KvApi } from '../../kv/index.js';
import { toWireKeyValue } from './convert.js';
import { ETCD_STATUS, type EtcdStatus } from './errors.js';
import type { HeaderFor } from './kv_service.js';
import type { Int64, Int64Out, Sized, WireKeyValue, WireResponseHeader } from './proto.js';

/** etcd's default progress report interval (its --experimental-watch-progress-notify-interval). */
export const DEFAULT_WATCH_PROGRESS_INTERVAL_MS = 10 * 60 * 1000;
/** Most watches one Watch stream may hold; one more is refused (created and canceled at once). */
export const MAX_WATCHES_PER_STREAM = 10_000;
/**
 * Encoded bytes one Watch stream may have waiting to be sent. Past it the
 * stream's watches stop live delivery (the hub catches them up from history
 * once the client reads again) and the stream's requests are no longer read,
 * so a client that never reads holds at most this much (plus one response).
 */
export const MAX_PENDING_WATCH_BYTES = 4 * 1024 * 1024;

export interface WatchServiceOptions {
  /** How often progress_notify watches that saw no events get a progress notification. */
  readonly progressIntervalMs: number;
  readonly maxWatchesPerStream: number;
  readonly maxPendingBytes: number;
  /**
   * A watch that asked for `fragment` has responses larger than this split.
   * etcd splits at --max-request-bytes plus its 512 KiB gRPC overhead
   * (v3rpc.NewWatchServer); server.ts passes the same sum.
   */
  readonly fragmentBytes: number;
}

export const DEFAULT_WATCH_OPTIONS: Omit<WatchServiceOptions, 'fragmentBytes'> = {
  progressIntervalMs: DEFAULT_WATCH_PROGRESS_INTERVAL_MS,
  maxWatchesPerStream: MAX_WATCHES_PER_STREAM,
  maxPendingBytes: MAX_PENDING_WATCH_BYTES,
};

/** What a WatchService holds now, and the most any one stream had waiting to be sent. */
export interface WatchStats {
  readonly streams: number;
  readonly watches: number;
  readonly pendingBytes: number;
  readonly peakStreamPendingBytes: number;
  /** Watches whose stream was over its limit at their last delivery: the hub catches them up once it drains. */
  readonly blockedWatches: number;
}

export interface WireWatchCreateRequest {
  key?: Buffer;
  range_end?: Buffer;
  start_revision?: Int64;
  progress_notify?: boolean;
  filters?: number[];
  prev_kv?: boolean;
  watch_id?: Int64;
  fragment?: boolean;
}

export interface WireWatchRequest extends Sized {
  create_request?: WireWatchCreateRequest;
  cancel_request?: { watch_id?: Int64 };
  progress_request?: object;
}

export interface WireEvent {
  type?: number;
  kv: WireKeyValue;
  prev_kv?: WireKeyValue;
}

export interface WireWatchResponse {
  header: WireResponseHeader;
  watch_id?: Int64Out;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: Int64Out;
  cancel_reason?: string;
  fragment?: boolean;
  events?: WireEvent[];
}

type WatchCall = GrpcServerCall<WireWatchRequest, WireWatchResponse>;

/** WatchCreateRequest.FilterType */
const FILTER_NOPUT = 0;
const FILTER_NODELETE = 1;
/** mvccpb.Event.EventType DELETE (PUT is 0, protobuf's default, and stays off the wire). */
const EVENT_DELETE = 1;
/** The watch id of answers that belong to no watch: a refused create, a progress response. */
const NO_WATCH = -1;
/** etcd watches from "\0", the smallest key, when the key is empty. */
const SMALLEST_KEY = new Uint8Array([0]);

const EMPTY_RANGE = 'mvcc: watcher range is empty';
const DUPLICATE_ID = 'mvcc: duplicate watch ID provided on the WatchStream';

/**
 * etcd's Watch service: each bidirectional stream carries many watches,
 * created, canceled and asked for progress by the client's requests, all
 * served by the node's WatchHub. Answers follow etcd 3.4's server
 * (etcdserver/api/v3rpc/watch.go): a created response first (watch ids from
 * 0 unless the client gives one), events as mvccpb.Events with the current
 * revision in the header, a compacted start canceled with compact_revision,
 * a cancel answered with canceled, and a progress request answered with
 * watch_id -1 and the current revision. As in etcd, the stream stays open
 * when the client closes its sending side, and ends with the connection.
 */
export class WatchService {
  private readonly streams = new Set<WatchStream>();
  private readonly progressTimer: ReturnType<typeof setInterval>;
  private pumpScheduled = false;
  private closed = false;
  peakStreamPendingBytes = 0;

  constructor(
    readonly kv: KvApi,
    readonly hub: WatchHub,
    readonly headerFor: HeaderFor,
    readonly options: WatchServiceOptions,
    readonly toStatus: (error: unknown) => EtcdStatus,
    readonly onBug: (error: unknown) => void,
  ) {
    this.progressTimer = setInterval(() => this.guard(() => this.hub.progressTick()), options.progressIntervalMs);
    this.progressTimer.unref();
  }

  watch(call: WatchCall): void {
    if (this.closed) {
      call.fail(ETCD_STATUS.STOPPED);
      return;
    }
    const stream = new WatchStream(this, call);
    this.streams.add(stream);
    stream.start(() => this.streams.delete(stream));
  }

  stats(): WatchStats {
    let watches = 0;
    let pendingBytes = 0;
    let blockedWatches = 0;
    for (const s of this.streams) {
      watches += s.size;
      pendingBytes += s.pendingBytes;
      blockedWatches += s.blockedCount;
    }
    return { streams: this.streams.size, watches, pendingBytes, peakStreamPendingBytes: this.peakStreamPendingBytes, blockedWatches };
  }

  /** Lets watchers that start in the past, or were blocked, catch up now rather than at the node's next tick. */
  schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      // Each pump is a bounded step per watcher; another follows while some are behind.
      this.guard(() => {
        if (this.hub.pump()) this.schedulePump();
      });
    });
  }

  /** Ends every stream with etcd's "server stopped" and cancels their watches (the node is closing). */
  close(): void {
    this.closed = true;
    clearInterval(this.progressTimer);
    for (const s of [...this.streams]) s.fail(ETCD_STATUS.STOPPED);
  }

  private guard(work: () => void): void {
    try {
      work();
    } catch (error) {
      this.onBug(error);
    }
  }
}

interface StreamWatch {
  /** The id the client knows (int64, kept as its decimal string). */
  readonly id: string;
  readonly fragment: boolean;
  hubId: number;
}

class WatchStream {
  private readonly watches = new Map<string, StreamWatch>();
  /** Hub ids of watches whose last delivery found the stream over its limit. */
  private readonly blocked = new Set<number>();
  private nextAutoId = 0;
  private readPaused = false;
  private ended = false;
  private onEnd: () => void = () => {};
  pendingBytes = 0;

  constructor(
    private readonly service: WatchService,
    private readonly call: WatchCall,
  ) {}

  get size(): number {
    return this.watches.size;
  }

  get blockedCount(): number {
    return this.blocked.size;
  }

  start(onEnd: () => void): void {
    this.onEnd = onEnd;
    this.call.on('data', (r: WireWatchRequest) => {
      try {
        this.onRequest(r);
      } catch (error) {
        this.fail(this.service.toStatus(error));
      }
    });
    // The client closed its sending side: etcd keeps the stream and its watches until the call ends.
    this.call.on('end', () => {});
    this.call.on('cancelled', () => this.stop());
    this.call.on('close', () => this.stop());
  }

  /** Ends the call with `status`. */
  fail(status: EtcdStatus): void {
    if (this.ended) return;
    this.stop();
    this.call.fail(status);
  }

  private stop(): void {
    if (this.ended) return;
    this.ended = true;
    for (const w of this.watches.values()) this.service.hub.cancel(w.hubId);
    this.watches.clear();
    this.blocked.clear();
    this.onEnd();
  }

  private onRequest(r: WireWatchRequest): void {
    if (this.ended) return;
    if (r.create_request !== undefined) this.create(r.create_request);
    else if (r.cancel_request !== undefined) this.cancel(r.cancel_request.watch_id);
    else if (r.progress_request !== undefined) this.write({ header: this.header(), watch_id: NO_WATCH });
  }

  private create(c: WireWatchCreateRequest): void {
    const key = c.key !== undefined && c.key.length > 0 ? c.key : SMALLEST_KEY;
    const rangeEnd = c.range_end !== undefined && c.range_end.length > 0 ? c.range_end : undefined;
    const toEnd = rangeEnd !== undefined && rangeEnd.length === 1 && rangeEnd[0] === 0;
    if (rangeEnd !== undefined && !toEnd && compareBytes(key, rangeEnd) >= 0) return this.refuse(EMPTY_RANGE);
    const limit = this.service.options.maxWatchesPerStream;
    if (this.watches.size >= limit) return this.refuse(`tessera: too many watches on one stream (limit ${limit})`);
    if (this.service.hub.size >= MAX_WATCHERS) return this.refuse(`tessera: too many watches on this node (limit ${MAX_WATCHERS})`);
    let id: string;
    if (c.watch_id === undefined || c.watch_id === '0') {
      while (this.watches.has(String(this.nextAutoId))) this.nextAutoId++;
      id = String(this.nextAutoId++);
    } else {
      id = c.watch_id;
      if (this.watches.has(id)) return this.refuse(DUPLICATE_ID);
    }
    const filters = c.filters ?? [];
    const startRevision = Math.max(0, safeRevision(c.start_revision));
    const request: WatchRequest = {
      key,
      rangeEnd,
      startRevision,
      prevKv: c.prev_kv === true,
      noPut: filters.includes(FILTER_NOPUT),
      noDelete: filters.includes(FILTER_NODELETE),
      progressNotify: c.progress_notify === true,
    };
    const watch: StreamWatch = { id, fragment: c.fragment === true, hubId: 0 };
    // The hub delivers nothing during create: the created answer below goes out first.
    watch.hubId = this.service.hub.create(request, { deliver: (output) => this.deliver(watch, output) });
    this.watches.set(id, watch);
    this.write({ header: this.header(), watch_id: id, created: true });
    if (startRevision > 0 && startRevision <= this.service.kv.currentRevision()) this.service.schedulePump();
  }

  /** etcd answers a create it refuses with created and canceled at once, watch id -1, and the reason. */
  private refuse(reason: string): void {
    this.write({ header: this.header(), watch_id: NO_WATCH, created: true, canceled: true, cancel_reason: reason });
  }

  /** An unknown id gets no answer, as in etcd. */
  private cancel(watchId: Int64 | undefined): void {
    const id = watchId ?? '0';
    const watch = this.watches.get(id);
    if (watch === undefined) return;
    this.service.hub.cancel(watch.hubId);
    this.watches.delete(id);
    this.blocked.delete(watch.hubId);
    this.write({ header: this.header(), watch_id: id, canceled: true });
  }

  private deliver(watch: StreamWatch, output: WatchOutput): boolean {
    if (this.ended) return true;
    switch (output.kind) {
      case 'events':
        for (const response of this.eventResponses(watch, output.revision, output.events)) this.write(response);
        break;
      case 'progress':
        this.write({ header: this.service.headerFor(output.revision), watch_id: watch.id });
        break;
      case 'canceled':
        // As etcd 3.4: no reason and a zero header revision, only the compact revision.
        this.watches.delete(watch.id);
        this.blocked.delete(watch.hubId);
        this.write({ header: this.service.headerFor(0), watch_id: watch.id, canceled: true, compact_revision: output.compactRevision });
        return true;
    }
    if (this.pendingBytes <= this.service.options.maxPendingBytes) return true;
    this.blocked.add(watch.hubId);
    return false;
  }

  /** One response, or (if the watch asked for fragments) several, each under the size limit but for a lone event. */
  private eventResponses(watch: StreamWatch, revision: number, events: readonly MvccEvent[]): WireWatchResponse[] {
    const header = this.service.headerFor(Math.max(revision, this.service.kv.currentRevision()));
    const wire = events.map(toWireEvent);
    const whole: WireWatchResponse = { header, watch_id: watch.id, events: wire };
    const limit = this.service.options.fragmentBytes;
    if (!watch.fragment || wire.length < 2 || responseSize(whole) < limit) return [whole];
    // etcd's sendFragments: fill each response until one more event would reach the limit.
    const out: WireWatchResponse[] = [];
    const base = responseSize({ header, watch_id: watch.id, fragment: true });
    let i = 0;
    while (i < wire.length) {
      const part: WireEvent[] = [];
      let size = base;
      while (i < wire.length) {
        const add = embeddedSize(eventSize(wire[i] as WireEvent));
        if (part.length > 0 && size + add >= limit) break;
        part.push(wire[i] as WireEvent);
        size += add;
        i++;
      }
      out.push(i < wire.length ? { header, watch_id: watch.id, fragment: true, events: part } : { header, watch_id: watch.id, events: part });
    }
    return out;
  }

  private header(): WireResponseHeader {
    return this.service.headerFor(this.service.kv.currentRevision());
  }

  /**
   * Sends a response, counting its bytes until grpc-js has handed them to
   * HTTP/2 (which waits for the client's flow-control window). Past the
   * limit, requests are no longer read; once half has drained, reading and
   * the blocked watches resume.
   */
  private write(response: WireWatchResponse): void {
    if (this.ended) return;
    const size = responseSize(response);
    this.pendingBytes += size;
    if (this.pendingBytes > this.service.peakStreamPendingBytes) this.service.peakStreamPendingBytes = this.pendingBytes;
    this.call.write(response, () => {
      this.pendingBytes -= size;
      if (this.pendingBytes <= this.service.options.maxPendingBytes / 2) this.drained();
    });
    if (this.pendingBytes > this.service.options.maxPendingBytes && !this.readPaused) {
      this.readPaused = true;
      this.call.pause();
    }
  }

  private drained(): void {
    if (this.ended) return;
    if (this.readPaused) {
      this.readPaused = false;
      this.call.resume();
    }
    if (this.blocked.size === 0) return;
    for (const hubId of this.blocked) this.service.hub.resume(hubId);
    this.blocked.clear();
    this.service.schedulePump();
  }
}

function safeRevision(value: Int64 | undefined): number {
  const n = Number(value ?? 0);
  if (Number.isSafeInteger(n)) return n;
  return n > 0 ? Number.MAX_SAFE_INTEGER : 0;
}

export function toWireEvent(e: MvccEvent): WireEvent {
  const out: WireEvent = { kv: toWireKeyValue(e.kv) };
  if (e.type === 'DELETE') out.type = EVENT_DELETE;
  if (e.prevKv !== undefined) out.prev_kv = toWireKeyValue(e.prevKv);
  return out;
}

// Encoded sizes (protobuf), for the fragment limit and the pending-bytes count; an upper bound where ids are strings.

function varintSize(n: number): number {
  if (n < 0) return 10;
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function intField(v: Int64Out | undefined): number {
  if (v === undefined) return 0;
  return 1 + (typeof v === 'number' ? varintSize(v) : 10);
}

function bytesField(b: Uint8Array | undefined): number {
  return b === undefined ? 0 : embeddedSize(b.length);
}

/** A length-delimited field of `size` bytes: tag, length, body. */
function embeddedSize(size: number): number {
  return 1 + varintSize(size) + size;
}

function keyValueSize(kv: WireKeyValue): number {
  return bytesField(kv.key) + intField(kv.create_revision) + intField(kv.mod_revision) + intField(kv.version) + bytesField(kv.value) + intField(kv.lease);
}

function eventSize(e: WireEvent): number {
  return (e.type === undefined ? 0 : 2) + embeddedSize(keyValueSize(e.kv)) + (e.prev_kv === undefined ? 0 : embeddedSize(keyValueSize(e.prev_kv)));
}

function responseSize(r: WireWatchResponse): number {
  const h = r.header;
  const header = intField(h.cluster_id) + intField(h.member_id) + intField(h.revision) + intField(h.raft_term);
  let size = embeddedSize(header) + intField(r.watch_id) + intField(r.compact_revision);
  if (r.created === true) size += 2;
  if (r.canceled === true) size += 2;
  if (r.fragment === true) size += 2;
  if (r.cancel_reason !== undefined) size += embeddedSize(Buffer.byteLength(r.cancel_reason));
  for (const e of r.events ?? []) size += embeddedSize(eventSize(e));
  // gRPC's frame: a flag byte and a 4-byte length.
  return size + 5;
}
