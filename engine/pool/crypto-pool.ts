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
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { BroadcastChannel, type ResourceLimits } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { BatchOperation } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { BufferPool } from './buffers.ts';
import { measureTask, TaskRegion, type TaskSize, writeTask } from './layout.ts';
import { outputBound, PLAINTEXT_OUTPUTS } from './ops.ts';
import {
  FIELDS_PER_OP,
  type ItemResult,
  type ItemTask,
  type PoolBroadcast,
  type PoolWorkerData,
  type RequestTask,
  type TaskKey,
  type TaskParams,
  type WireKey,
  type WorkerHeap,
  type WorkerOp,
  type WorkerTask,
} from './protocol.ts';
import type { RequestOutcome, WireError, WireRing } from './request-runner.ts';
import { workerSources } from './worker-sources.ts';

/**
 * An item's outcome: its output bytes, or a status code (ITEM_INVALID, ITEM_FAILED). Output bytes
 * of ops that are not plaintext are a view into shared memory, valid only during the `finish`
 * call that receives them; plaintext outputs are a copy of their own.
 */
export type ItemOutcome = Buffer | number;

/** Fields of one item, in the order FIELDS_PER_OP gives. */
export type ItemFields = readonly (Uint8Array | undefined)[];

/** What one worker holds (`CryptoPool.workerCaches`). */
export interface WorkerCache {
  threadId: number;
  /** Key ids it holds. */
  ids: string[];
  /** Convergent derived-key sets it holds. */
  contexts: number;
  /** Key registrations since it started. */
  registrations: number;
  /** Its V8 heap. */
  heap: WorkerHeap;
}

export interface CryptoPoolOptions {
  /** Worker threads; default: the machine's available parallelism. */
  threads?: number;
  /** Most items in one item task. */
  maxBatch?: number;
  /** Items waiting or running before new work is refused with OVERLOADED. */
  maxPendingItems?: number;
  /**
   * Bytes waiting or running (inputs and output space of items, bodies of batch requests) before
   * new work is refused with OVERLOADED.
   */
  maxPendingBytes?: number;
  /** Largest item task, in bytes (a task holds at most this much of items and output space). */
  maxTaskBytes?: number;
  /** Bytes of task buffers kept for reuse. */
  retainedBytes?: number;
  /** Key versions each worker keeps (FIFO beyond). */
  maxWorkerKeys?: number;
  /** Convergent derived-key sets each worker keeps (FIFO beyond). */
  maxDerivedKeys?: number;
  /** V8 heap limits of each worker (default POOL_DEFAULTS.workerResourceLimits, chosen on measurement). */
  resourceLimits?: ResourceLimits;
  /**
   * Told when a worker dies outside a task (Piscina's `error` event; the worker is replaced). By
   * default a process warning is written to stderr: a crash is never silent.
   */
  onWorkerError?: (err: Error) => void;
}

/** Default bounds; docs/performance.md says how they were chosen. */
export const POOL_DEFAULTS = {
  maxBatch: 512,
  maxPendingItems: 65_536,
  maxPendingBytes: 64 * 1024 * 1024,
  maxTaskBytes: 2 * 1024 * 1024,
  retainedBytes: 8 * 1024 * 1024,
  maxWorkerKeys: 2048,
  maxDerivedKeys: 4096,
  /**
   * A worker's young generation: V8's default let each worker's grow to 64 MiB under load; 12
   * keeps it at 8 (measured with bench/soak.ts; docs/performance.md, memory). The old generation
   * keeps V8's limit: a 16 MiB batch body needs several times that while it is parsed, and a
   * worker over its limit dies.
   */
  workerResourceLimits: { maxYoungGenerationSizeMb: 12 },
} as const;

/** Calls back with one item's outcome while its bytes are valid (see ItemOutcome). */
type Finish = (outcome: ItemOutcome, index: number) => void;

interface Coalescing {
  op: WorkerOp;
  key: TaskKey;
  params: TaskParams;
  items: ItemFields[];
  bytes: number[];
  finishers: Array<(outcome: ItemOutcome) => void>;
  rejecters: Array<(error: KeywardError) => void>;
  /** When the first item arrived (performance.now()), to bound its wait. */
  since: number;
}

