import { createHmac, createSecretKey, hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { invalidCiphertext } from '../errors.ts';
import { openAesGcm } from './aes-gcm.ts';
import {
  CONVERGENT_INFO,
  convergentNonce,
  convergentOkm,
  deriveConvergentKeys,
  openConvergent,
  sealConvergent,
} from './convergent.ts';
import { errorOf } from './fixtures/error-of.ts';
import { HKDF_SHA256_VECTORS } from './fixtures/hkdf-rfc5869.ts';
import { hkdfSha256 } from './hkdf.ts';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

describe('hkdfSha256 (RFC 5869 Appendix A)', () => {
  for (const v of HKDF_SHA256_VECTORS) {
    it(v.name, () => {
      const salt = v.salt === '' ? undefined : hex(v.salt);
      expect(hkdfSha256(hex(v.ikm), salt, hex(v.info), v.length).toString('hex')).toBe(v.okm);
    });
  }

  it('treats an explicit empty salt like no salt (RFC 5869: HashLen zeros)', () => {
    const v = HKDF_SHA256_VECTORS[2]!;
    expect(hkdfSha256(hex(v.ikm), Buffer.alloc(0), hex(v.info), v.length).toString('hex')).toBe(v.okm);
    expect(hkdfSha256(hex(v.ikm), Buffer.alloc(32), hex(v.info), v.length).toString('hex')).toBe(v.okm);
  });
});

describe('convergent key derivation (PRODUCT.md §4.2)', () => {
  const material = randomBytes(32);
  const context = Buffer.from('tenant-42');

  it('uses okm[0:64] of HKDF-SHA256(K, "", "keyward convergent v1" ‖ C, 64) for Kenc and Kmac', () => {
    // Independent of hkdf.ts: node's hkdfSync called here with the §4.2 parameters literally.
    const info = Buffer.concat([Buffer.from('keyward convergent v1'), context]);
    const okm64 = Buffer.from(hkdfSync('sha256', material, Buffer.alloc(0), info, 64));
    const okm = convergentOkm(material, context);
    expect(CONVERGENT_INFO.toString()).toBe('keyward convergent v1');
    expect(okm.subarray(0, 64).equals(okm64)).toBe(true);
    const keys = deriveConvergentKeys(material, context);
    expect(keys.enc.export().equals(okm64.subarray(0, 32))).toBe(true);
    expect(keys.mac.export().equals(okm64.subarray(32, 64))).toBe(true);
    expect(keys.aadMac.export().equals(okm.subarray(64, 96))).toBe(true);
  });

  it('makes the no-AAD nonce exactly HMAC-SHA256(Kmac, plaintext)[0:12] and encrypts under Kenc', () => {
    const keys = deriveConvergentKeys(material, context);
    const pt = Buffer.from('4111 1111 1111 1111');
    const expected = createHmac('sha256', keys.mac.export()).update(pt).digest().subarray(0, 12);
    expect(convergentNonce(keys, undefined, pt).equals(expected)).toBe(true);
    expect(convergentNonce(keys, Buffer.alloc(0), pt).equals(expected)).toBe(true);
    const body = sealConvergent(keys, undefined, pt);
    expect(body.subarray(0, 12).equals(expected)).toBe(true);
    expect(openAesGcm(createSecretKey(keys.enc.export()), body).equals(pt)).toBe(true);
  });

  it('makes the AAD nonce HMAC-SHA256(Kaad, u32be(|aad|) ‖ aad ‖ plaintext)[0:12]', () => {
    const keys = deriveConvergentKeys(material, context);
    const aad = Buffer.from('row-7');
    const pt = Buffer.from('value');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(aad.length);
    const expected = createHmac('sha256', keys.aadMac.export())
      .update(Buffer.concat([len, aad, pt]))
      .digest();
    expect(convergentNonce(keys, aad, pt).equals(expected.subarray(0, 12))).toBe(true);
  });

  it('gives identical ciphertexts for the same material, context and plaintext', () => {
    const pt = Buffer.from('same input');
    const a = sealConvergent(deriveConvergentKeys(material, context), undefined, pt);
    const b = sealConvergent(
      deriveConvergentKeys(Buffer.from(material), Buffer.from(context)),
      undefined,
      pt,
    );
    expect(a.equals(b)).toBe(true);
    expect(openConvergent(deriveConvergentKeys(material, context), a).equals(pt)).toBe(true);
  });

  it('never repeats a nonce across 10,000 distinct plaintexts under one context', () => {
    const keys = deriveConvergentKeys(material, context);
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      seen.add(convergentNonce(keys, undefined, Buffer.from(`plaintext-${i}`)).toString('hex'));
    }
    expect(seen.size).toBe(10_000);
  });

  it('fails to decrypt under a different context with the same invalid error', () => {
    const body = sealConvergent(deriveConvergentKeys(material, context), undefined, Buffer.from('x'));
    for (const other of ['tenant-43', 'tenant-4', 'Tenant-42']) {
      expect(errorOf(() => openConvergent(deriveConvergentKeys(material, Buffer.from(other)), body))).toEqual(
        invalidCiphertext().toJSON(),
      );
    }
    expect(errorOf(() => openConvergent(deriveConvergentKeys(randomBytes(32), context), body))).toEqual(
      invalidCiphertext().toJSON(),
    );
  });

  it('binds the AAD: it changes the ciphertext, and a wrong or missing AAD fails', () => {
    const keys = deriveConvergentKeys(material, context);
    const pt = Buffer.from('payload');
    const withA = sealConvergent(keys, Buffer.from('a'), pt);
    const withB = sealConvergent(keys, Buffer.from('b'), pt);
    const without = sealConvergent(keys, undefined, pt);
    expect(withA.equals(withB)).toBe(false);
    expect(withA.equals(without)).toBe(false);
    expect(sealConvergent(keys, Buffer.from('a'), pt).equals(withA)).toBe(true);
    expect(openConvergent(keys, withA, Buffer.from('a')).equals(pt)).toBe(true);
    const invalid = invalidCiphertext().toJSON();
    expect(errorOf(() => openConvergent(keys, withA, Buffer.from('b')))).toEqual(invalid);
    expect(errorOf(() => openConvergent(keys, withA))).toEqual(invalid);
  });

  it('does not let aad ‖ plaintext splits collide (the ambiguity of the literal formula)', () => {
    const keys = deriveConvergentKeys(material, context);
    const n1 = convergentNonce(keys, Buffer.from('ab'), Buffer.from('c'));
    const n2 = convergentNonce(keys, Buffer.from('a'), Buffer.from('bc'));
    const n3 = convergentNonce(keys, undefined, Buffer.from('abc'));
    expect(n1.equals(n2)).toBe(false);
    expect(n1.equals(n3)).toBe(false);
    expect(n2.equals(n3)).toBe(false);
    // An empty plaintext with AAD must not collide with the AAD-free nonce of a crafted plaintext.
    const aad = Buffer.from('zz');
    const crafted = Buffer.concat([Buffer.from([0, 0, 0, 2]), aad]);
    expect(
      convergentNonce(keys, aad, Buffer.alloc(0)).equals(convergentNonce(keys, undefined, crafted)),
    ).toBe(false);
  });
});
