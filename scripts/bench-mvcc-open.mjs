#!/usr/bin/env node
// Open time and read cost of an MVCC store over LMDB, for comparing builds (ADR 0009 §1, issue 13:
// a store must open in O(1)). Writes --keys keys (once, or reuses --dir), then opens the store
// with the build under --dist and times the open, point gets, short ranges and a count of all keys.
//
//   node scripts/bench-mvcc-open.mjs --keys 1000000 --dir /tmp/mvcc-1m            # build the data, measure
//   node scripts/bench-mvcc-open.mjs --dir /tmp/mvcc-1m --dist /work/main/dist    # measure another build
//
// Both builds must share the storage format (they do while META_FORMAT is unchanged).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    dir: { type: 'string' },
    dist: { type: 'string', default: 'dist' },
    gets: { type: 'string', default: '20000' },
    ranges: { type: 'string', default: '2000' },
  },
});
const keyCount = Number(values.keys);
const dist = pathToFileURL(resolve(values.dist) + '/').href;
const { LmdbEngine } = await import(`${dist}storage/lmdb/engine.js`);
const { MvccStore, WHOLE_KEY_SPAN } = await import(`${dist}mvcc/index.js`);

const LOCATION = { metaPrefix: new TextEncoder().encode('r1/'), span: WHOLE_KEY_SPAN };
const PUTS_PER_TXN = 100;
const TXNS_PER_COMMIT = 50;
const keyOf = (i) => new TextEncoder().encode(`bench/${String(i).padStart(8, '0')}`);
const value = new Uint8Array(256).fill(0x61);

const ownDir = values.dir === undefined;
const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'tessera-mvcc-open-'));

async function commit(engine, batch) {
  await new Promise((done, fail) => engine.commit(batch, (error) => (error ? fail(error) : done())));
}

async function build() {
  const engine = await LmdbEngine.open({ path: dir });
  const store = MvccStore.open(engine, LOCATION);
  const started = process.hrtime.bigint();
  for (let i = 0; i < keyCount; ) {
    const batch = engine.newBatch();
    for (let t = 0; t < TXNS_PER_COMMIT && i < keyCount; t++) {
      const success = [];
      for (let p = 0; p < PUTS_PER_TXN && i < keyCount; p++, i++) success.push({ type: 'put', put: { key: keyOf(i), value } });
      store.txn(batch, { compare: [], success, failure: [] });
    }
    await commit(engine, batch);
  }
  console.log(`wrote ${keyCount} keys in ${ms(started)} ms`);
  await engine.close();
}

function ms(started) {
  return (Number(process.hrtime.bigint() - started) / 1e6).toFixed(1);
}

/** A fixed pseudo-random sequence, so every build reads the same keys. */
function* indexes(n, seed = 12345) {
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    yield x % keyCount;
  }
}

async function measure() {
  const engine = await LmdbEngine.open({ path: dir });
  let started = process.hrtime.bigint();
  const store = MvccStore.open(engine, LOCATION);
  const first = store.range({ key: keyOf(0) });
  console.log(`open + first get: ${ms(started)} ms (revision ${store.currentRevision}, found ${first.kvs.length})`);
  const gets = Number(values.gets);
  // Twice over the same keys: the first pass finds them on disk (and in any cache a build keeps), the second again.
  for (const pass of ['first', 'second']) {
    started = process.hrtime.bigint();
    for (const i of indexes(gets)) if (store.range({ key: keyOf(i) }).kvs.length !== 1) throw new Error(`key ${i} missing`);
    console.log(`get (${pass} pass): ${((Number(process.hrtime.bigint() - started) / 1e3) / gets).toFixed(2)} µs/op over ${gets}`);
  }
  const ranges = Number(values.ranges);
  started = process.hrtime.bigint();
  for (const i of indexes(ranges, 777)) store.range({ key: keyOf(i), rangeEnd: keyOf(i + 10), limit: 10 });
  console.log(`range of 10 keys (limit 10, counts the rest of the range): ${((Number(process.hrtime.bigint() - started) / 1e3) / ranges).toFixed(2)} µs/op over ${ranges}`);
  started = process.hrtime.bigint();
  const prefix = new TextEncoder().encode('bench/');
  const count = store.range({ key: prefix, rangeEnd: new TextEncoder().encode('bench0'), countOnly: true }).count;
  console.log(`count of all keys: ${ms(started)} ms (${count})`);
  started = process.hrtime.bigint();
  const page = store.range({ key: prefix, rangeEnd: new TextEncoder().encode('bench0'), limit: 100 });
  console.log(`first 100 of all keys (counts all): ${ms(started)} ms (${page.kvs.length}, count ${page.count})`);
  await engine.close();
}

try {
  if (!existsSync(join(dir, 'data.mdb'))) await build();
  await measure();
} finally {
  if (ownDir) rmSync(dir, { recursive: true, force: true });
}
