import { isTesseraError } from '../base/index.js';
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN_CLIENT, DEFAULT_LISTEN_PEER, type NodeHandle, type ReadMode, startNode, type StartNodeOptions } from '../server/node.js';

/** The admin endpoint `tessera start` opens unless told `--listen-admin none`. */
export const DEFAULT_LISTEN_ADMIN = '127.0.0.1:2381';
/** A close that takes longer than this (a stuck flush) ends the process anyway. */
export const CLOSE_TIMEOUT_MS = 10_000;
/** Exit statuses: 1 for a failure while running, 2 for a node that could not start. */
export const EXIT_FAILED = 1;
export const EXIT_START_FAILED = 2;

export interface StartFlags {
  readonly name: string;
  readonly dataDir: string;
  readonly listenClient: string;
  readonly listenPeer: string;
  readonly listenAdmin: string;
  readonly initialCluster?: string;
  readonly initialClusterToken?: string;
  readonly initialClusterState?: 'new' | 'existing';
  readonly engine: 'lmdb' | 'memory';
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly quiesceAfterTicks: number;
  readonly devPresplitRanges: number;
  readonly proposalWindowMs: number;
  readonly rangeMaxBytes: number;
  readonly rangeSplitQps: number;
  /** commander's --range-merge / --no-range-merge: true unless turned off. */
  readonly rangeMerge?: boolean;
  readonly rangeMergeDelayMs: number;
  readonly replicas: number;
  readonly deadAfterMs: number;
  readonly locality?: string;
  readonly snapshotMaxRate?: number;
  readonly readMode: ReadMode;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export const START_DEFAULTS = {
  name: 'default',
  dataDir: DEFAULT_DATA_DIR,
  listenClient: DEFAULT_LISTEN_CLIENT,
  listenPeer: DEFAULT_LISTEN_PEER,
  listenAdmin: DEFAULT_LISTEN_ADMIN,
} as const;

/** What a node started by `tessera dev` tells its parent over IPC once it serves. */
export interface ReadyMessage {
  readonly type: 'ready';
  readonly name: string;
  readonly pid: number;
  readonly endpoints: NodeHandle['endpoints'];
}

/**
 * `tessera start`: runs one node in this process until SIGINT or SIGTERM,
 * then closes it gracefully. Started by `tessera dev`, it also reports
 * readiness over IPC and stops when the parent goes away (its IPC channel
 * closes), so a killed `tessera dev` leaves no orphans.
 */
export async function runStart(flags: StartFlags): Promise<void> {
  let stopping = false;
  const started = startNode(
    toOptions(flags, {
      onFatal: (error) => {
        process.stderr.write(`tessera: node ${flags.name} stopped on an internal error: ${String(error)}\n`);
        stop(EXIT_FAILED);
      },
      // As etcd: a member removed from the cluster stops; it is no longer part of anything.
      onRemoved: () => {
        process.stderr.write(`tessera: node ${flags.name} was removed from the cluster; exiting\n`);
        stop(0);
      },
    }),
  );
  const stop = (status: number): void => {
    if (stopping) return;
    stopping = true;
    // A close stuck on a dead disk must not keep the process forever.
    setTimeout(() => process.exit(status === 0 ? EXIT_FAILED : status), CLOSE_TIMEOUT_MS).unref();
    // A signal during startup waits for the node to be up, then closes it: never half-open files.
    void started.then(
      (node) => node.close(),
      () => undefined,
    ).then(
      () => process.exit(status),
      (error: unknown) => {
        process.stderr.write(`tessera: close failed: ${String(error)}\n`);
        process.exit(EXIT_FAILED);
      },
    );
  };
  process.once('SIGINT', () => stop(0));
  process.once('SIGTERM', () => stop(0));
  if (process.send !== undefined) process.once('disconnect', () => stop(0));
  let node: NodeHandle;
  try {
    node = await started;
  } catch (error) {
    const code = isTesseraError(error) ? ` [${error.code}]` : '';
    process.stderr.write(`tessera: cannot start node ${flags.name}${code}: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(EXIT_START_FAILED);
  }
  if (stopping) return;
  const ready: ReadyMessage = { type: 'ready', name: node.name, pid: process.pid, endpoints: node.endpoints };
  process.send?.(ready);
}

function toOptions(f: StartFlags, hooks: Pick<StartNodeOptions, 'onFatal' | 'onRemoved'>): StartNodeOptions {
  return {
    name: f.name,
    dataDir: f.dataDir,
    engine: f.engine,
    listenClient: f.listenClient,
    listenPeer: f.listenPeer,
    ...(f.listenAdmin === 'none' ? {} : { listenAdmin: f.listenAdmin }),
    ...(f.initialCluster === undefined ? {} : { initialCluster: f.initialCluster }),
    ...(f.initialClusterToken === undefined ? {} : { clusterToken: f.initialClusterToken }),
    ...(f.initialClusterState === undefined ? {} : { initialClusterState: f.initialClusterState }),
    tickMs: f.tickMs,
    electionTicks: f.electionTicks,
    heartbeatTicks: f.heartbeatTicks,
    quiesceAfterTicks: f.quiesceAfterTicks,
    presplitRanges: f.devPresplitRanges,
    proposalWindowMs: f.proposalWindowMs,
    rangeMaxBytes: f.rangeMaxBytes,
    rangeSplitQps: f.rangeSplitQps,
    rangeMerge: f.rangeMerge ?? true,
    rangeMergeDelayMs: f.rangeMergeDelayMs,
    replicas: f.replicas,
    deadAfterMs: f.deadAfterMs,
    locality: f.locality ?? '',
    // 0 is no limit: a budget no snapshot reaches.
    ...(f.snapshotMaxRate === undefined ? {} : { transportLimits: { snapshotBytesPerSecond: f.snapshotMaxRate === 0 ? Number.MAX_SAFE_INTEGER : f.snapshotMaxRate } }),
    readMode: f.readMode,
    logLevel: f.logLevel,
    ...hooks,
  };
}
