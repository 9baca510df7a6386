/**
 * Start-up and configuration findings of issue #12 (and #16's data dir under /proc): each damaged
 * or hostile data dir is refused with one clear error naming the file, or accepted when it is
 * harmless, and never spins.
 */
import { chmod, chown, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type StandaloneOptions, startStandalone } from '../../engine/http/standalone.ts';
import { KEYS, removeDir, startTestServer } from './harness.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await removeDir(d);
});

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-start-'));
  dirs.push(dir);
  return dir;
}

function start(dataDir: string, extra: Partial<StandaloneOptions> = {}) {
  return startStandalone({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    tls: { mode: 'off' },
    logger: pino({ level: 'silent' }),
    env: {},
    threads: 1,
    ...extra,
  });
}

/** Starts once to lay out the data dir, then stops. */
async function initialised(): Promise<string> {
  const dir = await freshDir();
  await (await start(dir)).close();
  return dir;
}

describe('start-up refuses or accepts damaged data dirs clearly', () => {
  it('a keys/lost+found directory (keys/ is a volume root) does not stop start-up', async () => {
    const dir = await initialised();
    await mkdir(join(dir, 'keys', 'lost+found'), { mode: 0o700 });
    const s = await startTestServer({ dataDir: dir });
    try {
      expect((await s.call('GET', KEYS)).status).toBe(200);
    } finally {
      await s.stop();
    }
  });

  it('a token with whitespace, which no request could send, is refused at start', async () => {
    const dir = await freshDir();
    await expect(start(dir, { env: { KEYWARD_TOKEN: 'token with spaces 1234567890' } })).rejects.toThrow(
      /KEYWARD_TOKEN: the token may hold only visible ASCII/,
    );
    const other = await initialised();
    await writeFile(join(other, 'admin.token'), 'kw_abc def ghi jkl mno pqr\n', { mode: 0o600 });
    await expect(start(other)).rejects.toThrow(/admin\.token: the token may hold only visible ASCII/);
  });

  it('admin.token readable by group or others is refused, like master.key', async () => {
    const dir = await initialised();
    await chmod(join(dir, 'admin.token'), 0o644);
    await expect(start(dir)).rejects.toThrow(/admin\.token has mode 0644; .*chmod 600/);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'admin.token planted by another user (a world-writable data dir) is refused',
    async () => {
      const dir = await initialised();
      await chown(join(dir, 'admin.token'), 4242, 4242);
      await expect(start(dir)).rejects.toThrow(/admin\.token belongs to uid 4242, not to this user/);
    },
  );

  it('a garbage tls/key.pem or tls/cert.pem is an error naming the file', async () => {
    const dir = await freshDir();
    await (await start(dir, { tls: { mode: 'auto' } })).close();
    await writeFile(join(dir, 'tls', 'key.pem'), 'garbage', { mode: 0o600 });
    await expect(start(dir, { tls: { mode: 'auto' } })).rejects.toThrow(
      new RegExp(`TLS file ${join(dir, 'tls', 'key.pem')}: is not a PEM private key`),
    );
    await writeFile(join(dir, 'tls', 'cert.pem'), 'garbage');
    await expect(start(dir, { tls: { mode: 'auto' } })).rejects.toThrow(
      /cert\.pem: is not a PEM certificate/,
    );
    await expect(
      start(dir, { tls: { mode: 'files', cert: join(dir, 'nope.pem'), key: join(dir, 'tls', 'key.pem') } }),
    ).rejects.toThrow(/nope\.pem: does not exist/);
  });

  it('--region is validated like the key spec (BAD_Region is refused)', async () => {
    const dir = await freshDir();
    await expect(start(dir, { region: 'BAD_Region' })).rejects.toThrow(/region must be 1 to 63 lowercase/);
    await (await start(dir, { region: 'eu-west-1' })).close();
  });

  it('a data dir under /proc is refused at once instead of spinning in mkdir', {
    timeout: 20_000,
  }, async () => {
    const started = Date.now();
    await expect(start('/proc/self/x')).rejects.toThrow(/cannot use \/proc\/self\/x as the data dir/);
    await expect(start('/proc/self/x/y/z')).rejects.toThrow(/cannot be created \(ENOENT\)/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
