import { createServer } from 'node:net';

/**
 * Ports that were free a moment ago on `host`, all distinct: each is bound
 * (port 0) while the next is picked, then all are released. Another process
 * could take one in between; callers that need certainty bind port 0
 * themselves. Used where peers must know each other's ports before any
 * node starts (tests, `tessera dev`).
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen({ host, port: 0 }, () => resolve(s));
    })),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}
