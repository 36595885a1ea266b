/**
 * Verdicts on recorded histories nobody on this project wrote (Porcupine's
 * test data). Data from outside the project is not committed into it: it
 * lives in `../shared/testdata/` beside the repository (README.md there
 * describes the formats), which CI also has.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkOperations, etcdRegisterModel, kvModel, parseEdnKvLog, parseJepsenEtcdLog } from './index.js';

/**
 * TESSERA_TESTDATA if set; else `../shared/testdata/` beside the repository
 * root (this file runs from dist/check/, two levels below the root).
 */
function testdataDir(): string {
  const override = process.env['TESSERA_TESTDATA'];
  const dir =
    override !== undefined && override !== '' ? override : fileURLToPath(new URL('../../../shared/testdata/', import.meta.url));
  // Failing beats skipping: a missing data set must not look like a pass.
  if (!existsSync(`${dir}/porcupine-etcd/verdicts.json`)) {
    const how = override !== undefined && override !== '' ? 'TESSERA_TESTDATA' : 'the default location (override with TESSERA_TESTDATA)';
    throw new Error(`no recorded histories in ${dir} (${how}): porcupine-etcd/verdicts.json is missing`);
  }
  return dir;
}

const dir = testdataDir();
const read = (path: string) => readFileSync(`${dir}/${path}`, 'utf8');
const etcdVerdicts = JSON.parse(read('porcupine-etcd/verdicts.json')) as Record<string, boolean>;
const kvFiles = readdirSync(`${dir}/porcupine-kv`).filter((f) => /-(ok|bad)\.txt$/.test(f)).sort();
const clock = () => performance.now();

test('the data set is complete', () => {
  assert.equal(Object.keys(etcdVerdicts).length, 52);
  assert.equal(kvFiles.length, 4);
});

test('porcupine-etcd: every verdict matches verdicts.json', (t) => {
  let ms = 0;
  for (const [file, linearizable] of Object.entries(etcdVerdicts)) {
    const ops = parseJepsenEtcdLog(read(`porcupine-etcd/${file}`), file);
    const result = checkOperations(etcdRegisterModel, ops, { nowMs: clock });
    ms += result.elapsedMs ?? 0;
    assert.equal(result.verdict, linearizable ? 'linearizable' : 'not-linearizable', file);
    if (!linearizable) assert.ok(result.failure?.window.includes(result.failure.blocked), file);
  }
  t.diagnostic(`checked ${Object.keys(etcdVerdicts).length} etcd histories in ${ms.toFixed(0)} ms`);
});

for (const partition of [true, false]) {
  test(`porcupine-kv: -ok files are linearizable and -bad ones not (partition: ${partition})`, (t) => {
    for (const file of kvFiles) {
      const ops = parseEdnKvLog(read(`porcupine-kv/${file}`), file);
      const result = checkOperations(kvModel, ops, { partition, nowMs: clock });
      assert.equal(result.verdict, file.endsWith('-ok.txt') ? 'linearizable' : 'not-linearizable', file);
      assert.equal(result.partitions > 1, partition, file);
      t.diagnostic(`${file}: ${ops.length} ops, ${result.partitions} partitions, ${(result.elapsedMs ?? 0).toFixed(0)} ms`);
    }
  });
}

test('the CLI prints the verdict last and exits 0, 1 or 2', () => {
  const cli = fileURLToPath(new URL('../cli/check-history.js', import.meta.url));
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const lastLine = (text: string) => text.trimEnd().split('\n').pop();
  const ok = run('--model', 'etcd-register', `${dir}/porcupine-etcd/etcd_002.log`);
  assert.equal(ok.status, 0);
  assert.equal(lastLine(ok.stdout), 'linearizable');
  const bad = run('--model', 'kv', '--no-partition', `${dir}/porcupine-kv/c01-bad.txt`);
  assert.equal(bad.status, 1);
  assert.equal(lastLine(bad.stdout), 'not linearizable');
  assert.match(bad.stdout, /window \(1 operations/);
  const spent = run('--model', 'kv', '--no-partition', '--time-budget-ms', '0', `${dir}/porcupine-kv/c10-bad.txt`);
  assert.equal(spent.status, 2);
  assert.equal(lastLine(spent.stdout), 'unknown');
  const noMemory = run('--model', 'kv', '--max-memo-mib', '0', `${dir}/porcupine-kv/c10-ok.txt`);
  assert.equal(noMemory.status, 2);
  assert.match(noMemory.stdout, /budget exhausted: memory-budget/);
  const usage = run('--model', 'nope', 'x');
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /usage:/);
});
