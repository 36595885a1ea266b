import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { formatHostPort, parseHostPort } from './address.js';

/** Connections the admin endpoint serves at once; it is for operators and tools, not traffic. */
export const ADMIN_MAX_CONNECTIONS = 64;
/** A request must arrive whole within this; slow senders are cut off. */
export const ADMIN_REQUEST_TIMEOUT_MS = 5_000;

export interface AdminRoutes {
  /** GET /status: the node's view of the cluster (see NodeStatus in node.ts). */
  status(): unknown;
  /** GET /health: whether the node knows a leader; 503 when it does not. */
  health(): { readonly health: boolean; readonly reason?: string };
  /** GET /ranges: the ranges this node holds a replica of (RangeInfo in ranges.ts). */
  ranges?(): unknown;
  /** POST /decommission: drain this node, then take it out of the cluster (`tessera node decommission`). */
  decommission?(): unknown;
}

export interface AdminServer {
  readonly address: string;
  close(): Promise<void>;
}

/**
 * A small HTTP endpoint for operators: `GET /status` and `GET /ranges`
 * (JSON), `GET /health`, and `POST /decommission`. `tessera status`,
 * `tessera ranges` and `tessera node decommission` use it. No request body is
 * ever read. Like the client port it has no authentication yet (issue 15).
 */
export async function startAdminServer(listen: string, routes: AdminRoutes, logger: Logger): Promise<AdminServer> {
  const { host, port } = parseHostPort(listen, 'admin listen address');
  const server = createServer({ requestTimeout: ADMIN_REQUEST_TIMEOUT_MS, headersTimeout: ADMIN_REQUEST_TIMEOUT_MS }, (req, res) => serve(req, res, routes, logger));
  server.maxConnections = ADMIN_MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const address = typeof bound === 'object' && bound !== null ? formatHostPort({ host, port: bound.port }) : listen;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function serve(req: IncomingMessage, res: ServerResponse, routes: AdminRoutes, logger: Logger): void {
  const path = (req.url ?? '/').split('?')[0];
  try {
    // The one change an operator asks of the admin port; it reads no body.
    if (path === '/decommission' && routes.decommission !== undefined) {
      if (req.method !== 'POST') return reply(res, 405, { error: '/decommission takes POST' });
      return reply(res, 202, routes.decommission());
    }
    if (req.method !== 'GET') return reply(res, 405, { error: 'only GET is served (and POST /decommission)' });
    if (path === '/status') return reply(res, 200, routes.status());
    if (path === '/ranges' && routes.ranges !== undefined) return reply(res, 200, routes.ranges());
    if (path === '/health') {
      const h = routes.health();
      return reply(res, h.health ? 200 : 503, h);
    }
    reply(res, 404, { error: `no route ${path}; try /status, /health or /ranges` });
  } catch (error) {
    logger.error({ err: error, path }, 'admin request failed');
    reply(res, 500, { error: 'internal error' });
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
