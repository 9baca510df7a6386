/**
 * What the cluster engine reads from the apiserver, read-only: every `Key` (all namespaces) and
 * the material Secrets in the operator's namespace, through supervised informers (restarted on
 * errors and stalls, keeping their last good state meanwhile: engine/kube/informer-supervisor.ts),
 * and the master key from the Secret the operator creates. Nothing here writes.
 */
import type { KeyObject } from 'node:crypto';
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesListObject,
  type KubernetesObject,
  type V1Secret,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, isNotFound, type KubeClient, listAll } from '../kube/client.ts';
import { type InformerEvent, SupervisedInformer } from '../kube/informer-supervisor.ts';
import { KEY_GROUP, KEY_PLURAL, KEY_VERSION, type KeyResource } from '../kube/key-resource.ts';
import { MASTER_KEY_SECRET, masterKeyFromSecret } from '../kube/master-key-secret.ts';
import { MATERIAL_LABEL } from '../kube/material-secret.ts';

/** The label selector of material Secrets. */
export const MATERIAL_SELECTOR = `${MATERIAL_LABEL}=true`;

/** Options of {@link KeySources}. */
export interface KeySourcesOptions {
  client: KubeClient;
  /** The operator's namespace (material Secrets and the master key). */
  namespace: string;
  /** Name of the master-key Secret; the operator's default. */
  masterKeySecret?: string;
  /** Called on every change of a Key or material Secret (namespace and name of the Key). */
  onChange: (type: InformerEvent, kind: 'key' | 'material', obj: KeyResource | V1Secret) => void;
  /** Informer stall watchdog period. */
  stallMs?: number;
  log: Logger;
}

type NamedSecret = V1Secret & { metadata: { name: string } };
/** A Key as the informer holds it (client-node types metadata as V1ObjectMeta). */
export type NamedKey = KeyResource & KubernetesObject & { metadata: { name: string; namespace: string } };

/** See the module comment. */
export class KeySources {
  readonly keys: SupervisedInformer<NamedKey>;
  readonly secrets: SupervisedInformer<NamedSecret>;
  readonly namespace: string;
  readonly #core: CoreV1Api;
  readonly #masterName: string;
  readonly #log: Logger;
  #master: KeyObject | undefined;
  #stopped = false;

  constructor(o: KeySourcesOptions) {
    const client = o.client;
    this.namespace = o.namespace;
    this.#core = client.api(CoreV1Api);
    this.#masterName = o.masterKeySecret ?? MASTER_KEY_SECRET;
    this.#log = o.log;
    const custom = client.api(CustomObjectsApi);
    const keyPath = `/apis/${KEY_GROUP}/${KEY_VERSION}/${KEY_PLURAL}`;
    this.keys = new SupervisedInformer<NamedKey>({
      name: 'keys',
      create: (list) => client.informer<NamedKey>(keyPath, list),
      list: () =>
        listAll<NamedKey>(
          async (page) =>
            (await custom.listClusterCustomObject({
              group: KEY_GROUP,
              version: KEY_VERSION,
              plural: KEY_PLURAL,
              ...page,
            })) as KubernetesListObject<NamedKey>,
        ),
      onEvent: (type, obj) => o.onChange(type, 'key', obj),
      ...(o.stallMs === undefined ? {} : { stallMs: o.stallMs }),
      log: o.log,
    });
    const secretPath = `/api/v1/namespaces/${o.namespace}/secrets`;
    this.secrets = new SupervisedInformer<NamedSecret>({
      name: 'secrets',
      create: (list) => client.informer<NamedSecret>(secretPath, list, MATERIAL_SELECTOR),
      list: () =>
        listAll<NamedSecret>(
          async (page) =>
            (await this.#core.listNamespacedSecret({
              namespace: o.namespace,
              labelSelector: MATERIAL_SELECTOR,
              ...page,
            })) as KubernetesListObject<NamedSecret>,
        ),
      onEvent: (type, obj) => o.onChange(type, 'material', obj),
      ...(o.stallMs === undefined ? {} : { stallMs: o.stallMs }),
      log: o.log,
    });
  }

  /**
   * Starts both informers and the master-key loader. Resolves when the informers have listed;
   * the master key may come later (the operator creates it on its first start).
   */
  async start(): Promise<void> {
    void this.#loadMaster();
    await Promise.all([this.keys.start(), this.secrets.start()]);
  }

  /** True once both informers have listed and the master key is known. */
  synced(): boolean {
    return this.keys.hasSynced() && this.secrets.hasSynced() && this.#master !== undefined;
  }

  /** The master key, once read. */
  master(): KeyObject | undefined {
    return this.#master;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    // The master-key loop sees #stopped after its current sleep; nothing waits for it.
    await Promise.all([this.keys.stop(), this.secrets.stop()]);
  }

  /** Reads the master-key Secret until it exists (with a capped backoff); it never changes. */
  async #loadMaster(): Promise<void> {
    let delay = 250;
    let warned = false;
    while (!this.#stopped && this.#master === undefined) {
      try {
        const secret = await this.#core.readNamespacedSecret({
          name: this.#masterName,
          namespace: this.namespace,
        });
        this.#master = masterKeyFromSecret(secret);
        this.#log.info({ secret: this.#masterName }, 'master key loaded');
        return;
      } catch (err) {
        if (!warned || !isNotFound(err)) {
          this.#log.warn(
            { secret: this.#masterName, err: isNotFound(err) ? 'not found yet' : describeError(err) },
            'waiting for the master-key Secret (the operator creates it)',
          );
          warned = true;
        }
      }
      await new Promise((r) => setTimeout(r, delay).unref());
      delay = Math.min(delay * 2, 5_000);
    }
  }
}
