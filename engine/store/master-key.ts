/**
 * The standalone master key, which wraps all key material at rest (PRODUCT.md §4.3). It lives in
 * `--master-key-file PATH` (or `KEYWARD_MASTER_KEY_FILE`) when given, so it can sit apart from the
 * data dir, otherwise in `<data-dir>/master.key`. The file holds one or more master-key versions
 * (master-key-file.ts); the store's registry (master-key-registry.ts) holds their check values.
 *
 * `openMasterKeys` refuses to start with a missing or wrong master key when the store has keys,
 * and creates a master key only for a store that has never had one. Error messages name files,
 * sizes and versions, never contents.
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  MASTER_KEY_BYTES,
  type MasterKeys,
  masterKeyCheckValue,
  masterKeysFrom,
} from '../crypto/master-keys.ts';
import { unwrapMaterial, wrappedMasterKeyVersion } from '../crypto/wrap.ts';
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { fsyncDir, tempPathFor, writeFileAtomic } from './atomic-write.ts';
import { errnoCode, isErrno } from './errno.ts';
import {
  MAX_MASTER_KEY_FILE_BYTES,
  type MasterKeyFileContents,
  MasterKeyFileError,
  parseMasterKeyFileContents,
} from './master-key-file.ts';
import {
  activeVersions,
  type MasterKeyRegistry,
  planMasterKeys,
  readRegistry,
  writeRegistry,
} from './master-key-registry.ts';

export { MASTER_KEY_BYTES } from '../crypto/master-keys.ts';

/** The file name of the master key inside the data dir, when no other place is given. */
export const MASTER_KEY_FILE = 'master.key';

/** The environment variable naming a master key file (`--master-key-file` wins over it). */
export const MASTER_KEY_ENV = 'KEYWARD_MASTER_KEY_FILE';

/** Leftover temp files of an interrupted creation older than this are deleted. */
const STALE_TEMP_MS = 60_000;

/** Where the master key lives. */
export interface MasterKeyLocation {
  /** Absolute path of the master-key file. */
  path: string;
  /** True when it was given (flag or environment), false for `<data-dir>/master.key`. */
  external: boolean;
}

/** Creates the data directory with mode 0700 if it does not exist (an existing one is left as is). */
export async function ensureDataDir(dataDir: string): Promise<void> {
  const made = await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask; make sure of 0700 on what we created.
  if (made !== undefined) await chmod(dataDir, 0o700);
}

/** The master-key file: `masterKeyFile`, else `$KEYWARD_MASTER_KEY_FILE`, else `<data-dir>/master.key`. */
export function masterKeyLocation(
  dataDir: string,
  masterKeyFile?: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): MasterKeyLocation {
  const given = masterKeyFile !== undefined && masterKeyFile !== '' ? masterKeyFile : env[MASTER_KEY_ENV];
  if (given !== undefined && given !== '') return { path: resolve(given), external: true };
  return { path: resolve(dataDir, MASTER_KEY_FILE), external: false };
}

/**
 * Reads the master-key file: version → 32-byte key (zero them after use), or undefined when it
 * does not exist. The data dir's own file must be a regular file with no group or other access;
 * a given file is not checked for mode (typically a mounted Secret, owned by its platform).
 */
export async function readMasterKeyFile(loc: MasterKeyLocation): Promise<Map<number, Buffer> | undefined> {
  const contents = await readMasterKeyFileContents(loc);
  if (contents === undefined) return undefined;
  for (const a of contents.auditKeys) a.key.fill(0);
  return contents.keys;
}

/** `readMasterKeyFile`, with the audit keys of retired versions the file also holds. */
export async function readMasterKeyFileContents(
  loc: MasterKeyLocation,
): Promise<MasterKeyFileContents | undefined> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(loc.path, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw configError(`master key file ${loc.path} cannot be read (${errnoCode(err)})`);
  }
  let bytes: Buffer | undefined;
  try {
    // fstat the open file, so the checked file is the one read.
    const st = await fh.stat();
    if (!st.isFile()) throw configError(`master key file ${loc.path} is not a regular file`);
    if (!loc.external && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw configError(
        `master key file ${loc.path} has mode ${mode}; it must not be accessible by group or others (chmod 600)`,
      );
    }
    if (st.size > MAX_MASTER_KEY_FILE_BYTES) {
      throw configError(`master key file ${loc.path} is too large (${st.size} bytes) to be a master key`);
    }
    bytes = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(bytes, 0, st.size, 0);
    if (bytesRead !== st.size) throw configError(`master key file ${loc.path} could not be read in full`);
    return parseMasterKeyFileContents(bytes);
  } catch (err) {
    if (err instanceof MasterKeyFileError) throw configError(`master key file ${loc.path} ${err.message}`);
    throw err;
  } finally {
    bytes?.fill(0);
    await fh.close();
  }
}

/**
 * Replaces the master-key file atomically (temp file in the same directory, fsync, rename, fsync
 * the directory), mode 0600. `exclusive` creates it instead, failing with EEXIST if it exists:
 * two processes creating a first master key together cannot both win.
 */
export async function writeMasterKeyFile(path: string, bytes: Uint8Array, exclusive = false): Promise<void> {
  if (!exclusive) {
    await writeFileAtomic(path, bytes, 0o600);
    return;
  }
  const dir = dirname(path);
  await removeStaleTemps(dir, path);
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  await fsyncDir(dir);
}

/**
 * The master keys of a data dir for a reader beside a running server (the KMS plugin): every
 * version the file holds, the registry's current one as current (else the highest). Never
 * creates or writes anything; UNAVAILABLE when there is no file.
 */
