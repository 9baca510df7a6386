/**
 * An operation whose ring is replaced while it waits in the pool (a cluster engine re-reads a key
 * re-wrapped under a new master-key version, or re-reads every key when the master-key Secret
 * changes) is run again on the new ring, not refused. Found by the kill -9 master-key rotation
 * test (test/operator/master-key-rotation-kill.test.ts): a decrypt racing the retirement of the
 * old master-key version answered 409 "the key was disabled or destroyed while the operation was
 * pending" for a key that was neither. A key really destroyed is still refused.
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CryptoEngine, type KeyRing } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { FileKeyStore } from '../store/file-key-store.ts';
import { CryptoBackend } from './crypto-backend.ts';
import { KeyService } from './key-service.ts';
import { MaterialCache } from './rings.ts';

const master = createSecretKey(randomBytes(32));
let dataDir: string;
let record: KeyRecord;
let ciphertext: string;

/** A backend whose key's ring is held by a MaterialCache the test can replace or destroy. */
class SwappableBackend extends CryptoBackend {
  cache = new MaterialCache(master, record);
  disabled = false;
  protected usableRing(): KeyRing {
    if (this.disabled) throw new KeywardError('KEY_STATE', 'the key is disabled');
    return this.cache.ring();
  }
  protected recordUse(): void {}
  /** Replaces the cache (same record: the material re-read) and revokes the old one everywhere. */
  replace(): void {
    const old = this.cache;
    this.cache = new MaterialCache(master, record);
    this.engine.evict(old.destroy());
  }
  destroy(): void {
    this.disabled = true;
    this.engine.evict(this.cache.destroy());
  }
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-ring-'));
  const store = await FileKeyStore.open(dataDir);
  const service = await KeyService.start({
    store,
    master: master as never,
    engine: new CryptoEngine({ threads: 1 }),
    logger: pino({ level: 'silent' }),
    deletionDelayMs: 0,
  });
  await service.create('default', { name: 'swapped', usage: 'AES256' });
  ciphertext = (await service.encrypt('default', 'swapped', { plaintext: Buffer.from('kept') })).ciphertext;
  await service.close();
  record = (await (await FileKeyStore.open(dataDir)).get('default', 'swapped'))!;
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('a ring replaced while its operation waits', () => {
  it('decrypt and encrypt run again on the new ring instead of answering KEY_STATE', async () => {
    // Pooled: an inline operation (pool/inline.ts) runs at once and cannot wait while the ring changes.
    const engine = new CryptoEngine({ threads: 1, inline: false });
    try {
      const backend = new SwappableBackend(engine);
      const pendingDecrypt = backend.decrypt('default', 'swapped', { ciphertext });
      const pendingEncrypt = backend.encrypt('default', 'swapped', { plaintext: Buffer.from('new') });
      backend.replace();
      expect((await pendingDecrypt).plaintext.toString()).toBe('kept');
      const pendingBatch = backend.batch('default', 'swapped', 'decrypt', [{ ciphertext }, { ciphertext }]);
      backend.replace();
      const batch = await pendingBatch;
      expect(batch.map((r) => r.ok)).toEqual([true, true]);
      const sealed = await pendingEncrypt;
      expect((await backend.decrypt('default', 'swapped', sealed)).plaintext.toString()).toBe('new');
    } finally {
      await engine.close();
    }
  });

  it('a whole batch request (run in a worker from its raw body) runs again on the new ring', async () => {
    const engine = new CryptoEngine({ threads: 1, inline: false });
    try {
      const backend = new SwappableBackend(engine);
      const body = Buffer.from(JSON.stringify({ requests: [{ ciphertext }, { ciphertext }] }));
      const pending = backend.batchRequest('default', 'swapped', 'decrypt', body);
      backend.replace();
      const outcome = await pending;
      expect(outcome.type).toBe('done');
      const answer = JSON.parse(
        Buffer.from(outcome.type === 'done' ? outcome.body : new ArrayBuffer(0)).toString(),
      );
      expect(answer.results.map((r: { plaintext?: string }) => r.plaintext)).toEqual([
        Buffer.from('kept').toString('base64'),
        Buffer.from('kept').toString('base64'),
      ]);
    } finally {
      await engine.close();
    }
  });

  it('a key destroyed meanwhile is still refused', async () => {
    // Pooled: an inline operation (pool/inline.ts) runs at once and cannot wait while the ring changes.
    const engine = new CryptoEngine({ threads: 1, inline: false });
    try {
      const backend = new SwappableBackend(engine);
      const pending = backend.decrypt('default', 'swapped', { ciphertext });
      backend.destroy();
      await expect(pending).rejects.toMatchObject({ code: 'KEY_STATE' });
    } finally {
      await engine.close();
    }
  });
});
