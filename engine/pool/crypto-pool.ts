/**
 * The engine's worker pool (PRODUCT.md §5). Concurrent single operations on the same key version
 * and operation are coalesced into one batch, sent as one task whose items and outputs live in
 * one buffer that is transferred to the worker and back and then recycled (buffers.ts,
 * layout.ts): under load nothing is allocated per task. Whole batch requests go to a worker as
 * their raw body (request-runner.ts). What waits or runs is bounded in items and in bytes: past
 * either bound a caller gets OVERLOADED at once instead of a queue that grows without limit.
 *
 * Key material reaches a worker once per key version (protocol.ts `TaskKey`): tasks carry the
 * key's id; a worker that lacks it hands the task back, and the pool sends it again with a copy
 * of the material, transferred (so no copy stays here). `evict` broadcasts the ids of disabled or
 * destroyed keys to every worker. Piscina runs without its Atomics wait loop so that an idle
 * worker's event loop turns and takes the broadcast at once (measured: no throughput cost with
 * batched tasks; see docs/security.md).
 *
 * Its parts live beside it: admission.ts (the bounds), coalescer.ts (batching single operations),
 * worker-threads.ts (the workers, and sending them tasks), worker-channel.ts (broadcasts to the
 * workers), pool-options.ts, items.ts, jobs.ts and task-errors.ts.
 */
import { availableParallelism } from 'node:os';
import type { BatchOperation } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { Admission } from './admission.ts';
import { BufferPool } from './buffers.ts';
import { Coalescer } from './coalescer.ts';
import { type ItemFields, type ItemOutcome, itemBytes } from './items.ts';
import type { Finish, ItemJob, Job, RequestJob } from './jobs.ts';
import { measureTask, TaskRegion, type TaskSize, writeTask } from './layout.ts';
import { outputBound, PLAINTEXT_OUTPUTS } from './ops.ts';
import { type CryptoPoolOptions, POOL_DEFAULTS } from './pool-options.ts';
import {
  FIELDS_PER_OP,
  type RequestTask,
  type TaskKey,
  type TaskParams,
  type WireKey,
  type WorkerOp,
} from './protocol.ts';
import type { RequestOutcome, WireError, WireRing } from './request-runner.ts';
import { keyRevoked } from './task-errors.ts';
import { type WorkerCache, WorkerChannel } from './worker-channel.ts';
import { TASKS_PER_WORKER, WorkerThreads } from './worker-threads.ts';

/** Runs batches of crypto on worker threads; see the module comment. */
export class CryptoPool {
  /** Most items in one item task. */
  readonly maxBatch: number;
  /** Items waiting or running before new work is refused with OVERLOADED. */
  readonly maxPendingItems: number;
  /** Bytes waiting or running before new work is refused with OVERLOADED. */
  readonly maxPendingBytes: number;
  readonly #maxTaskBytes: number;
  readonly #workers: WorkerThreads;
  readonly #buffers: BufferPool;
  readonly #admission: Admission;
  readonly #coalescer: Coalescer;
  readonly #ready: Job[] = [];
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Tasks the workers can hold at once: one running and one queued behind it per thread. */
  readonly #taskSlots: number;
  #tasksInFlight = 0;
  #tasksDispatched = 0;
  #workerErrors = 0;
  readonly #channel: WorkerChannel;