export async function readMasterKeys(
  dataDir: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
  masterKeyFile?: string,
): Promise<MasterKeys> {
  const location = masterKeyLocation(dataDir, masterKeyFile, env);
  const raw = await readMasterKeyFile(location);
  if (raw === undefined) {
    throw new KeywardError('UNAVAILABLE', `master key file ${location.path} does not exist`);
  }
  try {
    const registry = await readRegistry(dataDir).catch(() => undefined);
    const current =
      registry !== undefined && raw.has(registry.current) ? registry.current : Math.max(...raw.keys());
    return masterKeysFrom(raw, current);
  } finally {
    for (const k of raw.values()) k.fill(0);
  }
}

/** What `openMasterKeys` found or did. */
export interface OpenedMasterKeys {
  keys: MasterKeys;
  location: MasterKeyLocation;
  registry: MasterKeyRegistry;
  /** True when this start created the first master key. */
  created: boolean;
  /** Lines worth a warning in the log (an interrupted rotation, a stray copy of the key). */
  warnings: string[];
}

/** Options of `openMasterKeys`. */
export interface OpenMasterKeysOptions {
  dataDir: string;
  /** `--master-key-file`. */
  masterKeyFile?: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Every record of the store, to learn what is wrapped under which master-key version. */
  records: readonly KeyRecord[];
  now?: number;
}

/**
 * Loads (or, for a store that never had one, creates) the master keys and checks them against the
 * store's registry; refuses, with one line naming the file and what to do, a missing or wrong key.
 * Call with the data dir locked (lockDataDir), after the store is open.
 */
export async function openMasterKeys(opts: OpenMasterKeysOptions): Promise<OpenedMasterKeys> {
  const now = opts.now ?? Date.now();
  await ensureDataDir(opts.dataDir);
  await mkdir(join(opts.dataDir, 'keys'), { recursive: true, mode: 0o700 });
  const location = masterKeyLocation(opts.dataDir, opts.masterKeyFile, opts.env);
  let raw = await readMasterKeyFile(location);
  try {
    const registry = await readRegistry(opts.dataDir);
    const wrappedUnder = new Map<number, number>();
    for (const r of opts.records) {
      for (const v of r.versions) {
        const m = wrappedMasterKeyVersion(v.wrapped);
        if (m !== undefined) wrappedUnder.set(m, (wrappedUnder.get(m) ?? 0) + 1);
      }
    }
    const checks =
      raw === undefined ? undefined : new Map([...raw].map(([v, k]) => [v, masterKeyCheckValue(k)]));
    const plan = planMasterKeys({
      path: location.path,
      dataDir: opts.dataDir,
      file: checks,
      registry,
      wrappedUnder,
      keyCount: opts.records.length,
      unwrapsUnder: (version) => unwrapsAny(raw!, version, opts.records),
      now,
    });
    if (plan.action === 'refuse') throw configError(plan.message);
    const warnings: string[] = [];
    let created = false;
    let use: MasterKeyRegistry;
    if (plan.action === 'create') {
      const key = randomBytes(MASTER_KEY_BYTES);
      try {
        await writeMasterKeyFile(location.path, key, true);
      } catch (err) {
        key.fill(0);
        if (!isErrno(err, 'EEXIST')) {
          throw configError(`master key file ${location.path} cannot be created (${errnoCode(err)})`);
        }
        // Another process created it first: start over with theirs.
        return openMasterKeys(opts);
      }
      raw = new Map([[1, key]]);
      created = true;
      use = {
        format: 1,
        current: 1,
        versions: [{ version: 1, check: masterKeyCheckValue(key), createdTime: now }],
      };
      await writeRegistry(opts.dataDir, use);
    } else {
      use = plan.registry;
      warnings.push(...plan.warnings);
      if (plan.writeRegistry) await writeRegistry(opts.dataDir, use);
    }
    // Only the versions the registry knows as active are used; a stray one is left alone.
    const active = new Map<number, Buffer>();
    for (const v of activeVersions(use)) active.set(v.version, raw!.get(v.version)!);
    if (location.external && (await exists(join(opts.dataDir, MASTER_KEY_FILE)))) {
      warnings.push(
        `${join(opts.dataDir, MASTER_KEY_FILE)} is still in the data dir although the master key is read from ${location.path}: ` +
          'delete it, or a copy of the data dir carries a master key with it',
      );
    }
    return { keys: masterKeysFrom(active, use.current), location, registry: use, created, warnings };
  } finally {
    if (raw !== undefined) for (const k of raw.values()) k.fill(0);
  }
}

/** True when some blob wrapped under master-key `version` unwraps with the file's key. */
function unwrapsAny(
  raw: ReadonlyMap<number, Buffer>,
  version: number,
  records: readonly KeyRecord[],
): boolean {
  const key = raw.get(version);
  if (key === undefined) return false;
  const keys = masterKeysFrom(new Map([[version, key]]), version);
  for (const r of records) {
    for (const v of r.versions) {
      if (wrappedMasterKeyVersion(v.wrapped) !== version) continue;
      try {
        unwrapMaterial(
          keys,
          { store: r.namespace, name: r.name, usage: r.usage, version: v.version },
          Buffer.from(v.wrapped, 'base64'),
        ).fill(0);
        return true;
      } catch {
        // A damaged blob: try the next one.
      }
    }
  }
  return false;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function removeStaleTemps(dir: string, path: string): Promise<void> {
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const p = join(dir, name);
    try {
      if (Date.now() - (await stat(p)).mtimeMs > STALE_TEMP_MS) await rm(p, { force: true });
    } catch {
      // Gone already (another process cleaned it): nothing to do.
    }
  }
}

function configError(message: string): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', message, { field: 'master-key-file' });
}
