/**
 * Records events.k8s.io/v1 Events on Keys. Best effort: a failed Event is logged, never fatal
 * (the status already carries the truth). Messages come from the plan and hold nothing secret.
 * One recorder lives for one leadership term: when `signal` aborts (the term ended), what is
 * still queued is dropped, since a replica that no longer leads writes nothing.
 */
import { randomBytes } from 'node:crypto';
import type { EventsV1Api } from '@kubernetes/client-node';
import { describeError, microTime } from '../engine/kube/client.ts';
import { KEY_GROUP, KEY_VERSION, type KeyResource } from '../engine/kube/key-resource.ts';
import type { Logger } from './log.ts';
import type { PlannedEvent } from './plan.ts';

/** The reportingController of every Event. */
export const REPORTING_CONTROLLER = 'keyward.io/operator';

/** Events sent at once; more wait in a bounded backlog. */
const CONCURRENCY = 8;
/** Backlog bound: beyond it Events are dropped (and logged) rather than held without limit. */
const MAX_BACKLOG = 10_000;

/** Writes Events for one operator instance. */
export class EventRecorder {
  private readonly api: EventsV1Api;
  private readonly instance: string;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private readonly backlog: Array<{ key: KeyResource; event: PlannedEvent }> = [];
  private readonly signal: AbortSignal | undefined;
  private active = 0;

  constructor(
    api: EventsV1Api,
    instance: string,
    log?: Logger,
    now: () => number = Date.now,
    signal?: AbortSignal,
  ) {
    this.api = api;
    this.instance = instance;
    this.log = log;
    this.now = now;
    this.signal = signal;
    signal?.addEventListener(
      'abort',
      () => {
        if (this.backlog.length > 0) {
          log?.info({ dropped: this.backlog.length }, 'leadership ended; queued events dropped');
        }
        this.backlog.length = 0;
      },
      { once: true },
    );
  }

  /** Queues `event` on `key` and returns at once; failures are logged, never thrown. */
  emit(key: KeyResource, event: PlannedEvent): void {
    if (this.signal?.aborted) return;
    if (this.backlog.length >= MAX_BACKLOG) {
      this.log?.warn({ reason: event.reason }, 'event backlog full; dropping an event');
      return;
    }
    this.backlog.push({ key, event });
    this.pump();
  }

  /** Events queued or in flight (tests wait for zero). */
  pending(): number {
    return this.backlog.length + this.active;
  }

  private pump(): void {
    while (this.active < CONCURRENCY && this.backlog.length > 0) {
      const next = this.backlog.shift()!;
      this.active++;
      this.record(next.key, next.event)
        .catch((err: unknown) => {
          if (this.signal?.aborted) return;
          const ref = `${next.key.metadata.namespace}/${next.key.metadata.name}`;
          this.log?.warn(
            { key: ref, reason: next.event.reason, err: describeError(err) },
            'could not record event',
          );
        })
        .finally(() => {
          this.active--;
          this.pump();
        });
    }
  }

  /** Records `event` on `key`. Throws on API errors; callers log and continue. */
  async record(key: KeyResource, event: PlannedEvent): Promise<void> {
    const m = key.metadata;
    await this.api.createNamespacedEvent({
      namespace: m.namespace,
      body: {
        metadata: { name: `${m.name}.${randomBytes(6).toString('hex')}`, namespace: m.namespace },
        eventTime: microTime(this.now()),
        type: event.type,
        reason: event.reason,
        action: event.reason,
        note: event.message.slice(0, 1024),
        reportingController: REPORTING_CONTROLLER,
        reportingInstance: this.instance.slice(0, 128),
        regarding: {
          apiVersion: `${KEY_GROUP}/${KEY_VERSION}`,
          kind: 'Key',
          name: m.name,
          namespace: m.namespace,
          uid: m.uid,
          resourceVersion: m.resourceVersion,
        },
      },
    });
  }
}
