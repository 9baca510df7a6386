/**
 * A keyed, de-duplicating work queue with per-key exponential backoff and an overall rate limit,
 * in the manner of client-go's rate-limiting delaying queue. It is a plain data structure driven
 * by an explicit clock (`now()`), so its behaviour is exactly testable; `runWorkers` drives it
 * with real timers.
 *
 * Guarantees:
 * - a key is queued at most once; adding a queued key keeps the earliest due time;
 * - a key is processed by one worker at a time: adding a key while it is processed marks it
 *   dirty, and `done` queues it again;
 * - `addRateLimited` (after a failure) delays the key by `base·2^failures` (capped), and by the
 *   overall token bucket; `forget` resets the key's failures after a success.
 *
 * Queued keys sit in a binary min-heap ordered by due time (then by insertion), indexed by key:
 * add, re-add earlier, take and next-due are O(log n) or better, however many keys are parked
 * until their next rotation (an enabled Key waits there for 90 days).
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

interface Entry {
  key: string;
  due: number;
  /** Insertion order: among keys due at the same time, the oldest goes first. */
  seq: number;
  /** Position in the heap array. */
  index: number;
}

/** The queue. */
export class WorkQueue {
  private readonly now: () => number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly ratePerSecond: number;
  private readonly burst: number;
  /** The heap of queued keys, earliest due first, and the index of its entries by key. */
  private readonly heap: Entry[] = [];
  private readonly queued = new Map<string, Entry>();
  private seq = 0;
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
    const existing = this.queued.get(key);
    if (existing !== undefined) {
      if (existing.due <= time) return;
      existing.due = time;
      this.up(existing.index);
    } else {
      const entry: Entry = { key, due: time, seq: this.seq++, index: this.heap.length };
      this.heap.push(entry);
      this.queued.set(key, entry);
      this.up(entry.index);
    }
    this.listener?.();
  }

  /** Queues `key` after a failure, with its backoff and the overall rate limit. */
  addRateLimited(key: string): void {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    const backoff = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** failures);
    this.addAt(key, this.now() + Math.max(backoff, this.bucketDelay()));
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
    const first = this.heap[0];
    if (first === undefined || first.due > this.now()) return undefined;
    this.removeAt(0);
    this.processing.set(first.key, undefined);
    return first.key;
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
    const first = this.heap[0];
    return first === undefined ? undefined : Math.max(0, first.due - this.now());
  }

  /** Queued keys that are due now: the backlog (the queue-depth metric). O(ready). */
  readyCount(): number {
    const now = this.now();
    let n = 0;
    const stack = this.heap.length > 0 ? [0] : [];
    while (stack.length > 0) {
      const i = stack.pop()!;
      const e = this.heap[i];
      if (e === undefined || e.due > now) continue; // the heap property prunes this subtree
      n++;
      stack.push(2 * i + 1, 2 * i + 2);
    }
    return n;
  }

  /** Queued keys, due or not. */
  get length(): number {
    return this.heap.length;
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

  // ---- the heap ---------------------------------------------------------------------------------

  private less(a: Entry, b: Entry): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i]!;
    const b = this.heap[j]!;
    this.heap[i] = b;
    this.heap[j] = a;
    a.index = j;
    b.index = i;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(this.heap[i]!, this.heap[parent]!)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.heap.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < n && this.less(this.heap[l]!, this.heap[min]!)) min = l;
      if (r < n && this.less(this.heap[r]!, this.heap[min]!)) min = r;
      if (min === i) return;
      this.swap(i, min);
      i = min;
    }
  }

  private removeAt(i: number): void {
    const entry = this.heap[i]!;
    const last = this.heap.pop()!;
    this.queued.delete(entry.key);
    if (last === entry) return;
    this.heap[i] = last;
    last.index = i;
    this.down(i);
    this.up(last.index);
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
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`the worker count must be a positive integer, not ${concurrency}`);
  }
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
  await Promise.all(Array.from({ length: concurrency }, worker));
  queue.onChange(undefined);
}
