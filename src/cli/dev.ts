import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '../server/net_util.js';
import type { ReadyMessage } from './start.js';

/** Cluster sizes `tessera dev` runs: odd, so a majority survives a minority of failures. */
export const DEV_MAX_NODES = 7;
/** All nodes must report ready within this, or the cluster is torn down. */
export const DEV_READY_TIMEOUT_MS = 30_000;
/** A child that has not exited this long after SIGTERM is killed. */
export const DEV_STOP_GRACE_MS = 5_000;
/** The line `tessera dev` prints once every node serves; tests and scripts wait for it. */
export const DEV_READY_PREFIX = 'endpoints:';

export interface DevFlags {
  readonly nodes: number;
  /** Kept after exit when given; otherwise a temporary directory removed at exit. */
  readonly dataDir?: string;
  readonly host: string;
  readonly logLevel: string;
  readonly engine: 'lmdb' | 'memory';
  /** Passed to every node (`tessera start --read-mode`). */
  readonly readMode: string;
}

interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  ready?: ReadyMessage;
  exited: boolean;
}

/**
 * `tessera dev`: a local cluster of `nodes` child processes (each `tessera
 * start`) on loopback, with free ports, printing the endpoints and an etcdctl
 * example. SIGINT or SIGTERM stops every child (SIGTERM, then SIGKILL after
 * a grace period) and waits for all of them before exiting; a second signal
 * kills them at once. A node that dies after startup leaves the others running.
 */
export async function runDev(flags: DevFlags): Promise<void> {
  const keep = flags.dataDir !== undefined;
  const root = keep ? resolve(flags.dataDir as string) : mkdtempSync(join(tmpdir(), 'tessera-dev-'));
  const names = Array.from({ length: flags.nodes }, (_, i) => `n${i + 1}`);
  const ports = await freePorts(flags.nodes * 3, flags.host);
  const addr = (i: number): string => `${flags.host}:${ports[i]}`;
  const initialCluster = names.map((n, i) => `${n}=${addr(i * 3 + 1)}`).join(',');
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const children: Child[] = names.map((name, i) => {
    const args = [main, 'start', '--name', name, '--data-dir', join(root, name), '--listen-client', addr(i * 3), '--listen-peer', addr(i * 3 + 1)];
    args.push('--listen-admin', addr(i * 3 + 2), '--initial-cluster', initialCluster, '--log-level', flags.logLevel, '--engine', flags.engine, '--read-mode', flags.readMode);
    // stdout/stderr shared (the nodes' logs); IPC carries readiness, and its closing tells a child its parent is gone.
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return { name, proc, exited: false };
  });
  let stopping = false;
  const stopAll = async (status: number): Promise<void> => {
    if (stopping) {
      // Asked again while stopping (a second Ctrl-C): do not wait for graceful closes.
      for (const c of children) if (!c.exited) c.proc.kill('SIGKILL');
      return;
    }
    stopping = true;
    await stopChildren(children);
    if (!keep) rmSync(root, { recursive: true, force: true });
    process.exit(status);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  for (const c of children) {
    c.proc.on('message', (m: ReadyMessage) => {
      if (m?.type === 'ready') c.ready = m;
    });
    c.proc.once('exit', (code, signal) => {
      c.exited = true;
      if (stopping) return;
      const how = signal ?? `status ${code}`;
      // Before all are up, a failure is a failed start (a taken port, a refused data dir): give up.
      // After, the rest keep running, so killing a node shows the cluster riding out the loss.
      if (children.some((x) => x.ready === undefined) || children.every((x) => x.exited)) {
        process.stderr.write(`tessera dev: node ${c.name} exited (${how}); stopping the cluster\n`);
        void stopAll(1);
      } else {
        process.stderr.write(`tessera dev: node ${c.name} exited (${how}); the others keep running\n`);
      }
    });
  }
  const deadline = Date.now() + DEV_READY_TIMEOUT_MS;
  while (children.some((c) => c.ready === undefined)) {
    if (stopping) return;
    if (Date.now() > deadline) {
      process.stderr.write(`tessera dev: nodes not ready within ${DEV_READY_TIMEOUT_MS} ms; stopping\n`);
      return void stopAll(1);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  printBanner(children.map((c) => c.ready as ReadyMessage), root, keep);
}

async function stopChildren(children: readonly Child[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((done) => {
          if (c.exited || c.proc.exitCode !== null || c.proc.signalCode !== null) return done();
          const kill = setTimeout(() => c.proc.kill('SIGKILL'), DEV_STOP_GRACE_MS);
          c.proc.once('exit', () => {
            clearTimeout(kill);
            done();
          });
          c.proc.kill('SIGTERM');
        }),
    ),
  );
}

function printBanner(nodes: readonly ReadyMessage[], root: string, keep: boolean): void {
  const out: string[] = [`tessera dev: ${nodes.length} nodes, data in ${root}${keep ? '' : ' (removed on exit)'}`];
  for (const n of nodes) {
    const e = n.endpoints;
    out.push(`  ${n.name}  pid ${n.pid}  client ${e.client ?? '(none)'}  peer ${e.peer}  admin ${e.admin ?? '(none)'}`);
  }
  const clients = nodes.map((n) => n.endpoints.client).filter((c): c is string => c !== undefined);
  const admins = nodes.map((n) => n.endpoints.admin).filter((c): c is string => c !== undefined);
  out.push(`${DEV_READY_PREFIX} ${clients.join(',') || '(no client port)'}`);
  if (clients.length > 0) out.push(`try:  etcdctl --endpoints=${clients.join(',')} put foo bar`);
  out.push(`      tessera status --endpoints=${admins.join(',')}`);
  out.push('Ctrl-C stops the cluster.');
  process.stdout.write(`${out.join('\n')}\n`);
}
