/**
 * `etcdctl check perf`: etcd's own verdict on a cluster. It writes keys
 * under /etcdctl-check-perf/ at a fixed rate for 60 s from many clients
 * (--load=s: 50 clients, 150 writes/s; m: 200 clients, 1000 writes/s),
 * then reads and deletes them by prefix, and prints PASS or FAIL lines for
 * throughput, the slowest request and the standard deviation.
 */
import { execFile } from 'node:child_process';
import { ETCDCTL_PATH } from './clusters.js';

export type CheckPerfLoad = 's' | 'm' | 'l' | 'xl';
export const CHECK_PERF_LOADS: readonly CheckPerfLoad[] = ['s', 'm', 'l', 'xl'];

/** check perf runs 60 s, plus its setup and cleanup; past this it is stuck. */
const CHECK_PERF_TIMEOUT_MS = 180_000;

export interface CheckPerfResult {
  readonly load: CheckPerfLoad;
  readonly exitCode: number;
  /** The verdict lines (PASS:/FAIL: …, and the final PASS or FAIL), without the progress bar. */
  readonly lines: readonly string[];
  readonly passed: boolean;
}

/**
 * The lines etcdctl prints minus its progress bar, which redraws itself
 * with carriage returns ("12 / 60 20.00% 00m48s").
 */
export function verdictLines(output: string): string[] {
  return output
    .split(/[\r\n]+/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !/^\d+ \/ \d+\s/.test(line));
}

export function runCheckPerf(endpoints: readonly string[], load: CheckPerfLoad): Promise<CheckPerfResult> {
  return new Promise((resolve, reject) => {
    execFile(
      ETCDCTL_PATH,
      [`--endpoints=${endpoints.join(',')}`, 'check', 'perf', `--load=${load}`],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: CHECK_PERF_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== 'number') {
          reject(new Error(`etcdctl check perf --load=${load} did not finish: ${error.message}; stderr: ${stderr}`));
          return;
        }
        const exitCode = error === null ? 0 : (error.code as number);
        const lines = [...verdictLines(stdout), ...verdictLines(stderr)];
        resolve({ load, exitCode, lines, passed: exitCode === 0 && lines.includes('PASS') });
      },
    );
  });
}
