/** The deletion delay test flag on a real server process, across a restart during the wait. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startServerProcess } from './harness.ts';

describe('--deletion-delay-for-tests', { timeout: 180_000 }, () => {
  it('destroys the key after the short delay, even across a restart during the wait', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'keyward-del-'));
    const kw = (args: string[]) => runCli([...args, '--data-dir', dataDir, '-o', 'json']);
    try {
      let server = await startServerProcess(dataDir, ['--tls', 'off', '--deletion-delay-for-tests', '4s']);
      expect(server.output()).toMatch(/for tests only/);
      expect((await kw(['key', 'create', 'short-lived', '--usage', 'AES256'])).code).toBe(0);
      const pending = JSON.parse((await kw(['key', 'delete', 'short-lived'])).out);
      expect(pending.state).toBe('PendingDeletion');
      await server.stop();

      server = await startServerProcess(dataDir, ['--tls', 'off', '--deletion-delay-for-tests', '4s']);
      try {
        const still = JSON.parse((await kw(['key', 'get', 'short-lived'])).out);
        expect(still.deletionScheduledTime).toBe(pending.deletionScheduledTime);
        await new Promise((r) =>
          setTimeout(r, Math.max(0, Date.parse(pending.deletionScheduledTime) - Date.now()) + 1000),
        );
        const gone = await kw(['key', 'get', 'short-lived']);
        expect(gone.code).toBe(1);
        expect(gone.stderr).toMatch(/KEY_NOT_FOUND/);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
