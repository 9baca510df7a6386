/**
 * Keeps a client-node informer alive. client-node's ListWatch stops for good when a watch or list
 * fails with anything but a timeout or 410 (a reset connection, an apiserver restart, a 5xx), so
 * this supervisor:
 * - restarts a stopped informer with a fresh instance (a full relist) after a capped backoff;
 * - relists at once on 410 Gone (the resourceVersion expired);
 * - runs a stall watchdog: no event, no (re)connect and no successful list for `stallMs` means the
 *   informer is wedged, and it is replaced.
 * A fresh instance re-emits every object as `add`, so the level-triggered controller re-examines
 * everything after a restart and misses nothing that changed meanwhile.
 */
import type { Informer, KubernetesListObject, KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, statusOf } from './client.ts';

/** What a supervised informer reports. */
export type InformerEvent = 'add' | 'update' | 'delete';

/** Options of the supervisor. */
export interface SupervisorOptions<T extends KubernetesObject> {
  /** For logs and metrics (`keys`, `secrets`). */
  name: string;
  /** Makes a new informer over the given list function (wrapped to observe relists). */
  create: (list: () => Promise<KubernetesListObject<T>>) => Informer<T> & ObjectCache<T>;
  /** The list call. */
  list: () => Promise<KubernetesListObject<T>>;
  /** Every event of the current informer. */
  onEvent: (type: InformerEvent, obj: T) => void;
  /** Called after each restart (for metrics). */
  onRestart?: (reason: string) => void;
  /** Stall watchdog period: replace the informer after this long without any activity. */
  stallMs?: number;
  /** First restart delay after an error; doubles up to `maxBackoffMs`. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  log: Logger;
}

/** A restartable informer. Reads go to the current instance's cache. */
export class SupervisedInformer<T extends KubernetesObject> {
  private readonly o: SupervisorOptions<T>;
  private informer: (Informer<T> & ObjectCache<T>) | undefined;
  private generation = 0;
  private lastActivity = Date.now();
  private synced = false;
  private failures = 0;
  private stopped = true;
  private watchdog: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Restarts so far (tests and metrics). */
  restarts = 0;

  constructor(options: SupervisorOptions<T>) {
    this.o = options;
  }

  /** Starts the informer and the watchdog; resolves after the first successful list. */
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
    this.launch();
    while (!this.synced && !this.stopped) await new Promise((r) => setTimeout(r, 25));
  }

  /** Stops for good. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const informer = this.informer;
    this.informer = undefined;
    await informer?.stop();
  }

  /** True once the current instance has listed. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** The cached object, if any. */
  get(name: string, namespace?: string): T | undefined {
    return this.informer?.get(name, namespace);
  }

  /** Every cached object. */
  list(namespace?: string): readonly T[] {
    return this.informer?.list(namespace) ?? [];
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

  private launch(): void {
    if (this.stopped) return;
    const generation = ++this.generation;
    const current = (): boolean => generation === this.generation && !this.stopped;
    const list = async (): Promise<KubernetesListObject<T>> => {
      const result = await this.o.list();
      if (current()) {
        this.lastActivity = Date.now();
        this.failures = 0;
        // The informer fills its cache synchronously after this promise settles.
        setImmediate(() => {
          if (current()) this.synced = true;
        });
      }
      return result;
    };
    this.synced = false;
    const informer = this.o.create(list);
    const forward = (type: InformerEvent) => (obj: T) => {
      if (!current()) return;
      this.lastActivity = Date.now();
      this.o.onEvent(type, obj);
    };
    informer.on('add', forward('add'));
    informer.on('update', forward('update'));
    informer.on('delete', forward('delete'));
    informer.on('connect', () => {
      if (current()) this.lastActivity = Date.now();
    });
    informer.on('error', (err: unknown) => {
      if (!current()) return;
      if (statusOf(err) === 410) {
        this.restart('410 Gone: relisting', 0);
        return;
      }
      const base = this.o.baseBackoffMs ?? 500;
      const delay = Math.min(this.o.maxBackoffMs ?? 30_000, base * 2 ** this.failures);
      this.failures++;
      this.o.log.warn({ informer: this.o.name, err: describeError(err) }, 'informer stopped on an error');
      this.restart('error', delay);
    });
    this.informer = informer;
    this.lastActivity = Date.now();
    informer.start().catch((err: unknown) => {
      if (current()) this.restart(`start failed: ${describeError(err)}`, this.o.baseBackoffMs ?? 500);
    });
  }
}
