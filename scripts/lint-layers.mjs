#!/usr/bin/env node
// Layering lint (DESIGN.md, "Layers"): imports point downward only, and the
// deterministic core never reaches the clock, randomness, timers or the OS.
// Fails with one line per violation.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve, sep } from 'node:path';

// `--root DIR` lints another tree (the lint's own test uses it).
const rootArg = process.argv.indexOf('--root');
const root = rootArg > 0 ? resolve(process.argv[rootArg + 1]) : resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');

// layer -> layers it may import (besides itself). `storage/lmdb` is a layer of
// its own: the pure `storage` layer may not import it, and only the process
// wiring above the store (server, cli, the package entry) may choose LMDB.
const allowed = {
  base: [],
  raft: ['base'],
  check: ['base'],
  storage: ['base'],
  'storage/lmdb': ['base', 'storage'],
  mvcc: ['base', 'storage'],
  kv: ['base', 'raft', 'storage', 'mvcc'],
  txn: ['base', 'raft', 'storage', 'mvcc', 'kv'],
  placement: ['base', 'raft', 'storage', 'mvcc', 'kv'],
  sim: ['base', 'raft', 'storage', 'mvcc', 'kv', 'txn', 'placement', 'check'],
  server: ['base', 'raft', 'storage', 'storage/lmdb', 'mvcc', 'kv', 'txn', 'placement'],
  client: ['base'],
  cli: ['base', 'raft', 'storage', 'storage/lmdb', 'mvcc', 'kv', 'txn', 'placement', 'server', 'client', 'sim', 'check'],
  '.': ['base', 'raft', 'storage', 'storage/lmdb', 'mvcc', 'kv', 'txn', 'placement', 'server', 'client', 'check'],
};
// Layers that must stay pure and deterministic.
const pure = new Set(['base', 'raft', 'check', 'storage', 'mvcc', 'kv', 'txn', 'placement']);
// Bare packages a pure layer may import.
// msgpackr is a pure encoder (no I/O, no clock): the store encodes commands with it.
const pureBareAllowed = new Set(['msgpackr']);
const impure = [
  [/\bDate\.now\s*\(/, 'Date.now()'],
  [/\bnew Date\s*\(/, 'new Date()'],
  [/\bMath\.random\s*\(/, 'Math.random()'],
  [/\bperformance\.now\s*\(/, 'performance.now()'],
  [/\bprocess\.hrtime\b/, 'process.hrtime'],
  [/\bset(Timeout|Interval|Immediate)\s*\(/, 'timers'],
  [/\bqueueMicrotask\s*\(/, 'queueMicrotask'],
];
// The deliberate-bug switches may be set only by the simulator and tests.
const sabotageFile = /(^|\/)sabotage(\.js)?$/;
// The LMDB binding: only src/storage/lmdb may load it, tests included, so that
// every other layer reaches storage through the StorageEngine interface.
const lmdbLayer = 'storage/lmdb';
const isLmdbSpec = (spec) => spec === 'lmdb' || spec.startsWith('lmdb/');
// Any call with 'lmdb' as its only argument: require('lmdb'), createRequire(…)('lmdb').
const requireLmdbRe = /\(\s*['"]lmdb(?:\/[^'"]*)?['"]\s*\)/;
// Test libraries (`*.testlib.ts`, e.g. src/storage/conformance.testlib.ts) hold
// shared test suites: they may use node:test, fast-check and node: modules
// like tests do, and only tests and other test libraries may import them, so
// none of it reaches production code.
const isTestLibFile = (file) => file.endsWith('.testlib.ts');
const testLibSpec = /\.testlib(\.js)?$/;
// Layers with a public door: from another layer, non-test code imports them
// only through their `index.ts`, so what the layer exports there is all that
// others depend on. Tests and test libraries may reach further in. Only kv for
// now: raft's deliberate-bug switches and mvcc's bytes.ts are still reached
// past their doors.
const doors = new Set(['kv']);
// Dynamic imports are refused everywhere under src, tests included: an
// `import(expr)` with a variable specifier is an edge this lint cannot see
// (src/server/node.ts once loaded the etcd server that way). `typeof import(…)`
// names a type and loads nothing; other type positions should use `import type`.
// Matched in code with comments removed; a string holding the text still trips it.
const dynamicImportRe = /(?<!\btypeof\s+)\bimport\s*\(/;

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function layerOf(file) {
  const rel = relative(src, file).split(sep);
  if (rel.length === 1) return '.';
  if (rel[0] === 'storage' && rel[1] === 'lmdb' && rel.length > 2) return lmdbLayer;
  return rel[0];
}

const problems = [];
for (const file of walk(src)) {
  const rel = relative(root, file);
  // A test library is checked as a test: it is test code that lives beside the layer it tests.
  const isTest = file.endsWith('.test.ts') || isTestLibFile(file);
  const layer = layerOf(file);
  if (!(layer in allowed)) {
    problems.push(`${rel}: folder src/${layer} is not a layer in DESIGN.md`);
    continue;
  }
  const text = readFileSync(file, 'utf8');
  const importRe = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    if (spec.startsWith('.')) {
      const target = resolve(dirname(file), spec);
      const targetLayer = layerOf(target.replace(/\.js$/, '.ts'));
      if (targetLayer !== layer && !allowed[layer].includes(targetLayer)) {
        problems.push(`${rel}: layer '${layer}' may not import layer '${targetLayer}' (${spec})`);
      } else if (targetLayer !== layer && doors.has(targetLayer) && !isTest && target !== join(src, targetLayer, 'index.js')) {
        problems.push(`${rel}: import layer '${targetLayer}' through src/${targetLayer}/index.ts (${spec})`);
      }
      // A type-only import cannot make a Sabotage (its constructor is private), so it is allowed:
      // the store passes one through from the simulator.
      const typeOnly = /^\s*(import|export) type\s/.test(m[0]);
      if (sabotageFile.test(spec) && !typeOnly && !isTest && layer !== 'sim' && !file.includes(`${sep}raft${sep}`)) {
        problems.push(`${rel}: only src/sim and tests may import the deliberate-bug switches (${spec})`);
      }
      if (testLibSpec.test(spec) && !isTest) {
        problems.push(`${rel}: only tests and test libraries may import a test library (${spec})`);
      }
    } else if (isLmdbSpec(spec)) {
      if (layer !== lmdbLayer) problems.push(`${rel}: only src/storage/lmdb may import '${spec}'; use the StorageEngine interface`);
    } else if (pure.has(layer) && !isTest) {
      if (spec.startsWith('node:') || !pureBareAllowed.has(spec)) {
        problems.push(`${rel}: pure layer '${layer}' may not import '${spec}'; inject it instead`);
      }
    }
  }
  if (layer !== lmdbLayer && requireLmdbRe.test(text)) {
    problems.push(`${rel}: only src/storage/lmdb may load 'lmdb' (require or a dynamic load); use the StorageEngine interface`);
  }
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  if (dynamicImportRe.test(code)) {
    problems.push(`${rel}: dynamic import() is refused (the lint cannot follow it); use a static import`);
  }
  if (pure.has(layer) && !isTest) {
    for (const [re, what] of impure) {
      if (re.test(code)) problems.push(`${rel}: pure layer '${layer}' uses ${what}; inject a Clock, Rng or ticks`);
    }
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(`lint-layers: ${p}`);
  console.error(`lint-layers: ${problems.length} violation(s)`);
  process.exit(1);
}
console.log('lint-layers: ok');
