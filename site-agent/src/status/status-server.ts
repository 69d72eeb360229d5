import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@federa/shared';
import type { StatusSource } from './agent-status.js';

export interface StatusServer {
  /** The port bound (the one asked for, or the one chosen for port 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves GET /health (JSON) and GET /metrics (Prometheus text) from `source`, on node:http: two routes do not need a
 * framework. Whether `host` may be a non-loopback address is the config's decision (statusConfigSchema); this serves
 * where it is told.
 */
export async function startStatusServer(options: { host: string; port: number }, source: StatusSource): Promise<StatusServer> {
  const log = createLogger('site-status');
  const server = createServer((request, response) => {
    handle(request, response, source).catch((error: unknown) => {
      log.error({ err: error, path: request.url?.slice(0, 200) }, 'status request failed');
      if (!response.headersSent) send(response, 500, 'text/plain; charset=utf-8', 'internal error; see the agent log\n');
      else response.destroy();
    });
  });
  // Nothing here is slow: a client that holds a connection open is cut off rather than kept.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host: options.host, port }, 'status endpoint listening (GET /health, GET /metrics)');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(request: IncomingMessage, response: ServerResponse, source: StatusSource): Promise<void> {
  const path = (request.url ?? '/').split('?')[0];
  if (path !== '/health' && path !== '/metrics') return send(response, 404, 'text/plain; charset=utf-8', 'not found: GET /health or GET /metrics\n');
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('allow', 'GET, HEAD');
    return send(response, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  }
  if (path === '/health') return send(response, 200, 'application/json; charset=utf-8', JSON.stringify(source.view()), request.method === 'HEAD');
  const { contentType, body } = await source.metrics();
  send(response, 200, contentType, body, request.method === 'HEAD');
}

function send(response: ServerResponse, status: number, contentType: string, body: string, headOnly = false): void {
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  response.end(headOnly ? undefined : body);
}
