/**
 * The nonce budget through the real KeyService, store and pool, with a small budget (PRODUCT.md
 * §4.4; review finding: nothing counted random-nonce encryptions).
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { singleMasterKey } from '../crypto/master-keys.ts';
import { CryptoEngine } from '../engine.ts';
import { writeFileAtomic } from '../store/atomic-write.ts';
import { FileKeyStore } from '../store/file-key-store.ts';
import { KeyService } from './key-service.ts';

let dataDir: string;
let service: KeyService | undefined;
let logs: Array<Record<string, unknown>>;
const master = singleMasterKey(createSecretKey(randomBytes(32)));

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'keyward-nonces-'));
  logs = [];
});
afterEach(async () => {
  await service?.close();
  service = undefined;
  await rm(dataDir, { recursive: true, force: true });
});

let failWrites = false;

async function start(nonceBudget: number): Promise<KeyService> {
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  service = await KeyService.start({
    store: await FileKeyStore.open(dataDir, {
      writeFile: async (path, data) => {
        if (failWrites) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        await writeFileAtomic(path, data, 0o600);
      },
    }),
    master,
    engine: new CryptoEngine({ threads: 2 }),
    logger,
    nonceBudget,
  });
  return service;
}

const versionOf = (ciphertext: string): number => Number(ciphertext.split(':')[1]!.slice(1));

/** Ciphertexts per key version. */
function perVersion(ciphertexts: readonly string[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const c of ciphertexts) out.set(versionOf(c), (out.get(versionOf(c)) ?? 0) + 1);
  return out;
}

/** The raw body of a batch encrypt request, with one bad item after the good ones. */
function requestBody(plaintexts: string[]): Buffer {
  const requests = plaintexts.map((p) => ({ plaintext: Buffer.from(p).toString('base64') }));
  return Buffer.from(JSON.stringify({ requests: [...requests, { plaintext: '!' }] }));
}

/** The ciphertexts of a batch request's results (its one bad item left out). */
function ciphertextsOf(outcome: Awaited<ReturnType<KeyService['batchRequest']>>): string[] {
  if (outcome.type !== 'done') return ['error'];
  const { results } = JSON.parse(Buffer.from(outcome.body).toString()) as {
    results: Array<{ ciphertext?: string }>;
  };
  return results.slice(0, -1).map((r) => r.ciphertext ?? 'error');
}

