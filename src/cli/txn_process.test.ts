import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type MicroOp, type Txn, checkTxnHistory } from '../check/index.js';
import { KvClient, ProcCluster, note, rangesOf, retryUntil, sleep } from '../server/process_cluster.testlib.js';

/**
 * Issue 14 on real processes: list-append and bank transactions across
 * ranges through the etcd API of a 3-node cluster whose key space is cut
 * into 4 ranges, while the node that coordinates some of them is SIGKILLed
 * in the middle of commits and restarted. The list-append history must
 * check valid (src/check/txn), every read of all accounts must add up, and
 * no intent may remain once the cluster recovered.
 */

const RANGES = 4;
/** One key in each of the three data ranges the pre-split makes (presplit/1…, presplit/2…, presplit/3…). */
const KEYS = ['presplit/1/k', 'presplit/2/k', 'presplit/3/k'];
const ACCOUNTS = ['presplit/1/acct', 'presplit/2/acct', 'presplit/3/acct'];
const OPENING = 100;
const CALL_MS = 5_000;
const LOAD_MS = 8_000;

interface TxnCall {
  compare?: { key: Buffer; target: 'MOD'; result: 'EQUAL'; mod_revision: string }[];
  success?: ({ request_put: { key: Buffer; value: Buffer } } | { request_range: { key: Buffer } })[];
  failure?: ({ request_put: { key: Buffer; value: Buffer } } | { request_range: { key: Buffer } })[];
}
interface TxnAnswer {
  succeeded?: boolean;
  responses?: { response_range?: { kvs?: { key: Buffer; value: Buffer; mod_revision: string }[] } }[];
}

function txn(client: KvClient, request: TxnCall): Promise<TxnAnswer> {
  return client.txn<TxnAnswer>(request, CALL_MS);
}

/** Reads `keys` in one read-only Txn: each key's value and mod revision (undefined: absent). */
async function readAll(client: KvClient, keys: readonly string[]): Promise<({ value: string; mod: string } | undefined)[]> {
  const r = await txn(client, { success: keys.map((k) => ({ request_range: { key: Buffer.from(k) } })) });
  return keys.map((_, i) => {
    const kv = r.responses?.[i]?.response_range?.kvs?.[0];
    return kv === undefined ? undefined : { value: Buffer.from(kv.value).toString(), mod: String(kv.mod_revision) };
  });
}

/** An unknown outcome (a deadline, a dropped connection) as opposed to a definite refusal. */
function unknownOutcome(error: unknown): boolean {
  const code = (error as { code?: number }).code;
  // DEADLINE_EXCEEDED, UNAVAILABLE (etcd's "request timed out", a killed node), INTERNAL/UNKNOWN: may have applied.
  return code === 4 || code === 14 || code === 13 || code === 2 || code === undefined;
}

