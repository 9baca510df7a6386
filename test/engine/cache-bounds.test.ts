/**
 * Every cache the engine keeps has a size limit and an eviction rule (issue #16): key versions
 * unwrapped on the main thread (KeyObjects), each worker's registered material, convergent keys
 * derived per context, exported public keys. (Auth decisions: engine/cluster/ttl-cache.test.ts;
 * the pool's byte bound and retained buffers: test/engine/pool.test.ts.) Each test fills a cache
 * past its bound, checks the bound holds, and that what was evicted still works when used again.
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { convergentPrk } from '../../engine/crypto/convergent.ts';
import { generateMaterial } from '../../engine/crypto/material.ts';
import { prepareKey } from '../../engine/crypto/prepared-key.ts';
import { CryptoEngine } from '../../engine/engine.ts';
import { createKeyRing, LoadedKey } from '../../engine/key-ring.ts';
import { DerivedKeyCache } from '../../engine/pool/ops.ts';
import { KeyService } from '../../engine/service/key-service.ts';
import { LoadedKeyBudget } from '../../engine/service/loaded-keys.ts';
import { FileKeyStore } from '../../engine/store/file-key-store.ts';

const engines: CryptoEngine[] = [];
function newEngine(options?: ConstructorParameters<typeof CryptoEngine>[0]): CryptoEngine {
  const engine = new CryptoEngine(options);
  engines.push(engine);
  return engine;
}
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close().catch(() => {})));
});

describe('convergent keys derived per context', () => {
  it('keeps at most max, drops the oldest first, and derives a dropped one again alike', () => {
    const material = generateMaterial('AES256');
    const held = { prepared: prepareKey('AES256', material), prk: convergentPrk(material) };
    const cache = new DerivedKeyCache(2);
    const first = cache.get('v1', held, Buffer.from('context a'));
    cache.get('v1', held, Buffer.from('context b'));
    cache.get('v1', held, Buffer.from('context c'));
    expect(cache.size).toBe(2);
    // Context a was dropped (the oldest); deriving it again gives the same keys.
    const again = cache.get('v1', held, Buffer.from('context a'));
    expect(again).not.toBe(first);
    expect(again).toEqual(first);
    expect(cache.size).toBe(2);
    cache.evict(new Set(['v1']));
    expect(cache.size).toBe(0);
  });
});

describe('public keys exported on the main thread', () => {
  it('keeps at most maxPublicKeys, FIFO, and exports an evicted one again alike', async () => {
    const engine = newEngine({ threads: 1, maxPublicKeys: 2 });
    const rings = ['a', 'b', 'c'].map((id) => createKeyRing(id, 'ECDSA', false, [generateMaterial('ECDSA')]));
    const first = engine.publicKey(rings[0]!);
    engine.publicKey(rings[1]!);
    engine.publicKey(rings[2]!);
    expect(engine.publicKeysCached).toBe(2);
    expect(engine.publicKey(rings[0]!)).toEqual(first);
    expect(engine.publicKeysCached).toBe(2);
  });
});

describe("each worker's registered key versions", () => {
  it('keeps at most maxWorkerKeys per worker; an evicted version is registered again on use', async () => {
    const engine = newEngine({ threads: 1, maxWorkerKeys: 2, inline: false });
    const rings = ['a', 'b', 'c', 'd'].map((id) =>
      createKeyRing(id, 'AES256', false, [generateMaterial('AES256')]),
    );
    const sealed = [];
    for (const ring of rings) sealed.push(await engine.encrypt(ring, { plaintext: Buffer.from(ring.id) }));
    let [worker] = await engine.pool.workerCaches();
    expect(worker!.ids.length).toBeLessThanOrEqual(2);
    // The first two were dropped from the worker: they come back, with their own material.
    for (const [i, ring] of rings.entries()) {
      const opened = await engine.decrypt(ring, { ciphertext: sealed[i]!.ciphertext });
      expect(opened.plaintext.toString()).toBe(ring.id);
    }
    [worker] = await engine.pool.workerCaches();
    expect(worker!.ids.length).toBeLessThanOrEqual(2);
    expect(worker!.registrations).toBeGreaterThanOrEqual(6);
  });
});

describe('key versions unwrapped on the main thread (LoadedKeyBudget)', () => {
  it('retires the least recently used beyond max', () => {
    const retired: string[] = [];
    const budget = new LoadedKeyBudget(2, () => {});
    const keys = ['a', 'b', 'c'].map(() => new LoadedKey('AES256', false, generateMaterial('AES256')));
    const names = new Map(keys.map((k, i) => [k, 'abc'[i]!]));
    const cache = { retire: (k: LoadedKey) => retired.push(names.get(k)!) };
    budget.touch(keys[0]!, cache);
    budget.touch(keys[1]!, cache);
    budget.touch(keys[0]!, cache); // a is now the most recent
    budget.touch(keys[2]!, cache);
    expect(retired).toEqual(['b']);
    expect(budget.size).toBe(2);
    expect(() => new LoadedKeyBudget(0, () => {})).toThrow(RangeError);
  });

  let dataDir: string | undefined;
  let service: KeyService | undefined;
  afterEach(async () => {
    await service?.close();
    service = undefined;
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  it('through the key service: stays within the bound, serves retired keys again, and a disable still reaches every worker', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'keyward-bounds-'));
    const engine = new CryptoEngine({ threads: 2, inline: false });
    const s = await KeyService.start({
      store: await FileKeyStore.open(dataDir),
      master: createSecretKey(randomBytes(32)) as never,
      engine,
      logger: pino({ level: 'silent' }),
      maxLoadedVersions: 2,
    });
    service = s;
    const names = ['key1', 'key2', 'key3', 'key4'];
    for (const name of names) await s.create('default', { name, usage: 'AES256' });
    const sealed = new Map<string, string[]>();
    for (const name of names) {
      // Enough at once that both workers get some of them.
      const out = await Promise.all(
        Array.from({ length: 200 }, () => s.encrypt('default', name, { plaintext: Buffer.from(name) })),
      );
      sealed.set(
        name,
        out.map((o) => o.ciphertext),
      );
      expect(s.loadedKeys.size).toBeLessThanOrEqual(2);
    }
    // key1 and key2 were retired; they are unwrapped again for use.
    for (const name of names) {
      const opened = await s.decrypt('default', name, { ciphertext: sealed.get(name)![0]! });
      expect(opened.plaintext.toString()).toBe(name);
      expect(s.loadedKeys.size).toBeLessThanOrEqual(2);
    }
    const held = await engine.pool.workerCaches();
    expect(held.flatMap((w) => w.ids).length).toBeGreaterThan(0);
    // Disabling every key evicts every copy the workers hold, retired versions included.
    for (const name of names) await s.action('default', name, 'disable');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const caches = await engine.pool.workerCaches(1_000);
      if (caches.length === 2 && caches.every((w) => w.ids.length === 0)) break;
      if (Date.now() > deadline) throw new Error(`workers still hold ${JSON.stringify(caches)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});
