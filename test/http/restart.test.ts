/**
 * What must survive a restart: deletion deadlines (short test delay), usage history, region
 * refusal of Isolated keys. Each server is a real in-process server over one data dir.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { b64, KEYS, removeDir, startTestServer } from './harness.ts';

const dirs: string[] = [];
async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-restart-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('deletion delay (test flag)', () => {
  it('destroys the key once the short delay has passed', async () => {
    const s = await startTestServer({ dataDir: await freshDir(), deletionDelayMs: 2000 });
    try {
      await s.call('POST', KEYS, { name: 'short', usage: 'AES256' });
      const pending = await s.call('POST', `${KEYS}/short/request-deletion`);
      expect(Date.parse(pending.body.deletionScheduledTime) - Date.now()).toBeLessThanOrEqual(2000);
      await sleep(1000);
      expect((await s.call('GET', `${KEYS}/short`)).body.state).toBe('PendingDeletion');
      await sleep(1800);
      expect((await s.call('GET', `${KEYS}/short`)).status).toBe(404);
    } finally {
      await s.stop();
    }
  });

  it('keeps the deadline across a restart during the wait, and destroys overdue keys at start', async () => {
    const dataDir = await freshDir();
    let s = await startTestServer({ dataDir, deletionDelayMs: 2500 });
    await s.call('POST', KEYS, { name: 'waiting', usage: 'AES256' });
    await s.call('POST', KEYS, { name: 'overdue', usage: 'AES256' });
    const deadline = (await s.call('POST', `${KEYS}/waiting/request-deletion`)).body.deletionScheduledTime;
    await s.call('POST', `${KEYS}/overdue/request-deletion`);
    await s.stop();

    // Restarted with a long delay: the stored deadline still rules.
    s = await startTestServer({ dataDir, deletionDelayMs: 3_600_000 });
    try {
      const got = await s.call('GET', `${KEYS}/waiting`);
      expect(got.body.state).toBe('PendingDeletion');
      expect(got.body.deletionScheduledTime).toBe(deadline);
      await sleep(Math.max(0, Date.parse(deadline) - Date.now()) + 800);
      expect((await s.call('GET', `${KEYS}/waiting`)).status).toBe(404);
    } finally {
      await s.stop();
    }
    // Down past its deadline: destroyed at start.
    s = await startTestServer({ dataDir });
    try {
      expect((await s.call('GET', `${KEYS}/overdue`)).status).toBe(404);
    } finally {
      await s.stop();
    }
  });
});

describe('persistence', () => {
  it('keeps usage history, versions and decryptability across restarts', async () => {
    const dataDir = await freshDir();
    let s = await startTestServer({ dataDir });
    await s.call('POST', KEYS, { name: 'durable', usage: 'AES256' });
    const ct = (await s.call('POST', `${KEYS}/durable/encrypt`, { plaintext: b64('kept') })).body.ciphertext;
    await s.call('POST', `${KEYS}/durable/rotate`);
    await s.call('POST', `${KEYS}/durable/encrypt`, { plaintext: b64('more') });
    const before = (await s.call('GET', `${KEYS}/durable`)).body;
    await s.stop();
    s = await startTestServer({ dataDir });
    try {
      const after = (await s.call('GET', `${KEYS}/durable`)).body;
      expect(after).toEqual(before);
      expect(after.operationCounts).toEqual({ encrypt: 2 });
      const pt = await s.call('POST', `${KEYS}/durable/decrypt`, { ciphertext: ct });
      expect(Buffer.from(pt.body.plaintext, 'base64').toString()).toBe('kept');
    } finally {
      await s.stop();
    }
  });

  it('the admin token is kept and the wrong one is refused after restart', async () => {
    const dataDir = await freshDir();
    const a = await startTestServer({ dataDir });
    const token = a.token;
    await a.stop();
    const b = await startTestServer({ dataDir });
    try {
      expect(b.token).toBe(token);
      expect(b.server.token.created).toBe(false);
    } finally {
      await b.stop();
    }
  });
});

describe('regions', () => {
  it('an engine in another region (or none) refuses an Isolated key', async () => {
    const dataDir = await freshDir();
    let s = await startTestServer({ dataDir, region: 'kr-1' });
    const created = await s.call('POST', KEYS, {
      name: 'local',
      usage: 'AES256',
      boundary: 'Isolated',
      region: 'kr-1',
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ boundary: 'Isolated', region: 'kr-1' });
    const wrong = await s.call('POST', KEYS, {
      name: 'other',
      usage: 'AES256',
      boundary: 'Isolated',
      region: 'us-1',
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.field).toBe('region');
    await s.call('POST', KEYS, { name: 'global', usage: 'AES256' });
    const ct = (await s.call('POST', `${KEYS}/local/encrypt`, { plaintext: b64('x') })).body.ciphertext;
    expect(ct).toMatch(/^keyward:v1:/);
    await s.stop();

    for (const region of ['us-1', undefined]) {
      s = await startTestServer({ dataDir, ...(region ? { region } : {}) });
      try {
        const refused = await s.call('POST', `${KEYS}/local/decrypt`, { ciphertext: ct });
        expect(refused.status).toBe(409);
        expect(refused.body.error.code).toBe('KEY_STATE');
        expect(refused.body.error.message).toMatch(/region/);
        expect((await s.call('POST', `${KEYS}/global/encrypt`, { plaintext: b64('x') })).status).toBe(200);
      } finally {
        await s.stop();
      }
    }
  });
});
