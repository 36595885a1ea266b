import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { TxnRequest } from '../mvcc/index.js';
import { startNode } from './node.js';
import type { RangeInfo } from './ranges.js';

const enc = new TextEncoder();

function put(key: string, value: string): TxnRequest {
  return { compare: [], success: [{ type: 'put', put: { key: enc.encode(key), value: enc.encode(value) } }], failure: [] };
}

test('ranges: /ranges and `tessera ranges` list the range with its bounds, replicas, leader, live keys and bytes, and the requests it served', async () => {
  const node = await startNode({ name: 'solo', engine: 'memory', listenPeer: '127.0.0.1:0', listenClient: '127.0.0.1:0', listenAdmin: '127.0.0.1:0', logger: pino({ level: 'silent' }), tickMs: 20 });
  try {
    for (let i = 0; i < 50; i++) await node.kv.txn(put(`key${String(i).padStart(2, '0')}`, 'x'.repeat(i)));
    await node.kv.txn(put('key00', 'overwritten')); // one more version, the same key count
    const ranges = (await (await fetch(`http://${node.endpoints.admin}/ranges`)).json()) as RangeInfo[];
    assert.equal(ranges.length, 1);
    const r = ranges[0]!;
    assert.equal(r.start, '', 'the one range starts at the start of the key space');
    assert.equal(r.end, '', 'and ends at its end');
    assert.deepEqual(r.replicas, [{ node: 'solo', role: 'voter' }]);
    assert.equal(r.leader, 'solo');
    assert.equal(r.keys, 50);
    // 50 keys of 5 bytes; values 1..49 bytes long except key00's, now 'overwritten'.
    const valueBytes = (49 * 50) / 2 + 'overwritten'.length;
    assert.equal(r.bytes, 50 * 5 + valueBytes);
    assert.ok(r.qps >= 51 / 10, `51 writes within the window, qps ${r.qps}`);

    const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
    const run = (args: string[]): Promise<string> =>
      new Promise((resolve, reject) => execFile(process.execPath, [main, ...args], (error, stdout) => (error ? reject(error) : resolve(stdout))));
    const table = await run(['ranges', '--endpoints', node.endpoints.admin!]);
    const [header, row] = table.trim().split('\n');
    assert.match(header ?? '', /^ID\s+START\s+END\s+REPLICAS\s+LEADER\s+KEYS\s+BYTES\s+QPS$/);
    assert.match(row ?? '', new RegExp(`^1\\s+\\(start\\)\\s+\\(end\\)\\s+solo\\s+solo\\s+50\\s+${r.bytes}\\s+`));
    const json = JSON.parse(await run(['ranges', '--endpoints', node.endpoints.admin!, '--json'])) as RangeInfo[];
    assert.equal(json[0]?.keys, 50);
  } finally {
    await node.close();
  }
});
