/**
 * The cluster engine's command line, `keyward engine [flags]` (also runnable alone:
 * `node engine/cluster/cli.ts ...`, which tests spawn). Prints one JSON line
 * `{"url", "metricsUrl", "caFile", "fingerprint256"}` on stdout once listening. Every flag is
 * validated: a bad value is one line on stderr and exit status 2.
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
import { attachNegativeValues, durationFlag, integerFlag, portFlag } from '../flags.ts';
import { parseTlsMode } from '../http/tls.ts';
import { MAX_NONCE_BUDGET } from '../keys/nonce-budget.ts';
import { type ClusterEngineOptions, runClusterEngine } from './main.ts';

/** Usage text. */
export const ENGINE_USAGE = `Usage: keyward engine [flags]

Serves the key API in a Kubernetes cluster from the Keys and material the operator keeps
(docs/cluster-engine.md).

  --kubeconfig PATH          kubeconfig to use (default: in-cluster, then ~/.kube/config)
  --namespace NS             the operator's namespace: material Secrets, master key, usage
                             reports (default keyward-system)
  --host ADDR                address to listen on (default 0.0.0.0)
  --port N                   port, 0 to 65535 (default 7443; 0 = any free port)
  --metrics-port N           port of the Prometheus /metrics listener, apart from the API
  --tls MODE                 auto (self-signed), off (loopback only) or CERT,KEY (default auto)
  --region R                 the region this engine serves
  --identity ID              this replica, names its usage reports (default $POD_NAME, else host)
  --threads N                crypto worker threads, 1 to 256 (default: CPU count)
  --request-timeout DURATION deadline of every apiserver request (default 5s)
  --usage-report-ms N        how often usage counters are published, in ms (default 15000)
  --master-key-namespace NS  the master-key Secret's namespace (default --namespace)
  --master-key-poll DURATION how often the master-key Secret is read again (default 30s)
  --nonce-budget N           random-nonce AES-GCM encryptions per key version, 1 to 2^32
                             (default 2^30); give the operator the same value
  --shutdown-delay-ms N      after SIGTERM, keep serving this long with readiness failed, so the
                             Service drops this replica first (default 0; the chart sets 5000)
  --shutdown-timeout-ms N    exit 1 if the stop takes longer than the delay plus this (default 20000)
  --insecure-no-auth         no TokenReview/SAR: every local caller may use every key
                             (development only; loopback only)
  --no-audit, --audit-required, --audit-dir DIR, --audit-checkpoint-records N,
  --audit-checkpoint-interval D, --audit-segment-size S
                             the audit log (records on stdout; docs/audit.md)
  -h, --help                 show this help`;

const OPTIONS = {
  kubeconfig: { type: 'string' },
  namespace: { type: 'string' },
  port: { type: 'string' },
  'metrics-port': { type: 'string' },
  host: { type: 'string' },
  tls: { type: 'string' },
  region: { type: 'string' },
  identity: { type: 'string' },
  threads: { type: 'string' },
  'request-timeout': { type: 'string' },
  'usage-report-ms': { type: 'string' },
  'nonce-budget': { type: 'string' },
  'master-key-poll': { type: 'string' },
  'master-key-namespace': { type: 'string' },
  'shutdown-delay-ms': { type: 'string' },
  'shutdown-timeout-ms': { type: 'string' },
  'insecure-no-auth': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  ...AUDIT_PARSE_ARGS,
} as const;
const STRING_FLAGS = Object.entries(OPTIONS)
  .filter(([, o]) => o.type === 'string')
  .map(([name]) => name);

/**
 * Parses the flags above into options; throws an Error with a one-line message on an unknown flag
 * or a bad value. Returns undefined for `--help`.
 */
export function parseClusterEngineArgs(argv: readonly string[]): ClusterEngineCliOptions | undefined {
  const { values } = parseArgs({
    args: attachNegativeValues(argv, STRING_FLAGS),
    strict: true,
    options: OPTIONS,
  });
  if (values.help === true) return undefined;
  const o: ClusterEngineCliOptions = {};
  if (values.kubeconfig !== undefined) o.kubeconfig = values.kubeconfig;
  if (values.namespace !== undefined) o.namespace = values.namespace;
  if (values.host !== undefined) o.host = values.host;
  if (values.tls !== undefined) o.tls = parseTlsMode(values.tls);
  if (values.region !== undefined) o.region = values.region;
  if (values.identity !== undefined) o.identity = values.identity;
  if (values['insecure-no-auth'] === true) o.insecureNoAuth = true;
  if (values.port !== undefined) o.port = portFlag('port', values.port);
  if (values['metrics-port'] !== undefined) o.metricsPort = portFlag('metrics-port', values['metrics-port']);
  if (values.threads !== undefined) o.threads = integerFlag('threads', values.threads, 1, 256);
  if (values['request-timeout'] !== undefined) {
    o.requestTimeoutMs = durationFlag('request-timeout', values['request-timeout'], 100, 300_000);
  }
  if (values['usage-report-ms'] !== undefined) {
    o.usageReportMs = integerFlag('usage-report-ms', values['usage-report-ms'], 100, 86_400_000);
  }
  if (values['master-key-namespace'] !== undefined) o.masterKeyNamespace = values['master-key-namespace'];
  if (values['master-key-poll'] !== undefined) {
    o.masterKeyPollMs = durationFlag('master-key-poll', values['master-key-poll'], 100, 3_600_000);
  }
  if (values['nonce-budget'] !== undefined) {
    o.nonceBudget = integerFlag('nonce-budget', values['nonce-budget'], 1, MAX_NONCE_BUDGET);
  }
  if (values['shutdown-delay-ms'] !== undefined) {
    o.shutdownDelayMs = integerFlag('shutdown-delay-ms', values['shutdown-delay-ms'], 0, 600_000);
  }
  if (values['shutdown-timeout-ms'] !== undefined) {
    o.shutdownTimeoutMs = integerFlag('shutdown-timeout-ms', values['shutdown-timeout-ms'], 0, 600_000);
  }
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
  let options: ClusterEngineCliOptions | undefined;
  try {
    options = parseClusterEngineArgs(argv);
  } catch (err) {
    process.stderr.write(`keyward engine: ${(err as Error).message.split('\n')[0]}\n`);
    process.exit(2);
  }
  if (options === undefined) {
    process.stdout.write(`${ENGINE_USAGE}\n`);
    return;
  }
  const o = options;
  try {
    const engine = await runClusterEngine(o);
    process.stdout.write(
      `${JSON.stringify({ url: engine.url, metricsUrl: engine.metricsUrl, caFile: engine.tls?.certPath, fingerprint256: engine.tls?.fingerprint256 })}\n`,
    );
    const stop = (): void => {
      const limitMs = (o.shutdownDelayMs ?? 0) + (o.shutdownTimeoutMs ?? 20_000);
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
