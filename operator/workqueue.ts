/**
 * A keyed, de-duplicating work queue with per-key exponential backoff and an overall rate limit,
 * in the manner of client-go's rate-limiting queue. It is a plain data structure driven by an
 * explicit clock (`now()`), so its behaviour is exactly testable; `runWorkers` drives it with
 * real timers.
 *
 * Guarantees:
 * - a key is queued at most once; adding a queued key keeps the earliest due time;
 * - a key is processed by one worker at a time: adding a key while it is processed marks it
 *   dirty, and `done` queues it again;
 * - `addRateLimited` (after a failure) delays the key by `base·2^failures` (capped), and by the
 *   overall token bucket; `forget` resets the key's failures after a success.
 */

/** Tunables of the queue. */
export interface WorkQueueOptions {
  /** The clock, epoch ms. */
  now: () => number;
  /** First retry delay after a failure. */
  baseDelayMs?: number;
  /** Longest retry delay. */
  maxDelayMs?: number;
  /** Overall retry rate (tokens per second) of the bucket that bounds `addRateLimited`. */
  ratePerSecond?: number;
  /** Bucket size. */
  burst?: number;
}

/** The queue. */
export class WorkQueue {
  private readonly now: () => number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly ratePerSecond: number;
  private readonly burst: number;
  /** Queued keys and when each is due. */
  private readonly due = new Map<string, number>();
  /** Keys being processed, and the due time they were re-added with meanwhile (dirty). */
  private readonly processing = new Map<string, number | undefined>();
  private readonly failures = new Map<string, number>();
  private tokens: number;
  private tokensAt: number;
  private listener: (() => void) | undefined;

  constructor(options: WorkQueueOptions) {
    this.now = options.now;
    this.baseDelayMs = options.baseDelayMs ?? 50;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
    this.ratePerSecond = options.ratePerSecond ?? 100;
    this.burst = options.burst ?? 500;
    this.tokens = this.burst;
    this.tokensAt = this.now();
  }

  /** Called whenever a key may have become ready (used by `runWorkers` to wake up). */
  onChange(listener: (() => void) | undefined): void {
    this.listener = listener;
  }

  /** Queues `key` now. */
  add(key: string): void {
    this.addAt(key, this.now());
  }

  /** Queues `key` for `time` (epoch ms); an earlier due time already queued wins. */
  addAt(key: string, time: number): void {
    if (this.processing.has(key)) {
      const dirty = this.processing.get(key);
      this.processing.set(key, dirty === undefined ? time : Math.min(dirty, time));
      return;
    }
    const existing = this.due.get(key);
    if (existing !== undefined && existing <= time) return;
    this.due.set(key, time);
    this.listener?.();
  }

  /** Queues `key` after a failure, with its backoff and the overall rate limit. */
  addRateLimited(key: string): void {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    const backoff = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** failures);
    this.addAt(key, this.now() + Math.max(backoff, this.bucketDelay()));
  }

  /** How many times `key` failed in a row. */
  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Clears the failures of `key` (after a success). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /**
   * Takes the ready key that has been due longest, marking it processed, or returns undefined
   * when none is ready. The caller must call `done(key)` afterwards.
   */
  take(): string | undefined {
    const now = this.now();
    let best: string | undefined;
    let bestTime = Number.POSITIVE_INFINITY;
    for (const [key, time] of this.due) {
      if (time <= now && time < bestTime) {
        best = key;
        bestTime = time;
      }
    }
    if (best === undefined) return undefined;
    this.due.delete(best);
    this.processing.set(best, undefined);
    return best;
  }

  /** Marks `key` processed; a key added meanwhile is queued again. */
  done(key: string): void {
    if (!this.processing.has(key)) return;
    const dirty = this.processing.get(key);
    this.processing.delete(key);
    if (dirty !== undefined) this.addAt(key, dirty);
  }

  /** Milliseconds until the next queued key is due (0 if one is ready), or undefined if none. */
  nextDueIn(): number | undefined {
    let min = Number.POSITIVE_INFINITY;
    for (const time of this.due.values()) min = Math.min(min, time);
    return min === Number.POSITIVE_INFINITY ? undefined : Math.max(0, min - this.now());
  }

  /** Queued keys that are due now (the queue depth metric). */
  readyCount(): number {
    const now = this.now();
    let n = 0;
    for (const time of this.due.values()) if (time <= now) n++;
    return n;
  }

  /** Queued keys, due or not. */
  get length(): number {
    return this.due.size;
  }

  /** Keys being processed. */
  get inFlight(): number {
    return this.processing.size;
  }

  /** Token bucket: the delay before the next retry token is available (and takes it). */
  private bucketDelay(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.tokensAt) / 1000) * this.ratePerSecond);
    this.tokensAt = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.ratePerSecond) * 1000);
  }
}

/** Result of one processing: requeue at a time, retry with backoff, or nothing. */
export type WorkResult = { requeueAt?: number } | undefined;

/**
 * Runs `concurrency` workers over `queue` until `signal` aborts. A handler that throws is retried
 * with backoff; one that returns `requeueAt` is looked at again then. Real timers.
 */
export async function runWorkers(
  queue: WorkQueue,
  concurrency: number,
  handler: (key: string) => Promise<WorkResult>,
  signal: AbortSignal,
  onError?: (key: string, err: unknown) => void,
): Promise<void> {
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  queue.onChange(notify);
  signal.addEventListener('abort', notify, { once: true });
  const worker = async (): Promise<void> => {
    while (!signal.aborted) {
      const key = queue.take();
      if (key === undefined) {
        const wait = queue.nextDueIn();
        await new Promise<void>((resolve) => {
          const timer = wait === undefined ? undefined : setTimeout(wakeUp, Math.min(wait, 2_147_000_000));
          function wakeUp(): void {
            if (timer !== undefined) clearTimeout(timer);
            waiters.delete(wakeUp);
            resolve();
          }
          waiters.add(wakeUp);
        });
        continue;
      }
      try {
        const result = await handler(key);
        queue.forget(key);
        queue.done(key);
        if (result?.requeueAt !== undefined) queue.addAt(key, result.requeueAt);
      } catch (err) {
        onError?.(key, err);
        queue.done(key);
        queue.addRateLimited(key);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  queue.onChange(undefined);
}
