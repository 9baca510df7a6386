/**
 * The Key controller: turns changes of Keys and of their material Secrets into work-queue items,
 * and, while this replica leads, runs the workers that reconcile them (operator/reconciler.ts).
 *
 * - Every replica keeps the queue warm from the shared caches, so a new leader starts with it.
 * - `run(term)` lasts one leadership term. It reads (or creates) the master key and follows it
 *   (operator/master-key.ts: a mismatched or missing one leaves material untouched), builds the
 *   reconciler over API clients fenced by the term, queues every cached Key (a full pass), and
 *   runs the workers until the term ends; then in-flight requests are aborted, nothing more is
 *   sent, and `run` resolves once every worker has stopped.
 * - A full resync queues every cached Key again every `resyncMs`; the time one full pass takes is
 *   a metric (`keyward_operator_resync_seconds`).
 */
import { CoreV1Api, CustomObjectsApi, EventsV1Api, type V1Secret } from '@kubernetes/client-node';
import type { UsageReport } from '../engine/cluster/usage-report.ts';
import type { LifecycleOptions } from '../engine/keys/lifecycle.ts';
import { describeError, type KubeClient } from '../engine/kube/client.ts';
import type { KeyResource } from '../engine/kube/key-resource.ts';
import { masterKeyMismatch } from '../engine/kube/master-key-secret.ts';
import { KEY_NAME_LABEL, KEY_NAMESPACE_LABEL } from '../engine/kube/material-secret.ts';
import type { OperatorAudit } from './audit.ts';
import type { OperatorCaches } from './caches.ts';
import { EventRecorder } from './events.ts';
import type { LeadershipTerm } from './leader.ts';
import type { Logger } from './log.ts';
import { anyMaterialMismatch, MasterKeyWatch } from './master-key.ts';
import { MASTER_KEY_SECRET, MaterialStore } from './material-store.ts';
import type { OperatorMetrics } from './metrics.ts';
import { KeyReconciler, queueKey } from './reconciler.ts';
import { runWorkers, WorkQueue } from './workqueue.ts';

/** Options of {@link KeyController}. */
export interface KeyControllerOptions {
  client: KubeClient;
  caches: OperatorCaches;
  /** The operator namespace (material Secrets, master key). */
  namespace: string;
  /** Keys of this namespace only, when set. */
  watchNamespace: string | undefined;
  masterKeySecret?: string;
  /** Where the master-key Secret lives, when not in `namespace` (its own namespace). */
  masterKeyNamespace?: string;
  /** How often the master-key Secret is read again (a restore, a rotation); 10 s. */
  masterKeyPollMs?: number;
  /** Concurrent reconciles; 32. */
  workers?: number;
  /** Period of the full resync; 10 min. */
  resyncMs?: number;
  lifecycle: LifecycleOptions;
  /** The usage reports of one key (the usage controller's), if usage is folded. */
  usageReports?: (namespace: string, name: string) => UsageReport[];
  usageIntervalMs?: number;
  metrics: OperatorMetrics;
  /** Where actions on keys are recorded (operator/audit.ts); none when absent. */
  audit?: OperatorAudit;
  log: Logger;
  now?: () => number;
}

/** See the module comment. */
export class KeyController {
  readonly name = 'keys';
  readonly queue: WorkQueue;
  readonly #o: KeyControllerOptions;
  readonly #now: () => number;
  #store: MaterialStore | undefined;
  #reconciler: KeyReconciler | undefined;
  #resync: { pending: Set<string>; started: number } | undefined;
  /** Reconciles completed (success or error) by this replica. */
  reconciles = 0;

