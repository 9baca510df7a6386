/**
 * `node operator/cli.ts [flags]`: runs the operator until SIGTERM/SIGINT, then releases the Lease
 * and exits. The CLI wires the same function as `keyward operator`. Every flag is validated: a bad
 * value is one line on stderr and exit status 2.
 */
import { parseArgs } from 'node:util';
import {
  AUDIT_PARSE_ARGS,
  auditConfigFromFlags,
  auditFlagsFromParsed,
  defaultAuditConfig,
} from '../engine/audit/config.ts';
import { attachNegativeValues, durationFlag, integerFlag, portFlag } from '../engine/flags.ts';
import { DEFAULT_DELETION_DELAY_MS } from '../engine/keys/lifecycle.ts';
import { MAX_NONCE_BUDGET } from '../engine/keys/nonce-budget.ts';
import { electionTiming } from './leader.ts';
import { createLogger } from './log.ts';
import { type OperatorOptions, runOperator } from './main.ts';

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
  --lease-duration DURATION leader Lease duration (default 15s); the leader stops acting
                            2/3 of it after its last renewal began
  --request-timeout DURATION deadline of every apiserver request (default: 5s, at most
                            half the renew deadline)
  --identity ID             this replica's identity in the Lease (default host_random)
  --master-key-secret NAME  the master-key Secret (default keyward-master-key; created if absent)
  --master-key-namespace NS the master-key Secret's namespace (default --namespace)
  --master-key-poll DURATION how often the master-key Secret is read again (default 10s)
  --workers N               concurrent reconciles, 1 to 1000 (default 32)
  --resync-interval DURATION how often every Key is reconciled again (default 10m)
  --usage-namespace NS      namespace of the engines' usage-report ConfigMaps (default --namespace)
  --usage-interval DURATION how often usage is folded into keys, at most once per key (default 60s)
  --nonce-budget N          random-nonce AES-GCM encryptions per key version before the key
                            rotates by itself, 1 to 2^32 (default 2^30); give engines the same
  --ca-configmap NAME       a ConfigMap of --namespace with the engine's CA (key ca.crt): keep a
                            copy, keyward-ca.crt, in every namespace that holds a Key (default: off)
  --no-audit                do not record actions on keys (the audit log is on by default: one
                            JSON line per record on stdout; docs/audit.md "Operator records")
  --audit-dir DIR           also write the audit log as segment files in DIR
  --audit-checkpoint-records N  a keyed checkpoint every N records (default 1000)
  --audit-checkpoint-interval DURATION  ... or every DURATION, whichever comes first (default 5s)
  --audit-segment-size SIZE start a new segment file at this size (default 64MiB)
  -h, --help                show this help
