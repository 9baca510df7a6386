/**
 * The Keyward operator: `runOperator(options)` wires the parts, in the manner of cert-manager's
 * controller manager:
 * - the shared informer caches (operator/caches.ts), warm on every replica;
 * - the Key controller (operator/key-controller.ts) and the usage controller
 *   (operator/usage-controller.ts), which act only while their replica leads;
 * - the leader wiring (operator/leadership.ts): a Lease election whose terms fence every write;
 * - the health and metrics server (operator/metrics.ts);
 * - the audit trail of actions on keys (operator/audit.ts), a chain of this replica's own.
 * One KubeClient serves them all: pooled connections, and a deadline on every request that is
 * shorter than the renew deadline.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { type AuditConfig, defaultAuditConfig } from '../engine/audit/config.ts';
import { registerAuditMetrics } from '../engine/audit/metrics.ts';
import { DEFAULT_DELETION_DELAY_MS } from '../engine/keys/lifecycle.ts';
import { KubeClient } from '../engine/kube/client.ts';
import type { SupervisedInformer } from '../engine/kube/informer-supervisor.ts';
import { openOperatorAudit, readMasterKeyForAudit } from './audit.ts';
import { CaController } from './ca-controller.ts';
import { OperatorCaches } from './caches.ts';
import { countByState, KeyController } from './key-controller.ts';
import { electionTiming } from './leader.ts';
import { Leadership } from './leadership.ts';
import { createLogger, type Logger } from './log.ts';
import { MASTER_KEY_SECRET } from './material-store.ts';
import { OperatorMetrics, startHealthServer } from './metrics.ts';
import { UsageController } from './usage-controller.ts';

/** Options of `runOperator`. Only `namespace` matters in production; the rest have defaults. */
export interface OperatorOptions {
  /** A ready KubeConfig; else `kubeconfigPath`; else the default (in-cluster or ~/.kube/config). */
  kubeConfig?: KubeConfig;
  kubeconfigPath?: string;
  /** The operator's namespace: material Secrets, the master key and the Lease live here. */
  namespace?: string;
  /** Reconcile Keys of this namespace only; default all namespaces. */
  watchNamespace?: string;
  /** Deletion delay (§3), 72 h by default. Shorter values are for tests and dev clusters. */
  deletionDelayMs?: number;
  /** Port of /metrics, /livez, /readyz; 0 picks a free port; undefined disables the server. */
  metricsPort?: number;
  /** The Lease name. */
  leaseName?: string;
  /** This replica's identity in the Lease. */
  identity?: string;
  /** Lease duration; a standby takes over within it after the leader dies. */
  leaseDurationMs?: number;
  /** Deadline of every apiserver request; shorter than the renew deadline (2/3 of the lease). */
  requestTimeoutMs?: number;
  /** Name of the master-key Secret. */
  masterKeySecret?: string;
  /** Namespace of the master-key Secret; default `namespace` (docs/security.md: its own is better). */
  masterKeyNamespace?: string;
  /** Concurrent reconciles. */
  workers?: number;
  /** Informer stall watchdog period. */
  stallMs?: number;
  /** Period of the full resync (every cached Key is queued again). */
  resyncMs?: number;
  /** Namespace of the engines' usage-report ConfigMaps; default `namespace`. */
  usageNamespace?: string;
  /** How often usage reports are folded into keys (at most once per key per period); 60 s. */
  usageIntervalMs?: number;
  /** Random-nonce encryptions per key version before the key rotates by itself; 2^30. */
  nonceBudget?: number;
  /** How often the master-key Secret is read again (a restore, a rotation); 10 s. */
  masterKeyPollMs?: number;
  /**
   * A ConfigMap of `namespace` holding the engine's CA (key `ca.crt`): when set, the operator keeps
   * a copy, `keyward-ca.crt`, in every namespace that holds a Key (operator/ca-controller.ts).
   */
  caConfigMap?: string;
  /**
   * The audit log of actions on keys (docs/audit.md "Operator records"): on by default, JSON
   * lines on stdout; segment files too with `dir`.
   */
  audit?: AuditConfig;
  log?: Logger;
}

/** A running operator. */
export interface RunningOperator {
  /** The identity used in the Lease. */
  identity: string;
  /** The port of the health/metrics server, if started. */
  metricsPort: number | undefined;
  /** True while this replica leads. */
  isLeader(): boolean;
  /** Reconciles completed (success or error) by this replica. */
  reconcileCount(): number;
  /** The supervised Key informer (tests inspect restarts). */
  informer: SupervisedInformer<KubernetesObject>;
  /** Ends the term (workers stop), releases the Lease, stops the informers and the server. */
  stop(): Promise<void>;
}

