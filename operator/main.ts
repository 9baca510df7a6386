/**
 * The Keyward operator: `runOperator(options)` wires the supervised Key informer, the work queue,
 * the reconciler, leader election and the health/metrics server. Every replica keeps a warm
 * informer cache and a queue; only the Lease holder runs workers and writes anything.
 */

import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
  type V1ConfigMap,
  type V1Secret,
} from '@kubernetes/client-node';
import { parseUsageReport, USAGE_REPORT_LABEL, type UsageReport } from '../engine/cluster/usage-report.ts';
import { DEFAULT_DELETION_DELAY_MS } from '../engine/keys/lifecycle.ts';
import { describeError, poolConnections } from '../engine/kube/client.ts';
import { SupervisedInformer } from '../engine/kube/informer-supervisor.ts';
import { KEY_GROUP, KEY_PLURAL, KEY_VERSION, type KeyResource } from '../engine/kube/key-resource.ts';
import { KEY_NAME_LABEL, KEY_NAMESPACE_LABEL, MATERIAL_LABEL } from '../engine/kube/material-secret.ts';
import { EventRecorder } from './events.ts';
import { LeaderElector } from './leader.ts';
import { createLogger, type Logger } from './log.ts';
import { ensureMasterKey, MASTER_KEY_SECRET, MaterialStore } from './material-store.ts';
import { OperatorMetrics, startHealthServer } from './metrics.ts';
import { KeyReconciler, queueKey } from './reconciler.ts';
import { reportsForKey } from './usage.ts';
import { runWorkers, WorkQueue } from './workqueue.ts';

/** Usage reports not refreshed for a day belong to replicas that are gone. */
const STALE_REPORT_MS = 86_400_000;

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
  /** Name of the master-key Secret. */
  masterKeySecret?: string;
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
  /** Stops workers, releases the Lease, stops the informer and the server. */
  stop(): Promise<void>;
}

