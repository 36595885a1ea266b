import { compareBytes } from '../mvcc/index.js';
import { type MvccEvent, type MvccStore } from '../mvcc/index.js';
import type { WatchOutput } from '../kv/index.js';
import { isTesseraError } from '../base/index.js';
import type { Member, SimCluster } from './cluster.js';

const ALL = new Uint8Array([0]);
const decoder = new TextDecoder();

/** One received change, as the checker compares it. */
interface Seen {
  readonly revision: number;
  readonly text: string;
}

function describe(e: MvccEvent): string {
  return `${e.type} ${decoder.decode(e.kv.key)}=${decoder.decode(e.kv.value)}@${e.kv.modRevision}`;
}

/**
 * A client watching the whole key space from revision 1, through crashes:
 * when its node goes away it resumes on another node from the revision after
 * the last one it saw (DESIGN.md decision 7). Online it checks that
 * responses never go back in time or repeat; at the end `check` compares
 * everything it saw with the history a converged replica holds.
 */
export class WatchClient {
  private readonly seen: Seen[] = [];
  private lastRevision = 0;
  private member: Member | undefined;
  private incarnation = 0;
  resumes = 0;

  constructor(
    private readonly c: SimCluster,
    readonly name: string,
  ) {}

  /** Checks the connection every `everyMs`, reconnecting when its node is gone. */
  start(everyMs: number): void {
    const check = (): void => {
      const m = this.member;
      const gone = m === undefined || m.node === undefined || m.removed || m.incarnation !== this.incarnation;
      if (gone || !this.c.memberIds().includes(m.id)) this.connect();
      this.c.sched.after(everyMs, check);
    };
    check();
  }

  private connect(): void {
    // Only members: a node whose joining never committed holds no data and never will.
    const members = new Set(this.c.memberIds());
    const m = this.c.pick(this.c.running().filter((x) => !x.paused && members.has(x.id)));
    this.member = m;
    if (m === undefined || m.node === undefined) return;
    this.incarnation = m.incarnation;
    this.resumes++;
    const incarnation = m.incarnation;
    const from = this.lastRevision + 1;
    this.c.log(`watch ${this.name} connects to ${m.id} from revision ${from}`);
    const node = m.node;
    // Creating a watch reads the node's store, which may refuse (a damaged file: CORRUPT_DATA): that is the node failing, not the simulator.
    this.c.guard(m, () => {
      try {
        node.watches.create(
          { key: ALL, rangeEnd: ALL, startRevision: from, prevKv: false, noPut: false, noDelete: false, progressNotify: false },
          { deliver: (o) => (this.c.sched.after(0.2, () => this.receive(m, incarnation, o)), true) },
        );
      } catch (error) {
        // A joining node whose range 1 has not had its snapshot yet refuses, for now: try again later.
        if (!isTesseraError(error, 'RANGE_UNAVAILABLE')) throw error;
        this.c.count('watch-refused-range-unavailable');
        this.member = undefined;
      }
    });
  }

  private receive(m: Member, incarnation: number, o: WatchOutput): void {
    // Responses from a node the client has left (crashed, or replaced) are on a dead stream.
    if (m !== this.member || incarnation !== this.incarnation) return;
    if (o.kind === 'canceled') {
      this.c.violation('watch', `watch ${this.name}: canceled at revision ${o.revision} (compact ${o.compactRevision}) although nothing was compacted`);
      return;
    }
    if (o.kind !== 'events') return;
    if (o.revision <= this.lastRevision) {
      this.c.violation('watch', `watch ${this.name}: response at revision ${o.revision} after revision ${this.lastRevision} (went back in time or repeated)`);
      return;
    }
    this.lastRevision = o.revision;
    for (const e of o.events) this.seen.push({ revision: e.kv.modRevision, text: describe(e) });
  }

  /** Everything seen equals the replica's history over all its ranges, in revision order, without gaps, up to the latest revision. */
  check(ranges: readonly MvccStore[]): void {
    const expected: Seen[] = [];
    let current = 0;
    // In key order: a transaction across ranges numbers its changes by key, so its ranges' parts, taken in key
    // order, are in its sub-revision order (a single range's own part is, from its change index).
    for (const history of [...ranges].sort((a, b) => compareBytes(a.span.start, b.span.start))) {
      current = Math.max(current, history.currentRevision);
      let from = 1;
      while (from <= history.currentRevision) {
        const r = history.events({ fromRevision: from, key: ALL, rangeEnd: ALL });
        for (const e of r.events) expected.push({ revision: e.kv.modRevision, text: describe(e) });
        if (r.nextRevision <= from) break;
        from = r.nextRevision;
      }
    }
    // Stable: a transaction's events stay in their order.
    expected.sort((a, b) => a.revision - b.revision);
    const n = Math.max(expected.length, this.seen.length);
    for (let i = 0; i < n; i++) {
      const a = this.seen[i];
      const b = expected[i];
      if (a?.text !== b?.text) {
        this.c.violation('watch', `watch ${this.name}: event ${i} is ${a?.text ?? 'missing'}, the history has ${b?.text ?? 'nothing'} (revision ${current})`);
        return;
      }
    }
  }
}
