/** A Watch stream for wire tests: responses queued in order, helpers to create watches and collect events. */
import assert from 'node:assert/strict';
import type { Client, ClientDuplexStream } from '@grpc/grpc-js';

const STEP_TIMEOUT_MS = 5_000;

export interface Kv {
  key: Buffer;
  value?: Buffer;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}
export interface Event {
  type?: number;
  kv: Kv;
  prev_kv?: Kv;
}
export interface WatchResponse {
  header: { revision?: string; member_id?: string };
  watch_id?: string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  fragment?: boolean;
  events?: Event[];
}

/** One Watch stream, its responses queued for the test to take in order. */
export class WatchStreamClient {
  readonly call: ClientDuplexStream<object, WatchResponse>;
  private readonly queue: WatchResponse[] = [];
  private waiter: (() => void) | undefined;
  error: Error | undefined;

  constructor(client: Client) {
    this.call = (client as unknown as { Watch(): ClientDuplexStream<object, WatchResponse> }).Watch();
    this.call.on('data', (r: WatchResponse) => {
      this.queue.push(r);
      this.waiter?.();
    });
    this.call.on('error', (e: Error) => {
      this.error = e;
      this.waiter?.();
    });
  }

  send(request: object): void {
    this.call.write(request);
  }

  async next(timeoutMs = STEP_TIMEOUT_MS): Promise<WatchResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.error !== undefined) throw this.error;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no watch response in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift() as WatchResponse;
  }

  /** Creates a watch and returns its id from the created response. */
  async create(request: object): Promise<string> {
    this.send({ create_request: request });
    const r = await this.next();
    assert.equal(r.created, true, JSON.stringify(r));
    assert.notEqual(r.canceled, true, `create refused: ${r.cancel_reason}`);
    return r.watch_id ?? '0';
  }

  /** The events of the next responses until `count` have arrived (all for `watchId`). */
  async events(watchId: string, count: number): Promise<Event[]> {
    const out: Event[] = [];
    while (out.length < count) {
      const r = await this.next();
      assert.equal(r.watch_id ?? '0', watchId, JSON.stringify(r));
      out.push(...(r.events ?? []));
    }
    return out;
  }

  get queued(): number {
    return this.queue.length;
  }

  close(): void {
    this.call.cancel();
  }
}

/** The events as "PUT key=value@rev prev=value" lines. */
export const brief = (events: Event[]): string[] =>
  events.map((e) => `${e.type === 1 ? 'DELETE' : 'PUT'} ${e.kv.key.toString()}${e.kv.value ? `=${e.kv.value.toString()}` : ''}@${e.kv.mod_revision}${e.prev_kv ? ` prev=${e.prev_kv.value?.toString() ?? ''}` : ''}`);
