#!/usr/bin/env node
/**
 * The `tessera` command (package.json "bin"):
 *   tessera start   one node in this process (alone, it is a single-node cluster)
 *   tessera dev     a local cluster of child processes on loopback
 *   tessera status  members, leader, revision and raft index per node
 *   tessera ranges  every range: bounds, replicas, leader, keys, bytes, qps
 * See docs/operations.md.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { runDev, DEV_MAX_NODES } from './dev.js';
import { runStart, START_DEFAULTS, type StartFlags } from './start.js';
import { DECOMMISSION_WAIT_MS, runDecommission } from './decommission.js';
import { runRanges } from './ranges.js';
import { runStatus } from './status.js';
import { DEFAULT_SNAPSHOT_BYTES_PER_SECOND } from '../server/transport_limits.js';
import { MERGE_AFTER_SPLIT_DELAY_MS } from '../placement/index.js';
import { DEFAULT_DEAD_AFTER_MS, DEFAULT_REPLICAS, DEFAULT_PROPOSAL_WINDOW_MS, DEFAULT_QUIESCE_AFTER_TICKS, DEFAULT_RANGE_MAX_BYTES, DEFAULT_RANGE_SPLIT_QPS, DEFAULT_READ_MODE, MAX_PROPOSAL_WINDOW_MS, READ_MODES, type ReadMode } from '../server/node.js';

/** Storage engines, the default first. */
const ENGINES = ['lmdb', 'memory'] as const;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function windowMs(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_PROPOSAL_WINDOW_MS) throw new InvalidArgumentError(`expected an integer from 0 to ${MAX_PROPOSAL_WINDOW_MS}, got '${value}'`);
  return n;
}

function nodeCount(value: string): number {
  const n = positiveInt(value);
  if (n > DEV_MAX_NODES) throw new InvalidArgumentError(`at most ${DEV_MAX_NODES} nodes`);
  return n;
}

/** --read-mode, for start and dev alike. */
function readModeOption(): Option {
  return new Option('--read-mode <mode>', "linearizable reads from the leader's lease (safe while clocks drift under 10%), or 'safe': a heartbeat round per read batch")
    .choices(READ_MODES)
    .default(DEFAULT_READ_MODE);
}

const program = new Command('tessera')
  .description('tessera: a distributed state store speaking the etcd v3 API')
  .showHelpAfterError();

program
  .command('start')
  .description('run one node in this process; SIGINT or SIGTERM stops it gracefully')
  .option('--name <name>', 'this member\'s name (its Raft id derives from it)', START_DEFAULTS.name)
  .option('--data-dir <dir>', 'data directory (created if missing)', START_DEFAULTS.dataDir)
  .option('--listen-client <host:port>', 'client (etcd gRPC) address', START_DEFAULTS.listenClient)
  .option('--listen-peer <host:port>', 'peer listen address (peers dial the address --initial-cluster gives for this member)', START_DEFAULTS.listenPeer)
  .option('--listen-admin <host:port>', "HTTP admin address (/status, /health), or 'none'", START_DEFAULTS.listenAdmin)
  .option('--initial-cluster <list>', 'founding members, name=host:port,… (default: this node alone)')
  .option('--initial-cluster-token <token>', 'mixed into the cluster id, so look-alike clusters refuse each other')
  .addOption(
    new Option('--initial-cluster-state <state>', "'new' founds a cluster; 'existing' joins a running one that added this member (etcdctl member add)")
      .choices(['new', 'existing'])
      .default('new'),
  )
  .addOption(new Option('--engine <kind>', 'storage engine').choices(ENGINES).default(ENGINES[0]))
  .option('--tick-ms <ms>', 'Raft tick length', positiveInt, 100)
  .option('--election-ticks <n>', 'election timeout in ticks', positiveInt, 10)
  .option('--heartbeat-ticks <n>', 'heartbeat interval in ticks', positiveInt, 1)
  .option('--quiesce-after-ticks <n>', 'a range idle this many ticks stops ticking and heartbeating until used (0: never)', nonNegativeInt, DEFAULT_QUIESCE_AFTER_TICKS)
  .option('--proposal-window-ms <ms>', `how long a busy leader gathers writes into one batch, 0-${MAX_PROPOSAL_WINDOW_MS} (0: off)`, windowMs, DEFAULT_PROPOSAL_WINDOW_MS)
  .option('--range-max-bytes <bytes>', 'split a range once its approximate size passes this (0: never by size)', nonNegativeInt, DEFAULT_RANGE_MAX_BYTES)
  .option('--range-split-qps <n>', 'split a range serving more requests a second than this, at a sampled key (0: never by load)', nonNegativeInt, DEFAULT_RANGE_SPLIT_QPS)
  .option('--dev-presplit-ranges <n>', 'development and benchmarks only: cut the key space into this many ranges at start', nonNegativeInt, 0)
  .option('--range-merge', 'merge neighbouring ranges that are both small and cold (the default; only while splits are on)')
  .option('--no-range-merge', 'never merge ranges')
  .option('--range-merge-delay-ms <ms>', 'two neighbours merge only once neither was split or merged for this long (so a split by load is not undone at once)', nonNegativeInt, MERGE_AFTER_SPLIT_DELAY_MS)
  .option('--replicas <n>', 'replicas per range, the meta range aside, which every member holds (0: every member holds every range)', nonNegativeInt, DEFAULT_REPLICAS)
  .option('--dead-after-ms <ms>', "a member not heard from for this long is dead, and its ranges' replicas are made again on other members (0: never)", nonNegativeInt, DEFAULT_DEAD_AFTER_MS)
  .option('--snapshot-max-rate <bytes>', 'snapshot bytes this node sends per second, over all peers (0: no limit)', nonNegativeInt, DEFAULT_SNAPSHOT_BYTES_PER_SECOND)
  .option('--locality <tiers>', "where this node runs, outermost tier first (region=us-east1,zone=us-east1-b): each range's replicas spread across localities", '')
  .addOption(readModeOption())
  .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
  .action((opts: StartFlags) => runStart(opts));

