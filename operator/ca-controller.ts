/**
 * The CA controller: the engine's CA in every namespace that uses Keyward, as Kubernetes publishes
 * `kube-root-ca.crt` in every namespace. The operator keeps a ConfigMap `keyward-ca.crt` (key
 * `ca.crt`) in each namespace that holds a Key, with the CA of the ConfigMap `--ca-configmap` of
 * its own namespace (the chart publishes the engine's CA there). A changed CA reaches every copy;
 * when the last Key of a namespace is gone, its copy is deleted. A ConfigMap of that name that the
 * operator did not make (no `keyward.io/ca-bundle` label) is left alone.
 *
 * RBAC: `create` on configmaps (Kubernetes cannot limit create to a name), `get`, `update` and
 * `delete` on configmaps named `keyward-ca.crt` only, and `list` on namespaces (to find copies
 * left behind while no operator ran). Like every controller, it acts only while leading, through
 * API clients fenced by the leadership term.
 */
import { X509Certificate } from 'node:crypto';
import {
  CoreV1Api,
  type KubernetesListObject,
  type KubernetesObject,
  type V1ConfigMap,
} from '@kubernetes/client-node';
import { describeError, isConflict, isNotFound, type KubeClient, listAll } from '../engine/kube/client.ts';
import { SupervisedInformer } from '../engine/kube/informer-supervisor.ts';
import { MANAGED_BY, WRITTEN_BY_ANNOTATION } from '../engine/kube/material-secret.ts';
import type { OperatorCaches } from './caches.ts';
import type { LeadershipTerm } from './leader.ts';
import type { Logger } from './log.ts';
import { runWorkers, WorkQueue } from './workqueue.ts';

/** The ConfigMap kept in every namespace that holds a Key. */
export const CA_CONFIGMAP = 'keyward-ca.crt';
/** Its data key (as in kube-root-ca.crt). */
export const CA_KEY = 'ca.crt';
/** Label on the copies the operator made (and may update or delete). */
export const CA_BUNDLE_LABEL = 'keyward.io/ca-bundle';

/** Options of {@link CaController}. */
export interface CaControllerOptions {
  client: KubeClient;
  caches: OperatorCaches;
  /** The operator namespace, where the source ConfigMap is. */
  namespace: string;
  /** The source ConfigMap (key `ca.crt`), e.g. the chart's `<release>-keyward-ca`. */
  source: string;
  /** Keys of this namespace only, when set. */
  watchNamespace: string | undefined;
  /** How often every copy is checked again; 10 min. */
  resyncMs?: number;
  stallMs?: number;
  log: Logger;
}

type ConfigMap = V1ConfigMap & KubernetesObject;

/** The CA PEM of the source ConfigMap, if it holds at least one parseable certificate. */
export function caFromConfigMap(cm: V1ConfigMap | undefined): string | undefined {
  const pem = cm?.data?.[CA_KEY];
  if (pem === undefined || !pem.includes('-----BEGIN CERTIFICATE-----')) return undefined;
  try {
    new X509Certificate(pem);
    return pem;
  } catch {
    return undefined;
  }
}

/** See the module comment. */
export class CaController {
  readonly name = 'ca';
  readonly queue = new WorkQueue({ now: Date.now });
  readonly #o: CaControllerOptions;
  readonly #source: SupervisedInformer<ConfigMap>;
  #warnedInvalid = false;

