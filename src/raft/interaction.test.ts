import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runScript } from './testing/datadriven.js';

// Golden scripts live in the source tree; set UPDATE_GOLDEN=1 to rewrite them from actual output.
const dir = fileURLToPath(new URL('../../src/raft/testdata/', import.meta.url));
const files = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();

test('interaction scripts exist', () => {
  assert.ok(files.length > 0, `no scripts in ${dir}`);
});

for (const file of files) {
  test(`interaction: ${file}`, () => {
    const path = dir + file;
    const text = readFileSync(path, 'utf8');
    const { rewritten, mismatches } = runScript(text);
    if (process.env['UPDATE_GOLDEN'] === '1') {
      writeFileSync(path, rewritten);
      return;
    }
    if (mismatches.length > 0) {
      const m = mismatches[0];
      assert.ok(m !== undefined);
      assert.equal(m.actual, m.block.expected, `${file}:${m.block.line}: output of '${m.block.command}' differs`);
    }
  });
}
