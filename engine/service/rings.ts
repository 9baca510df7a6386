/**
 * KeyRings for the engine, one per key incarnation. Each version is unwrapped lazily on first use
 * into a `LoadedKey` (KeyObjects under a random id; engine/key-ring.ts) and kept while the key is
 * usable. `evict` (a key disabled) and `destroy` (a key destroyed) revoke the loaded versions, so
 * no worker is given them again, and return their ids for `CryptoEngine.evict`, which makes every
 * worker drop its copy. A rotation makes a new ring object (new current version) over the same
 * cache, so versions keep their ids.
 *
 * A version whose material cannot be unwrapped (a damaged record, a blob wrapped by another master
 * key) fails alone with KEY_STATE: other keys, and listing, are unaffected.
 */
import type { KeyObject } from 'node:crypto';
import type { MasterKeys } from '../crypto/master-keys.ts';
import { unwrapMaterial, wrappedMasterKeyVersion } from '../crypto/wrap.ts';
import type { KeyRing } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { LoadedKey } from '../key-ring.ts';
import type { KeyRecord } from '../keys/model.ts';
import type { LoadedKeyBudget, RetiringCache } from './loaded-keys.ts';

/** Retired versions a cache remembers beyond those still referenced (see `retire`). */
const RETIRED_KEPT = 16;

/** A label per incarnation, for logs (workers cache by each version's random id, not this). */
export function incarnationId(record: Pick<KeyRecord, 'namespace' | 'name' | 'createdTime'>): string {
  return `${record.namespace}/${record.name.toLowerCase()}@${record.createdTime}`;
}

/** The error for a version whose material cannot be unwrapped; names no bytes. */
export function materialUnavailable(version: number, wrapped: string | undefined): KeywardError {
  const m = wrapped === undefined ? undefined : wrappedMasterKeyVersion(wrapped);
  return new KeywardError(
    'KEY_STATE',
    `version ${version} of this key cannot be unwrapped${m === undefined ? '' : ` with master-key version ${m}`}: ` +
      'its stored record is damaged or was wrapped by another master key',
  );
}

/**
 * The material of one key incarnation, unwrapped on demand. With a budget (loaded-keys.ts), the
 * versions it holds count against the backend's bound, and the least recently used are retired.
 */
export class MaterialCache implements RetiringCache {
  readonly #master: KeyObject | MasterKeys;
  readonly #loaded = new Map<number, LoadedKey>();
  readonly #budget: LoadedKeyBudget | undefined;
  /** Retired versions: a request may still hold one, and a worker may hold its id. */
  #retired: Array<{ id: string; key: WeakRef<LoadedKey> }> = [];
  #record: KeyRecord;
  #ring: KeyRing | undefined;
  #destroyed = false;

  constructor(master: KeyObject | MasterKeys, record: KeyRecord, budget?: LoadedKeyBudget) {
    this.#master = master;
    this.#record = record;
    this.#budget = budget;
  }

  /** Follows the stored record (after a rotation); the next `ring()` has the new current version. */
  update(record: KeyRecord): void {
    if (record.currentVersion !== this.#record.currentVersion) this.#ring = undefined;
    this.#record = record;
  }

  /** The ring for the engine; the same object until the current version changes. */
  ring(): KeyRing {
    if (this.#ring === undefined) {
      const r = this.#record;
      this.#ring = {
        id: incarnationId(r),
        usage: r.usage,
        convergent: r.convergent,
        currentVersion: r.currentVersion,
        version: (version) => this.version(version),
      };
    }
    return this.#ring;
  }

  /**
   * The loaded `version`, or undefined when the key has no such version (or was destroyed).
   * Throws KEY_STATE (`materialUnavailable`) when its material cannot be unwrapped.
   */
  version(version: number): LoadedKey | undefined {
    if (this.#destroyed) return undefined;
    const loaded = this.#loaded.get(version);
    if (loaded !== undefined) {
      this.#budget?.touch(loaded, this);
      return loaded;
    }
    const entry = this.#record.versions.find((v) => v.version === version);
    if (entry === undefined) return undefined;
    const r = this.#record;
    let material: Buffer;
    try {
      material = unwrapMaterial(
        this.#master,
        { store: r.namespace, name: r.name, usage: r.usage, version },
        Buffer.from(entry.wrapped, 'base64'),
      );
    } catch {
      throw materialUnavailable(version, entry.wrapped);
    }
    try {
      const key = new LoadedKey(r.usage, r.convergent, material);
      this.#loaded.set(version, key);
      this.#budget?.touch(key, this);
      return key;
    } catch {
      // Unwrapped, but not valid material for its usage: as damaged as a failed unwrap.
      throw materialUnavailable(version, entry.wrapped);
    } finally {
      material.fill(0);
    }
  }

  /** A copy of the material of `version` (zero it after use), or undefined; throws like `version`. */
  material(version: number): Buffer | undefined {
    const bytes = this.version(version)?.exportMaterial();
    return bytes === undefined ? undefined : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /**
   * Unwraps every version once (then drops them again), to find a version that fails: its error
   * message, or undefined when all unwrap. What a start-up check or a listing shows.
   */
  check(): string | undefined {
    for (const v of this.#record.versions) {
      const wasLoaded = this.#loaded.has(v.version);
      try {
        this.version(v.version);
      } catch (err) {
        return (err as Error).message;
      }
      if (!wasLoaded) {
        const key = this.#loaded.get(v.version);
        if (key !== undefined) {
          key.revoke();
          this.#budget?.forget(key);
        }
        this.#loaded.delete(v.version);
      }
    }
    return undefined;
  }

  /**
   * Revokes every loaded version (a disabled key) and returns their ids, for the engine to evict
   * from the workers. The cache stays usable: the next use unwraps again, under new ids.
   */
  evict(): string[] {
    const ids: string[] = [];
    for (const key of this.#loaded.values()) {
      key.revoke();
      this.#budget?.forget(key);
      ids.push(key.id);
    }
    for (const retired of this.#retired) {
      retired.key.deref()?.revoke();
      ids.push(retired.id);
    }
    this.#retired = [];
    this.#loaded.clear();
    this.#ring = undefined;
    return ids;
  }

  /**
   * Drops a version the budget retired (the least recently used beyond its bound). It is not
   * revoked: a request that holds it finishes, and a worker may register it for that request. So
   * its id is kept, with a weak reference, until the key object is gone and more than
   * RETIRED_KEPT were retired after it; then every worker drops the id (no one can register it
   * again). `evict` revokes and evicts the retired versions it still knows.
   */
  retire(key: LoadedKey): void {
    for (const [version, loaded] of this.#loaded) {
      if (loaded === key) this.#loaded.delete(version);
    }
    this.#retired.push({ id: key.id, key: new WeakRef(key) });
    if (this.#retired.length <= RETIRED_KEPT) return;
    const gone: string[] = [];
    this.#retired = this.#retired.filter((r, i) => {
      const drop = i < this.#retired.length - RETIRED_KEPT && r.key.deref() === undefined;
      if (drop) gone.push(r.id);
      return !drop;
    });
    if (gone.length > 0) this.#budget?.dropFromWorkers(gone);
  }

  /** Like `evict`, and the cache is unusable afterwards (the key is destroyed). */
  destroy(): string[] {
    this.#destroyed = true;
    return this.evict();
  }
}
