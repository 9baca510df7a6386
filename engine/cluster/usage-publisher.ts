/**
 * Publishes this engine replica's usage counters (see usage-report.ts) to its shard ConfigMaps
 * `keyward-usage-<identity>[.<i>]` in the engine's namespace, every `intervalMs` for the shards
 * whose counters moved, and once more on close. The ConfigMaps hold key names and counts, never
 * material.
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
  usageShardCount,
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
  readonly #instance = randomUUID();
  readonly #startedTime = Date.now();
  /** Shards in use; grows with the key count, never shrinks within an instance. */
  #shards = 1;
  /** Per shard, the counter version last written (-1: never). */
  #published: number[] = [-1];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<boolean> | undefined;

  constructor(options: UsagePublisherOptions) {
    this.#o = options;
  }

  /** The ConfigMap of shard 0 (the only one below USAGE_SHARD_KEYS used keys). */
  get configMapName(): string {
    return usageReportName(this.#o.identity);
  }

  /** The shard ConfigMaps in use. */
  get configMapNames(): string[] {
    return Array.from({ length: this.#shards }, (_, i) => usageReportName(this.#o.identity, i));
  }

  /** Starts the periodic publication. */
  start(): void {
    this.#timer = setInterval(() => void this.publish(), this.#o.intervalMs ?? 15_000);
    this.#timer.unref();
  }

  /** Writes the report now if counters moved since the last successful write; false if one failed. */
  publish(): Promise<boolean> {
    this.#running ??= this.#publish().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** `identity/instance`: how the operator's fold cursor names this instance (operator/usage.ts). */
  get source(): string {
    return `${this.#o.identity}/${this.#instance}`;
  }

  /**
   * Publishes every counter recorded before this call, durably: waits for a write in flight (it
   * may have been snapshotted before the caller's change), then writes again. Throws when a shard
   * could not be written, so a nonce reservation is never taken as recorded when it is not.
   */
  async flush(): Promise<void> {
    await this.#running;
    if (!(await this.publish())) throw new Error('the usage report could not be written');
  }

  /** Stops the timer and publishes what is left. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
    await this.publish();
  }

  async #publish(): Promise<boolean> {
    const counter = this.#o.counter;
    const wanted = usageShardCount(counter.size);
    if (wanted > this.#shards) {
      // Keys move between shards: every shard is rewritten.
      this.#shards = wanted;
      this.#published = Array.from({ length: wanted }, () => -1);
    }
    const shards = counter.shardSnapshot(this.#shards);
    const reportedTime = Date.now();
    let ok = true;
    for (const [shard, { keys, version }] of shards.entries()) {
      if (version === this.#published[shard]) continue;
      const report: UsageReport = {
        format: USAGE_REPORT_FORMAT,
        identity: this.#o.identity,
        instance: this.#instance,
        startedTime: this.#startedTime,
        reportedTime,
        shard,
        shards: this.#shards,
        keys,
      };
      if (await this.#write(usageReportName(this.#o.identity, shard), report))
        this.#published[shard] = version;
      else ok = false;
    }
    return ok;
  }

  /** Creates or replaces one shard's ConfigMap; false (logged) when it could not be written. */
  async #write(name: string, report: UsageReport): Promise<boolean> {
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name,
        namespace: this.#o.namespace,
        labels: { 'app.kubernetes.io/managed-by': 'keyward-engine', [USAGE_REPORT_LABEL]: 'true' },
      },
      data: { [USAGE_REPORT_ENTRY]: JSON.stringify(report) },
    };
    try {
      try {
        // This replica is the only writer of its ConfigMaps: an unconditional replace is safe.
        await this.#o.core.replaceNamespacedConfigMap({ name, namespace: this.#o.namespace, body });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        try {
          await this.#o.core.createNamespacedConfigMap({ namespace: this.#o.namespace, body });
        } catch (err2) {
          if (!isConflict(err2)) throw err2;
          return false; // created meanwhile; the next tick replaces it
        }
      }
      return true;
    } catch (err) {
      this.#o.log.warn({ err: describeError(err), configMap: name }, 'usage report not written; will retry');
      return false;
    }
  }
}
