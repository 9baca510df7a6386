/**
 * Key versions as the engine holds them on the main thread, and KeyRings over them.
 *
 * A `LoadedKey` keeps one version's material only as node:crypto KeyObjects (OpenSSL memory, not
 * a JS Buffer that lingers until the garbage collector runs), under a random id that names this
 * load of the material. It hands the pool a fresh copy of the raw material when a worker must
 * register it (the pool transfers that copy, so none stays here) and can be revoked: then it
 * exports nothing any more, so a disabled or destroyed key is never registered again.
 */
import { randomBytes } from 'node:crypto';
import { type PreparedKey, prepareKey } from './crypto/prepared-key.ts';
import type { KeyUsage } from './keys/model.ts';
import type { KeyRing } from './operation-plans.ts';
import type { TaskKey } from './pool/protocol.ts';

/** One key version's material, ready for the pool (see the module comment). */
export class LoadedKey implements TaskKey {
  readonly id: string;
  readonly usage: KeyUsage;
  readonly convergent: boolean;
  #prepared: PreparedKey | undefined;

  /** Prepares `material` (which the caller then zeroes: the KeyObjects hold their own copy). */
  constructor(usage: KeyUsage, convergent: boolean, material: Uint8Array) {
    this.usage = usage;
    this.convergent = convergent;
    this.#prepared = prepareKey(usage, material);
    // 128 random bits: unique per load, so no two materials ever share a worker cache entry.
    this.id = randomBytes(16).toString('base64url');
  }

  prepared(): PreparedKey | undefined {
    return this.#prepared;
  }

  exportMaterial(): Uint8Array | undefined {
    const p = this.#prepared;
    if (p === undefined) return undefined;
    const exported =
      p.usage === 'AES256' ? p.secret.export() : p.privateKey.export({ type: 'pkcs8', format: 'der' });
    // An exact-size copy with its own ArrayBuffer, so transferring it moves nothing else.
    const copy = new Uint8Array(exported);
    exported.fill(0);
    return copy;
  }

  /** True once revoked. */
  get revoked(): boolean {
    return this.#prepared === undefined;
  }

  /** Drops the KeyObjects; `exportMaterial` and `prepared` answer undefined from now on. */
  revoke(): void {
    this.#prepared = undefined;
  }
}

/**
 * Makes a KeyRing over material already in memory (tests and benchmarks; the service builds its
 * rings from wrapped material in engine/service/rings.ts). Versions are `materials[0]` = version 1,
 * and so on; the current version is the last one unless given.
 */
export function createKeyRing(
  id: string,
  usage: KeyUsage,
  convergent: boolean,
  materials: readonly Uint8Array[],
  currentVersion = materials.length,
): KeyRing {
  if (materials.length === 0) throw new RangeError('a key ring needs at least one version');
  const keys = materials.map((m) => new LoadedKey(usage, convergent, m));
  return {
    id,
    usage,
    convergent,
    currentVersion,
    version: (version) => keys[version - 1],
  };
}
