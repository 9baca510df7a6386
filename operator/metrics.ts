/**
 * Prometheus metrics of the operator, in a registry of its own (so two operators in one process,
 * as in tests, do not collide), and the small HTTP server for `/metrics`, `/livez` and `/readyz`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Live values the gauges read at scrape time. */
export interface MetricsSources {
  /** Keys due now (the backlog). */
  queueDepth: () => number;
  /** Keys queued for later (their next rotation, a backoff). */
  parkedKeys: () => number;
  keysByState: () => Record<string, number>;
  isLeader: () => boolean;
}

/** The operator's metrics. */
export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles: Counter<'result'>;
  readonly errors: Counter;
  readonly duration: Histogram;
  readonly informerRestarts: Counter<'informer' | 'reason'>;
  readonly resyncSeconds: Gauge;
  readonly resyncs: Counter;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    // Process figures (memory, CPU, event-loop lag), as the engine exposes them.
    collectDefaultMetrics({ register: this.registry, prefix: 'keyward_operator_' });
    this.reconciles = new Counter({
      name: 'keyward_operator_reconciles_total',
      help: 'Key reconciliations, by result (success, error).',
      labelNames: ['result'],
      registers,
    });
    this.errors = new Counter({
      name: 'keyward_operator_reconcile_errors_total',
      help: 'Key reconciliations that failed and were retried with backoff.',
      registers,
    });
    this.duration = new Histogram({
      name: 'keyward_operator_reconcile_duration_seconds',
      help: 'Time spent reconciling one Key.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.informerRestarts = new Counter({
      name: 'keyward_operator_informer_restarts_total',
      help: 'Informer restarts by the supervisor (error, 410 Gone, stall).',
      labelNames: ['informer', 'reason'],
      registers,
    });
    this.resyncSeconds = new Gauge({
      name: 'keyward_operator_resync_seconds',
      help: 'How long the last full pass over every cached Key took (a resync, or a new term).',
      registers,
    });
    this.resyncs = new Counter({
      name: 'keyward_operator_resyncs_total',
      help: 'Full passes over every cached Key completed (resyncs and new terms).',
      registers,
    });
    new Gauge({
      name: 'keyward_operator_queue_depth',
      help: 'Keys due for reconciliation now and not yet taken by a worker: the backlog.',
      registers,
      collect() {
        this.set(sources.queueDepth());
      },
    });
    new Gauge({
      name: 'keyward_operator_parked_keys',
      help: 'Keys queued for later: their next rotation or deletion, or a retry backoff.',
      registers,
      collect() {
        this.set(sources.parkedKeys());
      },
    });
    new Gauge({
      name: 'keyward_operator_keys',
      help: 'Keys by observed state (Enabled, Disabled, PendingDeletion, Unknown).',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(sources.keysByState())) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'keyward_operator_leader',
      help: '1 while this instance holds the leader Lease.',
      registers,
      collect() {
        this.set(sources.isLeader() ? 1 : 0);
      },
    });
  }
}

/** Serves `/metrics`, `/livez` and `/readyz` on `port` (0 picks a free port). */
export async function startHealthServer(
  metrics: OperatorMetrics,
  ready: () => boolean,
  port: number,
  host = '0.0.0.0',
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not ready\n');
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
