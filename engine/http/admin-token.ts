/**
 * The standalone admin token: generated on first start into `<data-dir>/admin.token` (mode 0600)
 * and printed once; `KEYWARD_TOKEN` overrides it.
 *
 * The file is guarded like `master.key`: it must be a regular file (not a symbolic link), with no
 * group or other permissions, owned by the user reading it. A token someone else could read is
 * leaked, and one someone else wrote (in a shared or world-writable data dir) is theirs.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { KeywardError } from '../errors.ts';
import { writeFileAtomic } from '../store/atomic-write.ts';

/** Largest admin.token read (a token is well under this). */
const MAX_TOKEN_FILE = 4096;

function tokenFileError(message: string): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', message, { field: ADMIN_TOKEN_FILE });
}

/** The token file inside the data dir. */
export const ADMIN_TOKEN_FILE = 'admin.token';

/**
 * Reads the token file, or undefined when there is none (or it is empty). Throws an error naming
 * the file when it is not a regular file, is open to group or others, or belongs to another user.
 */
export async function readAdminToken(dataDir: string): Promise<string | undefined> {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw tokenFileError(`${path} is a symbolic link; it must be a regular file`);
    throw tokenFileError(`${path} cannot be read (${code ?? 'error'})`);
  }
  try {
    // fstat the open file, so the checked file is the one read.
    const st = await fh.stat();
    if (!st.isFile()) throw tokenFileError(`${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw tokenFileError(
        `${path} has mode ${mode}; it must not be accessible by group or others (chmod 600)`,
      );
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw tokenFileError(
        `${path} belongs to uid ${st.uid}, not to this user (uid ${uid}); refusing a token someone else wrote`,
      );
    }
    if (st.size > MAX_TOKEN_FILE) throw tokenFileError(`${path} is larger than ${MAX_TOKEN_FILE} bytes`);
    const text = (await fh.readFile('utf8')).trim();
    return text === '' ? undefined : text;
  } finally {
    await fh.close();
  }
}

/**
 * The token the server accepts: `KEYWARD_TOKEN` when set, else the file's, else a new one
 * (256 random bits, base64url) written to the file. `created` says whether to print it.
 */
export async function loadOrCreateAdminToken(
  dataDir: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<{ token: string; source: 'env' | 'file'; created: boolean }> {
  const fromEnv = env.KEYWARD_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') return { token: fromEnv, source: 'env', created: false };
  const existing = await readAdminToken(dataDir);
  if (existing !== undefined) return { token: existing, source: 'file', created: false };
  const token = `kw_${randomBytes(32).toString('base64url')}`;
  await writeFileAtomic(join(dataDir, ADMIN_TOKEN_FILE), `${token}\n`, 0o600);
  return { token, source: 'file', created: true };
}
