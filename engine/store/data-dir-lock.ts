/**
 * One server per data dir. The store keeps every record in memory and is the only writer of its
 * files, so two servers on one data dir would overwrite each other's changes. The lock is a file
 * holding the owner's pid, created exclusively; a lock left by a process that no longer runs (a
 * kill -9) is taken over.
 */
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { KeywardError } from '../errors.ts';
import { isErrno } from './errno.ts';

/** The lock file, inside the data dir. */
export const LOCK_FILE = 'keyward.lock';

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return isErrno(err, 'EPERM');
  }
}

/**
 * Takes the data dir's lock, or throws UNAVAILABLE naming the pid that holds it.
 * @returns a function that releases the lock.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.sync();
      await handle.close();
      return () => unlink(path).catch(() => {});
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && running(owner)) {
      throw new KeywardError(
        'UNAVAILABLE',
        `the data dir ${dataDir} is in use by another keyward server (pid ${owner})`,
      );
    }
    // Stale (its owner is gone) or half-written: remove it and try again.
    await unlink(path).catch(() => {});
  }
  throw new KeywardError('UNAVAILABLE', `could not lock the data dir ${dataDir}`);
}