describe('the nonce budget', () => {
  it('never encrypts uncounted: with a store that cannot write, encryption waits (503) and decryption works', async () => {
    const s = await start(10);
    await s.create('default', { name: 'stuck', usage: 'AES256' });
    const sealed = await s.encrypt('default', 'stuck', { plaintext: Buffer.from('a') });
    failWrites = true;
    try {
      // Budget 10 reserves one encryption ahead: the next one needs a write.
      let refused: unknown;
      for (let i = 0; i < 5 && refused === undefined; i++) {
        await s.encrypt('default', 'stuck', { plaintext: Buffer.from('b') }).catch((err) => {
          refused = err;
        });
      }
      expect(refused).toMatchObject({ code: 'UNAVAILABLE', status: 503 });
      expect(String((refused as Error).message)).toMatch(/nonce count cannot be recorded \(ENOSPC\)/);
      expect(
        (await s.decrypt('default', 'stuck', { ciphertext: sealed.ciphertext })).plaintext.toString(),
      ).toBe('a');
    } finally {
      failWrites = false;
    }
    expect((await s.encrypt('default', 'stuck', { plaintext: Buffer.from('c') })).keyVersion).toBe(1);
  });

  it('rotates a key at its budget even with automatic rotation off, and says why in the log', async () => {
    const s = await start(10);
    await s.create('default', { name: 'hot', usage: 'AES256', rotation: { enabled: false } });
    const out: string[] = [];
    for (let i = 0; i < 35; i++) {
      out.push((await s.encrypt('default', 'hot', { plaintext: Buffer.from(`m${i}`) })).ciphertext);
    }
    const counts = perVersion(out);
    expect([...counts.keys()]).toEqual([1, 2, 3, 4]);
    for (const n of counts.values()) expect(n).toBeLessThanOrEqual(10);
    expect(counts.get(1)).toBe(10);
    const view = await s.get('default', 'hot');
    expect(view.currentVersion).toBe(4);
    expect(view.rotation.enabled).toBe(false);
    expect(view.versions[0]!.nonceCount).toBe(10);
    const why = logs.filter((l) => l.reason === 'nonce-budget');
    expect(why).toHaveLength(3);
    expect(String(why[0]!.msg)).toMatch(
      /version 1 reached its nonce budget of 10 random-nonce encryptions \(automatic rotation is off/,
    );
    // Every ciphertext still decrypts.
    for (const [i, ciphertext] of out.entries()) {
      expect((await s.decrypt('default', 'hot', { ciphertext })).plaintext.toString()).toBe(`m${i}`);
    }
  });

  it('never passes the budget under concurrent encrypts, re-encrypts, data keys and batches', async () => {
    const s = await start(16);
    await s.create('default', { name: 'busy', usage: 'AES256' });
    const seed = await s.encrypt('default', 'busy', { plaintext: Buffer.from('seed') });
    const calls: Array<Promise<string[]>> = [];
    for (let i = 0; i < 150; i++) {
      switch (i % 4) {
        case 0:
          calls.push(
            s.encrypt('default', 'busy', { plaintext: Buffer.from('x') }).then((r) => [r.ciphertext]),
          );
          break;
        case 1:
          calls.push(
            s.reEncrypt('default', 'busy', { ciphertext: seed.ciphertext }).then((r) => [r.ciphertext]),
          );
          break;
        case 2:
          calls.push(s.dataKey('default', 'busy', { bits: 256 }).then((r) => [r.ciphertext]));
          break;
        default:
          calls.push(
            i % 8 === 3
              ? s
                  .batch('default', 'busy', 'encrypt', [
                    { plaintext: Buffer.from('a') },
                    { plaintext: Buffer.from('b') },
                  ])
                  .then((rs) => rs.map((r) => (r.ok ? r.value.ciphertext : 'error')))
              : // A whole request run in a worker, counted by the bound of its body, then given back.
                s
                  .batchRequest('default', 'busy', 'encrypt', requestBody(['a', 'b', 'c']))
                  .then((outcome) => ciphertextsOf(outcome)),
          );
      }
    }
    const out = (await Promise.all(calls)).flat();
    expect(out).not.toContain('error');
    const counts = perVersion([seed.ciphertext, ...out]);
    // Every random-nonce encryption was counted: no version carries more than the budget.
    for (const n of counts.values()) expect(n).toBeLessThanOrEqual(16);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    expect(counts.size).toBeGreaterThanOrEqual(Math.ceil(total / 16));
  });

  it('counts exactly the encryptions a batch request ran in a worker, never fewer', async () => {
    const s = await start(1_000_000);
    await s.create('default', { name: 'exact', usage: 'AES256' });
    const count = async () => (await s.get('default', 'exact')).versions[0]!.nonceCount ?? 0;
    const outcome = await s.batchRequest('default', 'exact', 'encrypt', requestBody(['a', 'b', 'c']));
    expect(ciphertextsOf(outcome)).toHaveLength(3);
    expect(await count()).toBe(3);
    // Braces inside strings raise the bound, not the count.
    const tricky = Buffer.from(
      JSON.stringify({ requests: [{ plaintext: 'YQ==' }, { plaintext: '{{{{' }, { x: '{}' }] }),
    );
    await s.batchRequest('default', 'exact', 'encrypt', tricky);
    expect(await count()).toBe(4);
    // A body the worker refuses whole counts nothing.
    expect((await s.batchRequest('default', 'exact', 'encrypt', Buffer.from('{"requests": [{}'))).type).toBe(
      'error',
    );
    expect(await count()).toBe(4);
    // Concurrent requests: each gives back only what it did not run.
    await Promise.all(
      Array.from({ length: 20 }, () =>
        s.batchRequest('default', 'exact', 'encrypt', requestBody(['x', 'y'])),
      ),
    );
    expect(await count()).toBe(44);
    // Re-encrypt seals once per item it opened.
    const [sealed] = ciphertextsOf(await s.batchRequest('default', 'exact', 'encrypt', requestBody(['z'])));
    const re = Buffer.from(JSON.stringify({ requests: [{ ciphertext: sealed }, { ciphertext: 'bad' }] }));
    expect((await s.batchRequest('default', 'exact', 're-encrypt', re)).type).toBe('done');
    expect(await count()).toBe(46);
  });

  it('exempts convergent keys and RSA keys', async () => {
    const s = await start(5);
    await s.create('default', { name: 'conv', usage: 'AES256', convergent: true });
    await s.create('default', { name: 'rsa', usage: 'RSA2048' });
    for (let i = 0; i < 20; i++) {
      await s.encrypt('default', 'conv', { plaintext: Buffer.from(`m${i}`), context: Buffer.from('c') });
      await s.encrypt('default', 'rsa', { plaintext: Buffer.from(`m${i}`) });
    }
    for (const name of ['conv', 'rsa']) {
      const view = await s.get('default', name);
      expect(view.currentVersion).toBe(1);
      expect(view.versions[0]!.nonceCount).toBeUndefined();
    }
  });

  it('keeps its count across restarts (the durable reservation counts as spent)', async () => {
    let s = await start(10);
    await s.create('default', { name: 'kept', usage: 'AES256' });
    const out: string[] = [];
    for (let i = 0; i < 7; i++)
      out.push((await s.encrypt('default', 'kept', { plaintext: Buffer.from('x') })).ciphertext);
    await s.close();
    s = await start(10);
    for (let i = 0; i < 7; i++)
      out.push((await s.encrypt('default', 'kept', { plaintext: Buffer.from('x') })).ciphertext);
    const counts = perVersion(out);
    expect(counts.get(1)).toBeLessThanOrEqual(10);
    expect(counts.get(2)).toBeGreaterThanOrEqual(4);
  });
});
