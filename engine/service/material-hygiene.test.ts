/**
 * Material hygiene through the real KeyService, store and worker pool (review findings: worker
 * caches keyed by `ns/name@createdTime#version` served a re-created key the old material, and
 * `destroy()` left copies in the workers).
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAesGcm } from '../crypto/aes-gcm.ts';
import { parseCiphertext } from '../crypto/format.ts';
import { unwrapMaterial } from '../crypto/wrap.ts';
import { CryptoEngine } from '../engine.ts';
import { FileKeyStore } from '../store/file-key-store.ts';
import { KeyService } from './key-service.ts';

let dataDir: string;
let service: KeyService | undefined;
const master = createSecretKey(randomBytes(32));

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-hygiene-'));
});
afterEach(async () => {
  await service?.close();
  service = undefined;
  await rm(dataDir, { recursive: true, force: true });
});

async function start(now: () => number): Promise<KeyService> {
  service = await KeyService.start({
    store: await FileKeyStore.open(dataDir),
    master: master as never,
    engine: new CryptoEngine({ threads: 2 }),
    logger: pino({ level: 'silent' }),
    deletionDelayMs: 0,
    now,
  });
  return service;
}

/** Version `version` of the stored key, unwrapped here (not through the engine). */
async function storedMaterial(name: string, version: number): Promise<Buffer> {
  const store = await FileKeyStore.open(dataDir);
  const record = (await store.get('default', name))!;
  const v = record.versions.find((x) => x.version === version)!;
  return unwrapMaterial(
    master,
    { store: 'default', name, usage: record.usage, version },
    Buffer.from(v.wrapped, 'base64'),
  );
}

describe('a key destroyed and re-created in the same millisecond', () => {
  it('is served its own new material, never the old one', async () => {
    const s = await start(() => 1_700_000_000_000);
    const plaintext = Buffer.from('before');
    await s.create('default', { name: 'reborn', usage: 'AES256' });
    // Warm both workers' caches with the first incarnation.
    const old = await Promise.all(
      Array.from({ length: 64 }, () => s.encrypt('default', 'reborn', { plaintext })),
    );
    await s.action('default', 'reborn', 'request-deletion');
    await s.action('default', 'reborn', 'delete-now');
    await s.create('default', { name: 'reborn', usage: 'AES256' });

    const fresh = await Promise.all(
      Array.from({ length: 64 }, () => s.encrypt('default', 'reborn', { plaintext: Buffer.from('after') })),
    );
    const material = await storedMaterial('reborn', 1);
    for (const { ciphertext } of fresh) {
      // Sealed under the new incarnation's material, as the store holds it.
      const body = parseCiphertext(ciphertext).body;
      expect(openAesGcm(createSecretKey(material), body).toString()).toBe('after');
    }
    for (const { ciphertext } of old) {
      // The old incarnation's ciphertexts are gone with its material.
      await expect(s.decrypt('default', 'reborn', { ciphertext })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
    }
  });
});

/** Polls the workers until `check` holds for their caches. */
async function workersUntil(
  s: KeyService,
  check: (caches: Awaited<ReturnType<CryptoEngine['pool']['workerCaches']>>) => boolean,
): Promise<Awaited<ReturnType<CryptoEngine['pool']['workerCaches']>>> {
  const engine = (s as unknown as { engine: CryptoEngine }).engine;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const caches = await engine.pool.workerCaches(1_000);
    if (caches.length === 2 && check(caches)) return caches;
    if (Date.now() > deadline) throw new Error(`workers never got there: ${JSON.stringify(caches)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs bursts of operations on `name` until both workers hold `held` keys. */
async function useOnBothWorkers(s: KeyService, name: string, held: number): Promise<void> {
  const engine = (s as unknown as { engine: CryptoEngine }).engine;
  for (let i = 0; i < 50; i++) {
    await Promise.all(
      Array.from({ length: 400 }, () => s.encrypt('default', name, { plaintext: Buffer.from('x') })),
    );
    const caches = await engine.pool.workerCaches(1_000);
    if (caches.length === 2 && caches.every((c) => c.ids.length >= held)) return;
  }
  throw new Error(`${name} never reached both workers`);
}

describe('worker caches', () => {
  it('register each key version once per worker, however many tasks use it', async () => {
    const s = await start(Date.now);
    await s.create('default', { name: 'busy', usage: 'AES256' });
    for (let round = 0; round < 10; round++) await useOnBothWorkers(s, 'busy', 1);
    const caches = await workersUntil(s, (c) => c.every((w) => w.ids.length === 1));
    // Concurrent first tasks on one worker may both bring the material: at most one per slot.
    for (const w of caches) expect(w.registrations).toBeLessThanOrEqual(2);
  });

  it('drop a destroyed key from every worker', async () => {
    const s = await start(Date.now);
    await s.create('default', { name: 'doomed', usage: 'AES256' });
    await s.create('default', { name: 'keeper', usage: 'AES256' });
    await useOnBothWorkers(s, 'doomed', 1);
    await useOnBothWorkers(s, 'keeper', 2);
    const before = await workersUntil(s, (c) => c.every((w) => w.ids.length === 2));
    await s.action('default', 'doomed', 'request-deletion');
    await s.action('default', 'doomed', 'delete-now');
    const after = await workersUntil(s, (c) => c.every((w) => w.ids.length === 1));
    // The one left is the keeper's, on both workers.
    expect(new Set(after.flatMap((w) => w.ids)).size).toBe(1);
    expect(before[0]!.ids).toContain(after[0]!.ids[0]);
  });

  it('drop a disabled key from every worker, and take it back under a new id when enabled', async () => {
    const s = await start(Date.now);
    await s.create('default', { name: 'paused', usage: 'AES256', convergent: true });
    const context = Buffer.from('tenant');
    const sealed = await s.encrypt('default', 'paused', { plaintext: Buffer.from('p'), context });
    await workersUntil(s, (c) => c.some((w) => w.ids.length === 1 && w.contexts === 1));
    const [held] = (await workersUntil(s, (c) => c.some((w) => w.ids.length === 1))).flatMap((w) => w.ids);
    await s.action('default', 'paused', 'disable');
    await workersUntil(s, (c) => c.every((w) => w.ids.length === 0 && w.contexts === 0));
    await expect(
      s.encrypt('default', 'paused', { plaintext: Buffer.from('p'), context }),
    ).rejects.toMatchObject({
      code: 'KEY_STATE',
    });
    await s.action('default', 'paused', 'enable');
    const opened = await s.decrypt('default', 'paused', { ciphertext: sealed.ciphertext, context });
    expect(opened.plaintext.toString()).toBe('p');
    const now = await workersUntil(s, (c) => c.some((w) => w.ids.length === 1));
    expect(now.flatMap((w) => w.ids)).not.toContain(held);
  });
});
