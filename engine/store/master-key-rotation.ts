/**
 * Standalone master-key rotation (`keyward master-key rotate`): a new master-key version, every key
 * version re-wrapped under it, and the old master key retired once nothing is wrapped under it.
 * It runs with the data dir locked, so never beside a running server.
 *
 * Every step is durable before the next begins, and a re-run finishes what a killed run started,
 * losing nothing:
 * 1. the new version is added to the master-key file (atomic replace): the old versions stay;
 * 2. the registry records it as current: from here a server wraps new material under it;
 * 3. each key record is re-wrapped and written atomically, one by one: a record holds either its
 *    old blobs or its new ones, and both master-key versions are in the file and the registry;
 * 4. versions with nothing wrapped under them are marked retired in the registry;
 * 5. they are removed from the master-key file.
 * A re-run that finds the file ahead of the registry (killed after 1), blobs under an old version
 * (killed in 3) or a retired version still in the file (killed after 4) finishes that rotation and
 * stops, rather than starting another.
 *
 * A record whose material cannot be unwrapped is left as it is, and its master-key version is then
 * kept, not retired: the result names such keys. A retired version leaves its audit checkpoint key
 * in the file (one-way derived; it unwraps nothing), so `keyward audit verify` still checks the
 * checkpoints made under it.
 */
import { randomBytes } from 'node:crypto';
import { checkpointKeyMaterial } from '../audit/checkpoint-key.ts';
import { MASTER_KEY_BYTES, masterKeyCheckValue, masterKeysFrom } from '../crypto/master-keys.ts';
import { unwrapMaterial, wrapMaterial, wrappedMasterKeyVersion } from '../crypto/wrap.ts';
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { errnoCode } from './errno.ts';
import { FileKeyStore } from './file-key-store.ts';
import {
  ensureDataDir,
  type MasterKeyLocation,
  openMasterKeys,
  readMasterKeyFileContents,
  writeMasterKeyFile,
} from './master-key.ts';
import { encodeMasterKeyFile, type RetiredAuditKey } from './master-key-file.ts';
import { activeVersions, type MasterKeyRegistry, writeRegistry } from './master-key-registry.ts';

/** Options of `rotateMasterKey`. */
export interface RotateMasterKeyOptions {
  dataDir: string;
  /** `--master-key-file`. */
  masterKeyFile?: string;
  env?: Readonly<Record<string, string | undefined>>;
  now?: () => number;
  /** Progress lines, for a person watching (`re-wrapped 120/500 keys`). */
  onProgress?: (line: string) => void;
}

/** What a rotation did. */
export interface RotateMasterKeyResult {
  /** The master-key version everything is wrapped under now. */
  current: number;
  /** True when this run finished an interrupted rotation instead of starting a new one. */
  resumed: boolean;
  /** Key records re-wrapped by this run. */
  rewrapped: number;
  /** Master-key versions retired (removed from the file) by this run. */
  retired: number[];
  /** Keys left under an old version because their material cannot be unwrapped. */
  stuck: Array<{ key: string; version: number; masterKeyVersion: number | undefined }>;
  location: MasterKeyLocation;
}

