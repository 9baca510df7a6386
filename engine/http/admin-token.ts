/**
 * The standalone admin token: generated on first start into `<data-dir>/admin.token` (mode 0600)
 * and printed once; `KEYWARD_TOKEN` overrides it.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../store/atomic-write.ts';

/** The token file inside the data dir. */
export const ADMIN_TOKEN_FILE = 'admin.token';

/** Reads the token file, or undefined when there is none. */
export async function readAdminToken(dataDir: string): Promise<string | undefined> {
  try {
    const text = (await readFile(join(dataDir, ADMIN_TOKEN_FILE), 'utf8')).trim();
    return text === '' ? undefined : text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
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
