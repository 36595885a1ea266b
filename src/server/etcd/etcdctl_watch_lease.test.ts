/**
 * Interop: etcdctl 3.4's watch, lease, lock and elect commands against a
 * tessera node (and, with TESSERA_ETCD_REFERENCE, against a real etcd, to
 * check that the expectations are etcd's). Long-running commands are child
 * processes, each stopped by its own pid when its test ends.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, afterEach, before, describe, test } from 'node:test';
import { ETCDCTL_PATH, type TestEtcd, REFERENCE_ETCD, etcdctl, etcdctlMissing, startTestEtcd } from './testing.testlib.js';

const skip = etcdctlMissing();
const WAIT_MS = 8_000;

/** A running etcdctl: its output so far, and ways to wait for some and to stop it. */
class Etcdctl {
  private readonly child: ChildProcess;
  private out = '';
  private err = '';
  private readonly exited: Promise<number | null>;

  constructor(address: string, args: readonly string[]) {
    this.child = spawn(ETCDCTL_PATH, [`--endpoints=${address}`, '--dial-timeout=5s', ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => (this.err += d.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  get stdout(): string {
    return this.out;
  }

  write(line: string): void {
    this.child.stdin?.write(line);
  }

  async waitFor(pattern: RegExp | string, what = String(pattern)): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    const found = (): boolean => (typeof pattern === 'string' ? this.out.includes(pattern) : pattern.test(this.out));
    while (!found()) {
      if (Date.now() > deadline) throw new Error(`etcdctl printed no ${what}; stdout: ${JSON.stringify(this.out)} stderr: ${JSON.stringify(this.err)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Resolves with the exit code once it exits by itself. */
  exit(): Promise<number | null> {
    return this.exited;
  }

  /** SIGINT (etcdctl cleans up: unlocks, resigns, revokes its session), then SIGKILL if it lingers. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
    await this.exited;
    clearTimeout(timer);
  }
}

describe('etcdctl 3.4 watch, lease, lock and elect against tessera', { skip }, () => {
  let etcd: TestEtcd;
  const running: Etcdctl[] = [];
  before(async () => {
    etcd = await startTestEtcd();
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
    // The server sees the streams of stopped processes end a moment later; the next test counts watches from zero.
    const deadline = Date.now() + WAIT_MS;
    while (watches() !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  });
  after(async () => {
    await etcd?.close();
  });

  function start(...args: string[]): Etcdctl {
    const p = new Etcdctl(etcd.address, args);
    running.push(p);
    return p;
  }

  async function ok(...args: string[]): Promise<string> {
    const r = await etcdctl(etcd.address, args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** Waits until the server holds more watches than `before` (a real etcd cannot tell: a pause instead). */
  async function watchesAbove(before: number): Promise<void> {
    if (etcd.server === undefined) {
      await new Promise((r) => setTimeout(r, 500));
      return;
    }
    const deadline = Date.now() + WAIT_MS;
    while ((etcd.server.watchStats()?.watches ?? 0) <= before) {
      if (Date.now() > deadline) throw new Error('the watch was never created');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  const watches = (): number => etcd.server?.watchStats()?.watches ?? 0;

  async function revisionOf(key: string): Promise<number> {
    const out = JSON.parse(await ok('get', key, '-w', 'json')) as { header: { revision: number } };
    return out.header.revision;
  }

  test('watch foo: puts and deletes of that key only', async () => {
    const before = watches();
    const w = start('watch', 'wc/foo');
    await watchesAbove(before);
    await ok('put', 'wc/foo', 'bar1');
    await ok('put', 'wc/foobar', 'not mine');
    await ok('del', 'wc/foo');
    await w.waitFor('DELETE\nwc/foo\n', 'DELETE');
    assert.equal(w.stdout, 'PUT\nwc/foo\nbar1\nDELETE\nwc/foo\n\n');
  });

  test('watch --prefix', async () => {
    const before = watches();
    const w = start('watch', 'wp/', '--prefix');
    await watchesAbove(before);
    await ok('put', 'wp/a', '1');
    await ok('put', 'wq/other', 'x');
    await ok('put', 'wp/b/c', '2');
    await w.waitFor('wp/b/c\n2\n');
    assert.equal(w.stdout, 'PUT\nwp/a\n1\nPUT\nwp/b/c\n2\n');
  });

  test('watch --rev replays history from that revision', async () => {
    await ok('put', 'wr/k', 'one');
    const first = await revisionOf('wr/k');
    await ok('put', 'wr/k', 'two');
    await ok('del', 'wr/k');
    const w = start('watch', 'wr/k', `--rev=${first}`);
    await w.waitFor('DELETE\nwr/k\n\n');
    assert.equal(w.stdout, 'PUT\nwr/k\none\nPUT\nwr/k\ntwo\nDELETE\nwr/k\n\n');
  });

  test('watch --prev-kv prints the previous value before each event', async () => {
    await ok('put', 'wv/k', 'v1');
    const before = watches();
    const w = start('watch', 'wv/k', '--prev-kv');
    await watchesAbove(before);
    await ok('put', 'wv/k', 'v2');
    await ok('del', 'wv/k');
    await w.waitFor('DELETE\n', 'DELETE');
    await w.waitFor('DELETE\nwv/k\nv2\nwv/k\n\n');
    assert.equal(w.stdout, 'PUT\nwv/k\nv1\nwv/k\nv2\nDELETE\nwv/k\nv2\nwv/k\n\n');
  });

  test('watch --rev below the compacted revision is canceled as compacted', async () => {
    await ok('put', 'wx/k', 'old');
    const old = await revisionOf('wx/k');
    await ok('put', 'wx/k', 'new');
    await ok('compaction', String(await revisionOf('wx/k')));
    const r = await etcdctl(etcd.address, ['watch', 'wx/k', `--rev=${old}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /watch was canceled \(etcdserver: mvcc: required revision has been compacted\)/);
  });

  test('watch -i: a "watch foo" line on stdin, then a put from another process', async () => {
    const before = watches();
    const w = start('watch', '-i');
    w.write('watch wi/foo\n');
    await watchesAbove(before);
    await ok('put', 'wi/foo', 'from elsewhere');
    await w.waitFor('PUT\nwi/foo\nfrom elsewhere\n');
  });

  test('lease grant, put --lease, timetolive --keys, list, keep-alive, revoke', async () => {
    const granted = await ok('lease', 'grant', '60');
    const m = /^lease ([0-9a-f]+) granted with TTL\(60s\)\n$/.exec(granted);
    assert.ok(m !== null, granted);
    const id = m[1] as string;
    assert.equal(await ok('put', 'lg/a', 'va', `--lease=${id}`), 'OK\n');
    assert.equal(await ok('put', 'lg/b', 'vb', `--lease=${id}`), 'OK\n');
    assert.match(await ok('lease', 'timetolive', id, '--keys'), new RegExp(`^lease ${id} granted with TTL\\(60s\\), remaining\\((59|60)s\\), attached keys\\(\\[lg/a lg/b\\]\\)\n$`));
    assert.match(await ok('lease', 'timetolive', id), new RegExp(`^lease ${id} granted with TTL\\(60s\\), remaining\\((59|60)s\\)\n$`));
    const list = await ok('lease', 'list');
    assert.match(list, /^found \d+ leases\n/);
    assert.ok(list.split('\n').includes(id), list);
    assert.equal(await ok('lease', 'keep-alive', '--once', id), `lease ${id} keepalived with TTL(60)\n`);
    // Run briefly: it renews at once, then every TTL/3.
    const keeper = start('lease', 'keep-alive', id);
    await keeper.waitFor(`lease ${id} keepalived with TTL(60)\n`);
    await keeper.stop();
    assert.equal(await ok('lease', 'revoke', id), `lease ${id} revoked\n`);
    assert.equal(await ok('get', 'lg/', '--prefix'), '', 'revoking deleted the keys');
    assert.equal(await ok('lease', 'timetolive', id), `lease ${id} already expired\n`);
    const again = await etcdctl(etcd.address, ['lease', 'revoke', id]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /etcdserver: requested lease not found/);
  });

  test('a lease that expires deletes its key, and a watch sees the DELETE', async () => {
    const id = /^lease ([0-9a-f]+) granted/.exec(await ok('lease', 'grant', '2'))?.[1] as string;
    await ok('put', 'le/k', 'short-lived', `--lease=${id}`);
    const before = watches();
    const w = start('watch', 'le/k');
    await watchesAbove(before);
    await w.waitFor('DELETE\nle/k\n\n');
    assert.equal(await ok('get', 'le/k'), '');
    assert.equal(await ok('lease', 'timetolive', id), `lease ${id} already expired\n`);
  });

  test('lock runs the command while holding the lock', async () => {
    const r = await etcdctl(etcd.address, ['lock', 'lk/one', '--', 'echo', 'locked']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'locked\n');
    assert.equal(await ok('get', 'lk/one', '--prefix'), '', 'the lock key is gone afterwards');
  });

  test('lock, contended: the second waits until the first lets go', async () => {
    const first = start('lock', 'lk/two');
    await first.waitFor(/^lk\/two\/[0-9a-f]+\n/, 'the lock key');
    const second = start('lock', 'lk/two', '--', 'echo', 'second got it');
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(second.stdout, '', 'the second waits while the first holds the lock');
    await first.stop();
    await second.waitFor('second got it\n');
    assert.equal(await second.exit(), 0);
  });

  test('elect: one leader at a time; the next takes over when it resigns; -l follows', async () => {
    const p1 = start('elect', 'el/e', 'p1');
    await p1.waitFor(/^el\/e\/[0-9a-f]+\np1\n/, 'p1 elected');
    const p2 = start('elect', 'el/e', 'p2');
    const listener = start('elect', '-l', 'el/e');
    await listener.waitFor(/el\/e\/[0-9a-f]+\np1\n/, 'p1 as leader');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(p2.stdout, '', 'p2 waits while p1 leads');
    await p1.stop();
    await p2.waitFor(/^el\/e\/[0-9a-f]+\np2\n/, 'p2 elected');
    await listener.waitFor(/p2\n/, 'p2 as leader');
  });

  test('the server holds no watches once the clients are gone', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, async () => {
    const deadline = Date.now() + WAIT_MS;
    while (watches() !== 0 || (etcd.node?.watches.size ?? 0) !== 0) {
      if (Date.now() > deadline) throw new Error(`watches left: ${watches()} streams' and ${etcd.node?.watches.size} in the hub`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});