/** Rotates (or finishes rotating) the master key of a standalone data dir; see the module comment. */
export async function rotateMasterKey(opts: RotateMasterKeyOptions): Promise<RotateMasterKeyResult> {
  const now = opts.now ?? Date.now;
  const progress = opts.onProgress ?? (() => {});
  await ensureDataDir(opts.dataDir);
  const unlock = await lockDataDir(opts.dataDir);
  try {
    const store = await FileKeyStore.open(opts.dataDir);
    let records = await store.list();
    // Checks the file against the registry exactly as a server start does (refusing a wrong key).
    const opened = await openMasterKeys({
      dataDir: opts.dataDir,
      records,
      now: now(),
      ...(opts.env === undefined ? {} : { env: opts.env }),
      ...(opts.masterKeyFile === undefined ? {} : { masterKeyFile: opts.masterKeyFile }),
    });
    const location = opened.location;
    let registry: MasterKeyRegistry = structuredClone(opened.registry);
    const contents = (await readMasterKeyFileContents(location))!;
    const file = contents.keys;
    const auditKeys = contents.auditKeys;
    try {
      const known = new Set(registry.versions.map((v) => v.version));
      const under = (rs: readonly KeyRecord[]) => wrappedVersions(rs);
      const pendingNew = [...file.keys()].filter((v) => !known.has(v) && v > registry.current);
      const oldBlobs = [...under(records).keys()].some((v) => v !== registry.current);
      const strays = [...file.keys()].some(
        (v) => v < registry.current && !activeVersions(registry).some((a) => a.version === v),
      );
      let resumed = true;
      if (pendingNew.length > 0) {
        // Killed after step 1: adopt the version the file already holds.
        const target = Math.max(...pendingNew);
        registry = withVersion(registry, target, masterKeyCheckValue(file.get(target)!), now());
        await writeRegistry(opts.dataDir, registry);
        progress(
          `resuming: master-key version ${target} was added to ${location.path} by an interrupted rotation`,
        );
      } else if (oldBlobs || strays) {
        progress(`resuming the interrupted rotation to master-key version ${registry.current}`);
      } else {
        resumed = false;
        const target = Math.max(...registry.versions.map((v) => v.version), ...file.keys()) + 1;
        const key = randomBytes(MASTER_KEY_BYTES);
        file.set(target, key);
        await writeKeyFile(location, file, auditKeys);
        registry = withVersion(registry, target, masterKeyCheckValue(key), now());
        await writeRegistry(opts.dataDir, registry);
        progress(`master-key version ${target} created in ${location.path}`);
      }
      const target = registry.current;
      const keys = masterKeysFrom(
        new Map(activeVersions(registry).map((v) => [v.version, file.get(v.version)!] as const)),
        target,
      );

      // Step 3: re-wrap, one record at a time.
      const todo = records.filter((r) =>
        r.versions.some((v) => wrappedMasterKeyVersion(v.wrapped) !== target),
      );
      const stuck: RotateMasterKeyResult['stuck'] = [];
      let rewrapped = 0;
      for (const [i, record] of todo.entries()) {
        const next = rewrap(record, keys, target, stuck);
        if (next !== undefined) {
          await store.put(next);
          rewrapped++;
        }
        if ((i + 1) % 25 === 0 || i + 1 === todo.length) progress(`re-wrapped ${i + 1}/${todo.length} keys`);
      }

      // Steps 4 and 5: retire what nothing is wrapped under any more.
      records = await store.list();
      const stillUsed = under(records);
      const retire = activeVersions(registry)
        .map((v) => v.version)
        .filter((v) => v !== target && !stillUsed.has(v));
      if (retire.length > 0) {
        const at = now();
        registry = {
          ...registry,
          versions: registry.versions.map((v) =>
            retire.includes(v.version) ? { ...v, retiredTime: at } : v,
          ),
        };
        await writeRegistry(opts.dataDir, registry);
      }
      const keep = new Set(activeVersions(registry).map((v) => v.version));
      const removed = [...file.keys()].filter((v) => !keep.has(v));
      if (removed.length > 0) {
        for (const v of removed) {
          // The audit checkpoints made under it stay verifiable: keep its audit key, one-way
          // derived (engine/audit/checkpoint-key.ts), which unwraps nothing.
          if (!auditKeys.some((a) => a.version === v)) {
            const { key, id } = checkpointKeyMaterial(file.get(v)!);
            auditKeys.push({ version: v, key: Buffer.from(key), id });
            key.fill(0);
          }
          file.get(v)!.fill(0);
          file.delete(v);
        }
        await writeKeyFile(location, file, auditKeys);
        progress(`retired master-key version(s) ${removed.join(', ')}: removed from ${location.path}`);
      }
      return { current: target, resumed, rewrapped, retired: removed, stuck, location };
    } finally {
      for (const k of file.values()) k.fill(0);
      for (const a of auditKeys) a.key.fill(0);
    }
  } finally {
    await unlock();
  }
}

/** The record with every blob under `target`, or undefined when nothing changed. */
function rewrap(
  record: KeyRecord,
  keys: ReturnType<typeof masterKeysFrom>,
  target: number,
  stuck: RotateMasterKeyResult['stuck'],
): KeyRecord | undefined {
  let changed = false;
  const versions = record.versions.map((v) => {
    const m = wrappedMasterKeyVersion(v.wrapped);
    if (m === target) return v;
    const binding = { store: record.namespace, name: record.name, usage: record.usage, version: v.version };
    let material: Buffer;
    try {
      material = unwrapMaterial(keys, binding, Buffer.from(v.wrapped, 'base64'));
    } catch {
      stuck.push({ key: `${record.namespace}/${record.name}`, version: v.version, masterKeyVersion: m });
      return v;
    }
    try {
      changed = true;
      return { ...v, wrapped: wrapMaterial(keys, binding, material).toString('base64') };
    } finally {
      material.fill(0);
    }
  });
  return changed ? { ...record, versions } : undefined;
}

function wrappedVersions(records: readonly KeyRecord[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of records) {
    for (const v of r.versions) {
      const m = wrappedMasterKeyVersion(v.wrapped);
      if (m !== undefined) out.set(m, (out.get(m) ?? 0) + 1);
    }
  }
  return out;
}

function withVersion(
  registry: MasterKeyRegistry,
  version: number,
  check: string,
  at: number,
): MasterKeyRegistry {
  return {
    ...registry,
    current: version,
    versions: [
      ...registry.versions.filter((v) => v.version !== version),
      { version, check, createdTime: at },
    ].sort((a, b) => a.version - b.version),
  };
}

async function writeKeyFile(
  location: MasterKeyLocation,
  versions: ReadonlyMap<number, Buffer>,
  auditKeys: readonly RetiredAuditKey[],
): Promise<void> {
  const bytes = encodeMasterKeyFile(versions, auditKeys);
  try {
    await writeMasterKeyFile(location.path, bytes);
  } catch (err) {
    throw new KeywardError(
      'INVALID_ARGUMENT',
      `master key file ${location.path} cannot be written (${errnoCode(err)}): rotate where the file is managed, ` +
        'or copy it to a writable place and pass --master-key-file',
      { field: 'master-key-file' },
    );
  } finally {
    bytes.fill(0);
  }
}
