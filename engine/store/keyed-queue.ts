/** Per-key serialization of async work: a tiny promise chain per key. */

/**
 * Runs tasks for the same key one after another, in call order; tasks for different keys run
 * concurrently. A failed task does not block the ones queued behind it.
 */
export class KeyedQueue {
  readonly #tails = new Map<string, Promise<void>>();

  /** Queues `task` behind every earlier task for `key` and resolves with its result. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const result = previous.then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(key, tail);
    // Forget idle keys so the map does not grow with every key ever written.
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }

  /** Number of keys with queued or running work (for tests and metrics). */
  get activeKeys(): number {
    return this.#tails.size;
  }
}
