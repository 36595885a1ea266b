/**
 * Damaged and foreign data directories, with real processes (`tessera
 * start` children on LMDB): a node must refuse a directory that is not its
 * own, or whose files are garbage, with a clear message and a non-zero exit
 * (no crash dump); and a node whose LMDB data file had bytes flipped while it
 * was stopped must either refuse to start or serve only correct data: a read
 * fails rather than return wrong bytes or pretend a key is absent.
 *
 * What lmdb-js does on some damaged files is to kill the process (SIGSEGV,
 * SIGBUS); those cases assert what can be guaranteed — the node exits
 * non-zero and serves nothing — and say so in a '#' line. Cases where tessera
 * today serves wrong data are marked `todo` with the reason: they run, they
 * assert "never wrong data", and their failure is reported without failing
 * the suite. Remove the `todo` once the cause is fixed.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SeededRng } from '../base/index.js';
import { type Exit, KvClient, type NodeProcess, type NodeSpec, ProcCluster, describeExit, grpcErrorOf, note, retryUntil, runToExit, sleep } from './process_cluster.testlib.js';

const PAGE = 4096;
/** LMDB's page header: pgno (8), txnid (8), pad (2), flags (2), lower/upper (4). */
const PAGE_FLAGS_OFFSET = 18;
const PAGE_HEADER_BYTES = 24;
const READ_TIMEOUT_MS = 3_000;