/** An item task waiting for a task slot, or running. */
interface ItemJob {
  kind: 'items';
  op: WorkerOp;
  key: TaskKey;
  params: TaskParams;
  items: readonly ItemFields[];
  /** Reserved bytes of these items (released when the task settles). */
  bytes: number;
  finish: Finish;
  resolve: () => void;
  reject: (error: KeywardError) => void;
}

/** A request task waiting for a task slot, or running. */
interface RequestJob {
  kind: 'request';
  task: RequestTask;
  resolve: (outcome: RequestOutcome) => void;
  reject: (error: KeywardError) => void;
}

type Job = ItemJob | RequestJob;

// The smallest share of a burst worth a task of its own: below it, the message round trip costs
// more than the work it spreads.
const MIN_CHUNK = 32;
const TASKS_PER_WORKER = 2;
// The longest an item waits to be batched (PRODUCT.md §5: a millisecond or less).
const MAX_WAIT_MS = 1;
// The longest items coalesce while every task slot is taken, before they queue behind the tasks
// already waiting.
const MAX_COALESCE_MS = 2;

// The entry serves the worker's modules pre-stripped (worker-sources.ts).
const WORKER_URL = new URL('./worker-entry.mjs', import.meta.url).href;
const WORKER_MODULE = new URL('./worker.ts', import.meta.url);

/** Bytes an item holds while queued or running: its inputs and its output space. */
export function itemBytes(op: WorkerOp, params: TaskParams, fields: ItemFields): number {
  let input = 0;
  for (const f of fields) input += f?.byteLength ?? 0;
  return input + outputBound(op, params, input);
}

/** Runs batches of crypto on worker threads; see the module comment. */
export class CryptoPool {
  readonly maxBatch: number;
  readonly maxPendingItems: number;
  readonly maxPendingBytes: number;
  readonly #maxTaskBytes: number;
  readonly #piscina: Piscina<WorkerTask, unknown>;
  readonly #buffers: BufferPool;
  readonly #coalescing = new Map<string, Coalescing>();
  readonly #ready: Job[] = [];
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Tasks the workers can hold at once: one running and one queued behind it per thread. */
  readonly #taskSlots: number;
  #tasksInFlight = 0;
  #tasksDispatched = 0;
  #pendingItems = 0;
  #pendingBytes = 0;
  #flushScheduled = false;
  #waitTimer: ReturnType<typeof setTimeout> | undefined;
  #closing = false;
  #workerErrors = 0;
  readonly #channel: BroadcastChannel;
  readonly #threads: number;
  #censusRequest = 0;
  readonly #census = new Map<number, (reply: Extract<PoolBroadcast, { type: 'census-reply' }>) => void>();

