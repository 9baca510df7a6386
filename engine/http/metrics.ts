/**
 * Prometheus metrics. Label cardinality is bounded: `key` is the stored `namespace/name` of a key
 * that exists (so at most the number of keys), and `(unknown)` for every other name a caller sends,
 * whatever its case or namespace; `operation` and `result` are small closed sets (result is an
 * error code or `ok`), and routes are the route patterns, never raw URLs.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolMemory } from '../service/backend.ts';

/** The `key` label of operations on names that are not keys. */
export const UNKNOWN_KEY = '(unknown)';

/** The metrics one server exposes, in its own registry (tests run several servers in one process). */
export class HttpMetrics {
  readonly registry = new Registry();
  readonly operations: Counter<'key' | 'operation' | 'result'>;
  readonly batchSize: Histogram<'operation'>;
  readonly latency: Histogram<'route' | 'method' | 'status'>;
  readonly queueDepth: Gauge;

  constructor(
    queueDepth: () => number,
    workerErrors: () => number = () => 0,
    poolMemory?: () => Promise<PoolMemory>,
  ) {
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
    if (poolMemory !== undefined) poolGauges(this.registry, poolMemory);
  }

  /**
   * Counts `count` operations. `key` must be a key's stored `namespace/name` (from
   * `KeyBackend.metricsKey`) or `UNKNOWN_KEY`, never a name taken from the request.
   */
  count(key: string, operation: string, result: string, count = 1): void {
    this.operations.inc({ key, operation, result }, count);
  }
}

/**
 * The pool's memory: its pending and retained bytes, and each worker's V8 heap (the main thread's
 * is in the default `keyward_nodejs_heap_*` metrics). One census per scrape, shared by the gauges.
 * Threads are labelled by their index in the census (bounded by the thread count), not their id.
 */
function poolGauges(registry: Registry, poolMemory: () => Promise<PoolMemory>): void {
  let census: Promise<PoolMemory> | undefined;
  const current = (): Promise<PoolMemory> => {
    census ??= poolMemory().finally(() => {
      setImmediate(() => {
        census = undefined;
      });
    });
    return census;
  };
  new Gauge({
    name: 'keyward_engine_pool_bytes',
    help: 'Bytes the crypto pool holds: pending (items and requests waiting or running) and retained (task buffers kept for reuse).',
    labelNames: ['kind'],
    registers: [registry],
    async collect() {
      const m = await current();
      this.set({ kind: 'pending' }, m.pendingBytes);
      this.set({ kind: 'retained' }, m.retainedBytes);
    },
  });
  new Gauge({
    name: 'keyward_engine_worker_heap_space_bytes',
    help: 'Size of each V8 heap space of each crypto worker.',
    labelNames: ['worker', 'space'],
    registers: [registry],
    async collect() {
      const m = await current();
      this.reset();
      [...m.workers]
        .sort((a, b) => a.threadId - b.threadId)
        .forEach((w, i) => {
          for (const [space, bytes] of Object.entries(w.heap.spaces))
            this.set({ worker: String(i), space }, bytes);
        });
    },
  });
  new Gauge({
    name: 'keyward_engine_worker_external_bytes',
    help: 'External memory (ArrayBuffers, native objects) each crypto worker holds.',
    labelNames: ['worker'],
    registers: [registry],
    async collect() {
      const m = await current();
      this.reset();
      [...m.workers]
        .sort((a, b) => a.threadId - b.threadId)
        .forEach((w, i) => {
          this.set({ worker: String(i) }, w.heap.external);
        });
    },
  });
}
