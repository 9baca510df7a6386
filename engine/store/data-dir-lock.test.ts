import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOCK_FILE, lockDataDir, PID_FILE } from './data-dir-lock.ts';

const HERE = import.meta.dirname;
const CLI = join(HERE, '..', 'cli', 'main.ts');
let dir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kw-lock-'));
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/** Another process that takes the lock and holds it; resolves once it holds it. */
async function holder(): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { lockDataDir } = await import(${JSON.stringify(join(HERE, 'data-dir-lock.ts'))});
       await lockDataDir(${JSON.stringify(dir)});
       console.log('locked');
       setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
  return child;
}

describe('lockDataDir', () => {
  it('refuses a data dir locked by a running process, naming it', async () => {
    const other = await holder();
    await expect(lockDataDir(dir)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining(`pid ${other.pid}`),
    });
  });

  it('is free the moment its holder is killed with kill -9: the kernel releases it', async () => {
    const other = await holder();
    other.kill('SIGKILL');
    await new Promise((r) => other.once('exit', r));
    const release = await lockDataDir(dir);
    expect(await readFile(join(dir, PID_FILE), 'utf8')).toBe(`${process.pid}\n`);
    await release();
  });

  it('refuses a second lock in the same process too, and releases on close', async () => {
    const release = await lockDataDir(dir);
    await expect(lockDataDir(dir)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await release();
    await expect(readFile(join(dir, PID_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
    const again = await lockDataDir(dir);
    await again();
  });

  it('takes over a lock file of the previous format whose process is gone, and refuses one whose process runs', async () => {
    const gone = spawn('true');
    await new Promise((resolve) => gone.once('exit', resolve));
    await writeFile(join(dir, LOCK_FILE), `${gone.pid}\n`);
    const release = await lockDataDir(dir);
    await release();
    await rm(join(dir, LOCK_FILE));
    const other = spawn('sleep', ['30']);
    children.push(other);
    await writeFile(join(dir, LOCK_FILE), `${other.pid}\n`);
    await expect(lockDataDir(dir)).rejects.toMatchObject({
      message: expect.stringContaining(`pid ${other.pid}`),
    });
  });

  // The finding this pins: a second process could unlink a lock another had just created and not
  // yet written, so two servers could end up on one data dir. The holder here is slowed down in
  // exactly that window: its file writes wait 3 s (a patched FileHandle.writeFile).
  it('never takes a lock over from a holder that has not finished taking it', async () => {
    const slow = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { open } from 'node:fs/promises';
         const probe = await open(${JSON.stringify(join(dir, 'probe'))}, 'w');
         const proto = Object.getPrototypeOf(probe);
         await probe.close();
         const write = proto.writeFile;
         proto.writeFile = async function (...args) {
           await new Promise((r) => setTimeout(r, 3000));
           return write.apply(this, args);
         };
         const { lockDataDir } = await import(${JSON.stringify(join(HERE, 'data-dir-lock.ts'))});
         await lockDataDir(${JSON.stringify(dir)});
         console.log('locked');
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(slow);
    const locked = new Promise<void>((resolve) =>
      slow.stdout?.on('data', (d: Buffer) => d.toString().includes('locked') && resolve()),
    );
    // Wait until the holder has created the lock file, and try while it is still writing.
    for (let i = 0; i < 200; i++) {
      if (
        await readFile(join(dir, LOCK_FILE)).then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await expect(lockDataDir(dir)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await locked;
    await expect(lockDataDir(dir)).rejects.toMatchObject({
      message: expect.stringContaining(`pid ${slow.pid}`),
    });
  }, 30_000);

  it('of many servers started at once on one data dir, exactly one wins; the others exit naming its pid', async () => {
    const n = 6;
    const servers = Array.from({ length: n }, () => {
      const child = spawn(
        process.execPath,
        [CLI, 'serve', '--data-dir', dir, '--port', '0', '--tls', 'off'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, KEYWARD_LOG_LEVEL: 'warn' },
        },
      );
      children.push(child);
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      return { child, stderr: () => stderr, exited };
    });
    // The losers exit on their own; the winner keeps serving.
    const outcomes = await Promise.all(
      servers.map((s) =>
        Promise.race([s.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 25_000))]),
      ),
    );
    const winners = servers.filter((_, i) => outcomes[i] === 'running');
    expect(winners).toHaveLength(1);
    const winnerPid = winners[0]!.child.pid;
    for (const [i, s] of servers.entries()) {
      if (s === winners[0]) continue;
      expect(outcomes[i]).not.toBe(0);
      expect(s.stderr()).toContain(`in use by another keyward server (pid ${winnerPid})`);
    }
    expect(await readFile(join(dir, PID_FILE), 'utf8')).toBe(`${winnerPid}\n`);
  }, 60_000);
});
