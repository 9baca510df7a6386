/**
 * The audit log: one hash chain (chain.ts) written to its sinks (sinks.ts), with keyed checkpoints
 * (checkpoint-key.ts) every N records or T milliseconds, whichever comes first, and at rotation
 * and close. docs/audit.md describes the format this writes. Where a chain begins is
 * chain-resume.ts; how a batch of events becomes chained lines is seal.ts; this file queues,
 * writes, and recovers from failing sinks.
 *
 * Cost on the request path: `record()` only queues the event. Queued events are sealed and
 * written together once per event-loop turn (setImmediate): their canonical text, a BLAKE3 leaf
 * and link each, then one write of all their lines. Writes never overlap, so the chain on disk is
 * in order.
 *
 * When a sink fails (disk full, unwritable, a closed pipe) the log is unhealthy: `write()` (what
 * `--audit-required` uses) rejects at once and `record()` drops the event and counts it. Every
 * second it retries: a new segment begins whose first record says how many events were dropped
 * and how many bytes of a cut line the failed segment ends with, and the chain goes on.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { WorkerHeap } from '../pool/protocol.ts';
import { ChainHasher } from './chain.ts';
import { resumeChain } from './chain-resume.ts';
import {
  type CheckpointKey,
  type CheckpointKeyMaterial,
  checkpointKeyFrom,
  checkpointKeyMaterialOf,
  type MasterKeyInput,
} from './checkpoint-key.ts';
import { auditUnavailable } from './errors.ts';
import type { AuditEvent } from './record.ts';
import type { RequestTextAround } from './records.ts';
import { type ChainState, type Pending, type Sealed, sealBatch, wholeLines } from './seal.ts';
import { type AuditSink, type SegmentSink, SinkWriteError } from './sinks.ts';

/** Default checkpoint policy: every 1000 records or 5 seconds. */
export const DEFAULT_CHECKPOINT_RECORDS = 1000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 5000;

/**
 * Events waiting for a write that does not return (a hung disk or a reader that stopped reading
 * stdout) are capped: past this many, events are dropped and counted, and `write()` refuses.
 */
export const MAX_PENDING_EVENTS = 100_000;

/** Options of {@link AuditLog.open}. */
export interface AuditLogOptions {
  /**
   * What the chain is named after (a host or pod name); a new chain gets a random suffix so that
   * runs never share a name. A chain continued from existing segments keeps its name.
   */
  name: string;
  /** Segment files (standalone; optional in cluster mode). The chain continues from their tail. */
  segments?: SegmentSink;
  /** Streams that get every line too (stdout in cluster mode). */
  streams?: AuditSink[];
  checkpointRecords?: number;
  checkpointIntervalMs?: number;
  /** The master key, when known (the cluster engine reads it after start); checkpoints wait for it. */
  masterKey?: () => MasterKeyInput | undefined;
  /**
   * Instead of `masterKey`: the checkpoint key already derived from it (`checkpointKeyMaterial`),
   * as the audit thread gets it: the master key itself never leaves the engine's main thread.
   */
  checkpointKeyMaterial?: () => CheckpointKeyMaterial | undefined;
  /** How long to wait before retrying failed sinks; 1 s. */
  retryMs?: number;
  now?: () => number;
  log?: Logger;
}

/** Counters of the log (also exposed as metrics by http-audit.ts). */
export interface AuditStats {
  /** Records written (all types). */
  written: number;
  /** Events dropped because a sink had failed. */
  dropped: number;
  /** Sink failures. */
  failures: number;
  checkpoints: number;
}

/** What phase 2 (operator actions) and the HTTP hooks use. */
export interface AuditRecorder {
  /**
   * Queues an event; never throws, never waits (dropped and counted while the log is unhealthy).
   * `time` (epoch ms) is when it happened; now by default.
   */
  record(event: AuditEvent, time?: number): void;
  /** Queues an event and resolves once every sink has it; rejects (503) if it cannot be recorded. */
  write(event: AuditEvent, time?: number): Promise<void>;
  /** False while a sink is failing. */
  readonly healthy: boolean;
}

/** An open audit log, on this thread (AuditLog) or on one of its own (audit-thread.ts). */
export interface AuditLogHandle extends AuditRecorder {
  /** The chain's name. */
  readonly chain: string;
  /** Updated in place (the metrics read this object). */
  readonly stats: AuditStats;
  /** The V8 heap of the thread the log runs on, when that is a thread of its own (audit-thread.ts). */
  readonly memory?: WorkerHeap;
  /** Resolves once everything queued so far has been written (or dropped). */
  flush(): Promise<void>;
  /** Writes what is queued and a closing checkpoint, and closes the sinks. */
  close(): Promise<void>;
}

