/**
 * The standalone master key at start, through real `keyward serve` processes (review findings:
 * a missing or replaced master.key was silently replaced by a new one, and one key whose
 * material could not be unwrapped turned the whole namespace list into a 500).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { b64, call, KEYS, runCli, serve } from './helpers.ts';

let root: string;
let dataDir: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'keyward-mk-'));
  dataDir = join(root, 'data');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Creates keys alpha (AES) and beta (ECDSA) and one ciphertext; returns the ciphertext. */
async function seed(args: string[] = []): Promise<string> {
  const server = await serve(dataDir, args);
  try {
    expect((await call(server, 'POST', KEYS, { name: 'alpha', usage: 'AES256' })).status).toBe(201);
    expect((await call(server, 'POST', KEYS, { name: 'beta', usage: 'ECDSA' })).status).toBe(201);
    return (await call(server, 'POST', `${KEYS}/alpha/encrypt`, { plaintext: b64('kept') })).body.ciphertext;
  } finally {
    await server.stop();
  }
}

/** Runs serve expecting it to refuse: returns its stderr. */
async function refused(args: string[] = []): Promise<string> {
  const r = await runCli(['serve', '--data-dir', dataDir, '--port', '0', '--tls', 'off', ...args], {
    env: { KEYWARD_LOG_LEVEL: 'warn' },
  });
  expect(r.code).toBe(1);
  return r.stderr;
}

describe('keyward serve with a missing or wrong master key', { timeout: 120_000 }, () => {
  it('refuses to start without master.key when keys exist, in one line naming the file, and creates none', async () => {
    const ciphertext = await seed();
    const original = await readFile(join(dataDir, 'master.key'));
    await rm(join(dataDir, 'master.key'));
    const stderr = await refused();
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain(join(dataDir, 'master.key'));
    expect(stderr).toMatch(/is missing.*restore it from your backup/);
    expect(await readdir(dataDir)).not.toContain('master.key');

    // 32 random bytes in its place: refused, and the file is left as it is.
    const wrong = randomBytes(32);
    await writeFile(join(dataDir, 'master.key'), wrong, { mode: 0o600 });
    expect(await refused()).toMatch(/is not the master key of .*key-check value/);
    expect((await readFile(join(dataDir, 'master.key'))).equals(wrong)).toBe(true);

    // The original file back: everything as before.
    await writeFile(join(dataDir, 'master.key'), original, { mode: 0o600 });
    const server = await serve(dataDir);
    try {
      const r = await call(server, 'POST', `${KEYS}/alpha/decrypt`, { ciphertext });
      expect(r.body.plaintext).toBe(b64('kept'));
    } finally {
      await server.stop();
    }
  });

  it('lists a key whose material cannot be unwrapped with an error, and serves the others', async () => {
    await seed();
    // Damage beta's wrapped material (still valid base64, still a version-1 blob).
    const path = join(dataDir, 'keys', 'default', 'beta.json');
    const record = JSON.parse(await readFile(path, 'utf8'));
    const blob = Buffer.from(record.versions[0].wrapped, 'base64');
    blob[blob.length - 1]! ^= 1;
    record.versions[0].wrapped = blob.toString('base64');
    await writeFile(path, JSON.stringify(record));

    const server = await serve(dataDir);
    try {
      const list = await call(server, 'GET', KEYS);
      expect(list.status).toBe(200);
      const beta = list.body.keys.find((k: { name: string }) => k.name === 'beta');
      expect(beta.state).toBe('Enabled');
      expect(beta.fingerprint).toBeNull();
      expect(beta.materialError).toMatch(
        /version 1 of this key cannot be unwrapped with master-key version 1/,
      );
      const alpha = list.body.keys.find((k: { name: string }) => k.name === 'alpha');
      expect(alpha.materialError).toBeUndefined();
      expect(alpha.fingerprint).toMatch(/^blake3:/);

      const sign = await call(server, 'POST', `${KEYS}/beta/sign`, { data: b64('m') });
      expect(sign.status).toBe(409);
      expect(sign.body.error.code).toBe('KEY_STATE');
      expect(JSON.stringify(sign.body)).not.toMatch(/[A-Za-z0-9+/]{40,}/);
      expect((await call(server, 'POST', `${KEYS}/alpha/encrypt`, { plaintext: b64('x') })).status).toBe(200);
      // It can still be managed: disabled, and deleted.
      expect((await call(server, 'POST', `${KEYS}/beta/disable`)).status).toBe(200);
      expect((await call(server, 'POST', `${KEYS}/beta/request-deletion`)).status).toBe(200);
      expect((await call(server, 'DELETE', `${KEYS}/beta`)).status).toBe(200);
    } finally {
      await server.stop();
    }
    expect(server.output()).toMatch(/key material unavailable/);
  });

  it('keeps the master key outside the data dir with --master-key-file', async () => {
    await mkdir(join(root, 'secure'), { mode: 0o700 });
    const file = join(root, 'secure', 'master.key');
    const ciphertext = await seed(['--master-key-file', file]);
    expect(await readdir(dataDir)).not.toContain('master.key');
    expect((await readFile(file)).length).toBe(32);
    // Without the flag the data dir alone cannot start: its keys need that file.
    expect(await refused()).toMatch(/is missing, but the 2 key\(s\)/);
    const server = await serve(dataDir, ['--master-key-file', file]);
    try {
      expect((await call(server, 'POST', `${KEYS}/alpha/decrypt`, { ciphertext })).body.plaintext).toBe(
        b64('kept'),
      );
      const got = await runCli(['key', 'get', 'alpha', '--data-dir', dataDir], {
        env: { KEYWARD_ADDR: server.url, KEYWARD_TOKEN: server.token },
      });
      expect(got.stderr).toBe('');
      expect(got.out).toMatch(/v1 \S+ \(master key v1, nonces used \d+\)/);
    } finally {
      await server.stop();
    }
  });
});
