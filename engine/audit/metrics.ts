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
}
