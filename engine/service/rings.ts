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

/** The material of one key incarnation, unwrapped on demand. */
export class MaterialCache {
  readonly #master: KeyObject | MasterKeys;
  readonly #loaded = new Map<number, LoadedKey>();
  #record: KeyRecord;
  #ring: KeyRing | undefined;
  #destroyed = false;

  constructor(master: KeyObject | MasterKeys, record: KeyRecord) {
    this.#master = master;
    this.#record = record;
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
    if (loaded !== undefined) return loaded;
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
        this.#loaded.get(v.version)?.revoke();
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
      ids.push(key.id);
    }
    this.#loaded.clear();
    this.#ring = undefined;
    return ids;
  }

  /** Like `evict`, and the cache is unusable afterwards (the key is destroyed). */
  destroy(): string[] {
    this.#destroyed = true;
    return this.evict();
  }
}