  constructor(options: CryptoPoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    this.#taskSlots = threads * TASKS_PER_WORKER;
    this.#channel = new WorkerChannel(threads);
    this.maxBatch = options.maxBatch ?? POOL_DEFAULTS.maxBatch;
    this.maxPendingItems = options.maxPendingItems ?? POOL_DEFAULTS.maxPendingItems;
    this.maxPendingBytes = options.maxPendingBytes ?? POOL_DEFAULTS.maxPendingBytes;
    this.#admission = new Admission(this.maxPendingItems, this.maxPendingBytes);
    this.#buffers = new BufferPool(options.retainedBytes ?? POOL_DEFAULTS.retainedBytes);
    this.#maxTaskBytes = options.maxTaskBytes ?? POOL_DEFAULTS.maxTaskBytes;
    this.#coalescer = new Coalescer({
      maxBatch: this.maxBatch,
      maxTaskBytes: this.#maxTaskBytes,
      closing: () => this.#admission.closing,
      freeSlots: () => this.#freeSlots(),
      busy: () => this.#tasksInFlight > 0,
      enqueue: (job) => {
        this.#ready.push(job);
      },
      pump: () => this.#pump(),
    });
    this.#workers = new WorkerThreads(
      threads,
      this.#channel,
      this.#buffers,
      options,
      () => this.#workerErrors++,
    );
  }

  /** True once `close` was called: new work is refused. */
  get closing(): boolean {
    return this.#admission.closing;
  }

  /** Workers that died outside a task since start (each was replaced). */
  get workerErrors(): number {
    return this.#workerErrors;
  }

  /** Worker tasks (batches) sent since start: with itemsDispatched, the mean batch size. */
  get tasksDispatched(): number {
    return this.#tasksDispatched;
  }

  /** Items waiting to be batched or running in a worker. */
  get pendingItems(): number {
    return this.#admission.items;
  }

  /** Bytes of the items and requests waiting or running. */
  get pendingBytes(): number {
    return this.#admission.bytes;
  }

  /** Bytes of task buffers kept for reuse. */
  get retainedBytes(): number {
    return this.#buffers.retained;
  }

  /** Worker threads, for tests that kill one mid-batch. */
  get threads(): readonly import('node:worker_threads').Worker[] {
    return this.#workers.threads;
  }

  /**
   * Queues one item to be coalesced with concurrent items of the same key version, operation and
   * parameters. `batchKey` must identify exactly those (the caller knows its parameters best).
   * `finish` turns the outcome into the result while the outcome's bytes are valid; what it throws
   * rejects the promise.
   */
  submit<T>(
    op: WorkerOp,
    key: TaskKey,
    params: TaskParams,
    batchKey: string,
    fields: ItemFields,
    finish: (outcome: ItemOutcome) => T,
  ): Promise<T> {
    const bytes = itemBytes(op, params, fields);
    this.#admission.admit(1, bytes);
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const settle = (outcome: ItemOutcome): void => {
      try {
        resolve(finish(outcome));
      } catch (error) {
        reject(error);
      }
    };
    this.#coalescer.add(op, key, params, batchKey, fields, bytes, settle, reject);
    return promise;
  }

  /**
   * Reserves room for `count` items of `bytes` bytes, or throws OVERLOADED (429; 503 while
   * shutting down). A caller that reserves passes `reserved: true` to runBatch, so a request split
   * into several tasks is admitted whole or refused whole.
   */
  reserve(count: number, bytes: number): void {
    this.#admission.admit(count, bytes);
  }

  /**
   * Runs a caller's batch (split into tasks of at most maxBatch items), calling `finish` with each
   * item's outcome, in any order, while its bytes are valid. Resolves once every item finished;
   * rejects (after which no more `finish` calls come for the failed task's items) when a task
   * fails as a whole. With `reserved`, `sizes` must be the `itemBytes` of each item, and their sum
   * what `reserve` was given.
   */
  runBatch(
    op: WorkerOp,
    key: TaskKey,
    params: TaskParams,
    items: readonly ItemFields[],
    finish: Finish,
    options: { reserved?: boolean; sizes?: readonly number[] } = {},
  ): Promise<void> {
    const sizes = options.sizes ?? items.map((fields) => itemBytes(op, params, fields));
    if (options.reserved !== true) {
      let total = 0;
      for (const size of sizes) total += size;
      this.#admission.admit(items.length, total);
    }
    const tasks: Promise<void>[] = [];
    let start = 0;
    while (start < items.length) {
      let end = start;
      let bytes = 0;
      while (end < items.length && end - start < this.maxBatch) {
        if (end > start && bytes + sizes[end]! > this.#maxTaskBytes) break;
        bytes += sizes[end]!;
        end++;
      }
      const offset = start;
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      this.#ready.push({
        kind: 'items',
        op,
        key,
        params,
        items: items.slice(start, end),
        bytes,
        finish: (outcome, i) => finish(outcome, offset + i),
        resolve,
        reject,
      });
      tasks.push(promise);
      start = end;
    }
    this.#pump();
    return Promise.all(tasks).then(() => undefined);
  }

  /**
   * Runs a whole batch request in a worker (request-runner.ts) and returns its outcome. The task
   * starts knowing the versions `known`; the versions the worker asks for are resolved by
   * `resolveVersion` (a TaskKey, null for no such version, or the version's error), and every
   * known version's material goes along with the next try. `itemsBound` is the most items the
   * body can hold (admission counts it).
   */
  async runRequest(
    op: BatchOperation,
    shape: Omit<WireRing, 'versions'>,
    known: readonly number[],
    body: ArrayBuffer,
    itemsBound: number,
    resolveVersion: (version: number) => TaskKey | null | WireError,
  ): Promise<Extract<RequestOutcome, { type: 'done' | 'error' }>> {
    // Its body, and as much again for the response it builds.
    const bytes = body.byteLength * 2;
    this.#admission.admit(itemsBound, bytes);
    const keys = new Map<string, TaskKey>();
    const versions = new Map<number, string | null | WireError>();
    const learn = (version: number): void => {
      const resolved = resolveVersion(version);
      if (resolved !== null && 'id' in resolved) {
        versions.set(version, resolved.id);
        keys.set(resolved.id, resolved);
      } else versions.set(version, resolved);
    };
    let material: WireKey[] | undefined;
    let payload = body;
    try {
      for (const version of known) learn(version);
      for (let attempt = 0; attempt < 4; attempt++) {
        const task: RequestTask = {
          kind: 'request',
          op,
          ring: { ...shape, versions: [...versions] },
          body: payload,
          ...(material === undefined ? {} : { keys: material }),
        };
        const outcome = await this.#runRequestJob(task, attempt === 0);
        if (outcome.type !== 'need') return outcome;
        payload = outcome.body;
        for (const version of outcome.versions) learn(version);
        // Every version this task knows goes along: the next try may land on the other worker.
        material = [];
        for (const [id, key] of keys) {
          const exported = key.exportMaterial();
          if (exported === undefined) throw keyRevoked();
          material.push({ id, usage: key.usage, convergent: key.convergent, material: exported });
        }
      }
      throw new KeywardError('INTERNAL', 'the crypto worker did not register the key');
    } finally {
      this.#admission.release(itemsBound, bytes);
      // Revoked while the task waited: its eviction may have reached a worker before the
      // registration did. Evict again, now that the worker has it.
      const revoked = [...keys.values()].filter((k) => k.revoked).map((k) => k.id);
      if (revoked.length > 0) this.evict(revoked);
    }
  }

  /**
   * Tells every worker to drop the key versions `ids` and what it derived from them. Revoke the
   * TaskKeys first, so that no later task registers them again.
   */
  evict(ids: readonly string[]): void {
    this.#channel.evict(ids);
  }

  /**
   * Asks every worker which key ids it holds, and its heap (diagnostics, metrics and tests).
   * Resolves with the replies that arrived within `timeoutMs`, one per live worker when all
   * answered.
   */
  workerCaches(timeoutMs = 5_000): Promise<WorkerCache[]> {
    return this.#channel.census(timeoutMs);
  }

  /** Stops taking work, runs everything already queued, then stops the workers. */
  async close(): Promise<void> {
    this.#admission.close();
    this.#coalescer.flush();
    while (this.#inFlight.size > 0 || this.#ready.length > 0) {
      this.#pump();
      await Promise.allSettled([...this.#inFlight]);
    }
    await this.#workers.close();
    this.#channel.close();
  }

  #freeSlots(): number {
    return this.#taskSlots - this.#tasksInFlight - this.#ready.length;
  }

  /** Starts queued tasks while task slots allow, in order. */
  #pump(): void {
    while (this.#ready.length > 0 && this.#tasksInFlight < this.#taskSlots) {
      const job = this.#ready.shift()!;
      if (job.kind === 'request') {
        this.#startRequest(job);
        continue;
      }
      const fields = FIELDS_PER_OP[job.op];
      const read = (i: number, f: number) => job.items[i]![f];
      const bound = (input: number) => outputBound(job.op, job.params, input);
      const size = measureTask(job.items.length, fields, read, bound);
      const buffer = this.#buffers.take(size.bytes);
      writeTask(buffer, size, read, bound);
      this.#startItems(job, buffer, size);
    }
  }

  /** Counts a task in flight until `run` (which settles its callers) and `settle` are done. */
  #track(run: Promise<void>, settle: () => void): void {
    this.#tasksInFlight++;
    this.#tasksDispatched++;
    const tracked = run.finally(() => {
      this.#tasksInFlight--;
      settle();
      this.#inFlight.delete(tracked);
      this.#pump();
      if (this.#coalescer.waiting) this.#coalescer.scheduleFlush();
    });
    this.#inFlight.add(tracked);
  }

  #startItems(job: ItemJob, buffer: ArrayBuffer, size: TaskSize): void {
    const plaintext = PLAINTEXT_OUTPUTS.has(job.op);
    const run = this.#workers.sendItems(job, buffer).then(
      (returned) => {
        const region = new TaskRegion(returned);
        try {
          for (let i = 0; i < region.count; i++) {
            const status = region.status(i);
            if (status !== 0) job.finish(status, i);
            else if (!plaintext) job.finish(region.output(i), i);
            else {
              // A copy of its own, never in Buffer's shared pool: the caller zeroes it when done.
              const view = region.output(i);
              const copy = Buffer.allocUnsafeSlow(view.length);
              copy.set(view);
              job.finish(copy, i);
            }
          }
          job.resolve();
        } catch {
          job.reject(new KeywardError('INTERNAL', 'the operation failed'));
        } finally {
          this.#buffers.give(returned, Math.max(region.used, size.bytes));
        }
      },
      (error: KeywardError) => job.reject(error),
    );
    this.#track(run, () => this.#admission.release(job.items.length, job.bytes));
  }

  /** Queues one send of a request task (admission is the caller's, once for all its tries). */
  #runRequestJob(task: RequestTask, first: boolean): Promise<RequestOutcome> {
    const { promise, resolve, reject } = Promise.withResolvers<RequestOutcome>();
    const job: RequestJob = { kind: 'request', task, resolve, reject };
    // A second try goes first: its request is already half done.
    if (first) this.#ready.push(job);
    else this.#ready.unshift(job);
    this.#pump();
    return promise;
  }

  #startRequest(job: RequestJob): void {
    const transfer: ArrayBuffer[] = [job.task.body];
    for (const k of job.task.keys ?? [])
      if (k.material !== undefined) transfer.push(k.material.buffer as ArrayBuffer);
    const run = this.#workers.run(job.task, transfer).then(
      (outcome) => job.resolve(outcome as RequestOutcome),
      (error: KeywardError) => job.reject(error),
    );
    this.#track(run, () => {
      // Material that never left (a failed send) is wiped here.
      for (const k of job.task.keys ?? []) {
        if (k.material !== undefined && k.material.byteLength > 0) k.material.fill(0);
      }
    });
  }
}
