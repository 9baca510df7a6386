/**
 * The pool's admission (crypto-pool.ts): what waits or runs is bounded in items and in bytes, and
 * past either bound a caller gets OVERLOADED at once instead of a queue that grows without limit.
 * Work is counted from admission until its task settles.
 */
import { KeywardError } from '../errors.ts';

/** Counts the items and bytes waiting or running, and refuses work past their bounds. */
export class Admission {
  /** Items waiting or running before new work is refused. */
  readonly maxItems: number;
  /** Bytes waiting or running before new work is refused. */
  readonly maxBytes: number;
  #items = 0;
  #bytes = 0;
  #closing = false;

  constructor(maxItems: number, maxBytes: number) {
    this.maxItems = maxItems;
    this.maxBytes = maxBytes;
  }

  /** True once `close` was called: new work is refused. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Items admitted and not yet released. */
  get items(): number {
    return this.#items;
  }

  /** Bytes admitted and not yet released. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Refuses all new work from now on (503: the engine is shutting down). */
  close(): void {
    this.#closing = true;
  }

  /**
   * Counts `count` items of `bytes` bytes as waiting, or throws OVERLOADED (429; 503 once
   * closing) and counts nothing.
   */
  admit(count: number, bytes: number): void {
    if (this.#closing) {
      throw new KeywardError('OVERLOADED', 'the engine is shutting down', {
        status: 503,
        retryAfterSeconds: 1,
      });
    }
    if (
      this.#items + count > this.maxItems ||
      // One request larger than the whole bound still runs when nothing else waits.
      (this.#bytes > 0 && this.#bytes + bytes > this.maxBytes)
    ) {
      throw new KeywardError('OVERLOADED', 'the engine is overloaded; retry later', { retryAfterSeconds: 1 });
    }
    this.#items += count;
    this.#bytes += bytes;
  }

  /** Stops counting `count` items of `bytes` bytes that `admit` admitted (their task settled). */
  release(count: number, bytes: number): void {
    this.#items -= count;
    this.#bytes -= bytes;
  }
}
