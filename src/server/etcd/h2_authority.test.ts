import assert from 'node:assert/strict';
import { connect as connectTcp } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Metadata, credentials, loadPackageDefinition, type Client, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { H2_PREFACE, cleanAuthority } from './h2_authority.js';
import { etcdPackage } from './proto.js';
import { type TestEtcd, REFERENCE_ETCD, call, startTestEtcd } from './testing.testlib.js';

type KvCtor = new (address: string, creds: ChannelCredentials, options?: object) => Client;

/** A KV client that sends `authority` as the HTTP/2 :authority, as etcdctl does when it dials http://host:port. */
function kvWithAuthority(address: string, authority: string): Client {
  const pkg = loadPackageDefinition(etcdPackage()) as unknown as { etcdserverpb: { KV: KvCtor } };
  return new pkg.etcdserverpb.KV(address, credentials.createInsecure(), { 'grpc.default_authority': authority });
}

test('authorities are cleaned to what nghttp2 accepts', () => {
  assert.equal(cleanAuthority('127.0.0.1:2379'), '127.0.0.1:2379');
  assert.equal(cleanAuthority('http://127.0.0.1:2379'), '127.0.0.1:2379');
  assert.equal(cleanAuthority('https://[::1]:2379/'), '[::1]:2379');
  assert.equal(cleanAuthority('unix:///tmp/sock'), 'localhost');
});

describe('the :authority gate', { skip: REFERENCE_ETCD !== undefined && 'tessera only' }, () => {
  let etcd: TestEtcd;
  let strict: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
    strict = await startTestEtcd({ fixAuthority: false });
  });
  after(async () => {
    await etcd?.close();
    await strict?.close();
  });

  test('without it, Node\'s HTTP/2 server refuses a URL authority', async () => {
    const kv = kvWithAuthority(strict.address, `http://${strict.address}`);
    try {
      await assert.rejects(call(kv, 'Range', { key: Buffer.from('k') }), (e: ServiceError) => /PROTOCOL_ERROR|RST_STREAM with code 1\b/.test(e.details));
    } finally {
      kv.close();
    }
  });

  test('with it, many requests on a URL-authority connection succeed', async () => {
    const kv = kvWithAuthority(etcd.address, `http://${etcd.address}`);
    try {
      await call(kv, 'Put', { key: Buffer.from('auth/k'), value: Buffer.from('v') });
      // Varying metadata makes the client's HPACK encoder index, evict and refer back across blocks.
      for (let i = 0; i < 300; i++) {
        const md = new Metadata();
        md.set(`x-test-${i % 7}`, `value-${i}-${'z'.repeat(i % 50)}`);
        const r = await new Promise<{ kvs: { value: Buffer }[] }>((resolve, reject) =>
          (kv as unknown as { Range(r: object, md: Metadata, cb: (e: ServiceError | null, v: { kvs: { value: Buffer }[] }) => void): void }).Range(
            { key: Buffer.from('auth/k') },
            md,
            (e, v) => (e === null ? resolve(v) : reject(e)),
          ),
        );
        assert.equal(r.kvs[0]?.value.toString(), 'v');
      }
    } finally {
      kv.close();
    }
  });

  test('a connection that is not HTTP/2, or breaks HTTP/2 after the preface, is dropped and the server goes on', async () => {
    const [host, port] = etcd.address.split(':') as [string, string];
    const exchange = (bytes: Buffer): Promise<void> =>
      new Promise((resolve) => {
        const s = connectTcp(Number(port), host, () => s.write(bytes));
        s.on('data', () => {});
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        setTimeout(() => s.destroy(), 2_000);
      });
    await exchange(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await exchange(Buffer.concat([H2_PREFACE, Buffer.from([0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 1])]));
    const kv = kvWithAuthority(etcd.address, etcd.address);
    try {
      await call(kv, 'Put', { key: Buffer.from('auth/alive'), value: Buffer.from('yes') });
    } finally {
      kv.close();
    }
  });
});
