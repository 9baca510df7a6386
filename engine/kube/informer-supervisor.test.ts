/**
 * The supervisor's restart rules, driven through a stand-in informer that behaves like
 * client-node's ListWatch at its interface (start lists, callbacks for events and errors).
 */
import type { Informer, KubernetesListObject, KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { SupervisedInformer } from './informer-supervisor.ts';

type Cb = (arg?: unknown) => void;

/** A stand-in informer: `start` calls the list function; the test fires callbacks. */
class StandIn {
  readonly handlers = new Map<string, Cb[]>();
  stopped = false;
  private readonly lister: () => Promise<KubernetesListObject<KubernetesObject>>;
  items: KubernetesObject[] = [];
  constructor(list: () => Promise<KubernetesListObject<KubernetesObject>>) {
    this.lister = list;
  }
  on(verb: string, cb: Cb): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb]);
  }
  off(): void {}
  async start(): Promise<void> {
    const l = await this.lister();
    this.items = l.items;
    for (const item of l.items) this.fire('add', item);
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  get(name: string): KubernetesObject | undefined {
    return this.items.find((i) => i.metadata?.name === name);
  }
  list(): KubernetesObject[] {
    return this.items;
  }
  fire(verb: string, arg?: unknown): void {
    for (const cb of this.handlers.get(verb) ?? []) cb(arg);
  }
}

const log = pino({ level: 'silent' });
let supervisor: SupervisedInformer<KubernetesObject> | undefined;

afterEach(async () => {
  await supervisor?.stop();
});

function setup(stallMs = 60_000): { instances: StandIn[]; events: string[]; lists: () => number } {
  const instances: StandIn[] = [];
  const events: string[] = [];
  let lists = 0;
  supervisor = new SupervisedInformer<KubernetesObject>({
    name: 'test',
    create: (list) => {
      const s = new StandIn(list);
      instances.push(s);
      return s as unknown as Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
    },
    list: async () => {
      lists++;
      return {
        items: [{ metadata: { name: `obj-${lists}` } }],
        metadata: {},
      } as KubernetesListObject<KubernetesObject>;
    },
    onEvent: (type, obj) => events.push(`${type}:${obj.metadata?.name}`),
    stallMs,
    baseBackoffMs: 20,
    maxBackoffMs: 80,
    log,
  });
  return { instances, events, lists: () => lists };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SupervisedInformer', () => {
  it('starts, syncs and forwards events from the current instance only', async () => {
    const { instances, events } = setup();
    await supervisor!.start();
    expect(supervisor!.hasSynced()).toBe(true);
    expect(events).toEqual(['add:obj-1']);
    instances[0]!.fire('update', { metadata: { name: 'x' } });
    expect(events).toEqual(['add:obj-1', 'update:x']);
  });

  it('replaces an informer that stopped on an error, after a backoff, with a full relist', async () => {
    const { instances, events, lists } = setup();
    await supervisor!.start();
    instances[0]!.fire('error', new Error('socket hang up'));
    expect(instances[0]!.stopped).toBe(true);
    instances[0]!.fire('update', { metadata: { name: 'stale' } });
    await sleep(60);
    expect(instances).toHaveLength(2);
    expect(lists()).toBe(2);
    expect(events).toEqual(['add:obj-1', 'add:obj-2']);
    expect(supervisor!.restarts).toBe(1);
  });

  it('relists at once on 410 Gone', async () => {
    const { instances } = setup();
    await supervisor!.start();
    instances[0]!.fire('error', Object.assign(new Error('Gone'), { statusCode: 410 }));
    await sleep(5);
    expect(instances).toHaveLength(2);
  });

  it('replaces a stalled informer (no events, no relist) after the stall period', async () => {
    const { instances } = setup(300);
    await supervisor!.start();
    await sleep(200);
    instances[0]!.fire('connect');
    await sleep(200);
    expect(instances).toHaveLength(1); // activity reset the watchdog
    await sleep(400);
    expect(instances.length).toBeGreaterThanOrEqual(2);
    expect(instances[0]!.stopped).toBe(true);
  });
});
