/**
 * The `/metrics` listener. Metrics are served on a port of their own, never on the API port, so
 * the two can be exposed to different callers: standalone binds it to loopback by default, and the
 * chart's NetworkPolicy admits only the scrapers to it. It speaks TLS when the API does (same
 * certificate), so a scrape is verified like any API call. It answers `GET /metrics` and nothing
 * else.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { HSTS_HEADER, SECURITY_HEADERS } from './edge.ts';
import type { HttpMetrics } from './metrics.ts';

/** The default metrics port (the Prometheus exporters' registry lists 9464 for this use). */
export const DEFAULT_METRICS_PORT = 9464;

/**
 * The metrics port when none is given: `DEFAULT_METRICS_PORT`, except when the API port is 0 (any
 * free port, as tests and parallel instances use), where it is 0 too.
 */
export function defaultMetricsPort(apiPort: number): number {
  return apiPort === 0 ? 0 : DEFAULT_METRICS_PORT;
}

/** Options of `listenMetrics`. */
export interface MetricsListenOptions {
  host: string;
  port: number;
  /** PEM key and certificate: HTTPS, as the API. */
  tls?: { key: string; cert: string };
}

/** A running metrics listener. */
export interface MetricsListener {
  url: string;
  server: Server;
  close(): Promise<void>;
}

const urlHost = (host: string): string => (host.includes(':') && !host.startsWith('[') ? `[${host}]` : host);

/** Starts serving `metrics` on `host:port`. */
export async function listenMetrics(
  metrics: HttpMetrics,
  opts: MetricsListenOptions,
): Promise<MetricsListener> {
  const headers = opts.tls ? { ...SECURITY_HEADERS, ...HSTS_HEADER } : SECURITY_HEADERS;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res
        .writeHead(404, { ...headers, 'content-type': 'text/plain' })
        .end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, allow: 'GET, HEAD' }).end();
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { ...headers, 'content-type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500, headers).end(),
    );
  };
  const serverOptions = { requestTimeout: 10_000, headersTimeout: 5_000, connectionsCheckingInterval: 1_000 };
  const server = opts.tls
    ? createHttpsServer({ ...serverOptions, key: opts.tls.key, cert: opts.tls.cert }, handle)
    : createHttpServer(serverOptions, handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const connectHost = opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host === '::' ? '::1' : opts.host;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${urlHost(connectHost)}:${port}/metrics`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
