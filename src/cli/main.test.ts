import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeStatus } from '../server/node.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

/** Runs `tessera ARGS` and collects its output; `until` resolves once a stdout line matches. */
function run(args: readonly string[]): { proc: ChildProcess; out: () => string; err: () => string; until: (re: RegExp, ms: number) => Promise<string>; exit: Promise<{ code: number | null; signal: string | null }> } {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: string | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const until = async (re: RegExp, ms: number): Promise<string> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const line = out.split('\n').find((l) => re.test(l));
      if (line !== undefined) return line;
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`no line matching ${re} (exit ${proc.exitCode}); stdout:\n${out}\nstderr:\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { proc, out: () => out, err: () => err, until, exit };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function statusOf(admin: string): Promise<NodeStatus> {
  return (await (await fetch(`http://${admin}/status`)).json()) as NodeStatus;
}

test('cli: tessera dev --nodes 3 starts a cluster, prints its endpoints, and Ctrl-C stops every child', async () => {
  const dev = run(['dev', '--nodes', '3', '--log-level', 'error']);
  try {
    await dev.until(/^endpoints:/, 30_000);
    const pids = [...dev.out().matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    const admins = [...dev.out().matchAll(/admin (\S+)/g)].map((m) => m[1] as string);
    const dataDir = /data in (\S+)/.exec(dev.out())?.[1] as string;
    assert.equal(pids.length, 3, dev.out());
    assert.ok(pids.every(alive), 'the nodes run');
    assert.match(dev.out(), /status --endpoints=/);
    // The nodes form one cluster: they agree on a leader (tessera status reads the same endpoints).
    const deadline = Date.now() + 10_000;
    let leaders: number[] = [];
    while (Date.now() < deadline) {
      leaders = (await Promise.all(admins.map(statusOf))).map((s) => s.leader);
      if (leaders[0] !== 0 && leaders.every((l) => l === leaders[0])) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(leaders[0] !== 0 && leaders.every((l) => l === leaders[0]), `leaders ${leaders.join(',')}`);
    const status = run(['status', `--endpoints=${admins.join(',')}`]);
    assert.equal((await status.exit).code, 0, status.err());
    assert.match(status.out(), /leader/);
    assert.match(status.out(), /RAFT INDEX/);
    dev.proc.kill('SIGINT');
    const { code } = await dev.exit;
    assert.equal(code, 0, dev.err());
    assert.deepEqual(pids.filter(alive), [], 'no child outlives tessera dev');
    assert.equal(existsSync(dataDir), false, 'the temporary data directory is removed');
  } finally {
    if (dev.proc.exitCode === null) dev.proc.kill('SIGKILL');
  }
});

test('cli: tessera start alone is a single-node cluster with data in its data dir, and stops on SIGTERM', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  const args = ['start', '--name', 'solo', '--data-dir', join(dir, 'data'), '--listen-client', '127.0.0.1:0', '--listen-peer', '127.0.0.1:0', '--listen-admin', '127.0.0.1:0'];
  const node = run(args);
  try {
    const line = await node.until(/"node started"/, 15_000);
    const admin = (JSON.parse(line) as { admin: string }).admin;
    const deadline = Date.now() + 5_000;
    let s = await statusOf(admin);
    while (s.state !== 'leader' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      s = await statusOf(admin);
    }
    assert.equal(s.state, 'leader');
    assert.equal(existsSync(join(dir, 'data', 'data.mdb')), true);
    node.proc.kill('SIGTERM');
    assert.equal((await node.exit).code, 0, node.err());
    assert.match(node.out(), /"node closed"/);
    // Unreachable endpoints make `tessera status` fail, and say so.
    const status = run(['status', `--endpoints=${admin}`]);
    assert.equal((await status.exit).code, 1);
    assert.match(status.out(), /unreachable/);
    // A bad flag is refused before anything starts.
    const bad = run(['start', '--initial-cluster', 'x=nowhere']);
    assert.equal((await bad.exit).code, 2);
    assert.match(bad.err(), /INVALID_CONFIG/);
  } finally {
    if (node.proc.exitCode === null) node.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
