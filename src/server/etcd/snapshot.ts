import { status as GrpcStatus } from '@grpc/grpc-js';
import type { ReadView } from '../../storage/engine.js';
import { ETCD_STATUS, type EtcdStatus, unimplemented } from './errors.js';
import type { WireResponseHeader } from './proto.js';
import { DumpWriter, measureDump, type SnapshotMeta } from './snapshot_format.js';

/** Where dumps are read from: the node's storage engine (NodeContext.engine). */
export interface SnapshotSource {
  /** 'lmdb' or 'memory'; recorded in the dump's meta. */
  readonly kind?: string;
  snapshotView(): ReadView & { close(): void };
}

export interface SnapshotServiceOptions {
  readonly chunkBytes: number;
  readonly maxConcurrent: number;
  readonly stallTimeoutMs: number;
}

/** What the Maintenance.Snapshot stream writes; field names as proto-loader encodes them (keepCase). */
export interface WireSnapshotResponse {
  header?: WireResponseHeader;
  remaining_bytes: number;
  blob: Buffer;
}

/** The grpc-js server-streaming call, as far as the snapshot uses it. */
export interface SnapshotCall {
  write(message: WireSnapshotResponse, callback: (error?: Error | null) => void): boolean;
  end(): void;
  fail(status: EtcdStatus): void;
  on(event: 'cancelled' | 'close', listener: () => void): unknown;
}

export interface SnapshotStats {
  /** Streams being served now. */
  readonly active: number;
  readonly completed: number;
  readonly refused: number;
  readonly failed: number;
  /** Blob bytes handed to grpc-js whose write has not completed: at most one chunk per stream. */
  readonly inFlightBytes: number;
  readonly peakInFlightBytes: number;
  readonly chunksSent: number;
}

const STALLED: EtcdStatus = { code: GrpcStatus.UNAVAILABLE, details: 'tessera: snapshot stream stalled: the client stopped reading' };

/**
 * Maintenance.Snapshot: streams a point-in-time dump of the node's storage
 * engine (snapshot_format.ts) as etcd streams its bolt file: chunks with
 * remaining_bytes counting down to 0, then one message whose blob is the
 * sha256 of all the chunks. The first message carries the response header
 * (the revision the dump was taken at).
 *
 * Backpressure: a chunk is produced only after grpc-js finished writing the
 * previous one, which waits for the client's HTTP/2 flow-control window, so
 * a slow client costs one chunk of memory, never the dump. The dump is read
 * in two passes over one read view (sizes first, for remaining_bytes).
 */
export class SnapshotService {
  private active = 0;
  private completed = 0;
  private refused = 0;
  private failed = 0;
  private inFlightBytes = 0;
  private peakInFlightBytes = 0;
  private chunksSent = 0;
  private closed = false;
  private readonly streams = new Set<(status: EtcdStatus) => void>();

  constructor(
    private readonly source: SnapshotSource | undefined,
    private readonly metaNow: () => SnapshotMeta,
    private readonly headerFor: (revision: number) => WireResponseHeader,
    private readonly options: SnapshotServiceOptions,
    private readonly statusOf: (error: unknown) => EtcdStatus,
  ) {}

  snapshot(call: SnapshotCall): void {
    if (this.source === undefined) return fail(call, unimplemented('Maintenance.Snapshot (this node has no storage engine to dump)'));
    if (this.closed) return fail(call, ETCD_STATUS.STOPPED);
    if (this.active >= this.options.maxConcurrent) {
      this.refused++;
      return fail(call, ETCD_STATUS.TOO_MANY_REQUESTS);
    }
    // The view and the meta are taken in the same turn of the event loop: they describe one moment.
    const view = this.source.snapshotView();
    const meta = this.metaNow();
    this.active++;
    void this.stream(call, view, meta);
  }

  stats(): SnapshotStats {
    return {
      active: this.active,
      completed: this.completed,
      refused: this.refused,
      failed: this.failed,
      inFlightBytes: this.inFlightBytes,
      peakInFlightBytes: this.peakInFlightBytes,
      chunksSent: this.chunksSent,
    };
  }

  /** Ends every stream with "server stopped" (their views are released as they notice). */
  close(): void {
    this.closed = true;
    for (const stop of [...this.streams]) stop(ETCD_STATUS.STOPPED);
  }

  private async stream(call: SnapshotCall, view: ReadView & { close(): void }, meta: SnapshotMeta): Promise<void> {
    let ended: EtcdStatus | 'cancelled' | undefined;
    let wake: (() => void) | undefined;
    const stop = (why: EtcdStatus | 'cancelled'): void => {
      ended ??= why;
      wake?.();
    };
    this.streams.add(stop);
    call.on('cancelled', () => stop('cancelled'));
    call.on('close', () => stop('cancelled'));
    try {
      const size = await measureDump(view, meta, () => ended !== undefined);
      const writer = new DumpWriter(view, meta, size, this.options.chunkBytes);
      let header: WireResponseHeader | undefined = this.headerFor(meta.revision);
      for (;;) {
        if (ended !== undefined) break;
        const chunk = writer.nextChunk();
        const message: WireSnapshotResponse =
          chunk === undefined ? { remaining_bytes: 0, blob: writer.trailer() } : { remaining_bytes: writer.remainingBytes, blob: chunk };
        if (header !== undefined) message.header = header;
        header = undefined;
        const written = await this.write(call, message, (w) => (wake = w));
        wake = undefined;
        if (!written && ended === undefined) stop(STALLED);
        if (chunk === undefined) break;
      }
      if (ended === undefined) {
        this.completed++;
        call.end();
      } else {
        this.failed++;
        if (ended !== 'cancelled') fail(call, ended);
      }
    } catch (error) {
      this.failed++;
      if (ended === undefined) fail(call, this.statusOf(error));
    } finally {
      view.close();
      this.streams.delete(stop);
      this.active--;
    }
  }

  /** Writes one message and waits until grpc-js has written it (true), or the stall timeout / a stop (false). */
  private write(call: SnapshotCall, message: WireSnapshotResponse, onStop: (wake: () => void) => void): Promise<boolean> {
    const bytes = message.blob.length;
    this.inFlightBytes += bytes;
    this.peakInFlightBytes = Math.max(this.peakInFlightBytes, this.inFlightBytes);
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const settle = (ok: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(ok);
      };
      const timer = setTimeout(() => settle(false), this.options.stallTimeoutMs);
      onStop(() => settle(false));
      call.write(message, (error) => {
        // The bytes leave our count only when grpc-js is done with them, even after a stall or a stop.
        this.inFlightBytes -= bytes;
        this.chunksSent++;
        settle(error === undefined || error === null);
      });
    });
  }
}

/** Ends a stream with `status` (grpc-js turns an 'error' event into the call's status). */
function fail(call: Pick<SnapshotCall, 'fail'>, status: EtcdStatus): void {
  call.fail(status);
}
