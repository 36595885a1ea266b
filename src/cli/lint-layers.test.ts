import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../scripts/lint-layers.mjs', import.meta.url));

function lint(files: Record<string, string>): { status: number | null; output: string } {
  const root = mkdtempSync(join(tmpdir(), 'tessera-lint-'));
  try {
    for (const [path, text] of Object.entries(files)) {
      const full = join(root, 'src', path);
      mkdirSync(join(full, '..'), { recursive: true });
      writeFileSync(full, text);
    }
    const r = spawnSync(process.execPath, [script, '--root', root], { encoding: 'utf8' });
    return { status: r.status, output: r.stdout + r.stderr };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test('lint-layers: a clean tree passes', () => {
  const r = lint({ 'base/a.ts': 'export const a = 1;\n', 'raft/b.ts': "import { a } from '../base/a.js';\nexport const b = a;\n" });
  assert.equal(r.status, 0, r.output);
});

test('lint-layers: raft importing sim is refused', () => {
  const r = lint({ 'sim/s.ts': 'export const s = 1;\n', 'raft/b.ts': "import { s } from '../sim/s.js';\nexport const b = s;\n" });
  assert.equal(r.status, 1);
  assert.match(r.output, /layer 'raft' may not import layer 'sim'/);
});

test('lint-layers: the clock, randomness, timers and node: modules are refused in the core', () => {
  const r = lint({
    'raft/t.ts': 'export const t = Date.now();\n',
    'check/r.ts': 'export const r = Math.random();\n',
    'raft/s.ts': 'setTimeout(() => {}, 1);\n',
    'raft/f.ts': "import { readFileSync } from 'node:fs';\nexport const f = readFileSync;\n",
  });
  assert.equal(r.status, 1);
  assert.match(r.output, /uses Date\.now\(\)/);
  assert.match(r.output, /uses Math\.random\(\)/);
  assert.match(r.output, /uses timers/);
  assert.match(r.output, /may not import 'node:fs'/);
});

test('lint-layers: only the simulator may import the deliberate-bug switches', () => {
  const r = lint({ 'raft/sabotage.ts': 'export const x = 1;\n', 'server/s.ts': "import { x } from '../raft/sabotage.js';\nexport const y = x;\n" });
  assert.equal(r.status, 1);
  assert.match(r.output, /only src\/sim and tests may import the deliberate-bug switches/);
});
