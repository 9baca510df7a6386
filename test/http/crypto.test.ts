/** Cryptographic operations and batches over real HTTP. */
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, KEYS, removeDir, startTestServer, type TestServer } from './harness.ts';

// Every case runs on both engine paths (issue #15): single operations inline when the pool is idle
// and batches run whole in the workers (the defaults), and everything pooled and parsed on the
// main thread.
describe.each([
  ['fast paths', {}],
  ['pooled, main-thread batches', { inline: false, workerBatches: false }],
])('%s', (_path, paths) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ paths });
    for (const [name, usage] of [
      ['aes', 'AES256'],
      ['rsa', 'RSA2048'],
      ['ecdsa', 'ECDSA'],
    ]) {
      expect((await s.call('POST', KEYS, { name, usage })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await s.stop();
    await removeDir(s.dataDir);
  });

  describe('operations', () => {
    it('RSA2048 encrypts with OAEP up to 190 bytes, signs with PSS verifiable by node:crypto', async () => {
      const ct = await s.call('POST', `${KEYS}/rsa/encrypt`, { plaintext: b64(Buffer.alloc(190, 7)) });
      expect(ct.status).toBe(200);
      const pt = await s.call('POST', `${KEYS}/rsa/decrypt`, { ciphertext: ct.body.ciphertext });
      expect(Buffer.from(pt.body.plaintext, 'base64')).toEqual(Buffer.alloc(190, 7));
      expect(
        (await s.call('POST', `${KEYS}/rsa/encrypt`, { plaintext: b64(Buffer.alloc(191)) })).status,
      ).toBe(413);

      const sig = await s.call('POST', `${KEYS}/rsa/sign`, { data: b64('message') });
      const pub = await s.call('GET', `${KEYS}/rsa/public-key`);
      expect(pub.body.pem).toMatch(/BEGIN PUBLIC KEY/);
      expect(pub.body.jwk.kty).toBe('RSA');
      const raw = Buffer.from(sig.body.signature.split(':')[2], 'base64');
      const ok = nodeVerify(
        'sha256',
        Buffer.from('message'),
        { key: createPublicKey(pub.body.pem), padding: 6, saltLength: -2 },
        raw,
      );
      expect(ok).toBe(true);
    });

    it('ECDSA signs messages and digests; verify answers {valid}', async () => {
      const sig = (await s.call('POST', `${KEYS}/ecdsa/sign`, { data: b64('hello') })).body;
      expect(sig.signature).toMatch(/^keyward:v1:/);
      const v = (data: string, signature: string, extra = {}) =>
        s.call('POST', `${KEYS}/ecdsa/verify`, { data: b64(data), signature, ...extra });
      expect((await v('hello', sig.signature)).body).toEqual({ valid: true });
      expect((await v('hellO', sig.signature)).body).toEqual({ valid: false });
      const digest = createHash('sha256').update('hello').digest();
      const pre = await s.call('POST', `${KEYS}/ecdsa/verify`, {
        data: digest.toString('base64'),
        signature: sig.signature,
        prehashed: true,
      });
      expect(pre.body.valid).toBe(true);
      const jws = await s.call('POST', `${KEYS}/ecdsa/sign`, {
        data: b64('x'),
        algorithm: 'ECDSA_SHA_256_RAW',
      });
      expect(Buffer.from(jws.body.signature.split(':')[2], 'base64')).toHaveLength(64);
      const wrongAlg = await s.call('POST', `${KEYS}/ecdsa/sign`, {
        data: b64('x'),
        algorithm: 'RSASSA_PSS_SHA_256',
      });
      expect(wrongAlg.status).toBe(400);
      expect(wrongAlg.body.error.field).toBe('algorithm');
    });

    it('data-key returns plaintext unless asked not to, and its ciphertext decrypts to it', async () => {
      const dk = (await s.call('POST', `${KEYS}/aes/data-key`, { bits: 512 })).body;
      expect(Buffer.from(dk.plaintext, 'base64')).toHaveLength(64);
      const back = await s.call('POST', `${KEYS}/aes/decrypt`, { ciphertext: dk.ciphertext });
      expect(back.body.plaintext).toBe(dk.plaintext);
      const sealed = (await s.call('POST', `${KEYS}/aes/data-key`, { includePlaintext: false })).body;
      expect(sealed).not.toHaveProperty('plaintext');
      expect(sealed.keyVersion).toBe(1);
      expect((await s.call('POST', `${KEYS}/aes/data-key`)).status).toBe(200);
    });
  });

  describe('batch', () => {
    it('returns one result per item in order; bad items fail alone', async () => {
      const good = (await s.call('POST', `${KEYS}/aes/encrypt`, { plaintext: b64('one') })).body.ciphertext;
      const flipped = `${good.slice(0, -6)}AAAAAA`;
      const r = await s.call('POST', `${KEYS}/aes/batch/decrypt`, {
        requests: [
          { ciphertext: good },
          { ciphertext: flipped },
          { ciphertext: 3 },
          { ciphertext: good, x: 1 },
          'str',
          { ciphertext: good },
        ],
      });
      expect(r.status).toBe(200);
      const results = r.body.results;
      expect(results).toHaveLength(6);
      expect(Buffer.from(results[0].plaintext, 'base64').toString()).toBe('one');
      expect(results[1].error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'ciphertext' });
      expect(results[2].error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'ciphertext' });
      expect(results[3].error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'x' });
      expect(results[4].error.code).toBe('INVALID_ARGUMENT');
      expect(Buffer.from(results[5].plaintext, 'base64').toString()).toBe('one');
    });

    it('encrypts, re-encrypts, signs and verifies in batches', async () => {
      const items = Array.from({ length: 300 }, (_, i) => ({ plaintext: b64(`item ${i}`) }));
      items[7] = { plaintext: '@@' };
      items[8] = { plaintext: b64(Buffer.alloc(40_000)) };
      const enc = (await s.call('POST', `${KEYS}/aes/batch/encrypt`, { requests: items })).body.results;
      expect(enc).toHaveLength(300);
      expect(enc[7].error.field).toBe('plaintext');
      expect(enc[8].error.code).toBe('PAYLOAD_TOO_LARGE');
      expect(enc.filter((r: { ciphertext?: string }) => r.ciphertext).length).toBe(298);
      await s.call('POST', `${KEYS}/aes/rotate`);
      const re = (
        await s.call('POST', `${KEYS}/aes/batch/re-encrypt`, {
          requests: [{ ciphertext: enc[0].ciphertext }, { ciphertext: 'x' }],
        })
      ).body.results;
      expect(re[0].keyVersion).toBe(2);
      expect(re[1].error.code).toBe('INVALID_ARGUMENT');

      const sigs = (
        await s.call('POST', `${KEYS}/ecdsa/batch/sign`, {
          requests: [{ data: b64('a') }, { data: b64('b') }],
        })
      ).body.results;
      const ver = (
        await s.call('POST', `${KEYS}/ecdsa/batch/verify`, {
          requests: [
            { data: b64('a'), signature: sigs[0].signature },
            { data: b64('a'), signature: sigs[1].signature },
            { data: b64('a'), signature: 'keyward:v1:AAAA' },
          ],
        })
      ).body.results;
      expect(ver[0]).toEqual({ valid: true });
      expect(ver[1]).toEqual({ valid: false });
      expect(ver[2].valid === false || ver[2].error?.code === 'INVALID_ARGUMENT').toBe(true);
    });

    it('requires 1 to 1000 items', async () => {
      const none = await s.call('POST', `${KEYS}/aes/batch/encrypt`, { requests: [] });
      expect(none.status).toBe(400);
      expect(none.body.error.field).toBe('requests');
      const many = await s.call('POST', `${KEYS}/aes/batch/encrypt`, {
        requests: Array.from({ length: 1001 }, () => ({ plaintext: 'AA==' })),
      });
      expect(many.status).toBe(400);
      expect(many.body.error.field).toBe('requests');
      const max = await s.call('POST', `${KEYS}/aes/batch/encrypt`, {
        requests: Array.from({ length: 1000 }, () => ({ plaintext: 'AA==' })),
      });
      expect(max.body.results).toHaveLength(1000);
      const missing = await s.call('POST', `${KEYS}/aes/batch/encrypt`, {});
      expect(missing.body.error.field).toBe('requests');
      expect((await s.call('POST', `${KEYS}/aes/batch/data-key`, { requests: [{}] })).status).toBe(404);
    });
  });
});
