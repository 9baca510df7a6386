/**
 * The engine's audit log on a thread of its own. The thread that serves requests renders each
 * request record but for its seq and sends what is queued to the audit thread as one string every
 * 10 ms (at once when a `write` waits for its record); the audit thread (audit-worker.ts) completes
 * and seals them into the chain and writes the segments and stdout. Sealing and writing cost a
 * single request about 12 µs of the serving thread's 55–67 (docs/performance.md "Audit log"); here
 * they cost it the rendering of its record.
 *
 * The guarantees are those of AuditLog, which runs unchanged on the other side:
 * - records keep the order they were queued in, and their time is when they were queued;
 * - `write` (`--audit-required`) resolves once every sink has the record and rejects when it
 *   cannot be recorded; `healthy` follows the log's within 250 ms and at every flush;
 * - events sent but not yet taken by the audit thread (a hung disk) are capped at
 *   MAX_PENDING_EVENTS: past that, `record` drops and counts, and `write` refuses;
 * - the master key stays on this thread: the audit thread gets the checkpoint key derived from it
 *   (and again when the current master key changes).
 * If the audit thread dies, the log is unhealthy for good and every waiting `write` is refused.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { POOL_DEFAULTS } from '../pool/pool-options.ts';
import type { WorkerHeap } from '../pool/protocol.ts';
import { workerSources } from '../pool/worker-sources.ts';
import { type AuditLogHandle, type AuditStats, MAX_PENDING_EVENTS } from './audit-log.ts';
import {
  type CheckpointKeyMaterial,
  checkpointKeyMaterialOf,
  type MasterKeyInput,
} from './checkpoint-key.ts';
import { auditUnavailable } from './errors.ts';
import type { AuditEvent } from './record.ts';
import { isoTime, requestTextAround } from './records.ts';
import {
  type AuditThreadSetup,
  type ControlMessage,
  eventEntry,
  textEntry,
  type WorkerMessage,
} from './thread-protocol.ts';

const WORKER = new URL('./audit-worker.ts', import.meta.url);
/** The engine's worker entry, which serves the audit worker's modules pre-stripped (no stripper). */
const ENTRY = new URL('../pool/worker-entry.mjs', import.meta.url);
/**
 * The audit thread's V8 young generation: it allocates a few kilobytes per record and keeps
 * nothing young for long, so a small one costs only more frequent, tiny scavenges. Its old
 * generation is capped as the crypto workers' is, for the same reason (pool-options.ts).
 */
const RESOURCE_LIMITS = {
  maxYoungGenerationSizeMb: 6,
  maxOldGenerationSizeMb: POOL_DEFAULTS.workerResourceLimits.maxOldGenerationSizeMb,
};
/** Plain records reach the audit thread within this long (see `#schedule`). */
const SEND_EVERY_MS = 10;
/** ... or as soon as this many are queued. */
const SEND_AT_EVENTS = 512;

/** What {@link AuditThread.open} needs besides the log's settings. */
export interface AuditThreadOptions {
  /** The master key, when known; checkpoints wait for it. */
  masterKey: () => MasterKeyInput | undefined;
  log?: Logger;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/** See the module comment. */
export class AuditThread implements AuditLogHandle {
  readonly chain: string;
  readonly stats: AuditStats = { written: 0, dropped: 0, failures: 0, checkpoints: 0 };
  /** The audit thread's V8 heap, as it last reported it (at most 100 ms old while records flow). */
  readonly memory: WorkerHeap;
  readonly #worker: Worker;
  /** The checkpoint key of the current master key, and the id of the one the thread has. */
  readonly #keyMaterial: () => CheckpointKeyMaterial | undefined;
  #keyIdSent: string | undefined;
  readonly #log: Logger | undefined;
  /** Queued events, each already an entry of a batch (thread-protocol.ts; see `#entry`). */
  #batch: string[] = [];
  #scheduled: false | 'now' | 'later' = false;
  #timer: NodeJS.Timeout | undefined;
  #sent = 0;
  #received = 0;
  /** Events this side dropped (the audit thread counts its own). */
  #dropped = 0;
  #healthy = true;
  #closed = false;
  #dead = false;
  #nextId = 1;
  readonly #writes = new Map<number, Waiter>();
  readonly #flushes = new Map<number, () => void>();
  /** Flushes waited for: while any is, the thread keeps the process alive. */
  #holds = 0;
  #onClosed: (() => void) | undefined;

