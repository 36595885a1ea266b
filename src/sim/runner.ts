import { BUG_CAUGHT_BY } from './violation.js';
import type { BugName } from '../raft/sabotage.js';
import type { OptionOverrides } from './options.js';
import { type SeedResult, runSeed } from './simulation.js';

export interface RunSummary {
  readonly seedsRun: number;
  readonly elapsedMs: number;
  readonly faults: Record<string, number>;
  readonly opsChecked: number;
  readonly opsUnknown: number;
  /** Seeds whose linearizability check stayed undecided after every budget escalation; each is also in failures. */
  readonly checkUnknown: number[];
  readonly events: number;
  readonly failures: readonly SeedResult[];
}

export interface RunOptions {
  readonly start: number;
  readonly count: number;
  readonly overrides: OptionOverrides;
  readonly stopOnFirstFailure: boolean;
  /** With stopOnFirstFailure: which failure stops the run (default any). A bug test stops at the first one its oracle caught. */
  readonly stopAt?: (failure: SeedResult) => boolean;
  /** Injected wall clock, only for the seeds-per-second figure. */
  readonly nowMs: () => number;
  readonly onProgress?: (line: string) => void;
}

export async function runSeeds(o: RunOptions): Promise<RunSummary> {
  const t0 = o.nowMs();
  const faults: Record<string, number> = {};
  const failures: SeedResult[] = [];
  let opsChecked = 0;
  let opsUnknown = 0;
  const checkUnknown: number[] = [];
  let events = 0;
  let seedsRun = 0;
  for (let seed = o.start; seed < o.start + o.count; seed++) {
    const r = await runSeed(seed, o.overrides);
    seedsRun++;
    for (const [k, v] of Object.entries(r.faults)) faults[k] = (faults[k] ?? 0) + v;
    opsChecked += r.opsChecked;
    opsUnknown += r.ops.unknown;
    events += r.events;
    if (r.checkVerdict === 'unknown') checkUnknown.push(seed);
    if (r.violations.length > 0) {
      failures.push(r);
      if (o.stopOnFirstFailure && (o.stopAt === undefined || o.stopAt(r))) break;
    }
    if (o.onProgress !== undefined && seedsRun % 50 === 0) {
      o.onProgress(`.. ${seedsRun} seeds, ${failures.length} failing, ${((seedsRun * 1000) / (o.nowMs() - t0)).toFixed(1)} seeds/s`);
    }
  }
  return { seedsRun, elapsedMs: o.nowMs() - t0, faults, opsChecked, opsUnknown, checkUnknown, events, failures };
}

export function formatSummary(s: RunSummary, bug: BugName | undefined): string {
  const lines: string[] = [];
  const perSec = (s.seedsRun * 1000) / Math.max(1, s.elapsedMs);
  lines.push(`seeds: ${s.seedsRun} in ${(s.elapsedMs / 1000).toFixed(1)}s (${perSec.toFixed(2)} seeds/s, ${Math.round(s.events / Math.max(1, s.seedsRun))} events/seed)`);
  lines.push(`operations checked: ${s.opsChecked} (${(s.opsChecked / Math.max(1, s.seedsRun)).toFixed(0)} per seed; ${s.opsUnknown} with unknown outcome)`);
  // An undecided seed is also a failure (its violation says "undecided").
  lines.push(`undecided: ${s.checkUnknown.length}${s.checkUnknown.length > 0 ? ` (seeds ${s.checkUnknown.slice(0, 20).join(' ')})` : ''}`);
  lines.push('faults injected:');
  for (const [k, v] of Object.entries(s.faults).sort(([a], [b]) => (a < b ? -1 : 1))) lines.push(`  ${k.padEnd(28)} ${v}`);
  const bugFlag = bug === undefined ? '' : ` --bug ${bug}`;
  for (const f of s.failures) {
    lines.push(`FAILED seed ${f.seed}:`);
    f.violations.slice(0, 5).forEach((v, i) => lines.push(`  [${f.violationKinds[i] ?? '?'}] ${v}`));
    lines.push(`  replay: npm run sim -- --seed ${f.seed}${bugFlag} --trace`);
  }
  if (bug === undefined) lines.push(`violations: ${s.failures.length} failing seed(s)`);
  else {
    // The catch is the first seed whose first violation is one of the bug's own kinds; others are listed above.
    const own = s.failures.find((f) => f.violationKinds[0] !== undefined && BUG_CAUGHT_BY[bug].includes(f.violationKinds[0]));
    lines.push(own !== undefined ? `bug ${bug} caught by seed ${own.seed} [${own.violationKinds[0]}]` : `bug ${bug} NOT caught by ${BUG_CAUGHT_BY[bug].join('/')} in ${s.seedsRun} seeds`);
  }
  return lines.join('\n');
}