  constructor(o: CaControllerOptions) {
    this.#o = o;
    const core = o.client.api(CoreV1Api);
    const fieldSelector = `metadata.name=${o.source}`;
    this.#source = new SupervisedInformer<ConfigMap>({
      name: 'ca-source',
      create: (list) =>
        o.client.informer<ConfigMap>(
          `/api/v1/namespaces/${o.namespace}/configmaps`,
          list,
          undefined,
          fieldSelector,
        ),
      list: () =>
        listAll<ConfigMap>(
          async (page) =>
            (await core.listNamespacedConfigMap({
              namespace: o.namespace,
              fieldSelector,
              ...page,
            })) as KubernetesListObject<ConfigMap>,
        ),
      // The CA changed (or appeared, or went): every namespace with Keys is looked at again.
      onEvent: () => this.#enqueueKeyed(),
      ...(o.stallMs === undefined ? {} : { stallMs: o.stallMs }),
      log: o.log,
    });
    o.caches.onKey((type, key) => {
      // A first Key, or the last one gone, changes what a namespace needs.
      if (type !== 'update') this.#enqueue(key.metadata.namespace);
    });
  }

  /** Starts the source informer (every replica keeps it warm). */
  start(): void {
    void this.#source.start();
  }

  async stop(): Promise<void> {
    await this.#source.stop();
  }

  /** The CA to publish, if the source holds one. */
  ca(): string | undefined {
    const pem = caFromConfigMap(this.#source.get(this.#o.source, this.#o.namespace));
    if (pem === undefined && this.#source.hasSynced() && !this.#warnedInvalid) {
      this.#warnedInvalid = true;
      this.#o.log.warn(
        { configMap: `${this.#o.namespace}/${this.#o.source}` },
        'no CA certificate to publish yet (the source ConfigMap is missing or holds no certificate)',
      );
    }
    if (pem !== undefined) this.#warnedInvalid = false;
    return pem;
  }

  #enqueue(namespace: string): void {
    if (namespace === '') return;
    if (this.#o.watchNamespace !== undefined && namespace !== this.#o.watchNamespace) return;
    this.queue.add(namespace);
  }

  #enqueueKeyed(): void {
    for (const ns of this.#o.caches.keys.namespaces()) this.#enqueue(ns);
  }

  /** Keeps the copies while `term` lasts. */
  async run(term: LeadershipTerm): Promise<void> {
    const core = this.#o.client.api(CoreV1Api, term);
    this.#enqueueKeyed();
    void this.#sweep(core, term);
    const resync = setInterval(() => this.#enqueueKeyed(), this.#o.resyncMs ?? 600_000);
    resync.unref();
    try {
      await runWorkers(
        this.queue,
        4,
        (ns) => this.#reconcile(core, ns, term.identity),
        term.signal,
        (ns, err) => {
          if (!term.signal.aborted)
            this.#o.log.warn({ namespace: ns, err: describeError(err) }, 'CA copy not updated; retrying');
        },
      );
    } finally {
      clearInterval(resync);
    }
  }

  /** Namespaces without Keys may hold a copy left from before (the operator was down): look. */
  async #sweep(core: CoreV1Api, term: LeadershipTerm): Promise<void> {
    if (this.#o.watchNamespace !== undefined) {
      this.#enqueue(this.#o.watchNamespace);
      return;
    }
    try {
      const all = await listAll(async (page) => await core.listNamespace(page));
      for (const ns of all.items) {
        const name = ns.metadata?.name ?? '';
        if (this.#o.caches.keys.countIn(name) === 0) this.#enqueue(name);
      }
    } catch (err) {
      if (!term.signal.aborted)
        this.#o.log.warn({ err: describeError(err) }, 'cannot list namespaces to find stale CA copies');
    }
  }

  /** Makes the copy in `namespace` what it should be: the CA while it holds Keys, else none. */
  async #reconcile(core: CoreV1Api, namespace: string, identity: string): Promise<undefined> {
    const pem = this.ca();
    const wanted = pem !== undefined && this.#o.caches.keys.countIn(namespace) > 0;
    let current: V1ConfigMap | undefined;
    try {
      current = await core.readNamespacedConfigMap({ name: CA_CONFIGMAP, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (current !== undefined && current.metadata?.labels?.[CA_BUNDLE_LABEL] !== 'true') {
      this.#o.log.warn(
        { namespace, configMap: CA_CONFIGMAP },
        'a ConfigMap of this name that Keyward did not make is left alone',
      );
      return undefined;
    }
    if (!wanted) {
      if (current === undefined || pem === undefined) return undefined; // no CA known: keep what is there
      try {
        await core.deleteNamespacedConfigMap({
          name: CA_CONFIGMAP,
          namespace,
          body: { preconditions: { resourceVersion: current.metadata?.resourceVersion } },
        });
        this.#o.log.info({ namespace }, 'removed the CA copy: no Key left in the namespace');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      return undefined;
    }
    if (current?.data?.[CA_KEY] === pem) return undefined;
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: CA_CONFIGMAP,
        namespace,
        labels: { 'app.kubernetes.io/managed-by': MANAGED_BY, [CA_BUNDLE_LABEL]: 'true' },
        annotations: { [WRITTEN_BY_ANNOTATION]: identity },
        ...(current?.metadata?.resourceVersion === undefined
          ? {}
          : { resourceVersion: current.metadata.resourceVersion }),
      },
      data: { [CA_KEY]: pem },
    };
    await this.#write(core, namespace, body, current === undefined);
    return undefined;
  }

  async #write(core: CoreV1Api, namespace: string, body: V1ConfigMap, create: boolean): Promise<void> {
    try {
      if (create) await core.createNamespacedConfigMap({ namespace, body });
      else await core.replaceNamespacedConfigMap({ name: CA_CONFIGMAP, namespace, body });
      this.#o.log.info({ namespace }, create ? 'published the CA' : 'updated the CA copy');
    } catch (err) {
      // Made or changed meanwhile: the retry reads it again.
      if (isConflict(err)) throw new Error(`the CA copy in ${namespace} changed meanwhile`);
      throw err;
    }
  }
}
