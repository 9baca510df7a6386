/**
 * The engine's worker pool (PRODUCT.md §5). Concurrent single operations on the same key version
 * and operation are coalesced into one batch, sent as one task with its payload packed in one
 * transferred ArrayBuffer. The number of items waiting or running is bounded: past the bound a
 * caller gets OVERLOADED at once instead of a queue that grows without limit.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { KeywardError } from '../errors.ts';
import { PackedBatch, packBatch } from './packing.ts';
import { type BatchTask, FIELDS_PER_OP, type TaskKey, type TaskParams, type WorkerOp } from './protocol.ts';

/** An item's outcome: its output bytes, or a status code (ITEM_INVALID, ITEM_FAILED). */
export type ItemOutcome = Buffer | number;

/** Fields of one item, in the order FIELDS_PER_OP gives. */
export type ItemFields = readonly (Uint8Array | undefined)[];

export interface CryptoPoolOptions {
  /** Worker threads; default: the machine's available parallelism. */
  threads?: number;
  /** Largest batch sent as one task. */
  maxBatch?: number;
  /** Items waiting or running before new work is refused with OVERLOADED. */
  maxPendingItems?: number;
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
  readonly #piscina: Piscina<BatchTask, ArrayBuffer>;
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

  constructor(options: CryptoPoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    this.#taskSlots = threads * TASKS_PER_WORKER;
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
    });
    // Piscina emits 'error' for a worker that dies with no task in flight; the worker is
    // replaced either way, and an unhandled 'error' event would kill the process.
    this.#piscina.on('error', () => {});
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

  /** Stops taking work, runs everything already queued, then stops the workers. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#flush();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await this.#piscina.close();
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
    const task = this.#piscina
      .run({ op, key, params, payload }, { transferList: [payload] })
      .then(unpackOutcomes, (cause: unknown) => {
        throw workerFailure(cause);
      })
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
