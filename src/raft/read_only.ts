import type { Message, NodeId } from './types.js';

/** A read that may be served once the application has applied `index` (thesis §6.4). */
export interface ReadState {
  readonly index: number;
  readonly context: string;
}

interface PendingRead {
  readonly index: number;
  readonly request: Message;
  readonly acks: Set<NodeId>;
}

/**
 * ReadIndex requests waiting for a heartbeat round to confirm leadership.
 * Requests are released in arrival order: confirming a later one confirms
 * every earlier one too, since the later heartbeat was sent after them.
 */
export class ReadOnly {
  private readonly pending = new Map<string, PendingRead>();
  private readonly queue: string[] = [];

  addRequest(index: number, request: Message): void {
    const ctx = request.context ?? '';
    if (this.pending.has(ctx)) return;
    this.pending.set(ctx, { index, request, acks: new Set() });
    this.queue.push(ctx);
  }

  /** Records a heartbeat ack carrying `ctx`; returns who has acked that request so far. */
  recvAck(id: NodeId, ctx: string): ReadonlySet<NodeId> | undefined {
    const rs = this.pending.get(ctx);
    if (rs === undefined) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Removes and returns the request `ctx` and every request queued before it. */
  advance(ctx: string): { index: number; request: Message }[] {
    const at = this.queue.indexOf(ctx);
    if (at < 0) return [];
    const released = this.queue.splice(0, at + 1);
    const result: { index: number; request: Message }[] = [];
    for (const c of released) {
      const rs = this.pending.get(c);
      if (rs !== undefined) result.push({ index: rs.index, request: rs.request });
      this.pending.delete(c);
    }
    return result;
  }

  lastPendingContext(): string | undefined {
    return this.queue[this.queue.length - 1];
  }

  size(): number {
    return this.queue.length;
  }
}
