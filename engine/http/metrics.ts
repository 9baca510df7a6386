/**
 * Prometheus metrics. Label cardinality is bounded: `key` is the stored `namespace/name` of a key
 * that exists (so at most the number of keys), and `(unknown)` for every other name a caller sends,
 * whatever its case or namespace; `operation` and `result` are small closed sets (result is an
 * error code or `ok`), and routes are the route patterns, never raw URLs.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The `key` label of operations on names that are not keys. */
export const UNKNOWN_KEY = '(unknown)';

/** The metrics one server exposes, in its own registry (tests run several servers in one process). */
export class HttpMetrics {
  readonly registry = new Registry();
  readonly operations: Counter<'key' | 'operation' | 'result'>;
  readonly batchSize: Histogram<'operation'>;
  readonly latency: Histogram<'route' | 'method' | 'status'>;
  readonly queueDepth: Gauge;

  constructor(queueDepth: () => number, workerErrors: () => number = () => 0) {
    collectDefaultMetrics({ register: this.registry, prefix: 'keyward_' });
    this.operations = new Counter({
      name: 'keyward_operations_total',
      help: 'Cryptographic operations by key (namespace/name), operation and result (ok or error code). Batch items count one each.',
      labelNames: ['key', 'operation', 'result'],
      registers: [this.registry],
    });
    this.batchSize = new Histogram({
      name: 'keyward_batch_size',
      help: 'Items per batch request.',
      labelNames: ['operation'],
      buckets: [1, 10, 50, 100, 250, 500, 1000],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'keyward_http_request_duration_seconds',
      help: 'HTTP request latency by route pattern, method and status.',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.queueDepth = new Gauge({
      name: 'keyward_engine_queue_depth',
      help: 'Operations waiting in the crypto engine queue.',
      registers: [this.registry],
      collect() {
        this.set(queueDepth());
      },
    });
    new Counter({
      name: 'keyward_engine_worker_errors_total',
      help: 'Crypto worker threads that died outside a task (each was replaced).',
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(workerErrors());
      },
    });
  }

  /**
   * Counts `count` operations. `key` must be a key's stored `namespace/name` (from
   * `KeyBackend.metricsKey`) or `UNKNOWN_KEY`, never a name taken from the request.
   */
  count(key: string, operation: string, result: string, count = 1): void {
    this.operations.inc({ key, operation, result }, count);
  }
}