/** Starts the operator; resolves once the Key informer has listed. */
export async function runOperator(options: OperatorOptions = {}): Promise<RunningOperator> {
  const log = options.log ?? createLogger();
  const kc = poolConnections(options.kubeConfig ?? loadKubeConfig(options.kubeconfigPath));
  const namespace = options.namespace ?? 'keyward-system';
  const identity = options.identity ?? `${hostname()}_${randomUUID().slice(0, 8)}`;
  const lifecycle = { deletionDelayMs: options.deletionDelayMs ?? DEFAULT_DELETION_DELAY_MS };
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const queue = new WorkQueue({ now: Date.now });
  let elector: LeaderElector | undefined;
  let reconciles = 0;

  const watchNs = options.watchNamespace;
  const path = watchNs
    ? `/apis/${KEY_GROUP}/${KEY_VERSION}/namespaces/${watchNs}/${KEY_PLURAL}`
    : `/apis/${KEY_GROUP}/${KEY_VERSION}/${KEY_PLURAL}`;
  const listKeys = async (): Promise<KubernetesListObject<KubernetesObject>> => {
    const base = { group: KEY_GROUP, version: KEY_VERSION, plural: KEY_PLURAL };
    const list = watchNs
      ? await custom.listNamespacedCustomObject({ ...base, namespace: watchNs })
      : await custom.listClusterCustomObject(base);
    return list as KubernetesListObject<KubernetesObject>;
  };
  let metrics: OperatorMetrics | undefined;
  const informer = new SupervisedInformer<KubernetesObject>({
    name: 'keys',
    create: (list) => makeInformer<KubernetesObject>(kc, path, list),
    list: listKeys,
    onEvent: (type, obj) => {
      reconcilerRef?.observe(obj as unknown as KeyResource, type === 'delete');
      queue.add(queueKey(obj.metadata?.namespace ?? '', obj.metadata?.name ?? ''));
    },
    onRestart: (reason) =>
      metrics?.informerRestarts.inc({ informer: 'keys', reason: reason.split(':')[0] ?? reason }),
    stallMs: options.stallMs,
    log,
  });
  // Material Secrets, cached: reconciles read them without a request, and a Secret changed or
  // deleted behind the operator's back wakes its Key.
  let store: MaterialStore | undefined;
  let reconcilerRef: KeyReconciler | undefined;
  const secretsPath = `/api/v1/namespaces/${namespace}/secrets`;
  const secrets = new SupervisedInformer<KubernetesObject>({
    name: 'secrets',
    create: (list) => makeInformer<KubernetesObject>(kc, secretsPath, list, `${MATERIAL_LABEL}=true`),
    list: async () =>
      (await core.listNamespacedSecret({
        namespace,
        labelSelector: `${MATERIAL_LABEL}=true`,
      })) as KubernetesListObject<KubernetesObject>,
    onEvent: (type, obj) => {
      const name = obj.metadata?.name ?? '';
      store?.observe(name, type === 'delete' ? null : (obj as V1Secret));
      const labels = obj.metadata?.labels ?? {};
      const keyNs = labels[KEY_NAMESPACE_LABEL];
      const keyName = labels[KEY_NAME_LABEL];
      if (keyNs && keyName && (!watchNs || keyNs === watchNs)) queue.add(queueKey(keyNs, keyName));
    },
    onRestart: (reason) =>
      metrics?.informerRestarts.inc({ informer: 'secrets', reason: reason.split(':')[0] ?? reason }),
    stallMs: options.stallMs,
    log,
  });
  // Engine usage reports (engine/cluster/usage-report.ts), parsed once per ConfigMap change.
  const usageNs = options.usageNamespace ?? namespace;
  const usageIntervalMs = options.usageIntervalMs ?? 60_000;
  const reports = new Map<string, UsageReport>();
  const usageReports = new SupervisedInformer<KubernetesObject>({
    name: 'usage-reports',
    create: (list) =>
      makeInformer<KubernetesObject>(
        kc,
        `/api/v1/namespaces/${usageNs}/configmaps`,
        list,
        `${USAGE_REPORT_LABEL}=true`,
      ),
    list: async () =>
      (await core.listNamespacedConfigMap({
        namespace: usageNs,
        labelSelector: `${USAGE_REPORT_LABEL}=true`,
      })) as KubernetesListObject<KubernetesObject>,
    onEvent: (type, obj) => {
      const name = obj.metadata?.name ?? '';
      const report = type === 'delete' ? undefined : parseUsageReport((obj as V1ConfigMap).data);
      if (report === undefined) reports.delete(name);
      else reports.set(name, report);
    },
    onRestart: (reason) =>
      metrics?.informerRestarts.inc({ informer: 'usage-reports', reason: reason.split(':')[0] ?? reason }),
    stallMs: options.stallMs,
    log,
  });
  const cachedKeys = (): KeyResource[] => informer.list() as unknown as KeyResource[];
  metrics = new OperatorMetrics({
    queueDepth: () => queue.length,
    keysByState: () => {
      const counts: Record<string, number> = {};
      for (const k of cachedKeys()) {
        const s = k.status?.state ?? 'Unknown';
        counts[s] = (counts[s] ?? 0) + 1;
      }
      return counts;
    },
    isLeader: () => elector?.isLeader() ?? false,
  });
  const m = metrics;

  let health: { server: Server; port: number } | undefined;
  if (options.metricsPort !== undefined) {
    health = await startHealthServer(
      m,
      () => informer.hasSynced() && secrets.hasSynced(),
      options.metricsPort,
    );
  }
  await Promise.all([informer.start(), secrets.start()]);
  // Usage history is optional: without access to the reports (or before they list), keys are
  // still reconciled, so startup does not wait for this informer.
  void usageReports.start();

  // Leading: ensure the master key, then run workers until leadership ends.
  let workers: AbortController | undefined;
  let running: Promise<void> | undefined;
  const startLeading = (): void => {
    const ctl = new AbortController();
    workers = ctl;
    running = (async () => {
      let master: Awaited<ReturnType<typeof ensureMasterKey>> | undefined;
      while (!ctl.signal.aborted && master === undefined) {
        try {
          master = await ensureMasterKey(core, namespace, options.masterKeySecret ?? MASTER_KEY_SECRET);
        } catch (err) {
          log.error({ err: describeError(err) }, 'cannot get the master key; retrying');
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      if (master === undefined) return;
      store = new MaterialStore(core, namespace, master, {
        get: (name, ns) => secrets.get(name, ns) as V1Secret | undefined,
      });
      const reconciler = new KeyReconciler({
        custom,
        material: store,
        events: new EventRecorder(kc.makeApiClient(EventsV1Api), identity, log),
        getKey: (ns, name) => informer.get(name, ns) as KeyResource | undefined,
        lifecycle,
        now: Date.now,
        log,
        usageReports: (ns, name) => {
          const id = `${ns}/${name}`;
          const all = [...reports.values()];
          return all.some((r) => r.keys?.[id] !== undefined) ? reportsForKey(all, ns, name) : [];
        },
        usageIntervalMs,
      });
      reconcilerRef = reconciler;
      for (const k of cachedKeys()) queue.add(queueKey(k.metadata.namespace, k.metadata.name));
      const resync = setInterval(() => {
        for (const k of cachedKeys()) queue.add(queueKey(k.metadata.namespace, k.metadata.name));
      }, options.resyncMs ?? 600_000);
      resync.unref();
      // Usage: queue the keys the engines reported, and drop reports of replicas long gone.
      const usageTimer = setInterval(() => {
        const now = Date.now();
        for (const [cmName, report] of reports) {
          if (now - report.reportedTime > STALE_REPORT_MS) {
            core.deleteNamespacedConfigMap({ name: cmName, namespace: usageNs }).catch(() => undefined);
            continue;
          }
          for (const entry of Object.values(report.keys ?? {})) {
            if (!watchNs || entry.namespace === watchNs) queue.add(queueKey(entry.namespace, entry.name));
          }
        }
      }, usageIntervalMs);
      usageTimer.unref();
      try {
        await runWorkers(
          queue,
          options.workers ?? 32,
          async (ref) => {
            const end = m.duration.startTimer();
            try {
              const result = await reconciler.reconcile(ref);
              m.reconciles.inc({ result: 'success' });
              return result;
            } catch (err) {
              m.reconciles.inc({ result: 'error' });
              m.errors.inc();
              throw err;
            } finally {
              reconciles++;
              end();
            }
          },
          ctl.signal,
          (ref, err) => log.warn({ key: ref, err: describeError(err) }, 'reconcile failed; retrying'),
        );
      } finally {
        clearInterval(resync);
        clearInterval(usageTimer);
      }
    })();
  };
  const stopLeading = (): void => {
    workers?.abort();
    workers = undefined;
  };

  const electionCtl = new AbortController();
  elector = new LeaderElector({
    api: kc.makeApiClient(CoordinationV1Api),
    namespace,
    name: options.leaseName ?? 'keyward-operator',
    identity,
    leaseDurationMs: options.leaseDurationMs,
    log,
    onStartedLeading: startLeading,
    onStoppedLeading: stopLeading,
  });
  const electing = elector.run(electionCtl.signal);
  log.info(
    { identity, namespace, watchNamespace: watchNs ?? '(all)', deletionDelayMs: lifecycle.deletionDelayMs },
    'operator started',
  );

  const el = elector;
  return {
    identity,
    metricsPort: health?.port,
    isLeader: () => el.isLeader(),
    reconcileCount: () => reconciles,
    informer,
    async stop() {
      stopLeading();
      await running?.catch(() => undefined);
      electionCtl.abort();
      await electing;
      await Promise.all([informer.stop(), secrets.stop(), usageReports.stop()]);
      if (health) await new Promise<void>((r) => health.server.close(() => r()));
    },
  };
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