program
  .command('dev')
  .description('run a local cluster as child processes on loopback; Ctrl-C stops it')
  .option('--nodes <n>', `number of nodes (1-${DEV_MAX_NODES})`, nodeCount, 3)
  .option('--data-dir <dir>', 'keep the nodes\' data here (default: a temporary directory removed on exit)')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .addOption(new Option('--engine <kind>', 'storage engine').choices(ENGINES).default(ENGINES[0]))
  .addOption(new Option('--log-level <level>', 'log level of the nodes').choices(LOG_LEVELS).default('warn'))
  .addOption(readModeOption())
  .action((opts: { nodes: number; dataDir?: string; host: string; engine: 'lmdb' | 'memory'; logLevel: string; readMode: ReadMode }) => runDev(opts));

program
  .command('status')
  .description("show each node's state, leader, term, raft index and revision, read from its admin endpoint")
  .option('--endpoints <list>', 'admin endpoints, host:port,…', START_DEFAULTS.listenAdmin)
  .option('--json', 'print the raw status documents')
  .action(async (opts: { endpoints: string; json?: boolean }) => {
    const endpoints = opts.endpoints.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    process.exitCode = await runStatus(endpoints, opts.json === true);
  });

program
  .command('ranges')
  .description('list every range: id, start and end keys, replicas, leader, keys, bytes and qps, read from the admin endpoints')
  .option('--endpoints <list>', 'admin endpoints, host:port,…', START_DEFAULTS.listenAdmin)
  .option('--json', 'print the ranges as JSON (keys in base64; an empty end is the end of the key space)')
  .action(async (opts: { endpoints: string; json?: boolean }) => {
    const endpoints = opts.endpoints.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    process.exitCode = await runRanges(endpoints, opts.json === true);
  });

program
  .command('node')
  .description('node lifecycle')
  .command('decommission <name>')
  .description('drain the node called <name> (its range leaderships go to other nodes), then remove it from the cluster; waits until the other nodes no longer list it')
  .option('--endpoints <list>', "admin endpoints, host:port,… (the node's own and others')", START_DEFAULTS.listenAdmin)
  .option('--wait-ms <ms>', 'how long to wait for the node to be out', nonNegativeInt, DECOMMISSION_WAIT_MS)
  .action(async (name: string, opts: { endpoints: string; waitMs: number }) => {
    const endpoints = opts.endpoints.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    process.exitCode = await runDecommission(name, endpoints, opts.waitMs);
  });

await program.parseAsync();
