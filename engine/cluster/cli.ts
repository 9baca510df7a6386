/**
 * A small stand-alone entry of the cluster engine, for tests and for running it without the full
 * CLI: `node engine/cluster/cli.ts --kubeconfig FILE --namespace keyward-system [--port N]
 * [--host ADDR] [--metrics-port N] [--tls auto|off|CERT,KEY] [--region R] [--identity ID]
 * [--threads N] [--insecure-no-auth] [--no-audit] [--audit-required] [--audit-dir DIR]
 * [--audit-checkpoint-records N] [--audit-checkpoint-interval D] [--audit-segment-size S]` (audit
 * records go to stdout, docs/audit.md). Prints one JSON line `{"url", "caFile", "fingerprint256"}`
 * on stdout once
 * listening; SIGTERM or SIGINT drain and stop it.
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

/** Parses the flags above into options (throws on unknown flags or bad numbers). */
export function parseClusterEngineArgs(argv: readonly string[]): ClusterEngineOptions {
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
  const o: ClusterEngineOptions = {};
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
  const audit = auditFlagsFromParsed(values);
  if (Object.keys(audit).length > 0) {
    o.audit = auditConfigFromFlags(audit, { ...defaultAuditConfig(), stdout: true });
  }
  return o;
}

/** Runs the cluster engine with `argv` (flags only) until SIGTERM or SIGINT. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  let options: ClusterEngineOptions;
  try {
    options = parseClusterEngineArgs(argv);
  } catch (err) {
    process.stderr.write(`keyward engine: ${(err as Error).message}\n`);
    process.exit(2);
  }
  try {
    const engine = await runClusterEngine(options);
    process.stdout.write(
      `${JSON.stringify({ url: engine.url, metricsUrl: engine.metricsUrl, caFile: engine.tls?.certPath, fingerprint256: engine.tls?.fingerprint256 })}\n`,
    );
    const stop = (): void => {
      void engine.close().then(
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
