/**
 * Keeps a client-node informer alive, with client-go's Replace semantics.
 *
 * client-node's ListWatch stops for good when a watch or list fails with anything but a timeout
 * or 410 (a reset connection, an apiserver restart, a 5xx), so this supervisor:
 * - replaces a stopped informer with a fresh instance (a full relist) after a capped, jittered
 *   backoff, and relists at once on 410 Gone;
 * - runs a stall watchdog: no event, no (re)connect and no successful list for `stallMs` means the
 *   informer is wedged, and it is replaced.
 *
 * Reads never go to the informer's own cache but to the supervisor's **store**, which outlives
 * informer instances. A restart therefore does not empty it: the last good state keeps being
 * served until the new list completes, and that list is then applied as a difference (client-go's
 * `Replace`): `add` for new objects, `update` for changed ones (by resourceVersion), and `delete`
 * for objects that vanished meanwhile. `hasSynced()` turns true with the first list and stays
 * true, so readiness does not flap on a watch reset.
 */
import type { Informer, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, statusOf } from './client.ts';

/** What a supervised informer reports. */
export type InformerEvent = 'add' | 'update' | 'delete';

/** The informer interface the supervisor drives (client-node's ListWatch). */
export type RestartableInformer<T extends KubernetesObject> = Pick<Informer<T>, 'on' | 'start' | 'stop'>;

/** Options of the supervisor. */
export interface SupervisorOptions<T extends KubernetesObject> {
  /** For logs and metrics (`keys`, `secrets`). */
  name: string;
  /** Makes a new informer over the given list function (wrapped to observe relists). */
  create: (list: () => Promise<KubernetesListObject<T>>) => RestartableInformer<T>;
  /** The list call (every page; see `listAll`). */
  list: () => Promise<KubernetesListObject<T>>;
  /** Every change of the store, in order. */
  onEvent: (type: InformerEvent, obj: T) => void;
  /** Called after each restart (for metrics). */
  onRestart?: (reason: string) => void;
  /** Stall watchdog period: replace the informer after this long without any activity; 120 s. */
  stallMs?: number;
  /** First restart delay after an error (500 ms); doubles up to `maxBackoffMs` (8 s). */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Random spread of each delay, as a fraction (0.2 = ±20 %); 0.2. */
  jitter?: number;
  log: Logger;
}

