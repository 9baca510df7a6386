/**
 * Records events.k8s.io/v1 Events on Keys. Best effort: a failed Event is logged, never fatal
 * (the status already carries the truth). Messages come from the plan and hold nothing secret.
 */
import { randomBytes } from 'node:crypto';
import type { EventsV1Api } from '@kubernetes/client-node';
import { microTime } from './kube.ts';
import type { PlannedEvent } from './plan.ts';
import { KEY_GROUP, KEY_VERSION, type KeyResource } from './types.ts';

/** The reportingController of every Event. */
export const REPORTING_CONTROLLER = 'keyward.io/operator';

/** Writes Events for one operator instance. */
export class EventRecorder {
  private readonly api: EventsV1Api;
  private readonly instance: string;
  private readonly now: () => number;

  constructor(api: EventsV1Api, instance: string, now: () => number = Date.now) {
    this.api = api;
    this.instance = instance;
    this.now = now;
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
