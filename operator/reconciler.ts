/**
 * The I/O edge of Key reconciliation: read the Key (informer cache) and its material Secret,
 * ask the pure `planReconcile`, then carry the plan out in a crash-safe order:
 *
 * 1. finalizer first, so no material exists for a Key that could vanish unguarded;
 * 2. the material Secret (created, replaced at its resourceVersion, or deleted);
 * 3. the status (only when it changed), then Events;
 * 4. finalizer removal last, after the material is erased or released.
 *
 * A crash between steps leaves a state the next pass plans from correctly, because the plan is
 * computed from the Secret, the source of truth. Conflicts (409) throw: the work queue retries.
 *
 * Every write records the acting replica: the Secret's `keyward.io/written-by` annotation and the
 * status's `reconciledBy` carry its Lease identity. The API clients it is given are fenced by the
 * leadership term, so nothing is written once the term is over.
 */
import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { UsageReport } from '../engine/cluster/usage-report.ts';
import type { LifecycleOptions } from '../engine/keys/lifecycle.ts';
import { isNotFound, MERGE_PATCH } from '../engine/kube/client.ts';
import {
  FINALIZER,
  KEY_GROUP,
  KEY_PLURAL,
  KEY_VERSION,
  type KeyResource,
  type KeyResourceStatus,
} from '../engine/kube/key-resource.ts';
import type { StoredKey } from '../engine/kube/material-secret.ts';
import type { OperatorAudit } from './audit.ts';
import type { EventRecorder } from './events.ts';
import type { Logger } from './log.ts';
import type { MaterialStore } from './material-store.ts';
import { planReconcile } from './plan.ts';
import { buildStatus, sameStatus } from './status.ts';
import type { WorkResult } from './workqueue.ts';

/** How long our own status write stands in for a cache that has not shown it yet. */
const WRITTEN_TTL_MS = 30_000;

/** What the reconciler needs. */
export interface ReconcilerDeps {
  /** Fenced by the leadership term (see operator/leader.ts). */
  custom: CustomObjectsApi;
  /** The acting replica's Lease identity, recorded in every status written. */
  identity: string;
  material: MaterialStore;
  events: EventRecorder;
  /** The cached Key `namespace/name`, or undefined when it is gone. */
  getKey: (namespace: string, name: string) => KeyResource | undefined;
  lifecycle: LifecycleOptions;
  now: () => number;
  log: Logger;
  /** The engines' usage reports narrowed to one key (`reportsForKey`); absent: no folding. */
  usageReports?: (namespace: string, name: string) => UsageReport[];
  /** Minimum time between two usage folds of one key. */
  usageIntervalMs?: number;
  /** Why stored material does not match the master key held (operator/master-key.ts), if so. */
  masterKeyMismatch?: (stored: StoredKey) => string | undefined;
  /** Records the plan's actions once they are written (operator/audit.ts). */
  audit?: OperatorAudit;
}

