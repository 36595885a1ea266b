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

test('lint-layers: only src/storage/lmdb may import lmdb, and it is a layer of its own', () => {
  const ok = lint({
    'base/a.ts': 'export const a = 1;\n',
    'storage/engine.ts': 'export const e = 1;\n',
    'storage/lmdb/engine.ts':
      "import { open } from 'lmdb';\nimport { mkdirSync } from 'node:fs';\nimport { e } from '../engine.js';\nimport { a } from '../../base/a.js';\nexport const x = [open, mkdirSync, e, a];\n",
    'storage/lmdb/engine.test.ts': "import { open } from 'lmdb';\nexport const t = open;\n",
    'server/s.ts': "import { x } from '../storage/lmdb/engine.js';\nexport const s = x;\n",
  });
  assert.equal(ok.status, 0, ok.output);

  const r = lint({
    'storage/lmdb/engine.ts': 'export const x = 1;\n',
    'server/s.ts': "import { open } from 'lmdb';\nexport const s = open;\n",
    'kv/k.test.ts': "import { open } from 'lmdb';\nexport const k = open;\n",
    'storage/m.ts': "import { open } from 'lmdb/index.js';\nexport const m = open;\n",
    // Spelled in two parts so that this file does not trip the rule it tests.
    'cli/c.ts': "import { createRequire } from 'node:module';\nexport const c = createRequire(import.meta.url)('" + 'lmdb' + "');\n",
    'storage/n.ts': "import { x } from './lmdb/engine.js';\nexport const n = x;\n",
    'kv/store.ts': "import { x } from '../storage/lmdb/engine.js';\nexport const k = x;\n",
  });
  assert.equal(r.status, 1);
  assert.match(r.output, /server\/s\.ts: only src\/storage\/lmdb may import 'lmdb'/);
  assert.match(r.output, /kv\/k\.test\.ts: only src\/storage\/lmdb may import 'lmdb'/);
  assert.match(r.output, /storage\/m\.ts: only src\/storage\/lmdb may import 'lmdb\/index\.js'/);
  assert.match(r.output, /cli\/c\.ts: only src\/storage\/lmdb may load 'lmdb' \(require/);
  assert.match(r.output, /layer 'storage' may not import layer 'storage\/lmdb'/);
  assert.match(r.output, /layer 'kv' may not import layer 'storage\/lmdb'/);
  assert.match(r.output, /6 violation\(s\)/);
});

test('lint-layers: a test library may use node:test, and only tests may import it', () => {
  const r = lint({
    'storage/suite.testlib.ts': "import { test } from 'node:test';\nimport fc from 'fast-check';\nexport const suite = [test, fc];\n",
    'storage/memory.test.ts': "import { suite } from './suite.testlib.js';\nexport const t = suite;\n",
    'storage/memory.ts': "import { suite } from './suite.testlib.js';\nexport const m = suite;\n",
  });
  assert.equal(r.status, 1);
  assert.match(r.output, /storage\/memory\.ts: only tests and test libraries may import a test library/);
  assert.doesNotMatch(r.output, /suite\.testlib\.ts/);
  assert.doesNotMatch(r.output, /memory\.test\.ts/);
  assert.match(r.output, /1 violation\(s\)/);
});

test('lint-layers: a dynamic import is refused, in tests too; typeof import(…) in a type is not', () => {
  // `import` and `(` are kept apart so that this file does not trip the rule it tests.
  const call = 'import' + '(';
  const r = lint({
    'base/a.ts': 'export const a = 1;\n',
    'server/s.ts': `const spec = '../base/a.js';\nexport const s = await ${call}spec);\n`,
    'server/t.test.ts': `export const t = await ${call}'../base/a.js');\n`,
    'server/u.ts': `export type A = typeof ${call}'../base/a.js');\n// a comment may say ${call}x)\n`,
  });
  assert.equal(r.status, 1);
  assert.match(r.output, /server\/s\.ts: dynamic import\(\) is refused/);
  assert.match(r.output, /server\/t\.test\.ts: dynamic import\(\) is refused/);
  assert.doesNotMatch(r.output, /server\/u\.ts/);
  assert.match(r.output, /2 violation\(s\)/);
});

test('lint-layers: other layers import kv only through src/kv/index.ts; tests may reach further in', () => {
  const r = lint({
    'kv/store.ts': 'export class Store {}\n',
    'kv/index.ts': "export { Store } from './store.js';\n",
    'kv/replica.ts': "import { Store } from './store.js';\nexport const r = Store;\n",
    'server/ok.ts': "import { Store } from '../kv/index.js';\nexport const s = Store;\n",
    'server/bad.ts': "import { Store } from '../kv/store.js';\nexport const s = Store;\n",
    'server/etcd/bad.ts': "import type { Store } from '../../kv/store.js';\nexport type S = Store;\n",
    'sim/bad.ts': "export { Store } from '../kv/store.js';\n",
    'server/s.test.ts': "import { Store } from '../kv/store.js';\nexport const t = Store;\n",
    'server/h.testlib.ts': "import { Store } from '../kv/store.js';\nexport const h = Store;\n",
  });
  assert.equal(r.status, 1);
  assert.match(r.output, /server\/bad\.ts: import layer 'kv' through src\/kv\/index\.ts \(\.\.\/kv\/store\.js\)/);
  assert.match(r.output, /server\/etcd\/bad\.ts: import layer 'kv' through src\/kv\/index\.ts/);
  assert.match(r.output, /sim\/bad\.ts: import layer 'kv' through src\/kv\/index\.ts/);
  assert.match(r.output, /3 violation\(s\)/);
});