  constructor(options: CryptoPoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    this.#threads = threads;
    this.#taskSlots = threads * TASKS_PER_WORKER;
    // One channel per pool: several pools in a process (tests, benches) never hear each other.
    const channel = `keyward-pool-${randomBytes(8).toString('hex')}`;
    this.#channel = new BroadcastChannel(channel);
    this.#channel.onmessage = (event) => {
      const message = (event as unknown as { data: PoolBroadcast }).data;
      if (message.type === 'census-reply') this.#census.get(message.request)?.(message);
    };
    this.#channel.unref();
    this.maxBatch = options.maxBatch ?? POOL_DEFAULTS.maxBatch;
    this.maxPendingItems = options.maxPendingItems ?? POOL_DEFAULTS.maxPendingItems;
    this.maxPendingBytes = options.maxPendingBytes ?? POOL_DEFAULTS.maxPendingBytes;
    this.#buffers = new BufferPool(options.retainedBytes ?? POOL_DEFAULTS.retainedBytes);
    this.#maxTaskBytes = options.maxTaskBytes ?? POOL_DEFAULTS.maxTaskBytes;
    const workerData: PoolWorkerData = {
      channel,
      sources: workerSources(WORKER_MODULE),
      maxKeys: options.maxWorkerKeys ?? POOL_DEFAULTS.maxWorkerKeys,
      maxDerivedKeys: options.maxDerivedKeys ?? POOL_DEFAULTS.maxDerivedKeys,
    };
    this.#piscina = new Piscina({
      filename: WORKER_URL,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // A second task waits in each worker's port, so a worker never idles while the main thread
      // handles the result of the first (measured: +25% on 1 KiB AES batches).
      concurrentTasksPerWorker: TASKS_PER_WORKER,
      // Our own bounds are the backpressure; no more than the task slots ever reach Piscina.
      maxQueue: Number.POSITIVE_INFINITY,
      // Idle workers wait on their event loop, not in Atomics.wait, so eviction broadcasts reach
      // them while they idle.
      atomics: 'disabled',
      workerData,
      resourceLimits: options.resourceLimits ?? POOL_DEFAULTS.workerResourceLimits,
    });
    // Piscina emits 'error' for a worker that dies with no task in flight; the worker is
    // replaced either way, and an unhandled 'error' event would kill the process. It is counted
    // (a metric) and reported.
    const report =
      options.onWorkerError ??
      ((err: Error) => process.emitWarning(`crypto worker died: ${err.message}`, 'KeywardWorkerError'));
    this.#piscina.on('error', (err: unknown) => {
      this.#workerErrors++;
      report(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /** True once `close` was called: new work is refused. */
  get closing(): boolean {
    return this.#closing;
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
    return this.#pendingItems;
  }

  /** Bytes of the items and requests waiting or running. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Bytes of task buffers kept for reuse. */
  get retainedBytes(): number {
    return this.#buffers.retained;
  }

  /** Worker threads, for tests that kill one mid-batch. */
  get threads(): readonly import('node:worker_threads').Worker[] {
    return this.#piscina.threads;
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
    this.#admit(1, bytes);
    let pending = this.#coalescing.get(batchKey);
    if (pending === undefined) {
      pending = {
        op,
        key,
        params,
        items: [],
        bytes: [],
        finishers: [],
        rejecters: [],
        since: performance.now(),
      };
      this.#coalescing.set(batchKey, pending);
    }
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    pending.items.push(fields);
    pending.bytes.push(bytes);
    pending.finishers.push((outcome) => {
      try {
        resolve(finish(outcome));
      } catch (error) {
        reject(error);
      }
    });
    pending.rejecters.push(reject);
    if (pending.items.length >= this.maxBatch && this.#freeSlots() > 0) {
      this.#coalescing.delete(batchKey);
      this.#chunk(pending, 0, pending.items.length);
      this.#pump();
    } else {
      this.#scheduleFlush();
    }
    return promise;
  }

  /**
   * Reserves room for `count` items of `bytes` bytes, or throws OVERLOADED (429; 503 while
   * shutting down). A caller that reserves passes `reserved: true` to runBatch, so a request split
   * into several tasks is admitted whole or refused whole.
   */
  reserve(count: number, bytes: number): void {
    this.#admit(count, bytes);
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
      this.#admit(items.length, total);
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
    this.#admit(itemsBound, bytes);
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
      this.#release(itemsBound, bytes);
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
    if (ids.length > 0) this.#channel.postMessage({ type: 'evict', ids: [...ids] } satisfies PoolBroadcast);
  }

  /**
   * Asks every worker which key ids it holds, and its heap (diagnostics, metrics and tests).
   * Resolves with the replies that arrived within `timeoutMs`, one per live worker when all
   * answered.
   */
  async workerCaches(timeoutMs = 5_000): Promise<WorkerCache[]> {
    const request = ++this.#censusRequest;
    const replies: WorkerCache[] = [];
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#census.set(request, (reply) => {
      const { threadId, ids, contexts, registrations, heap } = reply;
      replies.push({ threadId, ids, contexts, registrations, heap });
      if (replies.length >= this.#threads) resolve();
    });
    this.#channel.postMessage({ type: 'census', request } satisfies PoolBroadcast);
    const timer = setTimeout(resolve, timeoutMs);
    await promise;
    clearTimeout(timer);
    this.#census.delete(request);
    return replies;
  }

  /** Stops taking work, runs everything already queued, then stops the workers. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#flush();
    while (this.#inFlight.size > 0 || this.#ready.length > 0) {
      this.#pump();
      await Promise.allSettled([...this.#inFlight]);
    }
    await this.#piscina.close();
    this.#channel.close();
  }

  #admit(count: number, bytes: number): void {
    if (this.#closing) {
      throw new KeywardError('OVERLOADED', 'the engine is shutting down', {
        status: 503,
        retryAfterSeconds: 1,
      });
    }
    if (
      this.#pendingItems + count > this.maxPendingItems ||
      // One request larger than the whole bound still runs when nothing else waits.
      (this.#pendingBytes > 0 && this.#pendingBytes + bytes > this.maxPendingBytes)
    ) {
      throw new KeywardError('OVERLOADED', 'the engine is overloaded; retry later', { retryAfterSeconds: 1 });
    }
    this.#pendingItems += count;
    this.#pendingBytes += bytes;
  }

  #release(count: number, bytes: number): void {
    this.#pendingItems -= count;
    this.#pendingBytes -= bytes;
  }

  #freeSlots(): number {
    return this.#taskSlots - this.#tasksInFlight - this.#ready.length;
  }

  #armWaitTimer(): void {
    if (this.#waitTimer !== undefined) return;
    this.#waitTimer = setTimeout(() => {
      this.#waitTimer = undefined;
      this.#flush();
    }, MAX_WAIT_MS);
  }

  // One macrotask turn gathers every caller that became ready in this turn: under load that is
  // a full batch, when idle it costs well under a millisecond.
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(this.#flush);
  }

  /**
   * Sends what has been coalesced to the idle workers, spread over them so that a burst keeps
   * every thread busy (one batch per burst would leave the other workers and the main thread
   * waiting). While every worker is busy, items stay here and keep coalescing (a settling task
   * flushes again, so batches grow with load instead of queueing as many small tasks), for
   * MAX_COALESCE_MS at most: then they queue in turn behind what already waits.
   */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const now = performance.now();
    for (const [batchKey, pending] of this.#coalescing) {
      const idle = this.#freeSlots();
      // Every slot taken: the items keep coalescing, but for MAX_COALESCE_MS at most; then they
      // join the queue in turn, so a stream of batch requests that keeps every slot busy cannot
      // starve them (measured: single requests timed out behind batches in a mixed soak).
      if (idle <= 0 && !this.#closing && now - pending.since < MAX_COALESCE_MS) {
        this.#armWaitTimer();
        continue;
      }
      const count = pending.items.length;
      // While other work runs, a small batch waits (at most MAX_WAIT_MS) for company: a task per
      // handful of items spends more on the thread hop than on the crypto. An idle pool sends at
      // once, so a lone caller never waits.
      if (
        count < MIN_CHUNK &&
        this.#tasksInFlight > 0 &&
        now - pending.since < MAX_WAIT_MS &&
        !this.#closing
      ) {
        this.#armWaitTimer();
        continue;
      }
      this.#coalescing.delete(batchKey);
      const chunks = Math.max(
        Math.ceil(count / this.maxBatch),
        Math.min(Math.max(idle, 1), Math.ceil(count / MIN_CHUNK)),
      );
      const size = Math.ceil(count / chunks);
      for (let start = 0; start < count; start += size)
        this.#chunk(pending, start, Math.min(count, start + size));
    }
    this.#pump();
  };

  /** Queues items [start, end) of a coalesced batch as item tasks (split further by bytes). */
  #chunk(pending: Coalescing, start: number, end: number): void {
    while (start < end) {
      let stop = start;
      let bytes = 0;
      while (stop < end && (stop === start || bytes + pending.bytes[stop]! <= this.#maxTaskBytes)) {
        bytes += pending.bytes[stop]!;
        stop++;
      }
      const finishers = pending.finishers.slice(start, stop);
      const rejecters = pending.rejecters.slice(start, stop);
      this.#ready.push({
        kind: 'items',
        op: pending.op,
        key: pending.key,
        params: pending.params,
        items: pending.items.slice(start, stop),
        bytes,
        finish: (outcome, i) => finishers[i]!(outcome),
        resolve: () => {},
        reject: (error) => {
          for (const reject of rejecters) reject(error);
        },
      });
      start = stop;
    }
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
      if (this.#coalescing.size > 0) this.#scheduleFlush();
    });
    this.#inFlight.add(tracked);
  }

  #startItems(job: ItemJob, buffer: ArrayBuffer, size: TaskSize): void {
    const plaintext = PLAINTEXT_OUTPUTS.has(job.op);
    const run = this.#sendItems(job, buffer).then(
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
    this.#track(run, () => this.#release(job.items.length, job.bytes));
  }

  /**
   * Sends an item task naming its key by id; when the worker does not hold the key (it answers
   * `ran: false`), sends it once more with the material, which it registers. Resolves with the
   * task's buffer, moved back, outputs in it.
   */
  async #sendItems(job: ItemJob, buffer: ArrayBuffer): Promise<ArrayBuffer> {
    const wire: WireKey = { id: job.key.id, usage: job.key.usage, convergent: job.key.convergent };
    const task: ItemTask = { kind: 'items', op: job.op, key: wire, params: job.params, buffer };
    const first = (await this.#run(task, [buffer])) as ItemResult;
    if (first.ran) return first.buffer;
    const material = job.key.exportMaterial();
    if (material === undefined) {
      this.#buffers.give(first.buffer);
      throw keyRevoked();
    }
    let second: ItemResult;
    try {
      second = (await this.#run({ ...task, key: { ...wire, material }, buffer: first.buffer }, [
        first.buffer,
        material.buffer as ArrayBuffer,
      ])) as ItemResult;
    } finally {
      // Transferred: detached here, nothing to wipe. Still here (the task never left): wipe it.
      if (material.byteLength > 0) material.fill(0);
    }
    // Revoked while this task waited in Piscina's queue: its eviction may have reached the worker
    // before the registration did. Evict again, now that the worker has it.
    if (job.key.revoked) this.evict([job.key.id]);
    if (second.ran) return second.buffer;
    this.#buffers.give(second.buffer);
    throw new KeywardError('INTERNAL', 'the crypto worker did not register the key');
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
    const run = this.#run(job.task, transfer).then(
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

  async #run(task: WorkerTask, transferList: ArrayBuffer[]): Promise<unknown> {
    try {
      return await this.#piscina.run(task, { transferList });
    } catch (cause) {
      throw workerFailure(cause);
    }
  }
}

