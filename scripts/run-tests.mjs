#!/usr/bin/env node
// Runs every compiled *.test.js under dist/ with Node's test runner, streams
// its output, and ends with one summary line carrying the counts, so CI can
// tell that tests ran. Node 20 does not expand globs, so the files are listed here.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filter = process.argv.slice(2);
let files = walk('dist').sort();
if (filter.length > 0) files = files.filter((f) => filter.some((s) => f.includes(s)));
const child = spawn(process.execPath, ['--test', '--test-reporter=spec', ...files], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const counts = {};
let buffered = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buffered += chunk.toString();
  const lines = buffered.split('\n');
  buffered = lines.pop() ?? '';
  for (const line of lines) {
    const m = /^ℹ (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ([\d.]+)/.exec(line);
    if (m) counts[m[1]] = Number(m[2]);
  }
});
child.on('close', (code) => {
  const t = counts.tests ?? 0;
  const ok = code === 0 && t > 0 && (counts.fail ?? 0) === 0;
  console.log(
    `TEST SUMMARY: ${t} tests, ${counts.pass ?? 0} passed, ${counts.fail ?? 0} failed, ` +
      `${counts.cancelled ?? 0} cancelled, ${counts.skipped ?? 0} skipped in ${files.length} files: ${ok ? 'PASS' : 'FAIL'}`,
  );
  process.exit(ok ? 0 : 1);
});
