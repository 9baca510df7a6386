/**
 * Publishes this engine replica's usage counters (see usage-report.ts) to its ConfigMap
 * `keyward-usage-<identity>` in the engine's namespace, every `intervalMs` when something changed,
 * and once more on close. The ConfigMap holds key names and counts, never material.
 */
import { randomUUID } from 'node:crypto';
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, isConflict, isNotFound } from '../kube/client.ts';
import {
  USAGE_REPORT_ENTRY,
  USAGE_REPORT_FORMAT,
  USAGE_REPORT_LABEL,
  type UsageCounter,
  type UsageReport,
  usageReportName,
} from './usage-report.ts';

/** Options of {@link UsagePublisher}. */
export interface UsagePublisherOptions {
  core: CoreV1Api;
  /** The engine's namespace. */
  namespace: string;
  /** This replica (the pod name). */
  identity: string;
  counter: UsageCounter;
  /** How often to publish when counters moved; 15 s. */
  intervalMs?: number;
  log: Logger;
}

/** See the module comment. */
export class UsagePublisher {
  readonly #o: UsagePublisherOptions;
  readonly #name: string;
  readonly #instance = randomUUID();
  readonly #startedTime = Date.now();
  #published = -1;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(options: UsagePublisherOptions) {
    this.#o = options;
    this.#name = usageReportName(options.identity);
  }

  /** The ConfigMap written. */
  get configMapName(): string {
    return this.#name;
  }

  /** Starts the periodic publication. */
  start(): void {
    this.#timer = setInterval(() => void this.publish(), this.#o.intervalMs ?? 15_000);
    this.#timer.unref();
  }

  /** Writes the report now if counters moved since the last successful write. */
  publish(): Promise<void> {
    this.#running ??= this.#publish().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Stops the timer and publishes what is left. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
    await this.publish();
  }

  async #publish(): Promise<void> {
    const version = this.#o.counter.version;
    if (version === this.#published) return;
    const report: UsageReport = {
      format: USAGE_REPORT_FORMAT,
      identity: this.#o.identity,
      instance: this.#instance,
      startedTime: this.#startedTime,
      reportedTime: Date.now(),
      keys: this.#o.counter.snapshot(),
    };
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: this.#name,
        namespace: this.#o.namespace,
        labels: { 'app.kubernetes.io/managed-by': 'keyward-engine', [USAGE_REPORT_LABEL]: 'true' },
      },
      data: { [USAGE_REPORT_ENTRY]: JSON.stringify(report) },
    };
    try {
      try {
        // This replica is the only writer of its ConfigMap: an unconditional replace is safe.
        await this.#o.core.replaceNamespacedConfigMap({
          name: this.#name,
          namespace: this.#o.namespace,
          body,
        });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        try {
          await this.#o.core.createNamespacedConfigMap({ namespace: this.#o.namespace, body });
        } catch (err2) {
          if (!isConflict(err2)) throw err2;
          return; // created meanwhile; the next tick replaces it
        }
      }
      this.#published = version;
    } catch (err) {
      this.#o.log.warn(
        { err: describeError(err), configMap: this.#name },
        'usage report not written; will retry',
      );
    }
  }
}
