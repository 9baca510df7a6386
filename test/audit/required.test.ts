/**
 * `--audit-required` against a real full disk: the data dir is on a 1 MiB tmpfs that a filler
 * file then fills, so the audit writes fail with ENOSPC from the kernel. Required: the request
 * whose record cannot be written gets 503 instead of its result, later ones are refused before
 * they are served, and /readyz says not ready; once space is back, service resumes by itself and
 * the log says how many events were lost. Not required (the standalone default): requests are
 * served and the lost records are counted. Needs root to mount the tmpfs (as CI runs); skipped,
 * saying so, where it cannot.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultAuditConfig } from '../../engine/audit/config.ts';
import { AUDIT_DIR, readMasterKeyFile } from '../../engine/audit/verify-files.ts';
import { type Standalone, startStandalone } from '../../engine/http/standalone.ts';
import { readLines, removeDir, segmentFiles, tempDir, verifyDir } from './fixtures.ts';

const mounts: string[] = [];
function tmpfs(): string | undefined {
  const dir = tempDir('keyward-audit-full-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', dir], { stdio: 'pipe' });
  } catch {
    removeDir(dir);
    return undefined;
  }
  mounts.push(dir);
  return dir;
}
afterAll(() => {
  for (const m of mounts) {
    try {
      execFileSync('umount', [m], { stdio: 'pipe' });
    } catch {}
    removeDir(m);
  }
});

const canMount = (() => {
  const probe = tmpfs();
  return probe !== undefined;
})();

/** Fills the file system of `dir` to the last block. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const { bavail, bsize } = statfsSync(dir);
  writeFileSync(path, Buffer.alloc(Number(bavail) * Number(bsize)));
  return path;
}

async function start(dataDir: string, required: boolean): Promise<Standalone> {
  return startStandalone({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    tls: { mode: 'off' },
    logger: pino({ level: 'silent' }),
    env: {},
    threads: 1,
    audit: { ...defaultAuditConfig(), required, checkpointRecords: 5 },
  });
}

function client(s: Standalone) {
  return async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${s.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${s.token.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    // biome-ignore lint/suspicious/noExplicitAny: inspected field by field
    return { status: res.status, body: (await res.json()) as any, headers: res.headers };
  };
}

async function until<T>(what: string, get: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const KEYS = '/v1/namespaces/default/keys';
const ENC = `${KEYS}/full/encrypt`;

describe.skipIf(!canMount)('a full disk under the audit log', { timeout: 60_000 }, () => {
  it('--audit-required: 503 instead of unrecorded service, and service resumes with space', async () => {
    const dataDir = join(tmpfs()!, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    const s = await start(dataDir, true);
    const call = client(s);
    try {
      expect((await call('POST', KEYS, { name: 'full', usage: 'AES256' })).status).toBe(201);
      expect((await call('POST', ENC, { plaintext: 'aGk=' })).status).toBe(200);
      const filler = fill(dataDir);
      // The segment's last page still has room for a few records; the first that needs a new
      // page is refused.
      let refused = await call('POST', ENC, { plaintext: 'aGk=' });
      for (let i = 0; i < 200 && refused.status === 200; i++) {
        refused = await call('POST', ENC, { plaintext: 'aGk=' });
      }
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe('UNAVAILABLE');
      expect(refused.body.error.message).toMatch(/audit log/);
      expect(refused.body.ciphertext).toBeUndefined();
      expect(refused.headers.get('retry-after')).toBe('5');
      expect((await call('POST', ENC, { plaintext: 'aGk=' })).status).toBe(503);
      expect((await fetch(`${s.url}/readyz`)).status).toBe(503);
      expect(s.audit!.healthy).toBe(false);

      rmSync(filler);
      await until('service to resume', async () =>
        (await call('POST', ENC, { plaintext: 'aGk=' })).status === 200 ? true : undefined,
      );
      expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
    } finally {
      await s.close();
    }
    const files = segmentFiles(join(dataDir, AUDIT_DIR));
    const resumed = files.map((f) => JSON.parse(readLines(f)[0]!)).find((r) => r.dropped !== undefined);
    expect(resumed).toMatchObject({ type: 'segment' });
    expect(resumed.dropped).toBeGreaterThanOrEqual(1);
    const r = await verifyDir(join(dataDir, AUDIT_DIR), [
      await readMasterKeyFile(join(dataDir, 'master.key')),
    ]);
    expect(r.finding).toBeUndefined();
    expect(r.valid).toBe(true);
  });

  it('not required (the standalone default): served, and the lost records are counted', async () => {
    const dataDir = join(tmpfs()!, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    const s = await start(dataDir, false);
    const call = client(s);
    try {
      expect((await call('POST', KEYS, { name: 'full', usage: 'AES256' })).status).toBe(201);
      // One encryption before the disk fills reserves the key's nonce count ahead (a durable
      // write; docs/crypto.md "Nonce budget"): later encryptions need no write until the block is
      // spent, so only the audit log feels the full disk here.
      expect((await call('POST', ENC, { plaintext: 'aGk=' })).status).toBe(200);
      const filler = fill(dataDir);
      await until('the failure to show', async () => {
        expect((await call('POST', ENC, { plaintext: 'aGk=' })).status).toBe(200);
        await s.audit!.flush();
        return s.audit!.healthy ? undefined : true;
      });
      // Served while the log cannot write: these records are lost, and counted.
      for (let i = 0; i < 3; i++) expect((await call('POST', ENC, { plaintext: 'aGk=' })).status).toBe(200);
      expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
      const metrics = await (await fetch(s.metricsUrl!)).text();
      expect(metrics).toMatch(/keyward_audit_healthy 0/);
      rmSync(filler);
      await until('the log to recover', async () => (s.audit!.healthy ? true : undefined));
      expect(s.audit!.stats.dropped).toBeGreaterThanOrEqual(1);
    } finally {
      await s.close();
    }
  });
});
