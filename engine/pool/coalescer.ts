/**
 * The pool's coalescing of single operations (crypto-pool.ts, PRODUCT.md §5): concurrent items of
 * the same key version, operation and parameters wait here, for a macrotask turn or a little
 * longer under load, and leave as item tasks spread over the idle workers.
 */
import type { KeywardError } from '../errors.ts';
import type { ItemFields, ItemOutcome } from './items.ts';
import type { ItemJob } from './jobs.ts';
import type { TaskKey, TaskParams, WorkerOp } from './protocol.ts';

// The smallest share of a burst worth a task of its own: below it, the message round trip costs
// more than the work it spreads.
const MIN_CHUNK = 32;
// The longest an item waits to be batched (PRODUCT.md §5: a millisecond or less).
const MAX_WAIT_MS = 1;
// The longest items coalesce while every task slot is taken, before they queue behind the tasks
// already waiting.
const MAX_COALESCE_MS = 2;

/** What the coalescer needs of the pool that runs its tasks. */
export interface CoalescerHost {
  /** Most items in one item task. */
  readonly maxBatch: number;
  /** Largest item task, in bytes. */
  readonly maxTaskBytes: number;
  /** True once the pool is closing: nothing waits to coalesce any longer. */
  closing(): boolean;
  /** Task slots neither running nor queued (zero or less: every slot taken). */
  freeSlots(): number;
  /** True while any task runs in a worker. */
  busy(): boolean;
  /** Queues an item task behind those already queued. */
  enqueue(job: ItemJob): void;
  /** Starts queued tasks while task slots allow. */
  pump(): void;
}

/** Items of one key version, operation and parameters, coalescing into a batch. */
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

/** Gathers single items into batches and hands them to its host as item tasks. */
export class Coalescer {
  readonly #host: CoalescerHost;
  readonly #coalescing = new Map<string, Coalescing>();
  #flushScheduled = false;
  #waitTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(host: CoalescerHost) {
    this.#host = host;
  }

  /** True while items wait here to be sent. */
  get waiting(): boolean {
    return this.#coalescing.size > 0;
  }

  /**
   * Adds one admitted item (its `bytes` reserved) to the batch `batchKey` names. `finish` gets its
   * outcome; `reject` gets the error of a task that failed as a whole.
   */
  add(
    op: WorkerOp,
    key: TaskKey,
    params: TaskParams,
    batchKey: string,
    fields: ItemFields,
    bytes: number,
    finish: (outcome: ItemOutcome) => void,
    reject: (error: KeywardError) => void,
  ): void {
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
    pending.items.push(fields);
    pending.bytes.push(bytes);
    pending.finishers.push(finish);
    pending.rejecters.push(reject);
    if (pending.items.length >= this.#host.maxBatch && this.#host.freeSlots() > 0) {
      this.#coalescing.delete(batchKey);
      this.#chunk(pending, 0, pending.items.length);
      this.#host.pump();
    } else {
      this.scheduleFlush();
    }
  }

  /**
   * Flushes after this macrotask turn. One macrotask turn gathers every caller that became ready
   * in this turn: under load that is a full batch, when idle it costs well under a millisecond.
   */
  scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(this.flush);
  }

  /**
   * Sends what has been coalesced to the idle workers, spread over them so that a burst keeps
   * every thread busy (one batch per burst would leave the other workers and the main thread
   * waiting). While every worker is busy, items stay here and keep coalescing (a settling task
   * flushes again, so batches grow with load instead of queueing as many small tasks), for
   * MAX_COALESCE_MS at most: then they queue in turn behind what already waits.
   */
  readonly flush = (): void => {
    this.#flushScheduled = false;
    const host = this.#host;
    const now = performance.now();
    for (const [batchKey, pending] of this.#coalescing) {
      const idle = host.freeSlots();
      // Every slot taken: the items keep coalescing, but for MAX_COALESCE_MS at most; then they
      // join the queue in turn, so a stream of batch requests that keeps every slot busy cannot
      // starve them (measured: single requests timed out behind batches in a mixed soak).
      if (idle <= 0 && !host.closing() && now - pending.since < MAX_COALESCE_MS) {
        this.#armWaitTimer();
        continue;
      }
      const count = pending.items.length;
      // While other work runs, a small batch waits (at most MAX_WAIT_MS) for company: a task per
      // handful of items spends more on the thread hop than on the crypto. An idle pool sends at
      // once, so a lone caller never waits.
      if (count < MIN_CHUNK && host.busy() && now - pending.since < MAX_WAIT_MS && !host.closing()) {
        this.#armWaitTimer();
        continue;
      }
      this.#coalescing.delete(batchKey);
      const chunks = Math.max(
        Math.ceil(count / host.maxBatch),
        Math.min(Math.max(idle, 1), Math.ceil(count / MIN_CHUNK)),
      );
      const size = Math.ceil(count / chunks);
      for (let start = 0; start < count; start += size)
        this.#chunk(pending, start, Math.min(count, start + size));
    }
    host.pump();
  };

  #armWaitTimer(): void {
    if (this.#waitTimer !== undefined) return;
    this.#waitTimer = setTimeout(() => {
      this.#waitTimer = undefined;
      this.flush();
    }, MAX_WAIT_MS);
  }

  /** Queues items [start, end) of a coalesced batch as item tasks (split further by bytes). */
  #chunk(pending: Coalescing, start: number, end: number): void {
    while (start < end) {
      let stop = start;
      let bytes = 0;
      while (stop < end && (stop === start || bytes + pending.bytes[stop]! <= this.#host.maxTaskBytes)) {
        bytes += pending.bytes[stop]!;
        stop++;
      }
      const finishers = pending.finishers.slice(start, stop);
      const rejecters = pending.rejecters.slice(start, stop);
      this.#host.enqueue({
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
}
