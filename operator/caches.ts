/**
 * The operator's shared informer caches: Keys (of the watched namespace or all), the material
 * Secrets of the operator namespace, and the engines' usage-report ConfigMaps. Every replica keeps
 * them warm, leader or not, so a new leader starts from a full cache. Controllers subscribe to
 * their events (cert-manager's shared informers); reads go to the supervisor's store, which
 * survives informer restarts (engine/kube/informer-supervisor.ts).
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesListObject,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Secret,
} from '@kubernetes/client-node';
import { USAGE_REPORT_LABEL } from '../engine/cluster/usage-report.ts';
import { type KubeClient, listAll } from '../engine/kube/client.ts';
import { type InformerEvent, SupervisedInformer } from '../engine/kube/informer-supervisor.ts';
import { KEY_GROUP, KEY_PLURAL, KEY_VERSION, type KeyResource } from '../engine/kube/key-resource.ts';
import { MATERIAL_LABEL } from '../engine/kube/material-secret.ts';
import type { Logger } from './log.ts';

/** A Key as the cache holds it. */
export type CachedKey = KeyResource & KubernetesObject;

type Handler<T> = (type: InformerEvent, obj: T) => void;

/** Options of {@link OperatorCaches}. */
export interface CachesOptions {
  client: KubeClient;
  /** The operator namespace (material Secrets). */
  namespace: string;
  /** Keys of this namespace only; all namespaces when undefined. */
  watchNamespace: string | undefined;
  /** Where the engines write usage reports. */
  usageNamespace: string;
  stallMs?: number;
  /** Counts informer restarts (metrics). */
  onRestart?: (informer: string, reason: string) => void;
  log: Logger;
}

/** See the module comment. */
export class OperatorCaches {
  readonly keys: SupervisedInformer<CachedKey>;
  readonly secrets: SupervisedInformer<V1Secret & KubernetesObject>;
  readonly usageReports: SupervisedInformer<V1ConfigMap & KubernetesObject>;
  readonly #keyHandlers: Array<Handler<KeyResource>> = [];
  readonly #secretHandlers: Array<Handler<V1Secret>> = [];
  readonly #reportHandlers: Array<Handler<V1ConfigMap>> = [];

  constructor(o: CachesOptions) {
    const { client, namespace, watchNamespace, usageNamespace } = o;
    const custom = client.api(CustomObjectsApi);
    const core = client.api(CoreV1Api);
    const common = { ...(o.stallMs === undefined ? {} : { stallMs: o.stallMs }), log: o.log };
    const restarted = (informer: string) => (reason: string) =>
      o.onRestart?.(informer, reason.split(':')[0] ?? reason);

    const base = { group: KEY_GROUP, version: KEY_VERSION, plural: KEY_PLURAL };
    this.keys = new SupervisedInformer<CachedKey>({
      name: 'keys',
      create: (list) =>
        client.informer<CachedKey>(
          watchNamespace
            ? `/apis/${KEY_GROUP}/${KEY_VERSION}/namespaces/${watchNamespace}/${KEY_PLURAL}`
            : `/apis/${KEY_GROUP}/${KEY_VERSION}/${KEY_PLURAL}`,
          list,
        ),
      list: () =>
        listAll<CachedKey>(
          async (page) =>
            (watchNamespace
              ? await custom.listNamespacedCustomObject({ ...base, namespace: watchNamespace, ...page })
              : await custom.listClusterCustomObject({
                  ...base,
                  ...page,
                })) as KubernetesListObject<CachedKey>,
        ),
      onEvent: (type, obj) => {
        for (const h of this.#keyHandlers) h(type, obj);
      },
      onRestart: restarted('keys'),
      ...common,
    });

    const materialSelector = `${MATERIAL_LABEL}=true`;
    this.secrets = new SupervisedInformer<V1Secret & KubernetesObject>({
      name: 'secrets',
      create: (list) => client.informer(`/api/v1/namespaces/${namespace}/secrets`, list, materialSelector),
      list: () =>
        listAll(
          async (page) =>
            await core.listNamespacedSecret({ namespace, labelSelector: materialSelector, ...page }),
        ),
      onEvent: (type, obj) => {
        for (const h of this.#secretHandlers) h(type, obj);
      },
      onRestart: restarted('secrets'),
      ...common,
    });

    const reportSelector = `${USAGE_REPORT_LABEL}=true`;
    this.usageReports = new SupervisedInformer<V1ConfigMap & KubernetesObject>({
      name: 'usage-reports',
      create: (list) =>
        client.informer(`/api/v1/namespaces/${usageNamespace}/configmaps`, list, reportSelector),
      list: () =>
        listAll(
          async (page) =>
            await core.listNamespacedConfigMap({
              namespace: usageNamespace,
              labelSelector: reportSelector,
              ...page,
            }),
        ),
      onEvent: (type, obj) => {
        for (const h of this.#reportHandlers) h(type, obj);
      },
      onRestart: restarted('usage-reports'),
      ...common,
    });
  }

  /** Subscribes to Key changes. */
  onKey(handler: Handler<KeyResource>): void {
    this.#keyHandlers.push(handler);
  }

  /** Subscribes to material Secret changes. */
  onSecret(handler: Handler<V1Secret>): void {
    this.#secretHandlers.push(handler);
  }

  /** Subscribes to usage-report changes. */
  onUsageReport(handler: Handler<V1ConfigMap>): void {
    this.#reportHandlers.push(handler);
  }

  /**
   * Starts the informers; resolves once Keys and Secrets have listed. Usage history is optional
   * (keys are reconciled without it), so startup does not wait for the reports.
   */
  async start(): Promise<void> {
    void this.usageReports.start();
    await Promise.all([this.keys.start(), this.secrets.start()]);
  }

  /** True once Keys and Secrets have listed (stays true across watch resets). */
  synced(): boolean {
    return this.keys.hasSynced() && this.secrets.hasSynced();
  }

  /** Every cached Key. */
  listKeys(): KeyResource[] {
    return this.keys.list();
  }

  /** The cached Key, if any. */
  getKey(namespace: string, name: string): KeyResource | undefined {
    return this.keys.get(name, namespace);
  }

  async stop(): Promise<void> {
    await Promise.all([this.keys.stop(), this.secrets.stop(), this.usageReports.stop()]);
  }
}
