/**
 * The bound on key versions held unwrapped on the main thread (LoadedKey: node:crypto KeyObjects,
 * OpenSSL memory). Every MaterialCache of a backend shares one budget; past `max` loaded versions
 * the least recently used one is retired from its cache (the next use unwraps it again, under a
 * new id). A retired version is not revoked, so a request that holds it finishes normally; its
 * cache remembers it (weakly) until it is gone, so that disabling the key still revokes it and
 * evicts it from the workers (rings.ts).
 */
import type { LoadedKey } from '../key-ring.ts';

/** Loaded key versions a backend keeps by default (docs/performance.md, memory). */
export const DEFAULT_MAX_LOADED_VERSIONS = 4096;

/** What a budget asks of the cache that loaded a version. */
export interface RetiringCache {
  retire(key: LoadedKey): void;
}

/** See the module comment. */
export class LoadedKeyBudget {
  readonly max: number;
  /** Worker ids to drop: versions retired and no longer referenced (CryptoEngine.evict). */
  readonly dropFromWorkers: (ids: readonly string[]) => void;
  // Map order is recency: a use moves the version to the end.
  readonly #lru = new Map<LoadedKey, RetiringCache>();

  constructor(max: number, dropFromWorkers: (ids: readonly string[]) => void) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('max must be a positive integer');
    this.max = max;
    this.dropFromWorkers = dropFromWorkers;
  }

  /** Versions loaded now. */
  get size(): number {
    return this.#lru.size;
  }

  /** A version was loaded or used: it becomes the most recent; the oldest beyond `max` retire. */
  touch(key: LoadedKey, cache: RetiringCache): void {
    this.#lru.delete(key);
    this.#lru.set(key, cache);
    while (this.#lru.size > this.max) {
      const [oldest, owner] = this.#lru.entries().next().value!;
      this.#lru.delete(oldest);
      owner.retire(oldest);
    }
  }

  /** A version left its cache (revoked, or dropped after a check). */
  forget(key: LoadedKey): void {
    this.#lru.delete(key);
  }
}
