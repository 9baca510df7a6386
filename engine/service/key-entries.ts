/**
 * The standalone service's keys in memory: one entry per key, indexed by namespace and folded name,
 * over the FileKeyStore, with a lock per key. The service is the only writer of its store, so
 * memory follows it exactly: every write goes to the store first and to memory only once durable.
 */
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { foldKeyName } from '../keys/spec.ts';
import type { FileKeyStore } from '../store/file-key-store.ts';
import { KeyedQueue } from '../store/keyed-queue.ts';
import type { NonceLedger } from './nonce-ledger.ts';
import type { MaterialCache } from './rings.ts';

/** One key as the service holds it: its record as stored, and what the process derived from it. */
export interface KeyEntry {
  record: KeyRecord;
  cache: MaterialCache;
  fingerprint?: { version: number; value: string };
  /** Why some version's material cannot be unwrapped (found at start); the key fails alone. */
  materialError?: string;
  /** Random-nonce counters of the versions this process encrypted under (nonce-ledger.ts). */
  nonces: NonceLedger;
  /** `externalNonces` of the key as last read. */
  external?: ReadonlyMap<number, number>;
}

/** The id of a key in the index (and in usage history and logs): `namespace/folded name`. */
export const indexKey = (namespace: string, name: string): string => `${namespace}/${foldKeyName(name)}`;

/** The KEY_NOT_FOUND error for the key `name`. */
export function keyNotFound(name: string): KeywardError {
  return new KeywardError('KEY_NOT_FOUND', `key ${name} not found`, { field: 'name' });
}

/** See the module comment. */
export class KeyEntries {
  readonly #store: FileKeyStore;
  readonly #entries = new Map<string, KeyEntry>();
  readonly #locks = new KeyedQueue();

  constructor(store: FileKeyStore) {
    this.#store = store;
  }

  /** The entry with index key `id`, if any. */
  get(id: string): KeyEntry | undefined {
    return this.#entries.get(id);
  }

  /** True when a key with index key `id` exists. */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** The entry of `name` in `namespace`; KEY_NOT_FOUND if there is none. */
  find(namespace: string, name: string): KeyEntry {
    const entry = this.#entries.get(indexKey(namespace, name));
    if (entry === undefined) throw keyNotFound(name);
    return entry;
  }

  /** Every entry: a live iterator over the index. */
  values(): MapIterator<KeyEntry> {
    return this.#entries.values();
  }

  /** Adds the entry of a key read from the store (at start: nothing is written). */
  load(id: string, entry: KeyEntry): void {
    this.#entries.set(id, entry);
  }

  /** Runs `task` under the lock of the key with index key `id`, which may not exist yet. */
  lock<T>(id: string, task: () => Promise<T>): Promise<T> {
    return this.#locks.run(id, task);
  }

  /** Runs `task` under the key's lock, on the entry as it is then; KEY_NOT_FOUND if it is gone. */
  locked<T>(entry: KeyEntry, task: (e: KeyEntry) => Promise<T>): Promise<T> {
    const id = indexKey(entry.record.namespace, entry.record.name);
    return this.#locks.run(id, async () => {
      const current = this.#entries.get(id);
      if (current !== entry) throw keyNotFound(entry.record.name);
      return task(current);
    });
  }

  /** Stores a new key's record and, once durable, adds its entry as `id`. Under `lock(id)`. */
  async create(id: string, entry: KeyEntry): Promise<void> {
    await this.#store.create(entry.record);
    this.#entries.set(id, entry);
  }

  /** Persists `record` and, once durable, makes it the entry's record. */
  async save(entry: KeyEntry, record: KeyRecord): Promise<void> {
    await this.#store.put(record);
    entry.record = record;
    entry.cache.update(record);
  }

  /** Removes the key from the store and, once durable, its entry; returns its index key. */
  async remove(entry: KeyEntry): Promise<string> {
    const id = indexKey(entry.record.namespace, entry.record.name);
    await this.#store.remove(entry.record.namespace, entry.record.name);
    this.#entries.delete(id);
    return id;
  }
}