/** Starts the operator; resolves once the Key and Secret informers have listed. */
export async function runOperator(options: OperatorOptions = {}): Promise<RunningOperator> {
  const log = options.log ?? createLogger();
  const namespace = options.namespace ?? 'keyward-system';
  const identity = options.identity ?? `${hostname()}_${randomUUID().slice(0, 8)}`;
  const watchNamespace = options.watchNamespace;
  const usageNamespace = options.usageNamespace ?? namespace;
  // Throws early on timings that cannot keep one leader (the CLI validated the flags already).
  const timing = electionTiming({
    ...(options.leaseDurationMs === undefined ? {} : { leaseDurationMs: options.leaseDurationMs }),
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
  });
  // Opened first: an audit directory that cannot be written stops the start, as in the engine.
  const audit = await openOperatorAudit(options.audit ?? { ...defaultAuditConfig(), stdout: true }, {
    name: identity,
    log,
  });
  const client = new KubeClient(options.kubeConfig ?? loadKubeConfig(options.kubeconfigPath), {
    requestTimeoutMs: timing.requestTimeoutMs,
    userAgent: `keyward-operator/${identity}`,
  });

  let keys: KeyController | undefined;
  let leadership: Leadership | undefined;
  const caches = new OperatorCaches({
    client,
    namespace,
    watchNamespace,
    usageNamespace,
    ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs }),
    onRestart: (informer, reason) => metrics.informerRestarts.inc({ informer, reason }),
    log,
  });
  const metrics = new OperatorMetrics({
    queueDepth: () => keys?.queue.readyCount() ?? 0,
    parkedKeys: () => (keys === undefined ? 0 : keys.queue.length - keys.queue.readyCount()),
    keysByState: () => countByState(caches.listKeys()),
    isLeader: () => leadership?.isLeader() ?? false,
  });
  keys = new KeyController({
    client,
    caches,
    namespace,
    watchNamespace,
    ...(options.masterKeySecret === undefined ? {} : { masterKeySecret: options.masterKeySecret }),
    ...(options.masterKeyNamespace === undefined ? {} : { masterKeyNamespace: options.masterKeyNamespace }),
    ...(options.workers === undefined ? {} : { workers: options.workers }),
    ...(options.resyncMs === undefined ? {} : { resyncMs: options.resyncMs }),
    lifecycle: {
      deletionDelayMs: options.deletionDelayMs ?? DEFAULT_DELETION_DELAY_MS,
      ...(options.nonceBudget === undefined ? {} : { nonceBudget: options.nonceBudget }),
    },
    ...(options.masterKeyPollMs === undefined ? {} : { masterKeyPollMs: options.masterKeyPollMs }),
    ...(options.usageIntervalMs === undefined ? {} : { usageIntervalMs: options.usageIntervalMs }),
    usageReports: (ns, name) => usage.reportsFor(ns, name),
    metrics,
    ...(audit === undefined ? {} : { audit: audit.trail }),
    log,
  });
  if (audit !== undefined) registerAuditMetrics(audit.log, metrics.registry);
  const k = keys;
  const usage = new UsageController({
    client,
    caches,
    usageNamespace,
    ...(options.usageIntervalMs === undefined ? {} : { intervalMs: options.usageIntervalMs }),
    enqueue: (ns, name) => k.enqueue(ns, name),
    log,
  });
  const ca =
    options.caConfigMap === undefined
      ? undefined
      : new CaController({
          client,
          caches,
          namespace,
          source: options.caConfigMap,
          watchNamespace,
          ...(options.resyncMs === undefined ? {} : { resyncMs: options.resyncMs }),
          ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs }),
          log,
        });
  leadership = new Leadership({
    client,
    namespace,
    leaseName: options.leaseName ?? 'keyward-operator',
    identity,
    leaseDurationMs: timing.leaseDurationMs,
    requestTimeoutMs: timing.requestTimeoutMs,
    controllers: ca === undefined ? [keys, usage] : [keys, usage, ca],
    log,
  });
  const lead = leadership;

  let health: { server: Server; port: number } | undefined;
  if (options.metricsPort !== undefined) {
    health = await startHealthServer(metrics, () => caches.synced(), options.metricsPort);
  }
  await caches.start();
  ca?.start();
  lead.start();
  if (audit !== undefined) {
    const secret = options.masterKeySecret ?? MASTER_KEY_SECRET;
    const secretNamespace = options.masterKeyNamespace ?? namespace;
    void readMasterKeyForAudit(client, secretNamespace, secret, audit.trail, log);
  }
  log.info(
    {
      identity,
      namespace,
      watchNamespace: watchNamespace ?? '(all)',
      deletionDelayMs: options.deletionDelayMs ?? DEFAULT_DELETION_DELAY_MS,
      ...timing,
    },
    'operator started',
  );

  return {
    identity,
    metricsPort: health?.port,
    isLeader: () => lead.isLeader(),
    reconcileCount: () => k.reconciles,
    informer: caches.keys as unknown as SupervisedInformer<KubernetesObject>,
    async stop() {
      await lead.stop();
      // After the term: every action written has been recorded; the closing checkpoint seals them.
      await audit?.log.close();
      await Promise.all([caches.stop(), ca?.stop()]);
      if (health) await new Promise<void>((r) => health.server.close(() => r()));
      await client.close();
    },
  };
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