/** See the module comment. */
export class AuditLog implements AuditLogHandle {
  readonly chain: string;
  readonly stats: AuditStats = { written: 0, dropped: 0, failures: 0, checkpoints: 0 };
  readonly #hasher: ChainHasher;
  readonly #segments: SegmentSink | undefined;
  readonly #streams: AuditSink[];
  readonly #every: number;
  readonly #intervalMs: number;
  readonly #retryMs: number;
  readonly #keyMaterial: () => CheckpointKeyMaterial | undefined;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  #seq: number;
  #head: string;
  #since = 0;
  #queue: Pending[] = [];
  #tail: Promise<void> = Promise.resolve();
  #scheduled = false;
  #failed: Error | undefined;
  #droppedSinceFailure = 0;
  #tornBytes = 0;
  #key: { id: string; key: CheckpointKey } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(o: AuditLogOptions, hasher: ChainHasher, start: ChainState) {
    this.#hasher = hasher;
    this.#segments = o.segments;
    this.#streams = o.streams ?? [];
    this.#every = o.checkpointRecords ?? DEFAULT_CHECKPOINT_RECORDS;
    this.#intervalMs = o.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.#retryMs = o.retryMs ?? 1000;
    this.#keyMaterial = o.checkpointKeyMaterial ?? checkpointKeyMaterialOf(o.masterKey ?? (() => undefined));
    this.#now = o.now ?? Date.now;
    this.#log = o.log;
    this.chain = start.chain;
    this.#seq = start.seq;
    this.#head = start.head;
  }

  /**
   * Opens the log: continues the chain of existing segments (or starts one), begins a new
   * segment, and writes a `start` record and, when the master key is known, a checkpoint. Throws
   * when the first write fails (an unwritable directory): the caller refuses to start.
   */
  static async open(o: AuditLogOptions): Promise<AuditLog> {
    if (o.segments === undefined && (o.streams ?? []).length === 0)
      throw new Error('an audit log needs a sink');
    const hasher = await ChainHasher.create();
    const resumed = await resumeChain(o.name, o.segments, o.log);
    const tornBytes = resumed.tornBytes;
    const log = new AuditLog(o, hasher, resumed);
    const first: Pending[] = [];
    const time = log.#now();
    if (o.segments !== undefined) {
      const segment = await o.segments.openNext();
      first.push({ own: { type: 'segment', segment, tornBytes: tornBytes || undefined }, time });
    }
    first.push({
      own: {
        type: 'start',
        host: hostname(),
        pid: process.pid,
        checkpointRecords: log.#every,
        checkpointIntervalMs: log.#intervalMs,
      },
      time,
    });
    first.push({ checkpoint: 'start', time });
    try {
      await log.#writeBatch(first);
    } catch (err) {
      log.#closed = true;
      clearTimeout(log.#retryTimer);
      await o.segments?.close();
      throw err;
    }
    log.#timer = setInterval(() => log.#tick(), log.#intervalMs);
    log.#timer.unref();
    return log;
  }

  get healthy(): boolean {
    return this.#failed === undefined && !this.#closed;
  }

  /** The sequence number the next record gets. */
  get nextSeq(): number {
    return this.#seq;
  }

  record(event: AuditEvent, time = this.#now()): void {
    this.#enqueue({ event, time });
  }

  write(event: AuditEvent, time = this.#now()): Promise<void> {
    return this.#enqueueWaiting({ event, time });
  }

  /**
   * As `record`, for a request record rendered by `requestTextAround` (records.ts) for this
   * chain at `time`: the audit thread's form of an event (audit-worker.ts).
   */
  recordText(text: RequestTextAround, time: number): void {
    this.#enqueue({ text, time });
  }

  /** As `write`, for a rendered request record (see `recordText`). */
  writeText(text: RequestTextAround, time: number): Promise<void> {
    return this.#enqueueWaiting({ text, time });
  }

  #enqueue(p: Pending): void {
    if (this.#closed) return;
    if (this.#failed !== undefined || this.#queue.length >= MAX_PENDING_EVENTS) {
      this.#drop(1);
      return;
    }
    this.#queue.push(p);
    this.#schedule();
  }

  #enqueueWaiting(p: Pending): Promise<void> {
    if (!this.healthy || this.#queue.length >= MAX_PENDING_EVENTS) return Promise.reject(auditUnavailable());
    return new Promise((resolve, reject) => {
      p.resolve = resolve;
      p.reject = reject;
      this.#queue.push(p);
      this.#schedule();
    });
  }

  /** Resolves once everything queued so far has been written (or dropped). */
  flush(): Promise<void> {
    return this.#serial(() => this.#drain());
  }

  /** Writes what is queued and a closing checkpoint, and closes the sinks. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retryTimer);
    this.#queue.push({ checkpoint: 'close', time: this.#now() });
    await this.#serial(() => this.#drain());
    await this.#segments?.close();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#serial(() => this.#drain());
    });
  }

  /** Runs `fn` after everything queued before it: writes never overlap. */
  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => {});
    return run;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      // A full segment is ended before more is written, so no segment grows far past its limit.
      if (this.#segments?.rotationDue && this.#failed === undefined && !this.#closed) await this.#rotate();
      const batch = this.#queue;
      this.#queue = [];
      if (this.#failed !== undefined) {
        this.#refuse(batch);
        continue;
      }
      try {
        await this.#writeBatch(batch);
      } catch {
        // #writeBatch settled every waiter and marked the log failed.
      }
    }
  }

  /** Ends the current segment with a checkpoint and begins the next. */
  async #rotate(): Promise<void> {
    const time = this.#now();
    try {
      await this.#writeBatch([{ checkpoint: 'rotate', time }]);
      const segment = await this.#segments!.openNext();
      await this.#writeBatch([{ own: { type: 'segment', segment }, time }]);
    } catch (err) {
      // A failed write has marked the log failed already; a segment that cannot be created has not.
      if (this.#failed === undefined) this.#fail(err as Error, 0);
    }
  }

  async #checkpointKey(): Promise<CheckpointKey | undefined> {
    const material = this.#keyMaterial();
    if (material === undefined) return undefined;
    if (this.#key?.id !== material.id)
      this.#key = { id: material.id, key: await checkpointKeyFrom(material.key, material.id) };
    return this.#key.key;
  }

  /**
   * Seals and writes one batch. On success every waiter resolves. On failure the chain keeps
   * the lines that reached the segment file whole, their waiters resolve, the rest are refused,
   * the log turns unhealthy, and the error is rethrown.
   */
  async #writeBatch(batch: Pending[]): Promise<void> {
    let s: Sealed;
    try {
      const key = await this.#checkpointKey();
      const state = { chain: this.chain, seq: this.#seq, head: this.#head, since: this.#since };
      s = sealBatch(batch, state, this.#every, this.#hasher, key);
    } catch (err) {
      // Not a sink failure but a fault of this process: refuse rather than write a broken chain.
      this.#refuse(batch);
      this.#fail(err as Error, 0);
      throw err;
    }
    if (s.lines.length === 0) {
      for (const p of batch) p.resolve?.();
      return;
    }
    const data = Buffer.from(s.lines.join(''), 'utf8');
    let fileDone = this.#segments === undefined;
    try {
      if (this.#segments !== undefined) {
        await this.#segments.write(data, s.sync);
        fileDone = true;
      }
      for (const stream of this.#streams) await stream.write(data, s.sync);
    } catch (err) {
      // The segment file is the record of truth when there is one: what it holds whole is kept.
      let kept = 0;
      let torn = 0;
      if (fileDone && this.#segments !== undefined) kept = s.lines.length;
      else if (err instanceof SinkWriteError && this.#segments !== undefined) {
        ({ kept, torn } = wholeLines(s, err.written));
      }
      this.#commit(s, kept);
      this.#refuse(s.owners.slice(kept).filter((p): p is Pending => p !== undefined));
      this.#fail(err as Error, torn);
      throw err;
    }
    this.#commit(s, s.lines.length);
  }

  /** Advances the chain over the first `n` sealed lines and resolves their waiters. */
  #commit(s: Sealed, n: number): void {
    if (n === 0) return;
    this.#head = s.heads[n - 1]!;
    this.#seq += n;
    this.#since = s.sinces[n - 1]!;
    this.stats.written += n;
    for (let i = 0; i < n; i++) {
      if (s.checkpoints[i]) this.stats.checkpoints++;
      s.owners[i]?.resolve?.();
    }
  }

  #refuse(pending: Pending[]): void {
    let events = 0;
    for (const p of pending) {
      if (p.event !== undefined || p.text !== undefined) events++;
      p.reject?.(auditUnavailable());
    }
    this.#drop(events);
  }

  #drop(n: number): void {
    this.stats.dropped += n;
    this.#droppedSinceFailure += n;
  }

  #fail(err: Error, tornBytes: number): void {
    const first = this.#failed === undefined;
    this.#failed = err;
    this.#tornBytes = tornBytes;
    this.stats.failures++;
    if (first) {
      this.#log?.error(
        { err: err.message, chain: this.chain },
        'the audit log cannot write; events are not recorded until it recovers',
      );
    }
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#serial(() => this.#recover());
    }, this.#retryMs);
    this.#retryTimer.unref();
  }

  /** Begins a new segment (or, streams only, a new stretch) that says what was lost. */
  async #recover(): Promise<void> {
    if (this.#failed === undefined || this.#closed) return;
    const time = this.#now();
    try {
      const segment = this.#segments === undefined ? undefined : await this.#segments.openNext();
      this.#failed = undefined;
      const own = {
        type: 'segment',
        segment,
        dropped: this.#droppedSinceFailure || undefined,
        tornBytes: this.#tornBytes || undefined,
      };
      await this.#writeBatch([
        { own, time },
        { checkpoint: 'start', time },
      ]);
      this.#droppedSinceFailure = 0;
      this.#tornBytes = 0;
      this.#log?.warn({ chain: this.chain, segment }, 'the audit log writes again');
    } catch (err) {
      if (this.#failed === undefined) this.#fail(err as Error, 0);
      else this.#scheduleRetry();
    }
  }

  #tick(): void {
    if (this.#failed !== undefined || this.#closed) return;
    if (this.#since === 0 && this.#queue.length === 0) return;
    this.#queue.push({ checkpoint: 'interval', time: this.#now() });
    this.#schedule();
  }
}
