/**
 * A bounded cache with a per-entry expiry, evicting the least recently used entry when full: the
 * `lru-cache` package (TTL and a size bound), behind the small interface the auth layer uses. The
 * auth layer keeps TokenReview and SubjectAccessReview decisions here, so a hot caller costs the
 * apiserver one review every few seconds instead of one per request, and a flood of distinct
 * tokens cannot grow memory without bound.
 *
 * What this adds to lru-cache: an entry expires exactly at its ttl, a ttl too short to cache
 * stores nothing (lru-cache reads 0 as "no expiry"), and the clock can be given (tests, and the
 * auth layer's own clock).
 */
import { LRUCache } from 'lru-cache';

/** Options of {@link TtlCache}. */
export interface TtlCacheOptions {
  /** Most entries kept; the least recently used goes first. */
  maxEntries: number;
  /** The clock, in epoch ms; tests may pass their own. */
  now?: () => number;
}

/** See the module comment. */
export class TtlCache<K extends {}, V extends {}> {
  readonly #lru: LRUCache<K, V>;

  constructor(options: TtlCacheOptions) {
    if (!Number.isInteger(options.maxEntries) || options.maxEntries < 1) {
      throw new RangeError('maxEntries must be a positive integer');
    }
    const now = options.now;
    this.#lru = new LRUCache<K, V>({
      max: options.maxEntries,
      // Expired entries go on read; none is served past its ttl.
      ttlAutopurge: false,
      allowStale: false,
      // Check the clock on every read rather than once per millisecond.
      ttlResolution: 0,
      ...(now === undefined ? {} : { perf: { now } }),
    });
  }

  /** The live value of `key`, or undefined (an expired entry is removed). */
  get(key: K): V | undefined {
    return this.#lru.get(key);
  }

  /**
   * Stores `value` for `ttlMs`: it is gone once `ttlMs` have passed (callers compute expiry
   * instants). lru-cache serves an entry while its age is at most its ttl, hence the 1 ms less;
   * a ttl of 1 ms or less stores nothing (lru-cache would read 0 as "no expiry").
   */
  set(key: K, value: V, ttlMs: number): void {
    const ttl = ttlMs - 1;
    if (!(ttl > 0)) {
      this.#lru.delete(key);
      return;
    }
    this.#lru.set(key, value, { ttl });
  }

  /** Entries held, live or not yet swept. */
  get size(): number {
    return this.#lru.size;
  }

  /** Forgets everything. */
  clear(): void {
    this.#lru.clear();
  }
}
