/**
 * A KeyRing over material already in memory. The service builds one per key incarnation from
 * unwrapped versions; tests and benchmarks build them directly.
 */
import type { KeyUsage } from './keys/model.ts';
import type { KeyRing } from './operation-plans.ts';

/**
 * Makes a KeyRing whose versions are `materials[0]` = version 1, and so on; the current version
 * is the last one unless given.
 */
export function createKeyRing(
  id: string,
  usage: KeyUsage,
  convergent: boolean,
  materials: readonly Uint8Array[],
  currentVersion = materials.length,
): KeyRing {
  if (materials.length === 0) throw new RangeError('a key ring needs at least one version');
  return {
    id,
    usage,
    convergent,
    currentVersion,
    material: (version) => materials[version - 1],
  };
}