/** A refusal at start: exit status 2 and one line on stderr naming the node and the cause; no stack trace anywhere. */
function assertCleanRefusal(node: NodeProcess, exit: Exit | undefined, cause: RegExp): void {
  assert.ok(exit !== undefined, `node ${node.spec.name} started instead of refusing\n${node.logs()}`);
  assert.equal(exit.signal, null, `killed by ${exit.signal}\n${node.logs()}`);
  assert.equal(exit.code, 2, node.logs());
  const lines = node.err.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${node.err}`);
  assert.match(lines[0] as string, new RegExp(`^tessera: cannot start node ${node.spec.name} `));
  assert.match(lines[0] as string, cause);
  assert.doesNotMatch(node.err + node.out, /^\s+at /m, 'no stack trace');
  note(`${node.spec.name} refused (${describeExit(exit)}): ${lines[0]}`);
}

describe('corruption: data directories that are not the node\'s own', () => {
  let c: ProcCluster;
  before(async () => {
    c = await ProcCluster.create(3, { prefix: 'tessera-corruption-id-' });
  });
  after(async () => c?.destroy());

  test('another node\'s directory is refused at start (INVALID_CONFIG, exit 2)', async () => {
    // n1 records its identity at its first start (it needs no peers for that).
    await c.start(0);
    assert.equal((await (c.processes[0] as NodeProcess).stop()).code, 0);
    // n1's directory given to n2 (n2's own flags, n1's data).
    const spec: NodeSpec = { ...(c.specs[1] as NodeSpec), dataDir: (c.specs[0] as NodeSpec).dataDir };
    const { node, exit } = await runToExit(spec);
    try {
      assertCleanRefusal(node, exit, /\[INVALID_CONFIG\]: data directory .* belongs to node 'n1' \(id \d+\) of cluster [0-9a-f]+; refusing to start it as 'n2'/);
    } finally {
      await node.kill();
    }
  });

  test(
    'a directory of another cluster (same node name, another --initial-cluster-token) is refused at start',
    async (t) => {
      // Cluster A: n1 alone, token 'a', one key. Cluster B: n1, n2, n3, token 'b', n1 on A's directory.
      const a = await ProcCluster.create(1, { token: 'cluster-a', prefix: 'tessera-corruption-a-' });
      const b = await ProcCluster.create(3, { token: 'cluster-b', prefix: 'tessera-corruption-b-' });
      const clients: KvClient[] = [];
      t.after(async () => {
        for (const client of clients) client.close();
        await a.destroy();
        await b.destroy();
      });
      await a.startAll();
      const ca = new KvClient(a.clientAddresses[0] as string);
      clients.push(ca);
      await retryUntil('a put on cluster A', 15_000, () => ca.put('owner', 'cluster-a', 2_000));
      await a.stopAll();
      cpSync((a.specs[0] as NodeSpec).dataDir, (b.specs[0] as NodeSpec).dataDir, { recursive: true });
      const foreign = b.spawn(0);
      const r = await foreign.readyOrExit();
      if (!r.ready) {
        assert.notEqual(r.exit.code, 0);
        assert.match(foreign.err, /\[INVALID_CONFIG\]: data directory .* belongs to cluster [0-9a-f]+, founded with token 'cluster-a', not 'cluster-b'/);
        note(`cluster B's n1 on cluster A's directory refused: ${foreign.err.trim()}`);
        return;
      }
      // It started. Show what that means: B's other members form their own majority, n1 leads cluster A alone.
      await Promise.all([b.start(1), b.start(2)]);
      clients.push(...b.clientAddresses.map((addr) => new KvClient(addr)));
      const answers: string[] = [];
      for (const [i, client] of clients.slice(1).entries()) {
        await retryUntil(`a put via ${b.specs[i]?.name}`, 15_000, () => client.put('owner', `cluster-b-via-${b.specs[i]?.name}`, 2_000));
      }
      for (const [i, client] of clients.slice(1).entries()) {
        const kv = await retryUntil(`a read via ${b.specs[i]?.name}`, 15_000, () => client.get('owner', 2_000));
        answers.push(`${b.specs[i]?.name}: ${kv?.value?.toString()}`);
      }
      note(`linearizable reads of 'owner' after a put through each member of cluster B: ${answers.join(', ')}`);
      assert.fail(`cluster B's n1 started on cluster A's data directory (${foreign.out.includes('is ignored for membership') ? 'only a warning was logged' : 'no warning'}); reads: ${answers.join(', ')}`);
    },
  );
});

describe('corruption: data directories whose files are garbage', () => {
  let c: ProcCluster;
  before(async () => {
    c = await ProcCluster.create(1, { prefix: 'tessera-corruption-garbage-' });
  });
  after(async () => c?.destroy());

  const spec = (dataDir: string): NodeSpec => ({ ...(c.specs[0] as NodeSpec), dataDir });
  const cases: { name: string; prepare: (dir: string) => string; cause: RegExp }[] = [
    {
      name: 'data.mdb of seeded random bytes',
      prepare: (dir) => {
        mkdirSync(dir);
        const rng = new SeededRng(20_260_101);
        const bytes = Buffer.alloc(64 * PAGE);
        for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE(rng.nextUint32(), i);
        writeFileSync(join(dir, 'data.mdb'), bytes);
        writeFileSync(join(dir, 'lock.mdb'), bytes.subarray(0, 8192));
        return dir;
      },
      cause: /\[CORRUPT_DATA\]: .*not an LMDB data file/,
    },
    {
      name: 'data.mdb shorter than its meta pages',
      prepare: (dir) => {
        mkdirSync(dir);
        writeFileSync(join(dir, 'data.mdb'), 'not a database');
        return dir;
      },
      cause: /\[CORRUPT_DATA\]: .*not an LMDB data file/,
    },
    {
      name: 'unrelated files and no data.mdb',
      prepare: (dir) => {
        mkdirSync(dir);
        writeFileSync(join(dir, 'notes.txt'), 'someone else\'s');
        return dir;
      },
      cause: /\[INVALID_ARGUMENT\]: .*not empty and holds no LMDB environment/,
    },
    {
      name: 'the data directory is a file',
      prepare: (dir) => {
        writeFileSync(dir, 'a file');
        return dir;
      },
      cause: /\[INVALID_ARGUMENT\]: .*is not a directory/,
    },
  ];
  for (const [i, k] of cases.entries()) {
    test(`refused at start: ${k.name}`, async () => {
      const { node, exit } = await runToExit(spec(k.prepare(join(c.root, `case-${i}`))));
      try {
        assertCleanRefusal(node, exit, k.cause);
      } finally {
        await node.kill();
      }
    });
  }

  test(
    'a data directory whose name has a dot in its last component is usable',
    {},
    async () => {
      const { node: dotted, exit } = await runToExit(spec(join(c.root, 'data.v1')));
      try {
        assert.equal(exit, undefined, `refused: ${dotted.err.trim()}`);
      } finally {
        await dotted.kill();
      }
    },
  );
});

// ---------------------------------------------------------------------------
// Flipped bytes in the data file of a stopped node.

const KEYS = 400;
const VALUE_BYTES = 120;
const TARGET = 200;
const keyOf = (i: number): string => `k/${String(i).padStart(5, '0')}`;
const valueOf = (i: number): string => `value-${String(i).padStart(5, '0')}-`.padEnd(VALUE_BYTES, 'abcdefghijklmnopqrstuvwxyz'[i % 26] as string);

interface Expected {
  readonly value: string;
  readonly revision: number;
}

/** Where record `i` sits in a data file: every occurrence of its stored tail (key, u32 value length, value), the MVCC record layout. */
function recordOffsets(file: Buffer, i: number): number[] {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(VALUE_BYTES);
  const needle = Buffer.concat([Buffer.from(keyOf(i)), len, Buffer.from(valueOf(i))]);
  const out: number[] = [];
  for (let at = file.indexOf(needle); at >= 0; at = file.indexOf(needle, at + 1)) out.push(at);
  return out;
}

interface Damage {
  readonly name: string;
  /** Damages the data file in place; returns a description of the bytes changed. */
  readonly apply: (file: Buffer, path: string) => string;
  /** Known to serve wrong data today: the test runs and reports, without failing the suite. */
  readonly todo?: string;
  /**
   * What these bytes hold depends on the file's layout, which varies a little from run to run
   * (free-page reuse depends on timing): the damage may land on live data or on a free page, and
   * where it lands on live data that no check covers (LMDB's page structure has no checksum; records
   * and log entries have theirs, and the MVCC meta counts the records), wrong data is a known gap,
   * reported as todo rather than failing at random.
   */
  readonly layoutDependent?: boolean;
}

function invert(file: Buffer, offset: number, length: number): string {
  for (let i = offset; i < offset + length; i++) file[i] = (file[i] as number) ^ 0xff;
  return `${length} byte(s) at ${offset} (page ${Math.floor(offset / PAGE)}, page flags 0x${file.readUInt16LE(Math.floor(offset / PAGE) * PAGE + PAGE_FLAGS_OFFSET).toString(16)})`;
}

/** Offsets relative to the start of the record's key bytes (see encodeRecord in src/mvcc/codec.ts). */
function atRecord(relative: number, length: number): (file: Buffer) => string {
  return (file) => {
    const offsets = recordOffsets(file, TARGET);
    assert.ok(offsets.length > 0, `record ${keyOf(TARGET)} not found in the data file`);
    return offsets.map((o) => invert(file, o + relative, length)).join('; ');
  };
}

const DAMAGES: Damage[] = [
  { name: '16 bytes in the middle of the file', apply: (f) => invert(f, Math.floor(f.length / 2) + 1_000, 16), layoutDependent: true },
  { name: '16 bytes at a quarter of the file', apply: (f) => invert(f, Math.floor(f.length / 4) + 1_000, 16), layoutDependent: true },
  { name: '16 bytes at three quarters of the file', apply: (f) => invert(f, Math.floor((f.length * 3) / 4) + 1_000, 16), layoutDependent: true },
  { name: 'the page header in the middle of the file', apply: (f) => invert(f, Math.floor(f.length / 2 / PAGE) * PAGE, PAGE_HEADER_BYTES), layoutDependent: true },
  {
    name: `one byte of the value of ${keyOf(TARGET)}`,
    apply: atRecord(keyOf(TARGET).length + 4 + 60, 1),
  },
  {
    name: `the low byte of the create revision of ${keyOf(TARGET)}`,
    apply: atRecord(-4 - 8 * 3 - 1, 1),
  },
  { name: `the format byte of the record of ${keyOf(TARGET)}`, apply: atRecord(-4 - 8 * 4 - 2, 1) },
  { name: `the key length of the record of ${keyOf(TARGET)}`, apply: atRecord(-1, 1) },
  { name: `the value length of the record of ${keyOf(TARGET)}`, apply: atRecord(keyOf(TARGET).length + 3, 1) },
  // Before the record: LMDB's key, prefix 'r' range(8) 'm' 'r' main(8) sub(4); this is main's low byte.
  { name: `the revision in the LMDB key of ${keyOf(TARGET)}`, apply: atRecord(-4 - 8 * 4 - 2 - 4 - 1, 1) },
  {
    name: `the page flags of the leaf page holding ${keyOf(TARGET)}`,
    apply: (f) => recordOffsets(f, TARGET).map((o) => invert(f, Math.floor(o / PAGE) * PAGE + PAGE_FLAGS_OFFSET, 2)).join('; '),
    // LMDB pages carry no checksum: the keys on and after this page become absent from every scan.
    // The MVCC meta record counts the stored records, so opening the store finds the hole and refuses.
  },
  {
    name: `the node offsets of the leaf page holding ${keyOf(TARGET)}`,
    apply: (f) => recordOffsets(f, TARGET).map((o) => invert(f, Math.floor(o / PAGE) * PAGE + PAGE_HEADER_BYTES, 16)).join('; '),
    // Seen: MDB_PAGE_NOTFOUND or MDB_BAD_TXN (the node stops), or the keys from that page on silently absent.
    layoutDependent: true,
  },
  { name: 'the second meta page', apply: (f) => invert(f, PAGE + 40, 64) },
  { name: 'both meta pages (magic and version left intact)', apply: (f) => `${invert(f, 40, 64)}; ${invert(f, PAGE + 40, 64)}` },
  {
    name: 'the file truncated to half its size',
    apply: (f, path) => {
      const size = Math.floor(f.length / 2 / PAGE) * PAGE;
      truncateSync(path, size);
      return `truncated from ${f.length} to ${size} bytes`;
    },
  },
];

type Outcome =
  | { readonly kind: 'exited'; readonly when: string; readonly exit: Exit }
  | { readonly kind: 'served' };

interface Reads {
  correct: number;
  errors: number;
  readonly wrong: string[];
  readonly errorKinds: Set<string>;
}

describe('corruption: bytes flipped in the LMDB data file of a stopped node: it refuses to start or serves only correct data', () => {
  let c: ProcCluster;
  let golden: string;
  const expected = new Map<string, Expected>();

  before(async () => {
    c = await ProcCluster.create(1, { prefix: 'tessera-corruption-flip-' });
    const node = await c.start(0);
    const client = new KvClient(c.clientAddresses[0] as string);
    try {
      await retryUntil('the first write', 15_000, () => client.put('probe', 'x', 2_000));
      // One put at a time. The file's layout still varies a little between runs (LMDB reuses freed pages as readers let it).
      for (let i = 0; i < KEYS; i++) expected.set(keyOf(i), { value: valueOf(i), revision: await client.put(keyOf(i), valueOf(i), 5_000) });
    } finally {
      client.close();
    }
    assert.equal((await node.stop()).code, 0, node.logs());
    golden = join(c.root, 'golden');
    cpSync((c.specs[0] as NodeSpec).dataDir, golden, { recursive: true });
    note(`golden data directory: ${KEYS} keys, data.mdb ${readFileSync(join(golden, 'data.mdb')).length} bytes`);
  });
  after(async () => c?.destroy());

  /** Reads every key (and the whole prefix) and sorts each answer into correct, wrong (a different value or revision, or absent) or error. */
  async function readAll(client: KvClient, node: NodeProcess): Promise<Reads> {
    const reads: Reads = { correct: 0, errors: 0, wrong: [], errorKinds: new Set() };
    const check = (key: string, kv: { value?: Buffer; create_revision?: string; mod_revision?: string; version?: string } | undefined): void => {
      const want = expected.get(key) as Expected;
      if (kv === undefined) reads.wrong.push(`${key}: absent`);
      else if (kv.value?.toString() !== want.value) reads.wrong.push(`${key}: value ${JSON.stringify(kv.value?.toString())}, want ${JSON.stringify(want.value)}`);
      else if (Number(kv.create_revision) !== want.revision || Number(kv.mod_revision) !== want.revision || Number(kv.version) !== 1) {
        reads.wrong.push(`${key}: create/mod revision ${kv.create_revision}/${kv.mod_revision} version ${kv.version}, want ${want.revision}/${want.revision} 1`);
      } else {
        reads.correct++;
        return;
      }
    };
    for (const key of expected.keys()) {
      if (!node.running) break;
      try {
        check(key, await client.get(key, READ_TIMEOUT_MS));
      } catch (error) {
        reads.errors++;
        reads.errorKinds.add(grpcErrorOf(error).slice(0, 120));
      }
    }
    if (node.running) {
      try {
        const kvs = new Map((await client.scanPrefix('k/', READ_TIMEOUT_MS)).map((kv) => [kv.key.toString(), kv]));
        for (const key of expected.keys()) {
          const kv = kvs.get(key);
          if (kv === undefined) reads.wrong.push(`${key}: absent from a prefix read`);
          else if (kv.value?.toString() !== expected.get(key)?.value) reads.wrong.push(`${key}: wrong value in a prefix read`);
        }
      } catch (error) {
        reads.errorKinds.add(`prefix read: ${grpcErrorOf(error).slice(0, 120)}`);
      }
    }
    return reads;
  }

  for (const damage of DAMAGES) {
    test(damage.name, damage.todo === undefined ? {} : { todo: damage.todo }, async (t) => {
      // The node's own directory (same name, ports and path as when the data was written), fresh from the golden copy.
      const dir = (c.specs[0] as NodeSpec).dataDir;
      rmSync(dir, { recursive: true, force: true });
      cpSync(golden, dir, { recursive: true });
      const path = join(dir, 'data.mdb');
      const file = readFileSync(path);
      const what = damage.apply(file, path);
      if (!what.startsWith('truncated')) writeFileSync(path, file);
      const node = c.spawn(0);
      // Whatever it does is what is tested: none of its exits is "unexpected" for the cluster.
      node.expectedExit = true;
      const client = new KvClient(c.clientAddresses[0] as string);
      t.after(async () => {
        client.close();
        await node.kill();
      });
      const prefix = `${damage.name}: ${what}`;
      let outcome: Outcome;
      let reads: Reads | undefined;
      const started = await node.readyOrExit();
      if (!started.ready) {
        outcome = { kind: 'exited', when: 'before it was ready', exit: started.exit };
      } else {
        // Ready means listening; the state may be loaded (and found damaged) only after that.
        try {
          await retryUntil('a first linearizable read', 15_000, async () => {
            if (!node.running) return;
            await client.get('probe', READ_TIMEOUT_MS);
          });
        } catch {
          // Reported below with the reads.
        }
        reads = await readAll(client, node);
        // A node that fails on the damage a moment after its reads is still one that serves no wrong data.
        await sleep(200);
        outcome = node.running ? { kind: 'served' } : { kind: 'exited', when: 'after it was ready', exit: node.exited as Exit };
      }
      if (outcome.kind === 'exited') {
        const crash = outcome.exit.signal !== null;
        const message = node.err.trim().split('\n').filter((l) => l.startsWith('tessera:')).join(' | ') || '(no message on stderr)';
        note(`${prefix} → ${crash ? 'CRASHED' : 'exited'} ${outcome.when} (${describeExit(outcome.exit)}): ${crash ? node.err.trim().slice(0, 300) || '(no output)' : message}`);
        assert.ok(outcome.exit.signal !== null || (outcome.exit.code ?? 0) !== 0, `a node that stops on damaged data exits non-zero: ${describeExit(outcome.exit)}`);
        if (!crash) assert.notEqual(message, '(no message on stderr)', `it says why:\n${node.logs()}`);
      }
      if (reads !== undefined && (outcome.kind === 'served' || reads.correct + reads.wrong.length + reads.errors > 0)) {
        note(
          `${prefix} → ${outcome.kind === 'served' ? 'served' : 'served, then stopped'}: ${reads.correct} reads correct, ${reads.wrong.length} wrong, ${reads.errors} failed` +
            (reads.errorKinds.size > 0 ? ` (${[...reads.errorKinds].join('; ')})` : '') +
            (reads.wrong.length > 0 ? `; first wrong: ${reads.wrong[0]?.slice(0, 160)}` : ''),
        );
        if (damage.layoutDependent === true && reads.wrong.length > 0) t.todo('the damage landed on live data that no check covers');
        assert.deepEqual(reads.wrong.slice(0, 10), [], `${reads.wrong.length} reads returned wrong data`);
        if (outcome.kind === 'served') assert.ok(reads.correct + reads.errors === KEYS, 'every key was read');
      }
    });
  }
});