Durations: 1500ms, 20s, 5m, 72h.`;

const OPTIONS = {
  kubeconfig: { type: 'string' },
  namespace: { type: 'string', default: 'keyward-system' },
  'watch-namespace': { type: 'string' },
  'deletion-delay': { type: 'string' },
  'metrics-port': { type: 'string', default: '8080' },
  'lease-name': { type: 'string', default: 'keyward-operator' },
  'lease-duration': { type: 'string', default: '15s' },
  'request-timeout': { type: 'string' },
  identity: { type: 'string' },
  'master-key-secret': { type: 'string' },
  workers: { type: 'string', default: '32' },
  'resync-interval': { type: 'string', default: '10m' },
  'usage-namespace': { type: 'string' },
  'usage-interval': { type: 'string', default: '60s' },
  'nonce-budget': { type: 'string' },
  'master-key-poll': { type: 'string' },
  'master-key-namespace': { type: 'string' },
  'ca-configmap': { type: 'string' },
  'no-audit': AUDIT_PARSE_ARGS['no-audit'],
  'audit-dir': AUDIT_PARSE_ARGS['audit-dir'],
  'audit-checkpoint-records': AUDIT_PARSE_ARGS['audit-checkpoint-records'],
  'audit-checkpoint-interval': AUDIT_PARSE_ARGS['audit-checkpoint-interval'],
  'audit-segment-size': AUDIT_PARSE_ARGS['audit-segment-size'],
  help: { type: 'boolean', short: 'h' },
} as const;
const STRING_FLAGS = Object.entries(OPTIONS)
  .filter(([, o]) => o.type === 'string')
  .map(([name]) => name);

/**
 * Parses the flags into options; throws an Error with a one-line message on an unknown flag or a
 * bad value (`--workers abc`, `--lease-duration -1`, a request timeout not below the renew
 * deadline). Returns undefined for `--help`.
 */
export function parseOperatorArgs(argv: readonly string[]): OperatorOptions | undefined {
  const { values } = parseArgs({
    args: attachNegativeValues(argv, STRING_FLAGS),
    options: OPTIONS,
    strict: true,
  });
  if (values.help) return undefined;
  const o: OperatorOptions = {
    namespace: values.namespace,
    metricsPort: portFlag('metrics-port', values['metrics-port']),
    leaseName: values['lease-name'],
    leaseDurationMs: durationFlag('lease-duration', values['lease-duration'], 1000, 3_600_000),
    workers: integerFlag('workers', values.workers, 1, 1000),
    resyncMs: durationFlag('resync-interval', values['resync-interval'], 1000),
    usageIntervalMs: durationFlag('usage-interval', values['usage-interval'], 100),
    deletionDelayMs:
      values['deletion-delay'] === undefined
        ? DEFAULT_DELETION_DELAY_MS
        : durationFlag('deletion-delay', values['deletion-delay'], 0),
  };
  if (values['master-key-poll'] !== undefined) {
    o.masterKeyPollMs = durationFlag('master-key-poll', values['master-key-poll'], 100, 3_600_000);
  }
  if (values['nonce-budget'] !== undefined) {
    o.nonceBudget = integerFlag('nonce-budget', values['nonce-budget'], 1, MAX_NONCE_BUDGET);
  }
  if (values['request-timeout'] !== undefined) {
    o.requestTimeoutMs = durationFlag('request-timeout', values['request-timeout'], 100);
  }
  try {
    electionTiming({ leaseDurationMs: o.leaseDurationMs, requestTimeoutMs: o.requestTimeoutMs });
  } catch (err) {
    throw new Error(`--lease-duration/--request-timeout: ${(err as Error).message}`);
  }
  for (const [flag, key] of [
    ['kubeconfig', 'kubeconfigPath'],
    ['watch-namespace', 'watchNamespace'],
    ['identity', 'identity'],
    ['master-key-secret', 'masterKeySecret'],
    ['master-key-namespace', 'masterKeyNamespace'],
    ['usage-namespace', 'usageNamespace'],
    ['ca-configmap', 'caConfigMap'],
  ] as const) {
    const v = values[flag];
    if (v !== undefined) o[key] = v;
  }
  // The operator serves no requests, so there is nothing for --audit-required to refuse.
  o.audit = auditConfigFromFlags(auditFlagsFromParsed(values), { ...defaultAuditConfig(), stdout: true });
  if (o.caConfigMap !== undefined && !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(o.caConfigMap)) {
    throw new Error(`--ca-configmap must be a ConfigMap name, not ${JSON.stringify(o.caConfigMap)}`);
  }
  return o;
}

/** Runs the CLI with `argv` (without node and script). Bad flags: one line on stderr, exit 2. */
export async function main(argv: string[]): Promise<void> {
  let options: OperatorOptions | undefined;
  try {
    options = parseOperatorArgs(argv);
  } catch (err) {
    process.stderr.write(`keyward operator: ${(err as Error).message.split('\n')[0]}\n`);
    process.exit(2);
  }
  if (options === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = createLogger();
  if (options.deletionDelayMs !== DEFAULT_DELETION_DELAY_MS) {
    log.warn(
      { deletionDelayMs: options.deletionDelayMs },
      'the deletion delay is shortened: this is for tests and dev clusters only',
    );
  }
  const operator = await runOperator({ ...options, log });
  if (operator.metricsPort !== undefined) log.info({ port: operator.metricsPort }, 'health server listening');
  let stopping = false;
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down');
    // A stop that hangs (an apiserver call, a watch) must not outlive the pod's grace period with
    // the Lease held: exit anyway, non-zero, so the hang is visible.
    setTimeout(() => {
      log.error({ afterMs: SHUTDOWN_TIMEOUT_MS }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
    operator.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/** After SIGTERM, the stop's limit: inside the chart's 30 s termination grace period. */
const SHUTDOWN_TIMEOUT_MS = 20_000;

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`keyward operator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
