/**
 * The engine's worker pool (PRODUCT.md §5). Concurrent single operations on the same key version
 * and operation are coalesced into one batch, sent as one task with its payload packed in one
 * transferred ArrayBuffer. The number of items waiting or running is bounded: past the bound a
 * caller gets OVERLOADED at once instead of a queue that grows without limit.
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
import { BroadcastChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { KeywardError } from '../errors.ts';
import { PackedBatch, packBatch } from './packing.ts';
import {
  type BatchResult,
  type BatchTask,
  FIELDS_PER_OP,
  type PoolBroadcast,
  type TaskKey,
  type TaskParams,
  type WireKey,
  type WorkerOp,
} from './protocol.ts';

/** An item's outcome: its output bytes, or a status code (ITEM_INVALID, ITEM_FAILED). */
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
}

export interface CryptoPoolOptions {
  /** Worker threads; default: the machine's available parallelism. */
  threads?: number;
  /** Largest batch sent as one task. */
  maxBatch?: number;
  /** Items waiting or running before new work is refused with OVERLOADED. */
  maxPendingItems?: number;
  /**
   * Told when a worker dies outside a task (Piscina's `error` event; the worker is replaced). By
   * default a process warning is written to stderr: a crash is never silent.
   */
  onWorkerError?: (err: Error) => void;
}

interface Pending {
  op: WorkerOp;
  key: TaskKey;
  params: TaskParams;
  items: ItemFields[];
  resolvers: Array<(outcome: ItemOutcome) => void>;
  rejecters: Array<(error: KeywardError) => void>;
  /** When the first item arrived (performance.now()), to bound its wait. */
  since: number;
}

// The smallest share of a burst worth a task of its own: below it, the message round trip costs
// more than the work it spreads.
const MIN_CHUNK = 32;
const TASKS_PER_WORKER = 2;
// The longest an item waits to be batched (PRODUCT.md §5: a millisecond or less).
const MAX_WAIT_MS = 1;

const WORKER_URL = new URL('./worker.ts', import.meta.url).href;

/** Runs batches of crypto on worker threads; see the module comment. */
export class CryptoPool {
  readonly maxBatch: number;
  readonly maxPendingItems: number;
  readonly #piscina: Piscina<BatchTask, BatchResult>;
  readonly #coalescing = new Map<string, Pending>();
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Tasks the workers can hold at once: one running and one queued behind it per thread. */
  readonly #taskSlots: number;
  #tasksInFlight = 0;
  #tasksDispatched = 0;
  #pendingItems = 0;
  #flushScheduled = false;
  #waitTimer: ReturnType<typeof setTimeout> | undefined;
  #closing = false;
  readonly #channel: BroadcastChannel;
  readonly #threads: number;
  #censusRequest = 0;
  readonly #census = new Map<number, (reply: Extract<PoolBroadcast, { type: 'census-reply' }>) => void>();
  #workerErrors = 0;

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
    this.maxBatch = options.maxBatch ?? 512;
    this.maxPendingItems = options.maxPendingItems ?? 65_536;
    this.#piscina = new Piscina({
      filename: WORKER_URL,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // A second task waits in each worker's port, so a worker never idles while the main thread
      // handles the result of the first (measured: +25% on 1 KiB AES batches).
      concurrentTasksPerWorker: TASKS_PER_WORKER,
      // Our own item bound is the backpressure; Piscina's task queue stays small because tasks
      // are batches.
      maxQueue: Number.POSITIVE_INFINITY,
      // Idle workers wait on their event loop, not in Atomics.wait, so eviction broadcasts reach
      // them while they idle.
      atomics: 'disabled',
      workerData: { channel },
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

  /** Worker threads, for tests that kill one mid-batch. */
  get threads(): readonly import('node:worker_threads').Worker[] {
    return this.#piscina.threads;
  }

  /**
   * Queues one item to be coalesced with concurrent items of the same key version, operation and
   * parameters. `batchKey` must identify exactly those (the caller knows its parameters best).
   */
  submit(
    op: WorkerOp,
    key: TaskKey,
    params: TaskParams,
    batchKey: string,
    fields: ItemFields,
  ): Promise<ItemOutcome> {
    this.#admit(1);
    let pending = this.#coalescing.get(batchKey);
    if (pending === undefined) {
      pending = { op, key, params, items: [], resolvers: [], rejecters: [], since: performance.now() };
      this.#coalescing.set(batchKey, pending);
    }
    const { promise, resolve, reject } = Promise.withResolvers<ItemOutcome>();
    pending.items.push(fields);
    pending.resolvers.push(resolve);
    pending.rejecters.push(reject);
    if (pending.items.length >= this.maxBatch && this.#tasksInFlight < this.#taskSlots) {
      this.#coalescing.delete(batchKey);
      this.#dispatch(pending, 0, pending.items.length);
    } else {
      this.#scheduleFlush();
    }
    return promise;
  }

  /**
   * Reserves room for `count` items, or throws OVERLOADED (429; 503 while shutting down). A
   * caller that reserves passes `reserved: true` to runBatch, so a request split into several
   * tasks is admitted whole or refused whole.
   */
  reserve(count: number): void {
    this.#admit(count);
  }

