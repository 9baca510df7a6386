/** The full key lifecycle of PRODUCT.md §3 through the real HTTP API. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, KEYS, removeDir, startTestServer, type TestServer } from './harness.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s.stop();
  await removeDir(s.dataDir);
});

describe('key lifecycle over HTTP', () => {
  it('creates, reads, lists and patches a key; names are unique ignoring case', async () => {
    const created = await s.call('POST', KEYS, { name: 'Orders-Key', usage: 'AES256', memo: 'orders' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'Orders-Key',
      namespace: 'default',
      usage: 'AES256',
      convergent: false,
      boundary: 'Global',
      region: null,
      rotation: { enabled: true, periodDays: 90 },
      memo: 'orders',
      state: 'Enabled',
      currentVersion: 1,
      deletionScheduledTime: null,
      lastUsedTime: null,
      operationCounts: {},
    });
    expect(created.body.fingerprint).toMatch(/^blake3:[0-9a-f]+$/);
    expect(created.body.versions).toEqual([
      { version: 1, createdTime: created.body.createdTime, masterKeyVersion: 1 },
    ]);
    expect(Date.parse(created.body.nextRotationTime) - Date.parse(created.body.createdTime)).toBe(
      90 * 86_400_000,
    );
    expect(JSON.stringify(created.body)).not.toMatch(/wrapped|material/);

    const dup = await s.call('POST', KEYS, { name: 'orders-KEY', usage: 'ECDSA' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('ALREADY_EXISTS');

    const got = await s.call('GET', `${KEYS}/orders-key`);
    expect(got.status).toBe(200);
    expect(got.body.name).toBe('Orders-Key');

    const listed = await s.call('GET', KEYS);
    expect(listed.body.keys.map((k: { name: string }) => k.name)).toContain('Orders-Key');

    const patched = await s.call('PATCH', `${KEYS}/Orders-Key`, {
      memo: 'new memo',
      rotation: { periodDays: 30 },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.memo).toBe('new memo');
    expect(patched.body.rotation).toEqual({ enabled: true, periodDays: 30 });
    const off = await s.call('PATCH', `${KEYS}/Orders-Key`, { rotation: { enabled: false } });
    expect(off.body.nextRotationTime).toBeNull();
    const immutable = await s.call('PATCH', `${KEYS}/Orders-Key`, { usage: 'ECDSA' });
    expect(immutable.status).toBe(400);
    expect(immutable.body.error.field).toBe('usage');
  });

  it('disable refuses every operation with KEY_STATE naming the state; enable restores', async () => {
    await s.call('POST', KEYS, { name: 'toggle', usage: 'AES256' });
    const ct = (await s.call('POST', `${KEYS}/toggle/encrypt`, { plaintext: b64('x') })).body.ciphertext;
    const disabled = await s.call('POST', `${KEYS}/toggle/disable`);
    expect(disabled.status).toBe(200);
    expect(disabled.body.state).toBe('Disabled');
    for (const [op, body] of [
      ['encrypt', { plaintext: b64('x') }],
      ['decrypt', { ciphertext: ct }],
      ['data-key', {}],
    ] as const) {
      const r = await s.call('POST', `${KEYS}/toggle/${op}`, body);
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('KEY_STATE');
      expect(r.body.error.message).toMatch(/disabled/);
    }
    const batch = await s.call('POST', `${KEYS}/toggle/batch/encrypt`, {
      requests: [{ plaintext: b64('x') }],
    });
    expect(batch.status).toBe(409);
    expect((await s.call('POST', `${KEYS}/toggle/enable`, {})).body.state).toBe('Enabled');
    const back = await s.call('POST', `${KEYS}/toggle/decrypt`, { ciphertext: ct });
    expect(Buffer.from(back.body.plaintext, 'base64').toString()).toBe('x');
  });

  it('rotate adds a version; old ciphertexts decrypt and re-encrypt moves them to the current version', async () => {
    await s.call('POST', KEYS, { name: 'rotating', usage: 'AES256' });
    const before = await s.call('GET', `${KEYS}/rotating`);
    const v1 = (await s.call('POST', `${KEYS}/rotating/encrypt`, { plaintext: b64('old secret') })).body;
    expect(v1.keyVersion).toBe(1);
    const rotated = await s.call('POST', `${KEYS}/rotating/rotate`);
    expect(rotated.body.currentVersion).toBe(2);
    expect(rotated.body.versions).toHaveLength(2);
    expect(rotated.body.fingerprint).not.toBe(before.body.fingerprint);
    // A manual rotation does not shift the automatic schedule.
    expect(rotated.body.nextRotationTime).toBe(before.body.nextRotationTime);
    const v2 = (await s.call('POST', `${KEYS}/rotating/encrypt`, { plaintext: b64('new') })).body;
    expect(v2.ciphertext).toMatch(/^keyward:v2:/);
    const old = await s.call('POST', `${KEYS}/rotating/decrypt`, { ciphertext: v1.ciphertext });
    expect(Buffer.from(old.body.plaintext, 'base64').toString()).toBe('old secret');
    const moved = await s.call('POST', `${KEYS}/rotating/re-encrypt`, { ciphertext: v1.ciphertext });
    expect(moved.body.keyVersion).toBe(2);
    expect(moved.body).not.toHaveProperty('plaintext');
    const again = await s.call('POST', `${KEYS}/rotating/decrypt`, { ciphertext: moved.body.ciphertext });
    expect(Buffer.from(again.body.plaintext, 'base64').toString()).toBe('old secret');
  });

  it('request-deletion (with a recent-use warning), cancel, delete-now', async () => {
    await s.call('POST', KEYS, { name: 'doomed', usage: 'ECDSA' });
    await s.call('POST', `${KEYS}/unused/request-deletion`).then((r) => expect(r.status).toBe(404));
    await s.call('POST', KEYS, { name: 'unused', usage: 'AES256' });
    const quiet = await s.call('POST', `${KEYS}/unused/request-deletion`, {});
    expect(quiet.body.warnings).toBeUndefined();

    const sig = await s.call('POST', `${KEYS}/doomed/sign`, { data: b64('m') });
    expect(sig.status).toBe(200);
    const early = await s.call('DELETE', `${KEYS}/doomed`);
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe('KEY_STATE');

    const pending = await s.call('POST', `${KEYS}/doomed/request-deletion`);
    expect(pending.status).toBe(200);
    expect(pending.body.state).toBe('PendingDeletion');
    expect(pending.body.warnings?.[0]).toMatch(/used in the last 7 days/);
    const delay = Date.parse(pending.body.deletionScheduledTime) - Date.now();
    expect(delay).toBeGreaterThan(71 * 3_600_000);
    expect(delay).toBeLessThanOrEqual(72 * 3_600_000);

    const refused = await s.call('POST', `${KEYS}/doomed/sign`, { data: b64('m') });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toMatch(/pending deletion/);
    expect((await s.call('POST', `${KEYS}/doomed/enable`)).status).toBe(409);
    expect((await s.call('POST', `${KEYS}/doomed/rotate`)).status).toBe(409);

    const cancelled = await s.call('POST', `${KEYS}/doomed/cancel-deletion`);
    expect(cancelled.body.state).toBe('Disabled');
    expect(cancelled.body.deletionScheduledTime).toBeNull();

    await s.call('POST', `${KEYS}/doomed/request-deletion`);
    const gone = await s.call('DELETE', `${KEYS}/doomed`);
    expect(gone.status).toBe(200);
    expect(gone.body).toEqual({ name: 'doomed', namespace: 'default', state: 'Destroyed' });
    const after = await s.call('GET', `${KEYS}/doomed`);
    expect(after.status).toBe(404);
    expect(after.body.error.code).toBe('KEY_NOT_FOUND');
    // The name is free again, and the new key is a new incarnation.
    expect((await s.call('POST', KEYS, { name: 'doomed', usage: 'AES256' })).status).toBe(201);
  });

  it('shows usage history: last use and counts per operation', async () => {
    await s.call('POST', KEYS, { name: 'counted', usage: 'RSA2048' });
    const t0 = Date.now();
    const ct = (await s.call('POST', `${KEYS}/counted/encrypt`, { plaintext: b64('a') })).body.ciphertext;
    await s.call('POST', `${KEYS}/counted/decrypt`, { ciphertext: ct });
    await s.call('POST', `${KEYS}/counted/sign`, { data: b64('m') });
    await s.call('POST', `${KEYS}/counted/batch/sign`, {
      requests: [{ data: b64('1') }, { data: b64('2') }],
    });
    await s.call('GET', `${KEYS}/counted/public-key`);
    const got = (await s.call('GET', `${KEYS}/counted`)).body;
    expect(got.operationCounts).toEqual({ encrypt: 1, decrypt: 1, sign: 3, 'get-public-key': 1 });
    expect(Date.parse(got.lastUsedTime)).toBeGreaterThanOrEqual(t0 - 5);
  });
});
