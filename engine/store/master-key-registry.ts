/**
 * The master-key registry: what a standalone store records about the master keys that wrap its
 * material, kept beside that material in `<data-dir>/keys/master-keys.json` (PRODUCT.md §4.3).
 * For each master-key version it holds the key-check value (engine/crypto/master-keys.ts), so a
 * start with a missing or wrong master key is refused before anything is served or written, and
 * which version is current. It holds no key bytes: a check value reveals nothing about its key.
 *
 * `planMasterKeys` is the pure start-up decision; master-key.ts does the I/O around it.
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isMasterKeyVersion, sameCheckValue } from '../crypto/master-keys.ts';
import { KeywardError } from '../errors.ts';
import { writeFileAtomic } from './atomic-write.ts';
import { isErrno } from './errno.ts';

/** The registry's file name, inside `<data-dir>/keys/`. */
export const MASTER_KEY_REGISTRY_FILE = 'master-keys.json';

/** One master-key version the store has used. */
export interface MasterKeyVersionRecord {
  version: number;
  /** Its key-check value (32 hex digits). */
  check: string;
  createdTime: number;
  /** Set once nothing is wrapped under it and it was removed from the key file. */
  retiredTime?: number;
}

/** `master-keys.json`. */
export interface MasterKeyRegistry {
  format: 1;
  /** The version that wraps new material. */
  current: number;
  versions: MasterKeyVersionRecord[];
}

/** The registry path of a data dir. */
export function registryPath(dataDir: string): string {
  return join(dataDir, 'keys', MASTER_KEY_REGISTRY_FILE);
}

/** The versions still in use (not retired), in order. */
export function activeVersions(registry: MasterKeyRegistry): MasterKeyVersionRecord[] {
  return registry.versions.filter((v) => v.retiredTime === undefined);
}

