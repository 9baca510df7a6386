/**
 * Crash-safe file replacement: the file at `path` holds either its old or its new content, never a
 * mixture, even if the process is killed (kill -9) or the machine loses power mid-write.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Temp files are `.<target>.<pid>.<random>.tmp`: hidden, and never ending in `.json`. */
const TEMP_SUFFIX = '.tmp';

/** True for a leftover temp file of `writeFileAtomic` (never a record: records end in `.json`). */
export function isTempFile(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMP_SUFFIX);
}

/** A temp file name next to `path`, unique to this process and call. */
export function tempPathFor(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`,
  );
}

/**
 * Writes `data` to `path` atomically: write a temp file in the same directory (same file system,
 * so rename is atomic), fsync it so its bytes are on disk before the rename makes them visible,
 * rename it over `path`, then fsync the directory so the rename itself survives a power loss.
 * The temp file is created exclusively with `mode` (default 0600), so it is never readable by
 * others, even briefly.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}

/**
 * Flushes a directory's entries (creations, renames, unlinks) to disk. Without it a rename or
 * unlink can be lost on power failure even after the file's own fsync.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