  /** Runs a caller's batch (split into tasks of at most maxBatch), outcomes in order. */
  async runBatch(
    op: WorkerOp,
    key: TaskKey,
    params: TaskParams,
    items: readonly ItemFields[],
    options: { reserved?: boolean } = {},
  ): Promise<ItemOutcome[]> {
    if (options.reserved !== true) this.#admit(items.length);
    const chunks: Promise<ItemOutcome[]>[] = [];
    for (let start = 0; start < items.length; start += this.maxBatch) {
      chunks.push(this.#runTask(op, key, params, items.slice(start, start + this.maxBatch)));
    }
    return (await Promise.all(chunks)).flat();
  }

  /**
   * Tells every worker to drop the key versions `ids` and what it derived from them. Revoke the
   * TaskKeys first, so that no later task registers them again.
   */
  evict(ids: readonly string[]): void {
    if (ids.length > 0) this.#channel.postMessage({ type: 'evict', ids: [...ids] } satisfies PoolBroadcast);
  }

  /**
   * Asks every worker which key ids it holds (diagnostics and tests). Resolves with the replies
   * that arrived within `timeoutMs`, one per live worker when all answered.
   */
  async workerCaches(timeoutMs = 5_000): Promise<WorkerCache[]> {
    const request = ++this.#censusRequest;
    const replies: WorkerCache[] = [];
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#census.set(request, (reply) => {
      const { threadId, ids, contexts, registrations } = reply;
      replies.push({ threadId, ids, contexts, registrations });
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
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await this.#piscina.close();
    this.#channel.close();
  }

  #admit(count: number): void {
    if (this.#closing) {
      throw new KeywardError('OVERLOADED', 'the engine is shutting down', {
        status: 503,
        retryAfterSeconds: 1,
      });
    }
    if (this.#pendingItems + count > this.maxPendingItems) {
      throw new KeywardError('OVERLOADED', 'the engine is overloaded; retry later', { retryAfterSeconds: 1 });
    }
    this.#pendingItems += count;
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
   * waiting). While every worker is busy, items stay here and keep coalescing: a settling task
   * flushes again, so batches grow with load instead of queueing as many small tasks.
   */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const now = performance.now();
    for (const [batchKey, pending] of this.#coalescing) {
      const idle = this.#taskSlots - this.#tasksInFlight;
      if (idle <= 0 && !this.#closing) return;
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
        this.#dispatch(pending, start, Math.min(count, start + size));
    }
  };

  #dispatch(pending: Pending, start: number, end: number): void {
    const resolvers = pending.resolvers.slice(start, end);
    const rejecters = pending.rejecters.slice(start, end);
    this.#runTask(pending.op, pending.key, pending.params, pending.items.slice(start, end)).then(
      (outcomes) => {
        for (let i = 0; i < outcomes.length; i++) resolvers[i]!(outcomes[i]!);
      },
      (error: KeywardError) => {
        for (const reject of rejecters) reject(error);
      },
    );
  }

  /** Sends one batch; items leave the pending count when it settles. */
  #runTask(
    op: WorkerOp,
    key: TaskKey,
    params: TaskParams,
    items: readonly ItemFields[],
  ): Promise<ItemOutcome[]> {
    const fields = FIELDS_PER_OP[op];
    const payload = packBatch(items.length, fields, (i, f) => items[i]![f]);
    const task = this.#send(op, key, params, payload)
      .then(unpackOutcomes)
      .finally(() => {
        this.#pendingItems -= items.length;
        this.#tasksInFlight--;
        this.#inFlight.delete(task);
        if (this.#coalescing.size > 0) this.#scheduleFlush();
      });
    this.#tasksInFlight++;
    this.#tasksDispatched++;
    this.#inFlight.add(task);
    return task;
  }

  /**
   * Sends a task naming its key by id; when the worker does not hold the key (it hands the
   * payload back), sends it once more with the material, which it registers.
   */
  async #send(op: WorkerOp, key: TaskKey, params: TaskParams, payload: ArrayBuffer): Promise<ArrayBuffer> {
    const wire: WireKey = { id: key.id, usage: key.usage, convergent: key.convergent };
    let result = await this.#run({ op, key: wire, params, payload }, [payload]);
    if (result instanceof ArrayBuffer) return result;
    const material = key.exportMaterial();
    if (material === undefined) throw keyRevoked();
    try {
      const returned = result.buffer as ArrayBuffer;
      result = await this.#run({ op, key: { ...wire, material }, params, payload: returned }, [
        returned,
        material.buffer as ArrayBuffer,
      ]);
    } finally {
      // Transferred: detached here, nothing to wipe. Still here (the task never left): wipe it.
      if (material.byteLength > 0) material.fill(0);
    }
    // Revoked while this task waited in Piscina's queue: its eviction may have reached the worker
    // before the registration did. Evict again, now that the worker has it.
    if (key.revoked) this.evict([key.id]);
    if (result instanceof ArrayBuffer) return result;
    throw new KeywardError('INTERNAL', 'the crypto worker did not register the key');
  }

  async #run(task: BatchTask, transferList: ArrayBuffer[]): Promise<BatchResult> {
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

function unpackOutcomes(result: ArrayBuffer): ItemOutcome[] {
  const packed = new PackedBatch(result);
  const count = packed.count - 1;
  const status = packed.field(count, 0);
  const outcomes: ItemOutcome[] = new Array(count);
  for (let i = 0; i < count; i++) outcomes[i] = status[i] === 0 ? packed.field(i, 0) : status[i]!;
  return outcomes;
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
