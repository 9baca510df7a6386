/** The audit log's Prometheus gauges, for whichever process keeps a log (engine, standalone, operator). */
import { Gauge, type Registry } from 'prom-client';
import type { AuditLogHandle } from './audit-log.ts';

/**
 * The audit log's gauges (docs/audit.md "Sinks and failures"): records written, events dropped,
 * sink failures, and whether it can write. The engine's HTTP server and the operator register them.
 */
export function registerAuditMetrics(log: AuditLogHandle, registry: Registry): void {
  const stats = log.stats;
  const gauge = (name: string, help: string, value: () => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(value());
      },
    });
  };
  gauge(
    'keyward_audit_records_written',
    'Audit records written since start (all types).',
    () => stats.written,
  );
  gauge('keyward_audit_events_dropped', 'Audit events lost because a sink was failing.', () => stats.dropped);
  gauge('keyward_audit_sink_failures', 'Failed audit writes since start.', () => stats.failures);
  gauge('keyward_audit_healthy', '1 while the audit log can write, else 0.', () => (log.healthy ? 1 : 0));
  const memory = log.memory;
  if (memory !== undefined) {
    // The audit thread's isolate, beside the main thread's keyward_nodejs_* and the crypto
    // workers' keyward_engine_worker_* (docs/performance.md, memory).
    new Gauge({
      name: 'keyward_audit_thread_heap_bytes',
      help: "The audit thread's V8 heap: total, used, and external (ArrayBuffers, WebAssembly).",
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        this.set({ kind: 'total' }, memory.total);
        this.set({ kind: 'used' }, memory.used);
        this.set({ kind: 'external' }, memory.external);
      },
    });
  }
}
