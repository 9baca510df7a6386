/**
 * `node operator/cli.ts [flags]`: runs the operator until SIGTERM/SIGINT, then releases the Lease
 * and exits. The lead wires the same function as `keyward operator`.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_DELETION_DELAY_MS } from '../engine/keys/lifecycle.ts';
import { createLogger } from './log.ts';
import { runOperator } from './main.ts';

/** Usage text. */
export const USAGE = `Usage: keyward operator [flags]

  --kubeconfig PATH         kubeconfig to use (default: in-cluster, then ~/.kube/config)
  --namespace NS            the operator's namespace: material Secrets, master key, Lease
                            (default keyward-system)
  --watch-namespace NS      reconcile Keys of this namespace only (default: all namespaces)
  --deletion-delay DURATION time from a deletion request to erasure (default 72h).
                            FOR TESTS AND DEV CLUSTERS ONLY: production keeps 72h.
  --metrics-port N          port of /metrics, /livez and /readyz (default 8080; 0 = any free port)
  --lease-name NAME         leader-election Lease name (default keyward-operator)
  --lease-duration DURATION leader Lease duration (default 15s)
  --identity ID             this replica's identity in the Lease (default host_random)
  --master-key-secret NAME  the master-key Secret (default keyward-master-key; created if absent)
  --workers N               concurrent reconciles (default 32)
  --usage-namespace NS      namespace of the engines' usage-report ConfigMaps (default --namespace)
  --usage-interval DURATION how often usage is folded into keys, at most once per key (default 60s)
  -h, --help                show this help
Durations: 1500ms, 20s, 5m, 72h.`;

/** Parses `20s`, `5m`, `72h`, `1500ms` (or a plain number of seconds) into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`invalid duration ${JSON.stringify(text)} (use 1500ms, 20s, 5m, 72h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

/** Runs the CLI with `argv` (without node and script). */
export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string', default: 'keyward-system' },
      'watch-namespace': { type: 'string' },
      'deletion-delay': { type: 'string' },
      'metrics-port': { type: 'string', default: '8080' },
      'lease-name': { type: 'string', default: 'keyward-operator' },
      'lease-duration': { type: 'string', default: '15s' },
      identity: { type: 'string' },
      'master-key-secret': { type: 'string' },
      workers: { type: 'string', default: '32' },
      'usage-namespace': { type: 'string' },
      'usage-interval': { type: 'string', default: '60s' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = createLogger();
  const deletionDelayMs =
    values['deletion-delay'] === undefined
      ? DEFAULT_DELETION_DELAY_MS
      : parseDuration(values['deletion-delay']);
  if (deletionDelayMs !== DEFAULT_DELETION_DELAY_MS) {
    log.warn({ deletionDelayMs }, 'the deletion delay is shortened: this is for tests and dev clusters only');
  }
  const operator = await runOperator({
    kubeconfigPath: values.kubeconfig,
    namespace: values.namespace,
    watchNamespace: values['watch-namespace'],
    deletionDelayMs,
    metricsPort: Number(values['metrics-port']),
    leaseName: values['lease-name'],
    leaseDurationMs: parseDuration(values['lease-duration'] ?? '15s'),
    identity: values.identity,
    masterKeySecret: values['master-key-secret'],
    workers: Number(values.workers),
    usageNamespace: values['usage-namespace'],
    usageIntervalMs: parseDuration(values['usage-interval'] ?? '60s'),
    log,
  });
  if (operator.metricsPort !== undefined) log.info({ port: operator.metricsPort }, 'health server listening');
  let stopping = false;
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down');
    operator.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`keyward operator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