/** The queue key of a Key. */
export function queueKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Reconciles Keys; `reconcile` is the work-queue handler. */
export class KeyReconciler {
  private readonly d: ReconcilerDeps;
  /**
   * The last status written per Key incarnation (`ns/name@uid`), until the informer shows it:
   * a reconcile that runs on a cache not yet updated with our own write skips rewriting it.
   */
  private readonly written = new Map<
    string,
    { status: KeyResourceStatus; resourceVersion: string; at: number }
  >();

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
  }

  /** Tells the reconciler what the informer now shows for a Key (or that it is gone). */
  observe(key: KeyResource, deleted: boolean): void {
    const ref = `${queueKey(key.metadata.namespace, key.metadata.name)}@${key.metadata.uid ?? ''}`;
    const mine = this.written.get(ref);
    if (mine === undefined) return;
    if (deleted || key.metadata.resourceVersion === mine.resourceVersion) this.written.delete(ref);
  }

  /** Reconciles the Key `namespace/name` once. */
  async reconcile(ref: string): Promise<WorkResult> {
    const [namespace = '', name = ''] = ref.split('/');
    let key = this.d.getKey(namespace, name);
    if (key === undefined) return undefined;
    const loaded = await this.d.material.load(namespace, name);
    const now = this.d.now();
    const reports = this.d.usageReports?.(namespace, name);
    const mismatch = loaded === undefined ? undefined : this.d.masterKeyMismatch?.(loaded.stored);
    const plan = planReconcile({
      key,
      stored: loaded?.stored,
      ...(mismatch === undefined ? {} : { masterKeyMismatch: mismatch }),
      now,
      lifecycle: this.d.lifecycle,
      usage:
        reports === undefined || reports.length === 0
          ? undefined
          : { reports, minIntervalMs: this.d.usageIntervalMs ?? 60_000 },
    });

    // The Key as the plan was decided from (the finalizer patch gives it a new resourceVersion).
    const decidedFrom = key;
    if (plan.addFinalizer)
      key = await this.patchFinalizers(key, [...(key.metadata.finalizers ?? []), FINALIZER]);

    let after: StoredKey | undefined = loaded?.stored;
    if (plan.stored === 'erase') {
      await this.d.material.erase(namespace, name, loaded?.resourceVersion);
      after = undefined;
    } else if (plan.stored !== undefined) {
      after = await this.d.material.fillVersions(plan.stored, plan.newVersions);
      // A master-key rotation re-wraps what the key holds with the same write.
      after = this.d.material.rewrapped(after) ?? after;
      await this.d.material.save(after, plan.create ? undefined : loaded?.resourceVersion);
    } else if (loaded !== undefined && plan.conflict === undefined) {
      const rewrapped = this.d.material.rewrapped(loaded.stored);
      if (rewrapped !== undefined) {
        await this.d.material.save(rewrapped, loaded.resourceVersion);
        after = rewrapped;
        this.d.log.info({ key: ref }, 'material re-wrapped under the current master-key version');
      }
    }
    // The Secret is the source of truth: its actions happened once it is written, and a retry
    // plans from it, so each is recorded exactly once. A plan that writes no Secret (a refusal)
    // is recorded below, when this pass writes the status reporting it: a pass on a cache that
    // does not show our write yet plans the refusal again but skips the write, and records nothing.
    const writesSecret = plan.stored !== undefined;
    if (writesSecret) this.d.audit?.actions(decidedFrom, plan.actions, this.d.identity);

    let statusWritten = false;
    if (plan.writeStatus) {
      const status = buildStatus(key, plan.conflict ? undefined : after, plan.conflict, now);
      const incarnation = `${ref}@${key.metadata.uid ?? ''}`;
      const mine = this.written.get(incarnation);
      // Our own recent write counts for a while only: should the informer miss its event (a
      // relist), the entry expires and the cache decides again.
      const fresh = mine !== undefined && now - mine.at < WRITTEN_TTL_MS;
      if (!sameStatus(key.status, status) && !(fresh && sameStatus(mine.status, status))) {
        const resourceVersion = await this.patchStatus(key, { ...status, reconciledBy: this.d.identity });
        statusWritten = true;
        if (resourceVersion !== undefined)
          this.written.set(incarnation, { status, resourceVersion, at: now });
      }
    }
    if (!writesSecret && statusWritten) this.d.audit?.actions(decidedFrom, plan.actions, this.d.identity);
    // Events are best effort and must not hold the worker: the recorder sends them behind.
    for (const event of plan.events) this.d.events.emit(key, event);
    if (plan.removeFinalizer) {
      await this.patchFinalizers(
        key,
        (key.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
      );
    }
    if (plan.deleteObject) await this.deleteKey(key);
    if (plan.events.length > 0) {
      this.d.log.info({ key: ref, events: plan.events.map((e) => e.reason) }, 'reconciled');
    }
    // Rotations the key's owner did not ask for, and refusals, say why in the log too.
    for (const e of plan.events) {
      if (e.reason === 'MasterKeyMismatch' || e.message.startsWith('nonce-budget rotation'))
        this.d.log.warn({ key: ref, reason: e.reason }, e.message);
    }
    return plan.requeueAt === undefined ? undefined : { requeueAt: plan.requeueAt };
  }

  /** Sets the finalizer list, conditional on the Key's resourceVersion (409 when stale). */
  private async patchFinalizers(key: KeyResource, finalizers: string[]): Promise<KeyResource> {
    const m = key.metadata;
    return (await this.d.custom.patchNamespacedCustomObject(
      {
        group: KEY_GROUP,
        version: KEY_VERSION,
        plural: KEY_PLURAL,
        namespace: m.namespace,
        name: m.name,
        body: { metadata: { finalizers, resourceVersion: m.resourceVersion } },
      },
      MERGE_PATCH,
    )) as KeyResource;
  }

  /**
   * Merge-patches the status, conditional on the Key's resourceVersion (a stale read, or a write
   * of a replica that no longer leads, gets a 409 instead of moving the status backwards); fields
   * that disappeared are sent as null so they are removed. Returns the Key's new resourceVersion.
   */
  private async patchStatus(key: KeyResource, status: KeyResourceStatus): Promise<string | undefined> {
    const body: Record<string, unknown> = { ...status };
    for (const field of Object.keys(key.status ?? {})) if (!(field in body)) body[field] = null;
    try {
      const updated = (await this.d.custom.patchNamespacedCustomObjectStatus(
        {
          group: KEY_GROUP,
          version: KEY_VERSION,
          plural: KEY_PLURAL,
          namespace: key.metadata.namespace,
          name: key.metadata.name,
          body: { metadata: { resourceVersion: key.metadata.resourceVersion }, status: body },
        },
        MERGE_PATCH,
      )) as KeyResource;
      return updated.metadata.resourceVersion;
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return undefined;
    }
  }

  private async deleteKey(key: KeyResource): Promise<void> {
    try {
      await this.d.custom.deleteNamespacedCustomObject({
        group: KEY_GROUP,
        version: KEY_VERSION,
        plural: KEY_PLURAL,
        namespace: key.metadata.namespace,
        name: key.metadata.name,
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