/** Parses and checks the registry's text; `source` names the file in errors. */
export function decodeRegistry(text: string, source: string): MasterKeyRegistry {
  const bad = (why: string) => new KeywardError('INTERNAL', `${source} is damaged: ${why}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('not valid JSON');
  }
  const r = value as Partial<MasterKeyRegistry> | null;
  if (typeof r !== 'object' || r === null || r.format !== 1) throw bad('unknown format');
  if (!Array.isArray(r.versions) || r.versions.length === 0) throw bad('no versions');
  let previous = 0;
  for (const v of r.versions) {
    if (typeof v !== 'object' || v === null || !isMasterKeyVersion(v.version) || v.version <= previous) {
      throw bad('versions must be increasing integers');
    }
    previous = v.version;
    if (typeof v.check !== 'string' || !/^[0-9a-f]{32}$/.test(v.check))
      throw bad(`version ${v.version}: bad check value`);
    if (!Number.isSafeInteger(v.createdTime)) throw bad(`version ${v.version}: bad createdTime`);
    if (v.retiredTime !== undefined && !Number.isSafeInteger(v.retiredTime))
      throw bad(`version ${v.version}: bad retiredTime`);
  }
  const current = r.versions.find((v) => v.version === r.current);
  if (current === undefined || current.retiredTime !== undefined)
    throw bad('current names no active version');
  return r as MasterKeyRegistry;
}

/** Reads the registry of a data dir, or undefined when there is none yet. */
export async function readRegistry(dataDir: string): Promise<MasterKeyRegistry | undefined> {
  const path = registryPath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
  return decodeRegistry(text, path);
}

/** Writes the registry atomically (the keys/ directory must exist). */
export async function writeRegistry(dataDir: string, registry: MasterKeyRegistry): Promise<void> {
  await writeFileAtomic(registryPath(dataDir), `${JSON.stringify(registry, null, 2)}\n`, 0o600);
}

/** What `planMasterKeys` needs to know. */
export interface MasterKeyFacts {
  /** The master-key file, for messages. */
  path: string;
  dataDir: string;
  /** Check values of the versions in the key file; undefined when the file does not exist. */
  file: ReadonlyMap<number, string> | undefined;
  registry: MasterKeyRegistry | undefined;
  /** Key versions in the store per master-key version their blob names. */
  wrappedUnder: ReadonlyMap<number, number>;
  /** Number of keys in the store. */
  keyCount: number;
  /**
   * For a store that has keys but no registry yet (made before key-check values existed): true
   * when some blob wrapped under `version` unwraps with the file's key of that version.
   */
  unwrapsUnder(version: number): boolean;
  now: number;
}

/** The decision: refuse to start, create the first master key, or use the file's. */
export type MasterKeyPlan =
  | { action: 'refuse'; message: string }
  | { action: 'create' }
  | {
      action: 'use';
      current: number;
      registry: MasterKeyRegistry;
      /** The registry must be written (first start, or a store from before key-check values). */
      writeRegistry: boolean;
      /** One line each, for the log. */
      warnings: string[];
    };

/**
 * Decides how a standalone store starts with its master key (pure; see the module comment):
 * - no key file: create one only when the store has no keys and no registry, else refuse: a new
 *   master key is never created over existing material;
 * - a registry: every active version must be in the file with the recorded check value;
 * - no registry but keys (a store from before key-check values): the file's key must unwrap them;
 * - no registry and no keys: record the file's versions.
 */
export function planMasterKeys(f: MasterKeyFacts): MasterKeyPlan {
  const wrapped = [...f.wrappedUnder.values()].reduce((a, b) => a + b, 0);
  const regPath = registryPath(f.dataDir);
  if (f.file === undefined) {
    if (f.keyCount > 0) {
      return refuse(
        `master key file ${f.path} is missing, but the ${f.keyCount} key(s) in ${f.dataDir} are wrapped by it: ` +
          'restore it from your backup (or point --master-key-file at it); Keyward never creates a new master key over existing keys',
      );
    }
    if (f.registry !== undefined) {
      return refuse(
        `master key file ${f.path} is missing, but ${regPath} records one in use: restore the file from your backup, ` +
          `or, to start this data dir over without keys, delete ${regPath}`,
      );
    }
    return { action: 'create' };
  }
  const fileVersions = [...f.file.keys()].sort((a, b) => a - b);
  if (f.registry !== undefined) {
    const active = activeVersions(f.registry);
    for (const v of active) {
      const check = f.file.get(v.version);
      const under = f.wrappedUnder.get(v.version) ?? 0;
      if (check === undefined) {
        return refuse(
          `master key file ${f.path} lacks master-key version ${v.version}, which wraps ${under} key version(s) in ${f.dataDir}: ` +
            'restore the file from your backup',
        );
      }
      if (!sameCheckValue(check, v.check)) {
        return refuse(
          `master key file ${f.path} is not the master key of ${f.dataDir} (the key-check value of master-key version ${v.version} ` +
            `differs from ${regPath}): restore the right file; the keys cannot be read without it`,
        );
      }
    }
    const warnings: string[] = [];
    const known = new Set(f.registry.versions.map((v) => v.version));
    for (const v of fileVersions) {
      if (!known.has(v) && v > f.registry.current) {
        warnings.push(
          `master key file ${f.path} holds master-key version ${v}, which the store has not recorded: a master-key rotation ` +
            'was interrupted; run `keyward master-key rotate` to finish it',
        );
      } else if (f.registry.versions.some((r) => r.version === v && r.retiredTime !== undefined)) {
        warnings.push(
          `master key file ${f.path} still holds retired master-key version ${v}; run \`keyward master-key rotate\` to finish removing it`,
        );
      }
    }
    const activeSet = new Set(active.map((v) => v.version));
    for (const [v, n] of f.wrappedUnder) {
      if (!activeSet.has(v)) {
        warnings.push(
          `${n} key version(s) name master-key version ${v}, which this store does not use: those keys will fail`,
        );
      }
    }
    return {
      action: 'use',
      current: f.registry.current,
      registry: f.registry,
      writeRegistry: false,
      warnings,
    };
  }
  // No registry yet.
  const registry: MasterKeyRegistry = {
    format: 1,
    current: fileVersions[fileVersions.length - 1]!,
    versions: fileVersions.map((version) => ({ version, check: f.file!.get(version)!, createdTime: f.now })),
  };
  if (wrapped > 0) {
    const used = [...f.wrappedUnder.keys()].filter((v) => f.file!.has(v));
    if (used.length === 0 || !used.every((v) => f.unwrapsUnder(v))) {
      return refuse(
        `master key file ${f.path} does not unwrap the keys in ${f.dataDir}: it is not the master key that wrapped them; ` +
          'restore the right file from your backup',
      );
    }
    // A store from before master-key rotation holds only version 1; current is the highest used.
    registry.current = Math.max(...used);
  }
  return { action: 'use', current: registry.current, registry, writeRegistry: true, warnings: [] };
}

function refuse(message: string): MasterKeyPlan {
  return { action: 'refuse', message };
}