  private constructor(
    worker: Worker,
    chain: string,
    memory: WorkerHeap,
    o: AuditThreadOptions,
    keyMaterial: () => CheckpointKeyMaterial | undefined,
  ) {
    this.#worker = worker;
    this.chain = chain;
    this.memory = { ...memory };
    this.#keyMaterial = keyMaterial;
    this.#keyIdSent = keyMaterial()?.id;
    this.#log = o.log;
    worker.on('message', (m: WorkerMessage) => this.#onMessage(m));
    worker.on('error', (err) => this.#die(err));
    worker.on('exit', (code) => {
      if (!this.#closed || this.#onClosed === undefined)
        this.#die(new Error(`the audit thread exited (${code})`));
      this.#onClosed?.();
    });
    // Like the log's own timers, the thread does not keep a process alive.
    worker.unref();
  }

  /**
   * Starts the audit thread and opens the log there (continuing the chain of existing segments).
   * Rejects as AuditLog.open does when the first write fails.
   */
  static async open(setup: Omit<AuditThreadSetup, 'key'>, o: AuditThreadOptions): Promise<AuditThread> {
    const keyMaterial = checkpointKeyMaterialOf(o.masterKey);
    const worker = new Worker(ENTRY, {
      workerData: { ...setup, key: keyMaterial(), entry: WORKER.href, sources: workerSources(WORKER) },
      resourceLimits: RESOURCE_LIMITS,
    });
    const first = await new Promise<WorkerMessage>((resolve, reject) => {
      const onMessage = (m: WorkerMessage): void => {
        if (m.t === 'log') o.log?.[m.level](m.obj, m.msg);
        else done(() => resolve(m));
      };
      const onError = (err: Error): void => done(() => reject(err));
      const onExit = (code: number): void =>
        done(() => reject(new Error(`the audit thread exited (${code}) before opening the log`)));
      const done = (settle: () => void): void => {
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        settle();
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    });
    if (first.t !== 'open') {
      await worker.terminate();
      throw new Error(first.t === 'open-failed' ? first.message : `unexpected ${first.t}`);
    }
    return new AuditThread(worker, first.chain, first.memory, o, keyMaterial);
  }

  get healthy(): boolean {
    return this.#healthy && !this.#closed && !this.#dead;
  }

  record(event: AuditEvent, time = Date.now()): void {
    if (this.#closed) return;
    if (this.#dead || this.#inFlight() >= MAX_PENDING_EVENTS) {
      this.#drop();
      return;
    }
    this.#batch.push(this.#entry(time, 0, event));
    this.#schedule();
  }

  write(event: AuditEvent, time = Date.now()): Promise<void> {
    if (!this.healthy || this.#inFlight() >= MAX_PENDING_EVENTS) return Promise.reject(auditUnavailable());
    const id = this.#nextId++;
    this.#batch.push(this.#entry(time, id, event));
    this.#schedule(true);
    return new Promise((resolve, reject) => this.#writes.set(id, { resolve, reject }));
  }

  /** Resolves once everything queued so far has been written (or dropped), with the state after. */
  async flush(): Promise<void> {
    if (this.#dead || this.#closed) return;
    this.#sendScheduled();
    const id = this.#nextId++;
    // Waited for, the thread keeps the process alive (an exiting CLI would otherwise cut it).
    if (this.#holds++ === 0) this.#worker.ref();
    await new Promise<void>((resolve) => {
      this.#flushes.set(id, resolve);
      this.#post({ t: 'flush', id });
    });
    if (--this.#holds === 0 && !this.#closed) this.#worker.unref();
  }

  /** Writes what is queued and a closing checkpoint, closes the sinks and ends the thread. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#sendScheduled();
    this.#closed = true;
    if (this.#dead) return;
    this.#worker.ref();
    await new Promise<void>((resolve) => {
      this.#onClosed = resolve;
      this.#post({ t: 'close' });
    });
  }

  /** @internal Tests: ends the audit thread as a crash would. */
  async kill(): Promise<void> {
    await this.#worker.terminate();
  }

  /**
   * A request is rendered here, all but its seq (records.ts `requestTextAround`): the audit thread
   * then only completes and hashes it, where an event sent as JSON is parsed there and serialized
   * again; and what waits here for the next send is one string, not an object graph.
   */
  #entry(time: number, id: number, event: AuditEvent): string {
    if (event.type !== 'request') return eventEntry(time, id, event);
    return textEntry(time, id, requestTextAround(event, this.chain, isoTime(time)));
  }

  #inFlight(): number {
    return this.#sent + this.#batch.length - this.#received;
  }

  #drop(): void {
    this.#dropped++;
    this.stats.dropped++;
  }

  /**
   * Sends at the end of this turn when a `write` waits (its response does) or many events are
   * queued, else within SEND_EVERY_MS: every message wakes the audit thread, and on a machine
   * whose cores the crypto workers keep busy, a wake-up per event-loop turn cost batches of 100
   * about 7 % (measured; docs/performance.md "The audit thread").
   */
  #schedule(urgent = false): void {
    if (urgent || this.#batch.length >= SEND_AT_EVENTS) {
      if (this.#scheduled === 'now') return;
      clearTimeout(this.#timer);
      this.#scheduled = 'now';
      setImmediate(() => this.#sendScheduled());
      return;
    }
    if (this.#scheduled !== false) return;
    this.#scheduled = 'later';
    this.#timer = setTimeout(() => this.#sendScheduled(), SEND_EVERY_MS);
    this.#timer.unref();
  }

  #sendScheduled(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#scheduled = false;
    this.#send();
  }

  /** Sends the queued events (and first the checkpoint key, if the master key changed). */
  #send(): void {
    if (this.#dead || this.#closed) return;
    const key = this.#keyMaterial();
    if (key !== undefined && key.id !== this.#keyIdSent) {
      this.#keyIdSent = key.id;
      this.#post({ t: 'key', key });
    }
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#sent += batch.length;
    this.#worker.postMessage(batch.join('\n'));
  }

  #post(m: ControlMessage): void {
    this.#worker.postMessage(m);
  }

  #onMessage(m: WorkerMessage): void {
    switch (m.t) {
      case 'state': {
        this.#received = m.received;
        this.#healthy = m.healthy;
        Object.assign(this.stats, m.stats, { dropped: m.stats.dropped + this.#dropped });
        Object.assign(this.memory, m.memory);
        for (const id of m.acked) this.#settle(id)?.resolve();
        for (const id of m.refused) this.#settle(id)?.reject(auditUnavailable());
        break;
      }
      case 'flushed':
        this.#flushes.get(m.id)?.();
        this.#flushes.delete(m.id);
        break;
      case 'log':
        this.#log?.[m.level](m.obj, m.msg);
        break;
      default:
        break;
    }
  }

  #settle(id: number): Waiter | undefined {
    const w = this.#writes.get(id);
    this.#writes.delete(id);
    return w;
  }

  /** The audit thread is gone: nothing more can be recorded. */
  #die(err: Error): void {
    if (this.#dead) return;
    this.#dead = true;
    if (!this.#closed)
      this.#log?.error({ err: err.message }, 'the audit thread stopped; events are not recorded');
    for (const w of this.#writes.values()) w.reject(auditUnavailable());
    this.#writes.clear();
    for (const resolve of this.#flushes.values()) resolve();
    this.#flushes.clear();
    this.#dropped += this.#batch.length;
    this.stats.dropped += this.#batch.length;
    this.#batch = [];
  }
}
