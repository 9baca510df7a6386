import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOCK_FILE, lockDataDir } from './data-dir-lock.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kw-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('lockDataDir', () => {
  it('refuses a data dir locked by a running process, naming it', async () => {
    const other = spawn('sleep', ['30']);
    try {
      await writeFile(join(dir, LOCK_FILE), `${other.pid}\n`);
      await expect(lockDataDir(dir)).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        message: expect.stringContaining(`pid ${other.pid}`),
      });
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('takes over the lock of a process that died without releasing it (kill -9)', async () => {
    const gone = spawn('true');
    await new Promise((resolve) => gone.once('exit', resolve));
    await writeFile(join(dir, LOCK_FILE), `${gone.pid}\n`);
    const release = await lockDataDir(dir);
    expect(await readFile(join(dir, LOCK_FILE), 'utf8')).toBe(`${process.pid}\n`);
    await release();
  });

  it('releases on close so the next server can start', async () => {
    const release = await lockDataDir(dir);
    await release();
    await expect(readFile(join(dir, LOCK_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
    const again = await lockDataDir(dir);
    await again();
  });
});
