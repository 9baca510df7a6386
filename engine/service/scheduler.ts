/**
 * One timer for the whole service: it fires at the earliest `nextWakeTime` over all keys (as the
 * pure lifecycle computes it from stored timestamps), runs what is due, and arms itself again.
 * Nothing is kept only in memory: after a restart the same deadlines come back from the store.
 */

/** Longest single wait; setTimeout cannot wait more than 2^31-1 ms, and a clock jump is caught. */
const MAX_WAIT_MS = 60 * 60 * 1000;

/** Wait after a failed run before trying again. */
const RETRY_MS = 5_000;

/** Arms one timer for `nextWake()` and calls `runDue(now)` when it fires. */
export class Scheduler {
  readonly #nextWake: () => number | undefined;
  readonly #runDue: (now: number) => Promise<void>;
  readonly #now: () => number;
  readonly #onError: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = false;

  constructor(opts: {
    nextWake: () => number | undefined;
    runDue: (now: number) => Promise<void>;
    now: () => number;
    onError: (err: unknown) => void;
  }) {
    this.#nextWake = opts.nextWake;
    this.#runDue = opts.runDue;
    this.#now = opts.now;
    this.#onError = opts.onError;
  }

  /** Recomputes the wake time (call after every change to a key). */
  reschedule(retryAfterMs?: number): void {
    if (this.#stopped) return;
    // A run in progress re-arms the timer itself when it ends, with every change included.
    if (this.#running) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const wake = this.#nextWake();
    let delay = wake === undefined ? undefined : Math.max(0, wake - this.#now());
    if (retryAfterMs !== undefined) delay = Math.max(delay ?? retryAfterMs, retryAfterMs);
    if (delay === undefined) return;
    this.#timer = setTimeout(() => void this.#fire(), Math.min(delay, MAX_WAIT_MS));
    // The timer alone must not keep a process alive (the HTTP server does that).
    this.#timer.unref();
  }

  /** Runs what is due now, then re-arms. */
  async #fire(): Promise<void> {
    this.#timer = undefined;
    this.#running = true;
    let failed = false;
    try {
      await this.#runDue(this.#now());
    } catch (err) {
      failed = true;
      this.#onError(err);
    } finally {
      this.#running = false;
    }
    this.reschedule(failed ? RETRY_MS : undefined);
  }

  /** Stops the timer for good. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
