import { assert, Fnv64 } from '../base/index.js';

/** A client command, as proposed through Raft. */
export type KvCommand =
  | { readonly op: 'put'; readonly key: string; readonly value: string }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string };

export interface KvResult {
  readonly value?: string | null;
  readonly succeeded?: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(requestId: string, command: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify({ requestId, command }));
}

export function decodeCommand(data: Uint8Array): { requestId: string; command: KvCommand } {
  return JSON.parse(decoder.decode(data)) as { requestId: string; command: KvCommand };
}

/**
 * The replicated key-value state machine. It remembers applied request ids
 * so that a proposal delivered twice (a duplicated forward) takes effect
 * once (thesis §6.3).
 */
export class KvStateMachine {
  private data = new Map<string, string>();
  private applied = new Set<string>();
  /** The key written last and its value before, for the snapshot-drops-entries bug. */
  private lastWrite: { key: string; previous: string | undefined } | undefined;

  get(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  hasApplied(requestId: string): boolean {
    return this.applied.has(requestId);
  }

  /** Applies a command; returns undefined for a duplicate. */
  apply(requestId: string, command: KvCommand): KvResult | undefined {
    if (this.applied.has(requestId)) return undefined;
    this.applied.add(requestId);
    const previous = this.data.get(command.key);
    switch (command.op) {
      case 'put':
        this.lastWrite = { key: command.key, previous };
        this.data.set(command.key, command.value);
        return {};
      case 'delete':
        this.lastWrite = { key: command.key, previous };
        this.data.delete(command.key);
        return {};
      case 'cas': {
        const ok = (previous ?? null) === command.expected;
        if (ok) {
          this.lastWrite = { key: command.key, previous };
          this.data.set(command.key, command.value);
        }
        return { succeeded: ok };
      }
    }
  }

  /** Serializes the state; with `dropLastWrite`, the last write is undone (a deliberate bug). */
  snapshot(dropLastWrite: boolean): Uint8Array {
    const data = new Map(this.data);
    if (dropLastWrite && this.lastWrite !== undefined) {
      if (this.lastWrite.previous === undefined) data.delete(this.lastWrite.key);
      else data.set(this.lastWrite.key, this.lastWrite.previous);
    }
    const entries = [...data.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return encoder.encode(JSON.stringify({ data: entries, applied: [...this.applied] }));
  }

  static restore(bytes: Uint8Array): KvStateMachine {
    const sm = new KvStateMachine();
    if (bytes.byteLength === 0) return sm;
    const parsed = JSON.parse(decoder.decode(bytes)) as { data: [string, string][]; applied: string[] };
    assert(Array.isArray(parsed.data) && Array.isArray(parsed.applied), 'malformed state machine snapshot');
    sm.data = new Map(parsed.data);
    sm.applied = new Set(parsed.applied);
    return sm;
  }

  /** A digest of the visible data, for comparing replicas. */
  digest(): string {
    const h = new Fnv64();
    for (const k of [...this.data.keys()].sort()) h.update(k).update('=').update(this.data.get(k) ?? '').update(';');
    return h.digest();
  }

  size(): number {
    return this.data.size;
  }
}
