/**
 * CryptoEngine semantics (PRODUCT.md §4.1): usage rules, limits, contexts, versions, batches,
 * and the single "invalid" error. Real worker threads; single operations on both paths.
 */
import { createHash, createPrivateKey, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { generateMaterial } from '../../engine/crypto/material.ts';
import { CryptoEngine } from '../../engine/engine.ts';
import { createKeyRing } from '../../engine/key-ring.ts';

const aesV1 = generateMaterial('AES256');
const aesV2 = generateMaterial('AES256');
const aesRotated = createKeyRing('e/aes', 'AES256', false, [aesV1, aesV2]);
const aesV1Only = createKeyRing('e/aes', 'AES256', false, [aesV1]);
const convergent = createKeyRing('e/conv', 'AES256', true, [generateMaterial('AES256')]);
const rsaMaterial = generateMaterial('RSA2048');
const rsa = createKeyRing('e/rsa', 'RSA2048', false, [rsaMaterial]);
const ecMaterial = generateMaterial('ECDSA');
const ec = createKeyRing('e/ec', 'ECDSA', false, [ecMaterial]);
const text = (s: string) => Buffer.from(s);

// Every case runs on both paths of a single operation (issue #15): inline on this thread when the
// pool is idle, and always through the pool. Batches are pooled either way.
describe.each([
  ['inline when idle', {}],
  ['always pooled', { inline: false as const }],
])('%s', (_path, options) => {
  const engine = new CryptoEngine({ threads: 2, ...options });
  afterAll(() => engine.close());

  describe('usage rules', () => {
    it('refuses operations the usage does not allow with KEY_STATE', async () => {
      await expect(engine.encrypt(ec, { plaintext: text('x') })).rejects.toMatchObject({ code: 'KEY_STATE' });
      await expect(engine.sign(aesV1Only, { data: text('x') })).rejects.toMatchObject({
        code: 'KEY_STATE',
        message: 'an AES256 key does not support sign',
      });
      await expect(engine.dataKey(ec)).rejects.toMatchObject({ code: 'KEY_STATE' });
      expect(() => engine.publicKey(aesV1Only)).toThrow(expect.objectContaining({ code: 'KEY_STATE' }));
    });

    it('enforces the size limits with PAYLOAD_TOO_LARGE', async () => {
      await expect(
        engine.encrypt(aesV1Only, { plaintext: Buffer.alloc(32 * 1024 + 1) }),
      ).rejects.toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
        field: 'plaintext',
      });
      await expect(engine.encrypt(aesV1Only, { plaintext: Buffer.alloc(32 * 1024) })).resolves.toBeDefined();
      await expect(engine.encrypt(rsa, { plaintext: Buffer.alloc(191) })).rejects.toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
      });
      await expect(engine.sign(ec, { data: Buffer.alloc(8193) })).rejects.toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
      });
      await expect(engine.sign(ec, { data: Buffer.alloc(31), prehashed: true })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        field: 'data',
      });
    });

    it('requires a context on convergent keys and refuses one elsewhere', async () => {
      await expect(engine.encrypt(convergent, { plaintext: text('x') })).rejects.toMatchObject({
        field: 'context',
      });
      await expect(
        engine.encrypt(convergent, { plaintext: text('x'), context: Buffer.alloc(0) }),
      ).rejects.toMatchObject({ field: 'context' });
      await expect(
        engine.encrypt(convergent, { plaintext: text('x'), context: Buffer.alloc(1025) }),
      ).rejects.toMatchObject({ field: 'context' });
      await expect(
        engine.encrypt(aesV1Only, { plaintext: text('x'), context: text('c') }),
      ).rejects.toMatchObject({
        field: 'context',
      });
      await expect(engine.encrypt(rsa, { plaintext: text('x'), aad: text('a') })).rejects.toMatchObject({
        field: 'aad',
      });
    });

    it('refuses an unknown signature algorithm for the usage', async () => {
      await expect(
        engine.sign(ec, { data: text('x'), algorithm: 'RSASSA_PSS_SHA_256' }),
      ).rejects.toMatchObject({
        field: 'algorithm',
      });
    });
  });

  describe('versions and formats', () => {
    it('encrypts under the current version and decrypts older versions', async () => {
      const old = await engine.encrypt(aesV1Only, { plaintext: text('v1 data') });
      expect(old.ciphertext.startsWith('keyward:v1:')).toBe(true);
      const fresh = await engine.encrypt(aesRotated, { plaintext: text('v2 data') });
      expect(fresh.keyVersion).toBe(2);
      expect((await engine.decrypt(aesRotated, { ciphertext: old.ciphertext })).plaintext.toString()).toBe(
        'v1 data',
      );
      const moved = await engine.reEncrypt(aesRotated, { ciphertext: old.ciphertext });
      expect(moved.keyVersion).toBe(2);
      expect((await engine.decrypt(aesRotated, { ciphertext: moved.ciphertext })).plaintext.toString()).toBe(
        'v1 data',
      );
    });

    it('gives one identical error for tampering, a wrong version, a wrong context and a wrong aad', async () => {
      const { ciphertext } = await engine.encrypt(aesV1Only, { plaintext: text('secret'), aad: text('hdr') });
      const body = Buffer.from(ciphertext.slice('keyward:v1:'.length), 'base64');
      const attempts = [];
      for (let bit = 0; bit < body.length * 8; bit++) {
        const flipped = Buffer.from(body);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        attempts.push({ ciphertext: `keyward:v1:${flipped.toString('base64')}`, aad: text('hdr') });
      }
      attempts.push({ ciphertext: ciphertext.replace('keyward:v1:', 'keyward:v2:'), aad: text('hdr') });
      attempts.push({ ciphertext, aad: text('other') });
      attempts.push({ ciphertext });
      attempts.push({ ciphertext: ciphertext.slice(0, -8), aad: text('hdr') });
      const results = await engine.batch('decrypt', aesV1Only, attempts);
      const errors = new Set(results.map((r) => (r.ok ? 'DECRYPTED' : JSON.stringify(r.error))));
      expect([...errors]).toEqual([
        JSON.stringify({ code: 'INVALID_ARGUMENT', message: 'ciphertext is invalid', field: 'ciphertext' }),
      ]);

      const sealed = await engine.encrypt(convergent, { plaintext: text('c'), context: text('right') });
      await expect(
        engine.decrypt(convergent, { ciphertext: sealed.ciphertext, context: text('wrong') }),
      ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'ciphertext is invalid' });
    });

    it('convergent: same context and plaintext give the same ciphertext; contexts separate', async () => {
      const a = await engine.encrypt(convergent, { plaintext: text('same'), context: text('t1') });
      const b = await engine.encrypt(convergent, { plaintext: text('same'), context: text('t1') });
      const c = await engine.encrypt(convergent, { plaintext: text('same'), context: text('t2') });
      const d = await engine.encrypt(convergent, { plaintext: text('diff'), context: text('t1') });
      expect(a.ciphertext).toBe(b.ciphertext);
      expect(c.ciphertext).not.toBe(a.ciphertext);
      expect(d.ciphertext.slice(0, 27)).not.toBe(a.ciphertext.slice(0, 27));
    });
  });

  describe('signatures, data keys, public keys', () => {
    it('verifies true, false for a wrong message, false for garbage', async () => {
      for (const algorithm of ['ECDSA_SHA_256', 'ECDSA_SHA_256_RAW'] as const) {
        const { signature } = await engine.sign(ec, { data: text('m'), algorithm });
        expect(await engine.verify(ec, { data: text('m'), signature, algorithm })).toEqual({ valid: true });
        expect(await engine.verify(ec, { data: text('n'), signature, algorithm })).toEqual({ valid: false });
      }
      expect(await engine.verify(ec, { data: text('m'), signature: 'nope' })).toEqual({ valid: false });
      expect(await engine.verify(ec, { data: text('m'), signature: 'keyward:v9:AAAA' })).toEqual({
        valid: false,
      });
    });

    it('a prehashed signature is a signature of the message', async () => {
      const digest = createHash('sha256').update('hello').digest();
      const { signature } = await engine.sign(rsa, { data: digest, prehashed: true });
      expect(await engine.verify(rsa, { data: text('hello'), signature })).toEqual({ valid: true });
      const raw = Buffer.from(signature.split(':')[2]!, 'base64');
      const pub = createPublicKey(createPrivateKey({ key: rsaMaterial, format: 'der', type: 'pkcs8' }));
      expect(nodeVerify('sha256', text('hello'), { key: pub, padding: 6, saltLength: -2 }, raw)).toBe(true);
    });

    it('makes data keys of each size, with or without plaintext', async () => {
      for (const bits of [128, 256, 512]) {
        const key = await engine.dataKey(aesV1Only, { bits });
        expect(key.plaintext).toHaveLength(bits / 8);
        expect((await engine.decrypt(aesV1Only, { ciphertext: key.ciphertext })).plaintext).toEqual(
          key.plaintext,
        );
      }
      const envelope = await engine.dataKey(rsa, { includePlaintext: false });
      expect(envelope.plaintext).toBeUndefined();
      expect((await engine.decrypt(rsa, { ciphertext: envelope.ciphertext })).plaintext).toHaveLength(32);
      await expect(engine.dataKey(aesV1Only, { bits: 64 })).rejects.toMatchObject({ field: 'bits' });
      const conv = await engine.dataKey(convergent, { context: text('ctx') });
      expect(
        (await engine.decrypt(convergent, { ciphertext: conv.ciphertext, context: text('ctx') })).plaintext,
      ).toEqual(conv.plaintext);
    });

    it('exports the public key as PEM and JWK that describe the same key', () => {
      const out = engine.publicKey(ec);
      expect(out.keyVersion).toBe(1);
      expect(out.pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
      const fromJwk = createPublicKey({ key: out.jwk, format: 'jwk' }).export({
        type: 'spki',
        format: 'pem',
      });
      expect(fromJwk).toBe(out.pem);
      expect(() => engine.publicKey(ec, 2)).toThrow(expect.objectContaining({ code: 'KEY_NOT_FOUND' }));
    });
  });

  describe('batch', () => {
    it('keeps order and isolates bad items', async () => {
      const results = await engine.batch('encrypt', aesV1Only, [
        { plaintext: text('one') },
        { plaintext: Buffer.alloc(40_000) },
        { plaintext: text('three'), context: text('x') },
        { plaintext: text('four') },
      ]);
      expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual([
        'ok',
        'PAYLOAD_TOO_LARGE',
        'INVALID_ARGUMENT',
        'ok',
      ]);
      const decrypted = await engine.batch(
        'decrypt',
        aesV1Only,
        results.flatMap((r) =>
          r.ok ? [{ ciphertext: r.value.ciphertext }] : [{ ciphertext: 'keyward:v1:AAAA' }],
        ),
      );
      expect(decrypted.map((r) => (r.ok ? r.value.plaintext.toString() : r.error.code))).toEqual([
        'one',
        'INVALID_ARGUMENT',
        'INVALID_ARGUMENT',
        'four',
      ]);
    });

    it('re-encrypts a batch of mixed versions to the current one', async () => {
      const v1 = await engine.encrypt(aesV1Only, { plaintext: text('old') });
      const v2 = await engine.encrypt(aesRotated, { plaintext: text('new') });
      const results = await engine.batch('re-encrypt', aesRotated, [
        { ciphertext: v1.ciphertext },
        { ciphertext: 'bad' },
        { ciphertext: v2.ciphertext },
      ]);
      expect(results.map((r) => (r.ok ? r.value.keyVersion : r.error.code))).toEqual([
        2,
        'INVALID_ARGUMENT',
        2,
      ]);
    });
  });
});
