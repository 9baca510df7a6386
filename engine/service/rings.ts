/**
 * KeyRings for the engine, one per key incarnation. Material is unwrapped lazily, one version at a
 * time, on first use, and kept in memory for the incarnation's life; it is zeroed when the key is
 * destroyed. A rotation makes a new ring object (new current version) over the same cache, so the
 * engine's per-ring task keys stay valid for old versions.
 */
import type { KeyObject } from 'node:crypto';
import { unwrapMaterial } from '../crypto/wrap.ts';
import type { KeyRing } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';

/** Unique per incarnation: a key destroyed and created again never shares worker caches. */
export function incarnationId(record: Pick<KeyRecord, 'namespace' | 'name' | 'createdTime'>): string {
  return `${record.namespace}/${record.name.toLowerCase()}@${record.createdTime}`;
}

/** The material of one key incarnation, unwrapped on demand. */
export class MaterialCache {
  readonly #master: KeyObject;
  readonly #materials = new Map<number, Buffer>();
  #record: KeyRecord;
  #ring: KeyRing | undefined;
  #destroyed = false;

  constructor(master: KeyObject, record: KeyRecord) {
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
        material: (version) => this.material(version),
      };
    }
    return this.#ring;
  }

  /** The plaintext material of `version`, or undefined when the key has no such version. */
  material(version: number): Buffer | undefined {
    if (this.#destroyed) return undefined;
    const cached = this.#materials.get(version);
    if (cached !== undefined) return cached;
    const entry = this.#record.versions.find((v) => v.version === version);
    if (entry === undefined) return undefined;
    const r = this.#record;
    try {
      const material = unwrapMaterial(
        this.#master,
        { store: r.namespace, name: r.name, usage: r.usage, version },
        Buffer.from(entry.wrapped, 'base64'),
      );
      this.#materials.set(version, material);
      return material;
    } catch {
      // Wrong master key or a damaged record; the message names neither bytes nor material.
      throw new KeywardError('INTERNAL', `key material of version ${version} cannot be unwrapped`);
    }
  }

  /** Zeroes every unwrapped version; the cache is unusable afterwards. */
  destroy(): void {
    this.#destroyed = true;
    for (const material of this.#materials.values()) material.fill(0);
    this.#materials.clear();
    this.#ring = undefined;
  }
}
