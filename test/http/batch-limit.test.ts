/**
 * The largest batch the API accepts (1,000 items in a body near its 16 MiB limit) is served whole
 * by the workers, which parse it, encrypt it and serialize the answer on their own heaps; and
 * decrypts back. Their V8 heap limits are chosen small for memory (engine/pool/pool-options.ts):
 * this is the request those limits must leave room for.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BODY_LIMITS, MAX_BATCH_ITEMS } from '../../engine/crypto/limits.ts';
import { KEYS, removeDir, startTestServer, type TestServer } from './harness.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ threads: 2 });
  expect((await s.call('POST', KEYS, { name: 'wide', usage: 'AES256' })).status).toBe(201);
});
afterAll(async () => {
  await s.stop();
  await removeDir(s.dataDir);
});

describe('a batch at the body limit', () => {
  it('1,000 items in a body of about 16 MB are encrypted, and decrypt back', async () => {
    const plaintexts = Array.from({ length: MAX_BATCH_ITEMS }, () => randomBytes(12_000).toString('base64'));
    const body = { requests: plaintexts.map((plaintext) => ({ plaintext })) };
    expect(JSON.stringify(body).length).toBeGreaterThan(0.95 * BODY_LIMITS.batch);
    expect(JSON.stringify(body).length).toBeLessThan(BODY_LIMITS.batch);
    const enc = await s.call('POST', `${KEYS}/wide/batch/encrypt`, body);
    expect(enc.status).toBe(200);
    const results = enc.body.results as { ciphertext?: string; error?: unknown }[];
    expect(results).toHaveLength(MAX_BATCH_ITEMS);
    expect(results.filter((r) => r.error !== undefined)).toEqual([]);
    const dec = await s.call('POST', `${KEYS}/wide/batch/decrypt`, {
      requests: results.map((r) => ({ ciphertext: r.ciphertext })),
    });
    expect(dec.status).toBe(200);
    expect((dec.body.results as { plaintext: string }[]).map((r) => r.plaintext)).toEqual(plaintexts);
  }, 60_000);
});
