/**
 * The broadcast channel from a pool (crypto-pool.ts) to all of its workers: evictions of revoked
 * key versions go out to every worker at once, including idle ones (worker-threads.ts, atomics),
 * and census requests come back with what each worker holds.
 */
import { randomBytes } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import type { PoolBroadcast, WorkerHeap } from './protocol.ts';

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

/** One pool's channel to its `threads` workers; they join it by `name` (PoolWorkerData.channel). */
export class WorkerChannel {
  /** The channel's name, unique to this pool. */
  readonly name: string;
  readonly #channel: BroadcastChannel;
  readonly #threads: number;
  #censusRequest = 0;
  readonly #census = new Map<number, (reply: Extract<PoolBroadcast, { type: 'census-reply' }>) => void>();

  constructor(threads: number) {
    this.#threads = threads;
    // One channel per pool: several pools in a process (tests, benches) never hear each other.
    this.name = `keyward-pool-${randomBytes(8).toString('hex')}`;
    this.#channel = new BroadcastChannel(this.name);
    this.#channel.onmessage = (event) => {
      const message = (event as unknown as { data: PoolBroadcast }).data;
      if (message.type === 'census-reply') this.#census.get(message.request)?.(message);
    };
    this.#channel.unref();
  }

  /** Tells every worker to drop the key versions `ids` and what it derived from them. */
  evict(ids: readonly string[]): void {
    if (ids.length > 0) this.#channel.postMessage({ type: 'evict', ids: [...ids] } satisfies PoolBroadcast);
  }

  /**
   * Asks every worker what it holds. Resolves with the replies that arrived within `timeoutMs`,
   * one per live worker when all answered.
   */
  async census(timeoutMs: number): Promise<WorkerCache[]> {
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

  /** Closes the channel (once the workers are stopped). */
  close(): void {
    this.#channel.close();
  }
}
