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
import { MASTER_KEY_SECRET, type MasterKeySet, masterKeysFromSecret } from '../kube/master-key-secret.ts';
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
  /** Namespace of the master-key Secret, when not `namespace`. */
  masterKeyNamespace?: string;
  /** Called on every change of a Key or material Secret (namespace and name of the Key). */
  onChange: (type: InformerEvent, kind: 'key' | 'material', obj: KeyResource | V1Secret) => void;
  /** Informer stall watchdog period. */
  stallMs?: number;
  /** How often the master-key Secret is read again once loaded (a restore, a rotation); 30 s. */
  masterKeyPollMs?: number;
  /** Called when the master-key Secret changed after it was first loaded. */
  onMasterKeyChange?: () => void;
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
  readonly #masterNamespace: string;
  readonly #log: Logger;
  readonly #pollMs: number;
  readonly #onMasterKeyChange: (() => void) | undefined;
  #master: MasterKeySet | undefined;
  #stopped = false;

  constructor(o: KeySourcesOptions) {
    const client = o.client;
    this.namespace = o.namespace;
    this.#core = client.api(CoreV1Api);
    this.#masterName = o.masterKeySecret ?? MASTER_KEY_SECRET;
    this.#masterNamespace = o.masterKeyNamespace ?? o.namespace;
    this.#log = o.log;
    this.#pollMs = o.masterKeyPollMs ?? 30_000;
    this.#onMasterKeyChange = o.onMasterKeyChange;
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

  /** The current master key, once read (the audit log keys its checkpoints with it). */
  master(): KeyObject | undefined {
    const set = this.#master;
    return set?.key(set.current);
  }

  /** Every master-key version the Secret holds, with check values, once read. */
  masterKeys(): MasterKeySet | undefined {
    return this.#master;
  }

  /** The master-key Secret as `namespace/name`, for messages. */
  get masterKeySecretName(): string {
    return `${this.#masterNamespace}/${this.#masterName}`;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    // The master-key loop sees #stopped after its current sleep; nothing waits for it.
    await Promise.all([this.keys.stop(), this.secrets.stop()]);
  }

  /**
   * Reads the master-key Secret until it exists (with a capped backoff), then again every
   * `masterKeyPollMs`: a restored Secret or a new master-key version is picked up without a restart.
   * A Secret that went missing keeps the last set (material already served stays servable).
   */
  async #loadMaster(): Promise<void> {
    await this.#loadMasterFirst();
    while (!this.#stopped) {
      await new Promise((r) => setTimeout(r, this.#pollMs).unref());
      if (this.#stopped) return;
      await this.#readMaster();
    }
  }

  #refreshing: Promise<void> | undefined;
  #refreshedAt = 0;

  /**
   * Reads the master-key Secret now (at most once a second): material re-wrapped under a
   * master-key version this engine does not hold yet (a rotation) makes it look at once rather
   * than at the next poll.
   */
  refreshMaster(): void {
    if (this.#refreshing !== undefined || this.#stopped || Date.now() - this.#refreshedAt < 1_000) return;
    this.#refreshedAt = Date.now();
    this.#refreshing = this.#readMaster().finally(() => {
      this.#refreshing = undefined;
    });
  }

  async #readMaster(): Promise<void> {
    try {
      const set = masterKeysFromSecret(
        await this.#core.readNamespacedSecret({ name: this.#masterName, namespace: this.#masterNamespace }),
      );
      if (set.resourceVersion !== this.#master?.resourceVersion) {
        this.#master = set;
        this.#log.info({ secret: this.#masterName, versions: set.versions }, 'master-key Secret changed');
        this.#onMasterKeyChange?.();
      }
    } catch (err) {
      this.#log.warn({ secret: this.#masterName, err: describeError(err) }, 'master-key Secret not re-read');
    }
  }

  async #loadMasterFirst(): Promise<void> {
    let delay = 250;
    let warned = false;
    while (!this.#stopped && this.#master === undefined) {
      try {
        const secret = await this.#core.readNamespacedSecret({
          name: this.#masterName,
          namespace: this.#masterNamespace,
        });
        this.#master = masterKeysFromSecret(secret);
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
