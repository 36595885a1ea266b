/**
 * A flood of client connections: far more raw TCP connections than
 * maxClientConnections, some silent (slowloris), some sending garbage, some
 * sending only the HTTP/2 preface. The node must keep serving a real gRPC
 * client within bounds, refuse or close the excess, keep memory bounded,
 * and accept new clients once the flood ends.
 */
import type { Client as GrpcClient } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { type Socket, connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { H2_PREFACE } from './h2_server.js';
import { DEFAULT_ETCD_LIMITS, validateEtcdLimits } from './limits.js';
import { type TestEtcd, call, rawClient, startTestEtcd } from './testing.testlib.js';

const MAX_CONNECTIONS = 64;
const HANDSHAKE_TIMEOUT_MS = 500;
const IDLE_TIMEOUT_MS = 1_500;
const FLOOD_CONNECTIONS = 2_000;
/** A real client's call must answer within this during the flood. */
const SERVE_BOUND_MS = 1_000;
const MiB = 1024 * 1024;
const enc = new TextEncoder();

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (check()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

function bytesInUse(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

type Kind = 'silent' | 'garbage' | 'preface-only' | 'drip';

interface FloodSocket {
  readonly kind: Kind;
  readonly socket: Socket;
  /** ms from connect to the server closing it; undefined while open. */
  closedAfterMs: number | undefined;
  connected: boolean;
}

/** Opens one raw connection that behaves as `kind`; never throws. */
function floodSocket(port: number, kind: Kind): FloodSocket {
  const socket = connect({ port, host: '127.0.0.1' });
  const started = Date.now();
  const f: FloodSocket = { kind, socket, closedAfterMs: undefined, connected: false };
  socket.on('error', () => {});
  socket.on('data', () => {});
  socket.on('close', () => (f.closedAfterMs = Date.now() - started));
  socket.on('connect', () => {
    f.connected = true;
    if (kind === 'garbage') socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x13garbage'.repeat(8), 'latin1'));
    else if (kind === 'preface-only') socket.write(H2_PREFACE);
    else if (kind === 'drip') {
      // Slowloris: one byte of the preface at a time, never finishing within the deadline.
      let i = 0;
      const timer = setInterval(() => {
        if (socket.destroyed || i >= H2_PREFACE.length) return clearInterval(timer);
        socket.write(H2_PREFACE.subarray(i, ++i));
      }, 100);
      socket.on('close', () => clearInterval(timer));
    }
  });
  return f;
}

async function put(client: GrpcClient, key: string): Promise<number> {
  const started = Date.now();
  await call(client, 'Put', { key: enc.encode(key), value: enc.encode('v') });
  return Date.now() - started;
}

describe('a flood of client connections', () => {
  let etcd: TestEtcd;
  let port: number;
  before(async () => {
    etcd = await startTestEtcd({ limits: { maxClientConnections: MAX_CONNECTIONS, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, idleTimeoutMs: IDLE_TIMEOUT_MS } });
    port = Number(etcd.address.split(':')[1]);
  });
  after(async () => {
    await etcd?.close();
  });

  test('excess connections are refused, slow ones closed, a real client keeps being served, memory stays bounded', async (t) => {
    const server = etcd.server;
    if (server === undefined) return t.skip('runs against tessera only');
    const client = rawClient(etcd.address, 'KV');
    t.after(() => client.close());
    await put(client, 'before');
    global.gc?.();
    const baseline = bytesInUse();
    const floodStarted = Date.now();
    const kinds: Kind[] = ['silent', 'garbage', 'preface-only', 'drip'];
    const flood: FloodSocket[] = [];
    let maxOpen = 0;
    let maxGrowth = 0;
    const latencies: number[] = [];
    // Open the flood in waves while the real client keeps calling.
    for (let wave = 0; wave < 20; wave++) {
      for (let i = 0; i < FLOOD_CONNECTIONS / 20; i++) flood.push(floodSocket(port, kinds[(wave + i) % kinds.length] as Kind));
      latencies.push(await put(client, `during/${wave}`));
      maxOpen = Math.max(maxOpen, server.connectionStats().open);
      maxGrowth = Math.max(maxGrowth, bytesInUse() - baseline);
      await sleep(50);
    }
    await waitFor('every flood connection to be closed by the server', () => flood.every((f) => f.closedAfterMs !== undefined), 15_000);
    const floodMs = Date.now() - floodStarted;
    const stats = server.connectionStats();
    const slowest = (k: Kind): number => Math.max(0, ...flood.filter((f) => f.kind === k && f.connected).map((f) => f.closedAfterMs ?? Infinity));
    console.log(
      `# ${FLOOD_CONNECTIONS} connections in ${floodMs} ms against a limit of ${MAX_CONNECTIONS}: ` +
        `${stats.accepted} accepted, ${stats.refused} refused at accept, ${stats.handshakeTimeouts} closed by the ${HANDSHAKE_TIMEOUT_MS} ms handshake timeout; ` +
        `at most ${maxOpen} open; slowest close: silent ${slowest('silent')} ms, garbage ${slowest('garbage')} ms, preface-only ${slowest('preface-only')} ms, drip ${slowest('drip')} ms; ` +
        `real client Put latency max ${Math.max(...latencies)} ms; heap+buffers grew at most ${(maxGrowth / MiB).toFixed(1)} MiB`,
    );
    assert.ok(maxOpen <= MAX_CONNECTIONS, `${maxOpen} connections open at once`);
    assert.ok(stats.refused > FLOOD_CONNECTIONS / 2, 'most of the flood is refused at accept');
    assert.ok(stats.handshakeTimeouts > 0, 'silent connections that got in are closed by the handshake timeout');
    for (const k of ['silent', 'preface-only', 'drip'] as const) assert.ok(slowest(k) < HANDSHAKE_TIMEOUT_MS + 1_000, `${k} connections are closed within the handshake timeout`);
    assert.ok(slowest('garbage') < HANDSHAKE_TIMEOUT_MS + 1_000, 'garbage is closed');
    assert.ok(Math.max(...latencies) < SERVE_BOUND_MS, `the real client waited ${Math.max(...latencies)} ms`);
    assert.ok(maxGrowth < 64 * MiB, `memory grew by ${maxGrowth} bytes`);
    // After the flood: the same client and a new one are served.
    await put(client, 'after');
    const fresh = rawClient(etcd.address, 'KV');
    t.after(() => fresh.close());
    assert.ok((await put(fresh, 'fresh')) < SERVE_BOUND_MS);
    await waitFor('only the real clients to remain', () => server.connectionStats().open <= 2);
  });

  test('an HTTP/2 connection with no call open is closed after the idle timeout, and its client reconnects', async (t) => {
    const server = etcd.server;
    if (server === undefined) return t.skip('runs against tessera only');
    await waitFor('the previous test\'s connections to go', () => server.connectionStats().open === 0, IDLE_TIMEOUT_MS * 3);
    const client = rawClient(etcd.address, 'KV');
    t.after(() => client.close());
    await put(client, 'idle/1');
    assert.equal(server.connectionStats().open, 1);
    await waitFor('the idle connection to be closed', () => server.connectionStats().open === 0, IDLE_TIMEOUT_MS * 3);
    await put(client, 'idle/2');
  });

  test('maxConcurrentStreams caps the calls open on one connection; a client with more in flight still gets every answer', async (t) => {
    const capped = await startTestEtcd({ limits: { maxConcurrentStreams: 4 } });
    t.after(() => capped.close());
    if (capped.server === undefined) return t.skip('runs against tessera only');
    // The cap is advertised in the server's SETTINGS, once the connection is past the gate.
    const session = http2.connect(`http://${capped.address}`);
    t.after(() => session.destroy());
    session.on('error', () => {});
    const probe = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers' });
    probe.on('error', () => {});
    probe.end(Buffer.alloc(5));
    await waitFor('the server SETTINGS', () => session.remoteSettings.maxConcurrentStreams === 4, 5_000);
    // Calls past the cap wait for a free stream; none fails.
    const client = rawClient(capped.address, 'KV');
    t.after(() => client.close());
    const answers = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => put(client, `streams/${i}`)));
    const failed = answers.filter((a) => a.status === 'rejected');
    console.log(`# 50 concurrent Puts over one connection capped at 4 streams: ${50 - failed.length} answered, ${failed.length} failed${failed.length > 0 ? `: ${String((failed[0] as PromiseRejectedResult).reason)}` : ''}`);
    assert.equal(failed.length, 0);
  });

  test('the listener limits are checked at startup', () => {
    assert.throws(() => validateEtcdLimits({ ...DEFAULT_ETCD_LIMITS, maxClientConnections: 0 }), /maxClientConnections must be a positive integer, got 0/);
    assert.throws(() => validateEtcdLimits({ ...DEFAULT_ETCD_LIMITS, handshakeTimeoutMs: 1.5 }), /handshakeTimeoutMs must be a positive integer, got 1.5/);
  });
});
