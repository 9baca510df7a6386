import { createSecretKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { invalidCiphertext } from '../errors.ts';
import { MIN_AES_BODY, openAesGcm, sealAesGcm } from './aes-gcm.ts';
import { errorOf } from './fixtures/error-of.ts';
import { GCM_AES256_VECTORS } from './fixtures/gcm-mcgrew-viega.ts';
import { GCM_CAVP_AES256_VECTORS } from './fixtures/gcm-nist-cavp.ts';
import { formatCiphertext, parseCiphertext } from './format.ts';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

const INVALID = invalidCiphertext().toJSON();

describe('AES-256-GCM known answers (NIST CAVP gcmEncryptExtIV256; McGrew–Viega Test Cases 13–16)', () => {
  for (const v of [...GCM_CAVP_AES256_VECTORS, ...GCM_AES256_VECTORS]) {
    it(`seals ${v.name} to the published ciphertext and tag`, () => {
      const key = createSecretKey(hex(v.key));
      const aad = v.aad === '' ? undefined : hex(v.aad);
      const body = sealAesGcm(key, hex(v.iv), hex(v.plaintext), aad);
      expect(body.toString('hex')).toBe(v.iv + v.ciphertext + v.tag);
    });

    it(`opens ${v.name} to the published plaintext`, () => {
      const key = createSecretKey(hex(v.key));
      const aad = v.aad === '' ? undefined : hex(v.aad);
      expect(openAesGcm(key, hex(v.iv + v.ciphertext + v.tag), aad).toString('hex')).toBe(v.plaintext);
    });

    it(`rejects ${v.name} with a wrong tag`, () => {
      const key = createSecretKey(hex(v.key));
      const tag = hex(v.tag);
      tag[15]! ^= 0x01;
      const aad = v.aad === '' ? undefined : hex(v.aad);
      expect(errorOf(() => openAesGcm(key, Buffer.concat([hex(v.iv + v.ciphertext), tag]), aad))).toEqual(
        INVALID,
      );
    });
  }

  it('rejects Test Case 16 without its AAD, and Test Case 15 with one', () => {
    const [, , v15, v16] = GCM_AES256_VECTORS;
    const key = createSecretKey(hex(v16!.key));
    expect(errorOf(() => openAesGcm(key, hex(v16!.iv + v16!.ciphertext + v16!.tag)))).toEqual(INVALID);
    expect(errorOf(() => openAesGcm(key, hex(v15!.iv + v15!.ciphertext + v15!.tag), hex(v16!.aad)))).toEqual(
      INVALID,
    );
  });
});

describe('sealAesGcm / openAesGcm', () => {
  const key = createSecretKey(randomBytes(32));

  it('round-trips with and without AAD and lays out nonce ‖ ct ‖ tag', () => {
    const nonce = randomBytes(12);
    const pt = randomBytes(1000);
    const body = sealAesGcm(key, nonce, pt, Buffer.from('aad'));
    expect(body.length).toBe(12 + 1000 + 16);
    expect(body.subarray(0, 12).equals(nonce)).toBe(true);
    expect(openAesGcm(key, body, Buffer.from('aad')).equals(pt)).toBe(true);
    expect(openAesGcm(key, sealAesGcm(key, nonce, pt), undefined).equals(pt)).toBe(true);
  });

  it('treats an empty AAD as no AAD (as GCM does)', () => {
    const body = sealAesGcm(key, randomBytes(12), Buffer.from('x'), Buffer.alloc(0));
    expect(openAesGcm(key, body).toString()).toBe('x');
  });

  it('refuses a nonce that is not 12 bytes', () => {
    expect(() => sealAesGcm(key, randomBytes(16), Buffer.from('x'))).toThrow(/12 bytes/);
  });

  it('rejects every body shorter than 28 bytes with the same error', () => {
    const body = sealAesGcm(key, randomBytes(12), Buffer.alloc(0));
    expect(body.length).toBe(MIN_AES_BODY);
    expect(openAesGcm(key, body).length).toBe(0);
    for (let n = 0; n < MIN_AES_BODY; n++) {
      expect(errorOf(() => openAesGcm(key, body.subarray(0, n)))).toEqual(INVALID);
    }
  });

  it('rejects a wrong key with the same error', () => {
    const body = sealAesGcm(key, randomBytes(12), Buffer.from('secret'));
    expect(errorOf(() => openAesGcm(createSecretKey(randomBytes(32)), body))).toEqual(INVALID);
  });
});

describe('tampering with a formatted AES ciphertext', () => {
  // Two key versions, as the engine would hold them; decrypt picks the key from the prefix.
  const keys = new Map([
    [1, createSecretKey(randomBytes(32))],
    [2, createSecretKey(randomBytes(32))],
  ]);
  const decrypt = (text: string): Buffer => {
    const { version, body } = parseCiphertext(text);
    const key = keys.get(version);
    if (key === undefined) throw invalidCiphertext();
    return openAesGcm(key, body, Buffer.from('bound'));
  };
  const plaintext = Buffer.from('the quick brown fox jumps over..');
  const text = formatCiphertext(
    1,
    sealAesGcm(keys.get(1)!, randomBytes(12), plaintext, Buffer.from('bound')),
  );

  it('decrypts the untouched ciphertext', () => {
    expect(decrypt(text).equals(plaintext)).toBe(true);
  });

  it('fails identically for every single-bit flip of the decoded body', () => {
    const { body } = parseCiphertext(text);
    let flips = 0;
    for (let bit = 0; bit < body.length * 8; bit++) {
      const copy = Buffer.from(body);
      copy[bit >> 3]! ^= 1 << (bit & 7);
      expect(errorOf(() => decrypt(formatCiphertext(1, copy)))).toEqual(INVALID);
      flips++;
    }
    expect(flips).toBe((12 + plaintext.length + 16) * 8);
  });

  it('fails identically for every single-bit flip of the full formatted string', () => {
    for (let i = 0; i < text.length; i++) {
      for (let b = 0; b < 8; b++) {
        const chars = [...text];
        chars[i] = String.fromCharCode(text.charCodeAt(i) ^ (1 << b));
        expect(errorOf(() => decrypt(chars.join('')))).toEqual(INVALID);
      }
    }
  });

  it('fails identically when the version prefix is swapped', () => {
    for (const v of [2, 3, 10]) {
      expect(errorOf(() => decrypt(text.replace('keyward:v1:', `keyward:v${v}:`)))).toEqual(INVALID);
    }
  });

  it('fails identically for truncations and extensions', () => {
    const { body } = parseCiphertext(text);
    for (const bad of [
      body.subarray(0, body.length - 1),
      body.subarray(1),
      Buffer.concat([body, Buffer.of(0)]),
    ]) {
      expect(errorOf(() => decrypt(formatCiphertext(1, bad)))).toEqual(INVALID);
    }
  });
});
