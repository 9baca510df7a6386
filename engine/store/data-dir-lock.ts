/**
 * One server per data dir. The store keeps every record in memory and is the only writer of its
 * files, so two servers on one data dir would overwrite each other's changes.
 *
 * The lock is an OS-level lock: `keyward.lock` is held with an exclusive POSIX advisory lock
 * (fcntl) for the life of the server, taken through SQLite (`node:sqlite`, part of Node, no native
 * module to build), which is the one Node API that takes such locks. The kernel arbitrates: of any
 * number of servers started at once exactly one gets it, and it is released when its process
 * exits, however it exits (kill -9 included), so there is no stale lock to detect and nothing to
 * take over. The previous pid file could be unlinked by a second process between another's create
 * and write, letting two servers in.
 *
 * The holder writes its pid to `keyward.pid` after locking, so a refused server can name it. A
 * lock file of the older pid-file format is taken over when its pid no longer runs.
 */
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { KeywardError } from '../errors.ts';
import { writeFileAtomic } from './atomic-write.ts';
import { isErrno } from './errno.ts';

/** The lock file, inside the data dir. */
export const LOCK_FILE = 'keyward.lock';
/** The holder's pid, for the message of a refused server. */
export const PID_FILE = 'keyward.pid';

const SQLITE_BUSY = 5;
const SQLITE_NOTADB = 26;

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return isErrno(err, 'EPERM');
  }
}

const sqliteCode = (err: unknown): number | undefined => (err as { errcode?: number }).errcode;

/** Takes the lock, or returns the SQLite error code that refused it. */
function tryLock(path: string): DatabaseSync | number {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { timeout: 0 });
    // Exclusive locking mode keeps the lock; the transaction is never committed.
    db.exec('PRAGMA locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    return db;
  } catch (err) {
    db?.close();
    const code = sqliteCode(err);
    if (code === SQLITE_BUSY || code === SQLITE_NOTADB) return code;
    throw err;
  }
}

/** The pid the holder wrote; waits a moment for one that runs (it writes it just after locking). */
async function holderPid(dataDir: string): Promise<number | undefined> {
  for (let i = 0; i < 40; i++) {
    const pid = Number.parseInt(await readFile(join(dataDir, PID_FILE), 'utf8').catch(() => ''), 10);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && running(pid)) return pid;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/**
 * Takes the data dir's lock, or throws UNAVAILABLE naming the pid that holds it.
 * @returns a function that releases the lock.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, LOCK_FILE);
  let result = tryLock(path);
  if (result === SQLITE_NOTADB) {
    // A pid file of the previous format: in use while its pid runs, else left by a crash.
    const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && running(owner)) {
      throw inUse(dataDir, owner);
    }
    await unlink(path).catch(() => {});
    result = tryLock(path);
  }
  if (typeof result === 'number') throw inUse(dataDir, await holderPid(dataDir));
  const db = result;
  await writeFileAtomic(join(dataDir, PID_FILE), `${process.pid}\n`, 0o600);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await unlink(join(dataDir, PID_FILE)).catch(() => {});
    db.close();
  };
}

function inUse(dataDir: string, pid: number | undefined): KeywardError {
  return new KeywardError(
    'UNAVAILABLE',
    `the data dir ${dataDir} is in use by another keyward server (${pid === undefined ? 'pid unknown' : `pid ${pid}`})`,
  );
}
