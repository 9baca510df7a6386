/**
 * A small bounded cache with a per-entry expiry, evicting the least recently used entry when
 * full. The auth layer keeps TokenReview and SubjectAccessReview decisions here, so a hot caller
 * costs the apiserver one review every few seconds instead of one per request, and a flood of
 * distinct tokens cannot grow memory without bound.
 */

/** Options of {@link TtlCache}. */
export interface TtlCacheOptions {
  /** Most entries kept; the least recently used goes first. */
  maxEntries: number;
  /** The clock, in epoch ms; tests may pass their own. */
  now?: () => number;
}

interface Slot<V> {
  value: V;
  expiresAt: number;
}

/** See the module comment. A Map keeps insertion order, which serves as the LRU order. */
export class TtlCache<K, V> {
  readonly #slots = new Map<K, Slot<V>>();
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: TtlCacheOptions) {
    if (!Number.isInteger(options.maxEntries) || options.maxEntries < 1) {
      throw new RangeError('maxEntries must be a positive integer');
    }
    this.#max = options.maxEntries;
    this.#now = options.now ?? Date.now;
  }

  /** The live value of `key`, or undefined (an expired entry is removed). */
  get(key: K): V | undefined {
    const slot = this.#slots.get(key);
    if (slot === undefined) return undefined;
    if (slot.expiresAt <= this.#now()) {
      this.#slots.delete(key);
      return undefined;
    }
    // Move to the most recently used end.
    this.#slots.delete(key);
    this.#slots.set(key, slot);
    return slot.value;
  }

  /** Stores `value` for `ttlMs`; a ttl of zero or less stores nothing. */
  set(key: K, value: V, ttlMs: number): void {
    if (!(ttlMs > 0)) return;
    this.#slots.delete(key);
    this.#slots.set(key, { value, expiresAt: this.#now() + ttlMs });
    while (this.#slots.size > this.#max) {
      const oldest = this.#slots.keys().next();
      if (oldest.done) break;
      this.#slots.delete(oldest.value);
    }
  }

  /** Entries held, live or not yet swept. */
  get size(): number {
    return this.#slots.size;
  }

  /** Forgets everything. */
  clear(): void {
    this.#slots.clear();
  }
}
