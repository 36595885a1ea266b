/** What the protocol benchmark's parent (protocol.ts) and its forked server (protocol_server.ts) share. */

/** Client-side names: a transport is a server and the client that calls it (see protocol.ts). */
export const TRANSPORTS = ['grpc-js', 'etcd-server', 'h2', 'h2-raw', 'msgpackr'] as const;
export type Transport = (typeof TRANSPORTS)[number];

export const SERVER_KINDS = ['grpc-js', 'etcd-server', 'h2', 'msgpackr'] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];

/** h2-raw differs from h2 in its client only. */
export function serverKindOf(transport: Transport): ServerKind {
  return transport === 'h2-raw' ? 'h2' : transport;
}

export const BENCH_KEY = Buffer.from('bench/protocol/key');
/** 256 printable bytes, so etcdctl's check can print and compare them. */
export const BENCH_VALUE = Buffer.from('0123456789abcdef'.repeat(16));
export const RANGE_PATH = '/etcdserverpb.KV/Range';

export type ParentMessage = { readonly type: 'cpu' } | { readonly type: 'stop' };
export type ChildMessage =
  | { readonly type: 'ready'; readonly port: number }
  | { readonly type: 'cpu'; readonly userMicros: number; readonly systemMicros: number }
  | { readonly type: 'error'; readonly message: string };
