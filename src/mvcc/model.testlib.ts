/**
 * A deliberately simple model of an MVCC key space for the property test:
 * the full state after every revision, and every change ever made. It knows
 * nothing of indexes, generations or storage; it restates etcd's semantics
 * directly.
 */
export interface ModelKV {
  readonly value: string;
  readonly create: number;
  readonly mod: number;
  readonly version: number;
  readonly lease: number;
}

export interface ModelChange {
  readonly main: number;
  readonly sub: number;
  readonly key: string;
  /** undefined: a delete. */
  readonly kv: ModelKV | undefined;
  readonly prev: ModelKV | undefined;
  /** Revision of the change that produced `prev`. */
  readonly prevRev: { main: number; sub: number } | undefined;
}

export type ModelWrite = { readonly put: string; readonly value: string; readonly lease: number } | { readonly del: string; readonly end: string | undefined };

export class Model {
  /** etcd's store starts at revision 1: the empty state counts as a revision. */
  current = 1;
  /** Reads below this fail; 0: never compacted. */
  compacted = 0;
  /** etcd's compactMainRev: -1 until a compaction is applied (Compact(0) included), then its revision. */
  compactMainRev = -1;
  /** Revisions that changed something, ascending, and the state after each. */
  revs: number[] = [];
  states: Map<string, ModelKV & { sub: number }>[] = [];
  changes: ModelChange[] = [];

  clone(): Model {
    const m = new Model();
    m.current = this.current;
    m.compacted = this.compacted;
    m.compactMainRev = this.compactMainRev;
    m.revs = [...this.revs];
    m.states = [...this.states];
    m.changes = [...this.changes];
    return m;
  }

  stateAt(rev: number): Map<string, ModelKV & { sub: number }> {
    for (let i = this.revs.length - 1; i >= 0; i--) if (this.revs[i]! <= rev) return this.states[i]!;
    return new Map();
  }

  /** Applies a write txn at `rev`; returns its changes (nothing if it changed nothing). */
  apply(rev: number, writes: readonly ModelWrite[]): ModelChange[] {
    const state = new Map(this.stateAt(this.current));
    const out: ModelChange[] = [];
    for (const w of writes) {
      if ('put' in w) {
        const prev = state.get(w.put);
        const kv = { value: w.value, create: prev?.create ?? rev, mod: rev, version: (prev?.version ?? 0) + 1, lease: w.lease };
        out.push(change(rev, out.length, w.put, kv, prev));
        state.set(w.put, { ...kv, sub: out.length - 1 });
      } else {
        for (const key of [...state.keys()].filter((k) => inRange(k, w.del, w.end)).sort()) {
          out.push(change(rev, out.length, key, undefined, state.get(key)));
          state.delete(key);
        }
      }
    }
    if (out.length === 0) return out;
    this.current = rev;
    this.revs.push(rev);
    this.states.push(state);
    this.changes.push(...out);
    return out;
  }

  /** The newest change of `key` with main ≤ at: what compaction at `at` keeps (unless it is a delete below `at`). */
  newestAtOrBefore(key: string, at: number): ModelChange | undefined {
    let found: ModelChange | undefined;
    for (const c of this.changes) if (c.key === key && c.main <= at) found = c;
    return found;
  }

  /** Whether compaction has kept the change at (main, sub) of `key`. */
  keeps(key: string, main: number, sub: number): boolean {
    if (main > this.compacted) return true;
    const newest = this.newestAtOrBefore(key, this.compacted);
    return newest !== undefined && newest.main === main && newest.sub === sub && !(newest.kv === undefined && main < this.compacted);
  }
}

function change(main: number, sub: number, key: string, kv: ModelKV | undefined, prev: (ModelKV & { sub: number }) | undefined): ModelChange {
  const prevKv = prev === undefined ? undefined : { value: prev.value, create: prev.create, mod: prev.mod, version: prev.version, lease: prev.lease };
  return { main, sub, key, kv, prev: prevKv, prevRev: prev === undefined ? undefined : { main: prev.mod, sub: prev.sub } };
}

/** etcd's (key, range_end) on string keys: undefined end = one key, "\0" = all ≥ key. */
export function inRange(key: string, start: string, end: string | undefined): boolean {
  if (end === undefined) return key === start;
  if (end === '\0') return key >= start;
  return key >= start && key < end;
}