test('real processes: list-append and bank transactions across ranges while the coordinating node is SIGKILLed mid-commit; the history checks valid, every total adds up, no intent remains', async () => {
  const cluster = await ProcCluster.create(3, { prefix: 'tessera-txn-', extraArgs: ['--dev-presplit-ranges', String(RANGES)] });
  try {
    await cluster.startAll();
    const clients = cluster.clientAddresses.map((a) => new KvClient(a));
    for (const spec of cluster.specs) {
      await retryUntil(`${spec.name} holds ${RANGES} ranges`, 30_000, async () => {
        const n = (await rangesOf(spec.admin)).length;
        if (n < RANGES) throw new Error(`${n} ranges`);
      });
    }
    // The bank opens with one transaction over the three ranges.
    await retryUntil('the accounts open', 20_000, () => txn(clients[0]!, { success: ACCOUNTS.map((k) => ({ request_put: { key: Buffer.from(k), value: Buffer.from(String(OPENING)) } })) }));

    const history: Txn[] = [];
    let position = 0;
    let element = 1;
    let nextProcess = 0;
    const totals: number[] = [];
    const stopAt = Date.now() + LOAD_MS;
    const appender = async (first: number): Promise<void> => {
      let process = nextProcess++;
      for (let n = first; Date.now() < stopAt; n++) {
        const client = clients[n % clients.length]!;
        const ops: MicroOp[] = Array.from({ length: 1 + (n % 3) }, (_, i) => ((n + i) % 2 === 0 ? { f: 'append', key: (n + i) % KEYS.length, value: element++ } : { f: 'r', key: (n + 2 * i) % KEYS.length, value: undefined }));
        const id = history.length;
        history.push({ id, process, status: 'info', ops, invokeAt: position++, completeAt: Infinity, index: id });
        const keys = [...new Set(ops.map((op) => op.key as number))];
        let seen: ({ value: string; mod: string } | undefined)[];
        try {
          seen = await readAll(client, keys.map((k) => KEYS[k]!));
        } catch {
          history[id] = { ...history[id]!, status: 'fail', completeAt: position++ };
          await sleep(50);
          continue;
        }
        const lists = new Map(keys.map((k, i) => [k, seen[i] === undefined || seen[i]!.value === '' ? [] : seen[i]!.value.split(',').map(Number)]));
        const done: MicroOp[] = ops.map((op) => {
          const list = lists.get(op.key as number)!;
          if (op.f !== 'append') return { f: 'r', key: op.key, value: [...list] };
          lists.set(op.key as number, [...list, op.value as number]);
          return op;
        });
        const appended = [...new Set(ops.filter((op) => op.f === 'append').map((op) => op.key as number))];
        if (appended.length === 0) {
          history[id] = { ...history[id]!, status: 'ok', ops: done, completeAt: position++ };
          continue;
        }
        try {
          const r = await txn(client, {
            compare: keys.map((k, i) => ({ key: Buffer.from(KEYS[k]!), target: 'MOD', result: 'EQUAL', mod_revision: seen[i]?.mod ?? '0' })),
            success: appended.map((k) => ({ request_put: { key: Buffer.from(KEYS[k]!), value: Buffer.from(lists.get(k)!.join(',')) } })),
          });
          history[id] = { ...history[id]!, status: r.succeeded === true ? 'ok' : 'fail', ops: r.succeeded === true ? done : ops, completeAt: position++ };
        } catch (error) {
          if (!unknownOutcome(error)) history[id] = { ...history[id]!, status: 'fail', completeAt: position++ };
          else process = nextProcess++;
          await sleep(50);
        }
      }
    };
    const banker = async (first: number): Promise<void> => {
      for (let n = first; Date.now() < stopAt; n++) {
        const client = clients[n % clients.length]!;
        try {
          const seen = await readAll(client, ACCOUNTS);
          const balances = seen.map((s) => Number(s?.value ?? 0));
          if (n % 3 === 0) {
            totals.push(balances.reduce((a, b) => a + b, 0));
            continue;
          }
          const from = n % 3;
          const to = (n + 1) % 3;
          const amount = 1 + (n % 5);
          if (balances[from]! < amount) continue;
          await txn(client, {
            compare: [from, to].map((i) => ({ key: Buffer.from(ACCOUNTS[i]!), target: 'MOD', result: 'EQUAL', mod_revision: seen[i]!.mod })),
            success: [
              { request_put: { key: Buffer.from(ACCOUNTS[from]!), value: Buffer.from(String(balances[from]! - amount)) } },
              { request_put: { key: Buffer.from(ACCOUNTS[to]!), value: Buffer.from(String(balances[to]! + amount)) } },
            ],
          });
        } catch {
          await sleep(50);
        }
      }
    };
    // The nemesis: node 1 (a coordinator of a third of the transactions) is killed mid-load and comes back.
    const nemesis = (async (): Promise<void> => {
      await sleep(2_500);
      await cluster.kill(1);
      note('SIGKILLed n2 under load');
      await sleep(1_500);
      await cluster.start(1);
      note('restarted n2');
    })();
    await Promise.all([appender(0), appender(1), appender(2), banker(0), banker(1), nemesis]);

    // Recovery: the dead coordinator's intents are swept (two looks 5 s apart, then its record's 5 s expiry) or met by reads.
    const finalRead = await retryUntil('a final read of every key', 30_000, () => readAll(clients[0]!, KEYS));
    history.push({ id: history.length, process: -1, status: 'ok', ops: KEYS.map((_, key) => ({ f: 'r', key, value: finalRead[key] === undefined || finalRead[key]!.value === '' ? [] : finalRead[key]!.value.split(',').map(Number) })), invokeAt: position++, completeAt: position++, index: history.length });
    const finalTotal = (await retryUntil('a final read of the accounts', 30_000, () => readAll(clients[0]!, ACCOUNTS))).reduce((a, s) => a + Number(s?.value ?? 0), 0);
    totals.push(finalTotal);
    await retryUntil('no intent left on any node', 40_000, async () => {
      for (const spec of cluster.specs) {
        const left = (await rangesOf(spec.admin)).reduce((n, r) => n + r.intents, 0);
        if (left > 0) throw new Error(`${spec.name} holds ${left} intents`);
      }
    }, 500);

    const ok = history.filter((t) => t.status === 'ok').length;
    const info = history.filter((t) => t.status === 'info').length;
    note(`list-append: ${history.length} transactions, ${ok} ok, ${info} unknown; bank: ${totals.length} totals read`);
    const result = checkTxnHistory(history, { model: 'list-append' });
    assert.equal(result.valid, true, result.anomalies.map((a) => a.explanation).join('\n'));
    assert.ok(ok > 20, `${ok} transactions committed`);
    assert.deepEqual([...new Set(totals)], [OPENING * ACCOUNTS.length], 'every read of all accounts adds up to the opening total');
  } finally {
    await cluster.destroy();
  }
});
