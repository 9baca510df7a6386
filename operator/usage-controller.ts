/**
 * The usage controller: keeps the engines' usage reports (engine/cluster/usage-report.ts), parsed
 * once per ConfigMap change and indexed by key, and, while this replica leads, queues the Keys
 * whose reported usage moved so the Key controller folds it in (operator/usage.ts), at most once
 * per `intervalMs`. It also deletes reports not refreshed for a day: their replicas are gone.
 */
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { parseUsageReport, type UsageReport } from '../engine/cluster/usage-report.ts';
import { describeError, isNotFound, type KubeClient } from '../engine/kube/client.ts';
import type { OperatorCaches } from './caches.ts';
import type { LeadershipTerm } from './leader.ts';
import type { Logger } from './log.ts';
import { reportsForKey } from './usage.ts';

/** Usage reports not refreshed for a day belong to replicas that are gone. */
export const STALE_REPORT_MS = 86_400_000;

/** Options of {@link UsageController}. */
export interface UsageControllerOptions {
  client: KubeClient;
  caches: OperatorCaches;
  /** Where the engines write their reports. */
  usageNamespace: string;
  /** How often moved usage is queued; 60 s. */
  intervalMs?: number;
  /** Queues a Key (the Key controller's `enqueue`). */
  enqueue: (namespace: string, name: string) => void;
  log: Logger;
  now?: () => number;
}

/** See the module comment. */
export class UsageController {
  readonly name = 'usage';
  readonly #o: UsageControllerOptions;
  readonly #now: () => number;
  /** ConfigMap name → parsed report. */
  readonly #reports = new Map<string, UsageReport>();
  /** Key id (`ns/name`) → the ConfigMaps that mention it. */
  readonly #byKey = new Map<string, Set<string>>();
  /** Keys whose reported usage moved since they were last queued. */
  readonly #dirty = new Set<string>();
  #leading = false;

  constructor(o: UsageControllerOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    o.caches.onUsageReport((type, cm) => this.#onReport(cm, type === 'delete'));
  }

  /** The reports narrowed to Key `namespace/name` (empty when no engine reported it). */
  reportsFor = (namespace: string, name: string): UsageReport[] => {
    if (!this.#byKey.has(`${namespace}/${name}`)) return [];
    return reportsForKey([...this.#reports.values()], namespace, name);
  };

  #onReport(cm: V1ConfigMap, deleted: boolean): void {
    const cmName = cm.metadata?.name ?? '';
    const before = this.#reports.get(cmName);
    const after = deleted ? undefined : parseUsageReport(cm.data);
    if (before !== undefined && after !== undefined && before.instance !== after.instance) {
      this.#retire(cmName, before);
    }
    for (const id of Object.keys(before?.keys ?? {})) {
      if (after?.keys?.[id] === undefined) this.#byKey.get(id)?.delete(cmName);
    }
    if (after === undefined) {
      this.#reports.delete(cmName);
      return;
    }
    this.#reports.set(cmName, after);
    for (const [id, entry] of Object.entries(after.keys ?? {})) {
      let names = this.#byKey.get(id);
      if (names === undefined) {
        names = new Set();
        this.#byKey.set(id, names);
      }
      names.add(cmName);
      const was = before?.keys?.[id];
      if (
        was === undefined ||
        was.lastUsedTime !== entry.lastUsedTime ||
        before?.instance !== after.instance
      ) {
        this.#dirty.add(id);
      }
      // A nonce reservation is queued at once: the Key may have to rotate at its budget.
      if (JSON.stringify(was?.versions) !== JSON.stringify(entry.versions) && this.#leading)
        this.#o.enqueue(entry.namespace, entry.name);
    }
  }

  /**
   * A restarted engine replaces its report with its new instance's. What the old instance counted
   * since the last fold (its nonce reservations above all: an under-count there is unsafe) stays
   * in the fold as a report of its own until it is a day old.
   */
  #retire(cmName: string, report: UsageReport): void {
    const name = `${cmName}#${report.instance}`;
    this.#reports.set(name, report);
    for (const id of Object.keys(report.keys ?? {})) {
      let names = this.#byKey.get(id);
      if (names === undefined) {
        names = new Set();
        this.#byKey.set(id, names);
      }
      names.add(name);
      this.#dirty.add(id);
    }
  }

  /** Queues moved usage every interval while `term` lasts. */
  async run(term: LeadershipTerm): Promise<void> {
    const core = this.#o.client.api(CoreV1Api, term);
    this.#leading = true;
    term.signal.addEventListener('abort', () => (this.#leading = false), { once: true });
    // A new leader does not know what was folded before: every reported key is looked at once.
    for (const id of this.#byKey.keys()) this.#dirty.add(id);
    const tick = (): void => {
      this.#queueDirty();
      void this.#deleteStale(core);
    };
    tick();
    const timer = setInterval(tick, this.#o.intervalMs ?? 60_000);
    timer.unref();
    await new Promise<void>((resolve) =>
      term.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    clearInterval(timer);
  }

  #queueDirty(): void {
    for (const id of this.#dirty) {
      const slash = id.indexOf('/');
      this.#o.enqueue(id.slice(0, slash), id.slice(slash + 1));
    }
    this.#dirty.clear();
  }

  async #deleteStale(core: CoreV1Api): Promise<void> {
    const now = this.#now();
    for (const [cmName, report] of this.#reports) {
      if (now - report.reportedTime <= STALE_REPORT_MS) continue;
      if (cmName.includes('#')) {
        // A retired instance's report lives only here.
        this.#reports.delete(cmName);
        for (const id of Object.keys(report.keys ?? {})) this.#byKey.get(id)?.delete(cmName);
        continue;
      }
      try {
        await core.deleteNamespacedConfigMap({ name: cmName, namespace: this.#o.usageNamespace });
      } catch (err) {
        if (!isNotFound(err))
          this.#o.log.warn({ configMap: cmName, err: describeError(err) }, 'stale usage report not deleted');
      }
    }
  }
}
