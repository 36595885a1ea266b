/** Interop: the `etcd3` npm client (which nobody here wrote) against a tessera node. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3, EtcdLeaseInvalidError, GRPCOutOfRangeError } from 'etcd3';
import { type TestEtcd, REFERENCE_ETCD, TEST_NODE_ID, startTestEtcd } from './testing.testlib.js';

describe('the etcd3 npm client against tessera', () => {
  let etcd: TestEtcd;
  let client: Etcd3;
  before(async () => {
    etcd = await startTestEtcd();
    client = new Etcd3({ hosts: etcd.address });
  });
  after(async () => {
    client?.close();
    await etcd?.close();
  });

  test('put and get', async () => {
    await client.put('e/k').value('v1');
    assert.equal(await client.get('e/k').string(), 'v1');
    assert.equal(await client.get('e/missing').string(), null);
    const res = await client.get('e/k').exec();
    if (REFERENCE_ETCD === undefined) assert.equal(res.header.member_id, String(TEST_NODE_ID));
    assert.equal(res.count, '1');
  });

  test('put returns the previous value', async () => {
    await client.put('e/prev').value('a');
    const prev = await client.put('e/prev').value('b').getPrevious();
    assert.equal(prev.value.toString(), 'a');
  });

  test('getAll with a prefix, sort, limit and count', async () => {
    for (const [k, v] of [['g/a', '1'], ['g/b', '2'], ['g/c', '3'], ['h/a', 'x']] as const) await client.put(k).value(v);
    assert.deepEqual(await client.getAll().prefix('g/').strings(), { 'g/a': '1', 'g/b': '2', 'g/c': '3' });
    assert.deepEqual(await client.getAll().prefix('g/').keys(), ['g/a', 'g/b', 'g/c']);
    assert.deepEqual(await client.getAll().prefix('g/').sort('Key', 'Descend').limit(2).keys(), ['g/c', 'g/b']);
    assert.equal(await client.getAll().prefix('g/').count(), 3);
    const limited = await client.getAll().prefix('g/').limit(1).exec();
    assert.equal(limited.more, true);
    assert.equal(limited.count, '3');
  });

  test('get at a past revision', async () => {
    const first = await client.put('e/rev').value('old').exec();
    await client.put('e/rev').value('new');
    assert.equal(await client.get('e/rev').revision(first.header.revision).string(), 'old');
    assert.equal(await client.get('e/rev').string(), 'new');
  });

  test('delete a key and a prefix, with previous values', async () => {
    await client.put('del/a').value('1');
    await client.put('del/b').value('2');
    await client.put('del/c').value('3');
    const prev = await client.delete().key('del/a').getPrevious();
    assert.deepEqual(
      prev.map((kv) => kv.key.toString()),
      ['del/a'],
    );
    const res = await client.delete().prefix('del/').exec();
    assert.equal(res.deleted, '2');
    assert.equal(await client.getAll().prefix('del/').count(), 0);
  });

  test('txn: if / then / else', async () => {
    await client.put('tx/k').value('v');
    const yes = await client.if('tx/k', 'Value', '==', 'v').then(client.put('tx/k').value('v2')).else(client.get('tx/k')).commit();
    assert.equal(yes.succeeded, true);
    const no = await client.if('tx/k', 'Value', '==', 'v').then(client.put('tx/k').value('v3')).else(client.get('tx/k')).commit();
    assert.equal(no.succeeded, false);
    assert.equal(no.responses[0]?.response_range?.kvs[0]?.value.toString(), 'v2');
    const byVersion = await client.if('tx/k', 'Version', '>', 1).and('tx/none', 'Create', '==', 0).then(client.delete().key('tx/k')).commit();
    assert.equal(byVersion.succeeded, true);
    assert.equal(await client.get('tx/k').string(), null);
  });

  test('a put with an unknown lease fails as an invalid lease', async () => {
    await assert.rejects(client.put('e/leased').value('v').lease('12345').exec(), EtcdLeaseInvalidError);
  });

  test('a read below the compacted revision fails as out of range', async () => {
    const old = await client.put('e/c').value('1').exec();
    const now = await client.put('e/c').value('2').exec();
    await client.kv.compact({ revision: now.header.revision });
    await assert.rejects(client.get('e/c').revision(old.header.revision).string(), (error: Error) => {
      assert.ok(error instanceof GRPCOutOfRangeError, `got ${error.constructor.name}`);
      assert.match(error.message, /etcdserver: mvcc: required revision has been compacted/);
      return true;
    });
  });
});