const storeKey = (obj: KubernetesObject): string =>
  `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;

/** A restartable informer with a store of its own. */
export class SupervisedInformer<T extends KubernetesObject> {
  private readonly o: SupervisorOptions<T>;
  /** namespace → name → object: the store every read goes to. */
  private readonly store = new Map<string, Map<string, T>>();
  private informer: RestartableInformer<T> | undefined;
  private generation = 0;
  private lastActivity = Date.now();
  private synced = false;
  private failures = 0;
  private stopped = true;
  private watchdog: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private onSynced: (() => void) | undefined;
  /** Restarts so far (tests and metrics). */
  restarts = 0;

  constructor(options: SupervisorOptions<T>) {
    this.o = options;
  }

  /** Starts the informer and the watchdog; resolves after the first successful list (or stop). */
  async start(): Promise<void> {
    this.stopped = false;
    const stallMs = this.o.stallMs ?? 120_000;
    this.watchdog = setInterval(
      () => {
        if (!this.stopped && Date.now() - this.lastActivity > stallMs) this.restart('stalled', 0);
      },
      Math.max(250, Math.floor(stallMs / 4)),
    );
    this.watchdog.unref();
    const synced = new Promise<void>((resolve) => {
      this.onSynced = resolve;
    });
    this.launch();
    await synced;
  }

  /** Stops for good (the store is kept for reads). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.onSynced?.();
    const informer = this.informer;
    this.informer = undefined;
    this.generation++;
    await informer?.stop();
  }

  /** True once a list has completed; stays true across restarts. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** The stored object, if any. */
  get(name: string, namespace?: string): T | undefined {
    return this.store.get(namespace ?? '')?.get(name);
  }

  /** Every stored object (of one namespace, if given). */
  list(namespace?: string): T[] {
    if (namespace !== undefined) return [...(this.store.get(namespace)?.values() ?? [])];
    const all: T[] = [];
    for (const objects of this.store.values()) all.push(...objects.values());
    return all;
  }

  /** Objects stored in `namespace`. */
  countIn(namespace: string): number {
    return this.store.get(namespace)?.size ?? 0;
  }

  /** The namespaces with at least one stored object. */
  namespaces(): string[] {
    return [...this.store.keys()];
  }

  /** Objects in the store. */
  get size(): number {
    let n = 0;
    for (const objects of this.store.values()) n += objects.size;
    return n;
  }

  /** Replaces the informer after `delayMs` (a fresh instance, so a full relist). */
  restart(reason: string, delayMs: number): void {
    if (this.stopped) return;
    const old = this.informer;
    this.informer = undefined;
    this.generation++;
    void old?.stop();
    this.restarts++;
    this.o.onRestart?.(reason);
    this.o.log.warn({ informer: this.o.name, reason, delayMs }, 'restarting informer');
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.lastActivity = Date.now() + delayMs;
    this.restartTimer = setTimeout(() => this.launch(), delayMs);
  }

  /** The delay before the next restart after an error: capped exponential backoff with jitter. */
  private backoff(): number {
    const base = this.o.baseBackoffMs ?? 500;
    const delay = Math.min(this.o.maxBackoffMs ?? 8_000, base * 2 ** this.failures);
    this.failures++;
    const jitter = this.o.jitter ?? 0.2;
    return Math.round(delay * (1 - jitter + 2 * jitter * Math.random()));
  }

  private launch(): void {
    if (this.stopped) return;
    const generation = ++this.generation;
    const current = (): boolean => generation === this.generation && !this.stopped;
    const list = async (): Promise<KubernetesListObject<T>> => {
      const result = await this.o.list();
      if (current()) {
        this.lastActivity = Date.now();
        this.failures = 0;
        this.replace(result.items);
      }
      return result;
    };
    const informer = this.o.create(list);
    const upsert = (obj: T): void => {
      if (!current()) return;
      this.lastActivity = Date.now();
      this.upsert(obj);
    };
    informer.on('add', upsert);
    informer.on('update', upsert);
    informer.on('delete', (obj: T) => {
      if (!current()) return;
      this.lastActivity = Date.now();
      this.remove(obj.metadata?.namespace ?? '', obj.metadata?.name ?? '', obj);
    });
    informer.on('connect', () => {
      if (current()) this.lastActivity = Date.now();
    });
    informer.on('error', (err: unknown) => {
      if (!current()) return;
      if (statusOf(err) === 410) {
        this.restart('410 Gone: relisting', 0);
        return;
      }
      this.o.log.warn({ informer: this.o.name, err: describeError(err) }, 'informer stopped on an error');
      this.restart('error', this.backoff());
    });
    this.informer = informer;
    this.lastActivity = Date.now();
    informer.start().catch((err: unknown) => {
      if (current()) this.restart(`start failed: ${describeError(err)}`, this.backoff());
    });
  }

  /** Applies a complete list: the difference to the store becomes events (client-go Replace). */
  private replace(items: readonly T[]): void {
    const listed = new Set<string>();
    for (const item of items) {
      listed.add(storeKey(item));
      this.upsert(item);
    }
    for (const [namespace, objects] of [...this.store]) {
      for (const name of [...objects.keys()]) {
        if (!listed.has(`${namespace}/${name}`)) this.remove(namespace, name);
      }
    }
    if (!this.synced) {
      this.synced = true;
      this.onSynced?.();
    }
  }

  private upsert(obj: T): void {
    const namespace = obj.metadata?.namespace ?? '';
    const name = obj.metadata?.name ?? '';
    let objects = this.store.get(namespace);
    if (objects === undefined) {
      objects = new Map();
      this.store.set(namespace, objects);
    }
    const old = objects.get(name);
    if (old !== undefined && old.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
    objects.set(name, obj);
    this.o.onEvent(old === undefined ? 'add' : 'update', obj);
  }

  /** Removes an object; the event carries its final state when known, else the last stored. */
  private remove(namespace: string, name: string, final?: T): void {
    const objects = this.store.get(namespace);
    const old = objects?.get(name);
    if (objects === undefined || old === undefined) return;
    objects.delete(name);
    if (objects.size === 0) this.store.delete(namespace);
    this.o.onEvent('delete', final ?? old);
  }
}
