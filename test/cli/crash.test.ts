/**
 * Crash safety (§10): kill -9 the server during a burst of creates and rotations, restart it, and
 * check that everything acknowledged is there and that ciphertexts made before the crash decrypt.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type ServerProcess, startServerProcess } from './harness.ts';

const KEYS = '/v1/namespaces/default/keys';
let dataDir: string;
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function call(server: ServerProcess, method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${server.token}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  // biome-ignore lint/suspicious/noExplicitAny: inspected field by field
  return { status: res.status, body: (await res.json()) as any };
}

describe('kill -9 during writes', { timeout: 180_000 }, () => {
  it('loses nothing acknowledged and keeps old ciphertexts decryptable', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'keyward-crash-'));
    let server = await startServerProcess(dataDir, ['--tls', 'off']);
    const ciphertexts: Array<{ key: string; ciphertext: string; plaintext: string }> = [];
    for (const name of ['base-a', 'base-b']) {
      expect((await call(server, 'POST', KEYS, { name, usage: 'AES256' })).status).toBe(201);
      for (let i = 0; i < 3; i++) {
        const plaintext = Buffer.from(`${name} #${i}`).toString('base64');
        const r = await call(server, 'POST', `${KEYS}/${name}/encrypt`, { plaintext });
        ciphertexts.push({ key: name, ciphertext: r.body.ciphertext, plaintext });
        await call(server, 'POST', `${KEYS}/${name}/rotate`);
      }
    }

    // The burst: creates and rotations in flight when the process is killed.
    const acknowledgedCreates = new Set<string>();
    const acknowledgedVersions = new Map<string, number>();
    let stop = false;
    const creator = (async () => {
      for (let i = 0; !stop; i++) {
        const name = `burst-${i}`;
        try {
          const r = await call(server, 'POST', KEYS, { name, usage: i % 3 === 0 ? 'ECDSA' : 'AES256' });
          if (r.status === 201) acknowledgedCreates.add(name);
        } catch {
          return; // the server is gone
        }
      }
    })();
    const rotator = (key: string) =>
      (async () => {
        while (!stop) {
          try {
            const r = await call(server, 'POST', `${KEYS}/${key}/rotate`);
            if (r.status === 200) acknowledgedVersions.set(key, r.body.currentVersion);
            const plaintext = Buffer.from(`${key} at v${r.body.currentVersion}`).toString('base64');
            const e = await call(server, 'POST', `${KEYS}/${key}/encrypt`, { plaintext });
            if (e.status === 200) ciphertexts.push({ key, ciphertext: e.body.ciphertext, plaintext });
          } catch {
            return;
          }
        }
      })();
    const workers = [creator, creator, rotator('base-a'), rotator('base-b')];
    await new Promise((r) => setTimeout(r, 1500));
    await server.kill9();
    stop = true;
    await Promise.all(workers);
    expect(acknowledgedCreates.size).toBeGreaterThan(0);

    server = await startServerProcess(dataDir, ['--tls', 'off']);
    try {
      const listed = await call(server, 'GET', KEYS);
      const names = new Set(listed.body.keys.map((k: { name: string }) => k.name));
      for (const name of acknowledgedCreates) expect(names.has(name), name).toBe(true);
      for (const [key, version] of acknowledgedVersions) {
        const got = await call(server, 'GET', `${KEYS}/${key}`);
        expect(got.body.currentVersion).toBeGreaterThanOrEqual(version);
        expect(got.body.versions.map((v: { version: number }) => v.version)).toEqual(
          Array.from({ length: got.body.currentVersion }, (_, i) => i + 1),
        );
      }
      for (const { key, ciphertext, plaintext } of ciphertexts) {
        const r = await call(server, 'POST', `${KEYS}/${key}/decrypt`, { ciphertext });
        expect(r.status, ciphertext).toBe(200);
        expect(r.body.plaintext).toBe(plaintext);
      }
      // The restarted store is fully usable: every listed key works.
      for (const k of listed.body.keys.filter((k: { usage: string }) => k.usage === 'AES256').slice(0, 20)) {
        expect((await call(server, 'POST', `${KEYS}/${k.name}/encrypt`, { plaintext: 'AA==' })).status).toBe(
          200,
        );
      }
    } finally {
      await server.stop();
    }
  });
});
