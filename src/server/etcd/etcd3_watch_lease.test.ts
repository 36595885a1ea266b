/**
 * Interop: the `etcd3` npm client's watchers, leases, locks and elections
 * (which nobody here wrote) against a tessera node; with
 * TESSERA_ETCD_REFERENCE, against a real etcd.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3, EtcdLockFailedError, type IKeyValue } from 'etcd3';
import { type TestEtcd, REFERENCE_ETCD, startTestEtcd } from './testing.testlib.js';

const WAIT_MS = 8_000;

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the etcd3 npm client: watch, lease, lock, election', () => {
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

  test('a watcher on a key sees puts and deletes; cancel ends it', async () => {
    const watcher = await client.watch().key('ew/k').create();
    const seen: string[] = [];
    watcher.on('put', (kv: IKeyValue) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
    watcher.on('delete', (kv: IKeyValue) => seen.push(`delete ${kv.key.toString()}`));
    await client.put('ew/k').value('1');
    await client.put('ew/other').value('x');
    await client.delete().key('ew/k');
    await until(() => seen.length === 2, 'two events');
    assert.deepEqual(seen, ['put ew/k=1', 'delete ew/k']);
    await watcher.cancel();
    await client.put('ew/k').value('after cancel');
    await sleep(100);
    assert.equal(seen.length, 2, 'nothing after cancel');
    if (etcd.node !== undefined) await until(() => etcd.node?.watches.size === 0, 'the hub watch canceled');
  });

  test('a prefix watcher with previous values, from a past revision', async () => {
    const first = await client.put('ew/p/a').value('1').exec();
    await client.put('ew/p/a').value('2');
    const watcher = await client.watch().prefix('ew/p/').withPreviousKV().startRevision(first.header.revision).create();
    const seen: string[] = [];
    watcher.on('put', (kv: IKeyValue, prev?: IKeyValue) => seen.push(`${kv.key.toString()}=${kv.value.toString()} prev=${prev?.value.toString() ?? '-'}`));
    await client.put('ew/p/b').value('3');
    await until(() => seen.length === 3, 'three puts');
    assert.deepEqual(seen, ['ew/p/a=1 prev=-', 'ew/p/a=2 prev=1', 'ew/p/b=3 prev=-']);
    await watcher.cancel();
  });

  test('a lease: keys attached, kept alive past its TTL, then revoked with its keys', async () => {
    const lease = client.lease(2);
    let renewals = 0;
    lease.on('keepaliveSucceeded', () => renewals++);
    let lost: Error | undefined;
    lease.on('lost', (e: Error) => (lost = e));
    await lease.put('el/k1').value('a');
    await lease.put('el/k2').value('b');
    const id = await lease.grant();
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
    assert.deepEqual(ttl.keys.map((k) => k.toString()).sort(), ['el/k1', 'el/k2']);
    assert.equal(ttl.grantedTTL, '2');
    // The client renews every TTL/3; past the TTL the keys are still there.
    await sleep(2_600);
    assert.ok(renewals >= 2, `renewed ${renewals} times`);
    assert.equal(lost, undefined);
    assert.equal(await client.get('el/k1').string(), 'a');
    await lease.revoke();
    assert.equal(await client.get('el/k1').string(), null);
    assert.equal(await client.get('el/k2').string(), null);
    const after = await client.leaseClient.leaseTimeToLive({ ID: id });
    assert.equal(after.TTL, '-1');
  });

  test('a lease that is not kept alive expires with its key', async () => {
    const lease = client.lease(2, { autoKeepAlive: false });
    await lease.put('el/short').value('v');
    const watcher = await client.watch().key('el/short').create();
    let deleted = false;
    watcher.on('delete', () => (deleted = true));
    await until(() => deleted, 'the delete on expiry');
    assert.equal(await client.get('el/short').string(), null);
    await watcher.cancel();
    lease.release();
  });

  test("lock: do() runs under the lock; this client's locks do not wait, so a contender fails until it is released", async () => {
    let inside = false;
    let release: () => void = () => {};
    const held = client.lock('el/lock').do(async () => {
      inside = true;
      await new Promise<void>((r) => (release = r));
      return 'done';
    });
    await until(() => inside, 'the first holder inside');
    assert.equal(await client.getAll().prefix('el/lock').count(), 1, 'one lock key while held');
    await assert.rejects(client.lock('el/lock').do(async () => 'never'), EtcdLockFailedError);
    release();
    assert.equal(await held, 'done');
    assert.equal(await client.getAll().prefix('el/lock').count(), 0, 'the lock key is gone once released');
    assert.equal(await client.lock('el/lock').ttl(5).do(async () => 'second'), 'second');
  });

  test('election: the first campaign leads; when it resigns the next is elected and observers follow', async () => {
    const election = client.election('el/e', 5);
    const observer = await election.observe();
    const changes: string[] = [];
    observer.on('change', (leader: string | undefined) => changes.push(leader ?? '(none)'));
    const a = election.campaign('alpha');
    await a.wait();
    assert.equal(await election.leader(), 'alpha');
    const b = election.campaign('beta');
    let bElected = false;
    b.on('elected', () => (bElected = true));
    await sleep(300);
    assert.equal(bElected, false, 'beta waits while alpha leads');
    await a.resign();
    await b.wait();
    assert.equal(await election.leader(), 'beta');
    await until(() => changes.includes('beta'), 'the observer to see beta');
    assert.ok(changes.indexOf('alpha') < changes.indexOf('beta') || !changes.includes('alpha'), changes.join());
    await b.resign();
    await observer.cancel();
  });

  test('no watches are left on the server once the watchers are canceled', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, async () => {
    await until(() => etcd.node?.watches.size === 0, `no hub watches (${etcd.node?.watches.size} left)`);
  });
});