  constructor(o: KeyControllerOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.queue = new WorkQueue({ now: this.#now });
    o.caches.onKey((type, key) => {
      this.#reconciler?.observe(key, type === 'delete');
      this.enqueue(key.metadata.namespace, key.metadata.name);
    });
    o.caches.onSecret((type, secret) => this.#onSecret(type === 'delete', secret));
  }

  /** Queues Key `namespace/name` (ignored outside the watched namespace). */
  enqueue(namespace: string, name: string): void {
    if (this.#o.watchNamespace !== undefined && namespace !== this.#o.watchNamespace) return;
    if (namespace === '' || name === '') return;
    this.queue.add(queueKey(namespace, name));
  }

  #onSecret(deleted: boolean, secret: V1Secret): void {
    this.#store?.observe(secret.metadata?.name ?? '', deleted ? null : secret);
    // A Secret changed or deleted behind the operator's back wakes its Key.
    const labels = secret.metadata?.labels ?? {};
    const ns = labels[KEY_NAMESPACE_LABEL];
    const name = labels[KEY_NAME_LABEL];
    if (ns && name) this.enqueue(ns, name);
  }

  /** Reconciles while `term` lasts (see the module comment). */
  async run(term: LeadershipTerm): Promise<void> {
    const o = this.#o;
    const core = o.client.api(CoreV1Api, term);
    const master = new MasterKeyWatch({
      core,
      namespace: o.masterKeyNamespace ?? o.namespace,
      name: o.masterKeySecret ?? MASTER_KEY_SECRET,
      hasMaterial: () => o.caches.secrets.size > 0,
      listMaterial: () => (o.caches.secrets.hasSynced() ? o.caches.secrets.list() : undefined),
      onChange: () => {
        master.mismatched = anyMaterialMismatch(o.caches.secrets.list(), master.set, master.secretName);
        this.resync();
      },
      ...(o.masterKeyPollMs === undefined ? {} : { pollMs: o.masterKeyPollMs }),
      log: o.log,
      signal: term.signal,
    });
    if (!(await master.start())) return;
    master.mismatched = anyMaterialMismatch(o.caches.secrets.list(), master.set, master.secretName);
    const known = master.set;
    if (known !== undefined)
      o.audit?.masterKeyKnown(
        known.key(known.current)!,
        master.created,
        term.identity,
        o.masterKeySecret ?? MASTER_KEY_SECRET,
      );
    const store = new MaterialStore(
      core,
      o.namespace,
      () => (master.mismatched ? undefined : master.set),
      { get: (name, ns) => o.caches.secrets.get(name, ns) },
      term.identity,
    );
    const reconciler = new KeyReconciler({
      custom: o.client.api(CustomObjectsApi, term),
      identity: term.identity,
      material: store,
      events: new EventRecorder(
        o.client.api(EventsV1Api, term),
        term.identity,
        o.log,
        this.#now,
        term.signal,
      ),
      getKey: (ns, name) => o.caches.getKey(ns, name),
      lifecycle: o.lifecycle,
      now: this.#now,
      log: o.log,
      ...(o.usageReports === undefined ? {} : { usageReports: o.usageReports }),
      ...(o.usageIntervalMs === undefined ? {} : { usageIntervalMs: o.usageIntervalMs }),
      masterKeyMismatch: (stored) => {
        const why = masterKeyMismatch(stored, master.set, master.secretName);
        if (why !== undefined) master.mismatched = true;
        return why;
      },
      ...(o.audit === undefined ? {} : { audit: o.audit }),
    });
    this.#store = store;
    this.#reconciler = reconciler;
    this.resync();
    const resync = setInterval(() => this.resync(), o.resyncMs ?? 600_000);
    resync.unref();
    const m = o.metrics;
    try {
      await runWorkers(
        this.queue,
        o.workers ?? 32,
        async (ref) => {
          const end = m.duration.startTimer();
          try {
            const result = await reconciler.reconcile(ref);
            m.reconciles.inc({ result: 'success' });
            this.#passed(ref);
            return result;
          } catch (err) {
            // A reconcile cut off by the end of the term is not an error of the key.
            if (!term.signal.aborted) {
              m.reconciles.inc({ result: 'error' });
              m.errors.inc();
            }
            throw err;
          } finally {
            this.reconciles++;
            end();
          }
        },
        term.signal,
        (ref, err) => {
          if (!term.signal.aborted)
            o.log.warn({ key: ref, err: describeError(err) }, 'reconcile failed; retrying');
        },
      );
    } finally {
      clearInterval(resync);
      if (this.#reconciler === reconciler) this.#reconciler = undefined;
      if (this.#store === store) this.#store = undefined;
      this.#resync = undefined;
    }
  }

  /** Queues every cached Key (a full pass) and starts timing it. */
  resync(): void {
    const pending = new Set<string>();
    for (const k of this.#o.caches.listKeys()) {
      const ref = queueKey(k.metadata.namespace, k.metadata.name);
      pending.add(ref);
      this.enqueue(k.metadata.namespace, k.metadata.name);
    }
    this.#resync = { pending, started: this.#now() };
    this.#checkResyncDone();
  }

  #passed(ref: string): void {
    if (this.#resync?.pending.delete(ref)) this.#checkResyncDone();
  }

  #checkResyncDone(): void {
    const r = this.#resync;
    if (r === undefined || r.pending.size > 0) return;
    this.#o.metrics.resyncSeconds.set((this.#now() - r.started) / 1000);
    this.#o.metrics.resyncs.inc();
    this.#resync = undefined;
  }
}

/** Keys by observed state, for the `keyward_operator_keys` gauge. */
export function countByState(keys: readonly KeyResource[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const k of keys) {
    const s = k.status?.state ?? 'Unknown';
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
}
