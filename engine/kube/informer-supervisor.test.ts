/**
 * The supervisor's restart rules and its store, driven through a stand-in informer that behaves
 * like client-node's ListWatch at its interface (start lists, then callbacks for events and
 * errors). A stand-in, not the real ListWatch, because these tests must fire exact errors at exact
 * moments; test/operator/watch-cut.test.ts and the fault suite cover the real thing.
 */
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type RestartableInformer, SupervisedInformer } from './informer-supervisor.ts';

type Cb = (arg?: unknown) => void;
type Obj = KubernetesObject;

/** A stand-in informer: `start` calls the list function and emits `add` for each item. */
class StandIn {
  readonly handlers = new Map<string, Cb[]>();
  stopped = false;
  private readonly lister: () => Promise<KubernetesListObject<Obj>>;
  constructor(list: () => Promise<KubernetesListObject<Obj>>) {
    this.lister = list;
  }
  on(verb: string, cb: Cb): void {
    this.handlers.set(verb, [...(this.handlers.get(verb) ?? []), cb]);
  }
  async start(): Promise<void> {
    let l: KubernetesListObject<Obj>;
    try {
      l = await this.lister();
    } catch (err) {
      this.fire('error', err);
      return;
    }
    for (const item of l.items) this.fire('add', item);
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  fire(verb: string, arg?: unknown): void {
    for (const cb of this.handlers.get(verb) ?? []) cb(arg);
  }
}

const log = pino({ level: 'silent' });
let supervisor: SupervisedInformer<Obj> | undefined;

afterEach(async () => {
  await supervisor?.stop();
});

const obj = (name: string, rv = '1'): Obj => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });

/** A supervisor whose list answers with `world` (editable by the test), or throws while `down`. */
function setup(stallMs = 60_000) {
  const instances: StandIn[] = [];
  const events: string[] = [];
  const state = { world: [obj('a'), obj('b')], down: false, lists: 0 };
  supervisor = new SupervisedInformer<Obj>({
    name: 'test',
    create: (list) => {
      const s = new StandIn(list);
      instances.push(s);
      return s as unknown as RestartableInformer<Obj>;
    },
    list: async () => {
      state.lists++;
      if (state.down) throw new Error('connect ECONNREFUSED');
      return { items: [...state.world], metadata: {} } as KubernetesListObject<Obj>;
    },
    onEvent: (type, o) => events.push(`${type}:${o.metadata?.name}@${o.metadata?.resourceVersion}`),
    stallMs,
    baseBackoffMs: 20,
    maxBackoffMs: 80,
    jitter: 0,
    log,
  });
  return { instances, events, state };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const names = (s: SupervisedInformer<Obj>) =>
  s
    .list()
    .map((o) => o.metadata?.name)
    .sort();

describe('SupervisedInformer', () => {
  it('starts, syncs and forwards changes from the current instance only', async () => {
    const { instances, events } = setup();
    await supervisor!.start();
    expect(supervisor!.hasSynced()).toBe(true);
    expect(events).toEqual(['add:a@1', 'add:b@1']);
    instances[0]!.fire('update', obj('a', '2'));
    instances[0]!.fire('update', obj('a', '2')); // same resourceVersion: no change, no event
    instances[0]!.fire('delete', obj('b', '3'));
    expect(events).toEqual(['add:a@1', 'add:b@1', 'update:a@2', 'delete:b@3']);
    expect(supervisor!.get('a', 'ns')?.metadata?.resourceVersion).toBe('2');
    expect(supervisor!.get('b', 'ns')).toBeUndefined();
  });

  // The bug this pins: a restarted informer started from an empty cache, so until the relist
  // ended every key was "not found" (404 from the engine) and readiness said not synced; and an
  // object deleted during the outage never got a delete event.
  it('keeps serving its last good state through a restart, then applies the relist as a difference with deletes', async () => {
    const { instances, events, state } = setup();
    await supervisor!.start();
    state.down = true;
    instances[0]!.fire('error', new Error('socket hang up'));
    expect(instances[0]!.stopped).toBe(true);
    instances[0]!.fire('update', obj('a', '9')); // from the stopped instance: ignored
    // The relists fail for a while: the store and readiness stay as they were.
    await sleep(150);
    expect(instances.length).toBeGreaterThanOrEqual(2);
    expect(supervisor!.hasSynced()).toBe(true);
    expect(names(supervisor!)).toEqual(['a', 'b']);
    expect(supervisor!.get('a', 'ns')?.metadata?.resourceVersion).toBe('1');
    // Meanwhile a was changed, b deleted and c created; the apiserver comes back.
    state.world = [obj('a', '5'), obj('c', '6')];
    state.down = false;
    await sleep(250);
    expect(names(supervisor!)).toEqual(['a', 'c']);
    expect(events).toEqual(['add:a@1', 'add:b@1', 'update:a@5', 'add:c@6', 'delete:b@1']);
    expect(supervisor!.restarts).toBeGreaterThanOrEqual(2);
  });

  it('emits nothing for objects a relist finds unchanged', async () => {
    const { instances, events } = setup();
    await supervisor!.start();
    instances[0]!.fire('error', new Error('terminated'));
    await sleep(100);
    expect(instances).toHaveLength(2);
    expect(events).toEqual(['add:a@1', 'add:b@1']);
  });

  it('relists at once on 410 Gone', async () => {
    const { instances, state } = setup();
    await supervisor!.start();
    state.world = [obj('a')];
    instances[0]!.fire('error', Object.assign(new Error('Gone'), { statusCode: 410 }));
    await sleep(10);
    expect(instances).toHaveLength(2);
    expect(names(supervisor!)).toEqual(['a']);
  });

  it('backs off exponentially while relists fail, up to the cap', async () => {
    const { instances, state } = setup();
    await supervisor!.start();
    state.down = true;
    instances[0]!.fire('error', new Error('terminated'));
    await sleep(400);
    // 20 + 40 + 80 + 80 + 80 ... ms: about 6 attempts in 400 ms, not 20 (no tight loop).
    expect(state.lists).toBeGreaterThanOrEqual(4);
    expect(state.lists).toBeLessThanOrEqual(9);
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
    expect(names(supervisor!)).toEqual(['a', 'b']);
  });
});
