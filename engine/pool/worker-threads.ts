/**
 * The pool's worker threads (crypto-pool.ts): a Piscina of a fixed number of workers running
 * worker.ts, each holding a task running and one queued behind it, and the sending of tasks to
 * them. An item task names its key by id and carries the key's material only to a worker that
 * hands it back for lacking it (protocol.ts `TaskKey`).
 */
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { KeywardError } from '../errors.ts';
import type { BufferPool } from './buffers.ts';
import type { ItemJob } from './jobs.ts';
import { type CryptoPoolOptions, POOL_DEFAULTS } from './pool-options.ts';
import type { ItemResult, ItemTask, PoolWorkerData, WireKey, WorkerTask } from './protocol.ts';
import { keyRevoked, workerFailure } from './task-errors.ts';
import type { WorkerChannel } from './worker-channel.ts';
import { workerSources } from './worker-sources.ts';

/** Tasks a worker holds at once: one running and one queued behind it. */
export const TASKS_PER_WORKER = 2;

// The entry serves the worker's modules pre-stripped (worker-sources.ts).
const WORKER_URL = new URL('./worker-entry.mjs', import.meta.url).href;
const WORKER_MODULE = new URL('./worker.ts', import.meta.url);

/** A pool's workers, and the sending of its tasks to them. */
export class WorkerThreads {
  readonly #piscina: Piscina<WorkerTask, unknown>;
  readonly #channel: WorkerChannel;
  readonly #buffers: BufferPool;

  /**
   * Starts `threads` workers that listen on `channel`, with the key caches and heap limits
   * `options` give. Item task buffers that come back unused are given back to `buffers`.
   * `countError` is called for each worker that dies outside a task, before it is reported.
   */
  constructor(
    threads: number,
    channel: WorkerChannel,
    buffers: BufferPool,
    options: CryptoPoolOptions,
    countError: () => void,
  ) {
    this.#channel = channel;
    this.#buffers = buffers;
    const workerData: PoolWorkerData = {
      channel: channel.name,
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
      countError();
      report(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /** The worker threads, for tests that kill one mid-batch. */
  get threads(): readonly Worker[] {
    return this.#piscina.threads;
  }

  /**
   * Sends an item task naming its key by id; when the worker does not hold the key (it answers
   * `ran: false`), sends it once more with the material, which it registers. Resolves with the
   * task's buffer, moved back, outputs in it.
   */
  async sendItems(job: ItemJob, buffer: ArrayBuffer): Promise<ArrayBuffer> {
    const wire: WireKey = { id: job.key.id, usage: job.key.usage, convergent: job.key.convergent };
    const task: ItemTask = { kind: 'items', op: job.op, key: wire, params: job.params, buffer };
    const first = (await this.run(task, [buffer])) as ItemResult;
    if (first.ran) return first.buffer;
    const material = job.key.exportMaterial();
    if (material === undefined) {
      this.#buffers.give(first.buffer);
      throw keyRevoked();
    }
    let second: ItemResult;
    try {
      second = (await this.run({ ...task, key: { ...wire, material }, buffer: first.buffer }, [
        first.buffer,
        material.buffer as ArrayBuffer,
      ])) as ItemResult;
    } finally {
      // Transferred: detached here, nothing to wipe. Still here (the task never left): wipe it.
      if (material.byteLength > 0) material.fill(0);
    }
    // Revoked while this task waited in Piscina's queue: its eviction may have reached the worker
    // before the registration did. Evict again, now that the worker has it.
    if (job.key.revoked) this.#channel.evict([job.key.id]);
    if (second.ran) return second.buffer;
    this.#buffers.give(second.buffer);
    throw new KeywardError('INTERNAL', 'the crypto worker did not register the key');
  }

  /** Runs `task` on a worker, moving `transferList` to it; a failure is workerFailure's error. */
  async run(task: WorkerTask, transferList: ArrayBuffer[]): Promise<unknown> {
    try {
      return await this.#piscina.run(task, { transferList });
    } catch (cause) {
      throw workerFailure(cause);
    }
  }

  /** Stops the workers (once no task is in flight). */
  close(): Promise<void> {
    return this.#piscina.close();
  }
}
