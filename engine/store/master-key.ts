/**
 * The standalone master key, which wraps all key material at rest (PRODUCT.md §4.3). It comes from
 * `KEYWARD_MASTER_KEY_FILE` when set, otherwise from `<data-dir>/master.key`, created on first
 * start. Error messages name files and sizes, never contents.
 */
import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KeywardError } from '../errors.ts';
import { fsyncDir, tempPathFor } from './atomic-write.ts';
import { errnoCode, isErrno } from './errno.ts';

/** Master key length: AES-256. */
export const MASTER_KEY_BYTES = 32;

/** The file name of the generated master key inside the data dir. */
export const MASTER_KEY_FILE = 'master.key';

/** The environment variable naming an externally managed master key file. */
export const MASTER_KEY_ENV = 'KEYWARD_MASTER_KEY_FILE';

/** Leftover temp files of an interrupted creation older than this are deleted. */
const STALE_TEMP_MS = 60_000;

/** Creates the data directory with mode 0700 if it does not exist (an existing one is left as is). */
export async function ensureDataDir(dataDir: string): Promise<void> {
  const made = await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask; make sure of 0700 on what we created.
  if (made !== undefined) await chmod(dataDir, 0o700);
}

/**
 * Returns the master key as a secret KeyObject.
 *
 * - `KEYWARD_MASTER_KEY_FILE` set: the file must hold exactly 32 raw bytes, or 44 characters of
 *   standard base64 (optionally followed by a newline) that decode to 32 bytes. Its permissions
 *   are not checked: it is typically a mounted Secret, owned by its platform.
 * - otherwise `<data-dir>/master.key`: created on first start (32 random bytes, mode 0600) by
 *   linking a fully written temp file into place, which fails if the name exists, so two processes
 *   starting together cannot both create different keys: the loser reads the winner's key.
 *   An existing master.key with group/other permissions or a wrong size is refused.
 */
export async function loadOrCreateMasterKey(
  dataDir: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<KeyObject> {
  await ensureDataDir(dataDir);
  const external = env[MASTER_KEY_ENV];
  if (external !== undefined && external !== '') return readExternalKey(external);

  const path = join(dataDir, MASTER_KEY_FILE);
  const existing = await readOwnKey(path);
  if (existing !== undefined) return existing;

  await removeStaleTemps(dataDir);
  const tmp = tempPathFor(path);
  const material = randomBytes(MASTER_KEY_BYTES);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(material);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, path);
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      // Another process created it first; use theirs.
    }
  } finally {
    material.fill(0);
    await rm(tmp, { force: true });
  }
  await fsyncDir(dataDir);
  const created = await readOwnKey(path);
  if (created === undefined) throw new KeywardError('INTERNAL', `could not create ${path}`);
  return created;
}

async function readExternalKey(path: string): Promise<KeyObject> {
  let bytes: Buffer;
  try {
    bytes = await readLimited(path, 128);
  } catch (err) {
    throw configError(`${MASTER_KEY_ENV} names a file that cannot be read (${errnoCode(err)}): ${path}`);
  }
  try {
    if (bytes.length === MASTER_KEY_BYTES) return createSecretKey(bytes);
    const text = bytes.toString('latin1').replace(/\r?\n$/, '');
    if (/^[A-Za-z0-9+/]{43}=$/.test(text)) {
      const decoded = Buffer.from(text, 'base64');
      try {
        if (decoded.length === MASTER_KEY_BYTES) return createSecretKey(decoded);
      } finally {
        decoded.fill(0);
      }
    }
  } finally {
    bytes.fill(0);
  }
  throw configError(
    `${MASTER_KEY_ENV} must name a file holding exactly ${MASTER_KEY_BYTES} raw bytes or 44 characters of base64`,
  );
}

/** Reads master.key if it exists (undefined if not), refusing loose permissions or a wrong size. */
async function readOwnKey(path: string): Promise<KeyObject | undefined> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
  try {
    // fstat the open file, so the checked file is the one read.
    const st = await fh.stat();
    if (!st.isFile()) throw configError(`${path} is not a regular file`, MASTER_KEY_FILE);
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw configError(
        `${path} has mode ${mode}; it must not be accessible by group or others (chmod 600)`,
        MASTER_KEY_FILE,
      );
    }
    if (st.size !== MASTER_KEY_BYTES) {
      throw configError(
        `${path} must hold exactly ${MASTER_KEY_BYTES} bytes, found ${st.size}`,
        MASTER_KEY_FILE,
      );
    }
    const buf = Buffer.alloc(MASTER_KEY_BYTES);
    try {
      const { bytesRead } = await fh.read(buf, 0, MASTER_KEY_BYTES, 0);
      if (bytesRead !== MASTER_KEY_BYTES)
        throw configError(`${path} could not be read in full`, MASTER_KEY_FILE);
      return createSecretKey(buf);
    } finally {
      buf.fill(0);
    }
  } finally {
    await fh.close();
  }
}

async function readLimited(path: string, limit: number): Promise<Buffer> {
  const st = await stat(path);
  if (st.size > limit) return Buffer.alloc(limit + 1);
  const fh = await open(path, 'r');
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

async function removeStaleTemps(dataDir: string): Promise<void> {
  const prefix = `.${MASTER_KEY_FILE}.`;
  for (const name of await readdir(dataDir)) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const path = join(dataDir, name);
    try {
      if (Date.now() - (await stat(path)).mtimeMs > STALE_TEMP_MS) await rm(path, { force: true });
    } catch {
      // Gone already (another process cleaned it): nothing to do.
    }
  }
}

function configError(message: string, field = MASTER_KEY_ENV): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', message, { field });
}