const REVOKED_MESSAGE = 'the key was disabled or destroyed while the operation was pending';

/** A task whose key was disabled or destroyed before a worker could register it. */
export function keyRevoked(): KeywardError {
  return new KeywardError('KEY_STATE', REVOKED_MESSAGE);
}

/**
 * True for `keyRevoked()`'s error: the ring an operation held was revoked meanwhile. That also
 * happens when the same material was only replaced (a cluster engine re-reads a key re-wrapped
 * under a new master-key version), so the backend looks again before it answers (crypto-backend.ts).
 */
export function isKeyRevoked(err: unknown): boolean {
  return err instanceof KeywardError && err.code === 'KEY_STATE' && err.message === REVOKED_MESSAGE;
}

// A worker that died mid-batch (crash, OOM, terminate) fails its callers with a retryable error;
// Piscina starts a replacement. Anything else thrown by a whole task is a defect, not worth a
// retry. The cause is not passed on either way: it may name internals.
function workerFailure(cause: unknown): KeywardError {
  const message = cause instanceof Error ? cause.message : '';
  if (/worker exited|terminat/i.test(message)) {
    return new KeywardError('UNAVAILABLE', 'a crypto worker failed during the operation; retry', {
      retryable: true,
      retryAfterSeconds: 1,
    });
  }
  return new KeywardError('INTERNAL', 'the crypto worker could not run the batch');
}
