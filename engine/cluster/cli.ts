/**
 * A small stand-alone entry of the cluster engine, for tests and for running it without the full
 * CLI: `node engine/cluster/cli.ts --kubeconfig FILE --namespace keyward-system [--port N]
 * [--host ADDR] [--metrics-port N] [--tls auto|off|CERT,KEY] [--region R] [--identity ID]
 * [--threads N] [--shutdown-delay-ms N] [--shutdown-timeout-ms N] [--insecure-no-auth]
 * [--no-audit] [--audit-required] [--audit-dir DIR] [--audit-checkpoint-records N]
 * [--audit-checkpoint-interval D] [--audit-segment-size S]` (audit records go to stdout,
 * docs/audit.md). Prints one JSON line `{"url", "metricsUrl", "caFile", "fingerprint256"}` on
 * stdout once listening.
 *
 * SIGTERM or SIGINT stop it gracefully: readiness fails at once, requests are still served (each
 * response closing its connection) for the shutdown delay while the Service drops this replica,
 * then the listener closes and in-flight requests finish. If that takes longer than the shutdown
 * timeout, the process exits 1 anyway, inside the pod's termination grace period.
 */
import { parseArgs } from 'node:util';
import {
  AUDIT_PARSE_ARGS,
  auditConfigFromFlags,
  auditFlagsFromParsed,
  defaultAuditConfig,
} from '../audit/config.ts';
import { parseTlsMode } from '../http/tls.ts';
import { type ClusterEngineOptions, runClusterEngine } from './main.ts';

/** Usage text of `keyward engine`. */
export const USAGE = `Usage: keyward engine [flags]

  --kubeconfig PATH          kubeconfig (default: in-cluster, then ~/.kube/config)
  --namespace NS             the operator's namespace: material, master key (default keyward-system)
  --host ADDR                listen address (default 0.0.0.0)
  --port N                   listen port (default 7443; 0 picks one)
  --tls auto|off|CERT,KEY    serving certificate (default auto: self-signed; off only on loopback)
  --region R                 the region this engine serves (Isolated keys of other regions are refused)
  --identity ID              this replica in its usage report (default POD_NAME, else the host name)
  --threads N                crypto worker threads (default: the CPUs available)
  --usage-report-ms N        how often usage counters are published (default 15000)
  --shutdown-delay-ms N      after SIGTERM, keep serving this long with readiness failed, so the
                             Service drops this replica first (default 0; the chart sets 5000)
  --shutdown-timeout-ms N    exit 1 if the stop takes longer than the delay plus this (default 20000)
  --insecure-no-auth         no authentication (loopback only; development)
  -h, --help                 show this help`;

/** Parses the flags above into options (throws on unknown flags or bad numbers). */
export function parseClusterEngineArgs(argv: readonly string[]): ClusterEngineCliOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string' },
      port: { type: 'string' },
      'metrics-port': { type: 'string' },
      host: { type: 'string' },
      tls: { type: 'string' },
      region: { type: 'string' },
      identity: { type: 'string' },
      threads: { type: 'string' },
      'usage-report-ms': { type: 'string' },
      'shutdown-delay-ms': { type: 'string' },
      'shutdown-timeout-ms': { type: 'string' },
      'insecure-no-auth': { type: 'boolean' },
      ...AUDIT_PARSE_ARGS,
    },
  });
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
    return n;
  };
  const o: ClusterEngineCliOptions = {};
  if (values.kubeconfig !== undefined) o.kubeconfig = values.kubeconfig;
  if (values.namespace !== undefined) o.namespace = values.namespace;
  if (values.host !== undefined) o.host = values.host;
  if (values.tls !== undefined) o.tls = parseTlsMode(values.tls);
  if (values.region !== undefined) o.region = values.region;
  if (values.identity !== undefined) o.identity = values.identity;
  if (values['insecure-no-auth'] === true) o.insecureNoAuth = true;
  const port = int('port', values.port);
  if (port !== undefined) o.port = port;
  const metricsPort = int('metrics-port', values['metrics-port']);
  if (metricsPort !== undefined) o.metricsPort = metricsPort;
  const threads = int('threads', values.threads);
  if (threads !== undefined) o.threads = threads;
  const usageMs = int('usage-report-ms', values['usage-report-ms']);
  if (usageMs !== undefined) o.usageReportMs = usageMs;
  const delayMs = int('shutdown-delay-ms', values['shutdown-delay-ms']);
  if (delayMs !== undefined) o.shutdownDelayMs = delayMs;
  const timeoutMs = int('shutdown-timeout-ms', values['shutdown-timeout-ms']);
  if (timeoutMs !== undefined) o.shutdownTimeoutMs = timeoutMs;
  const audit = auditFlagsFromParsed(values);
  if (Object.keys(audit).length > 0) {
    o.audit = auditConfigFromFlags(audit, { ...defaultAuditConfig(), stdout: true });
  }
  return o;
}

/** Options of the CLI: the engine's, and how long a graceful stop may take. */
export interface ClusterEngineCliOptions extends ClusterEngineOptions {
  /** After SIGTERM, exit 1 if the stop has not finished after the delay plus this; 20 s. */
  shutdownTimeoutMs?: number;
}

/** Runs the cluster engine with `argv` (flags only) until SIGTERM or SIGINT. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let options: ClusterEngineCliOptions;
  try {
    options = parseClusterEngineArgs(argv);
  } catch (err) {
    process.stderr.write(`keyward engine: ${(err as Error).message} (see --help)\n`);
    process.exit(2);
  }
  try {
    const engine = await runClusterEngine(options);
    process.stdout.write(
      `${JSON.stringify({ url: engine.url, metricsUrl: engine.metricsUrl, caFile: engine.tls?.certPath, fingerprint256: engine.tls?.fingerprint256 })}\n`,
    );
    const stop = (): void => {
      const limitMs = (options.shutdownDelayMs ?? 0) + (options.shutdownTimeoutMs ?? 20_000);
      setTimeout(() => {
        process.stderr.write(`keyward engine: the graceful stop took over ${limitMs} ms; exiting\n`);
        process.exit(1);
      }, limitMs).unref();
      void engine.shutdown().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  } catch (err) {
    process.stderr.write(`keyward engine: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

if (import.meta.main) void main();
