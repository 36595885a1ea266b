/**
 * What a cell measures besides counting: the CPU time of the server
 * processes (from /proc, so it includes every thread: etcd's goroutines,
 * Node's libuv and LMDB threads) and latency percentiles.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** `getconf CLK_TCK`: the unit of utime and stime in /proc/<pid>/stat (100 on Linux almost always). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      ticksPerSecond = Number.isSafeInteger(n) && n > 0 ? n : 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/**
 * User plus system CPU of one process, in ms, from fields 14 and 15 of
 * /proc/<pid>/stat. The fields are counted after the last ')', because the
 * command name (field 2) may itself hold spaces or parentheses.
 */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) fields[12].
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (!Number.isFinite(ticks)) throw new Error(`cannot read CPU times from /proc/${pid}/stat`);
  return (ticks * 1000) / clockTicksPerSecond();
}

/** A process's resident memory from /proc/<pid>/status: all of it, and the anonymous part (heap and buffers, not mapped files such as LMDB's), in bytes. */
export function processMemoryBytes(pid: number): { readonly rss: number; readonly anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (m === null) throw new Error(`cannot read ${field} from /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kib('VmRSS'), anon: kib('RssAnon') };
}

/** The summed CPU of `pids`, in ms. */
export function totalCpuMs(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += processCpuMs(pid);
  return sum;
}

/** The q-quantile (0..1) of sorted samples, nearest rank; NaN for none. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] as number;
}

/**
 * Per-operation latencies in ms, appended by workers. A growable typed array:
 * a cell can run a few hundred thousand operations, and boxed numbers in a
 * plain array would make the client's GC part of what is measured.
 */
export class LatencySamples {
  private samples = new Float64Array(64 * 1024);
  private count = 0;

  add(latencyMs: number): void {
    if (this.count === this.samples.length) {
      const bigger = new Float64Array(this.samples.length * 2);
      bigger.set(this.samples);
      this.samples = bigger;
    }
    this.samples[this.count++] = latencyMs;
  }

  get length(): number {
    return this.count;
  }

  sorted(): Float64Array {
    return this.samples.slice(0, this.count).sort();
  }
}
