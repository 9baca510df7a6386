import { createSecretKey, hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CONVERGENT_INFO,
  convergentOkm,
  deriveConvergentKeys,
  openConvergent,
  sealConvergent,
} from './convergent.ts';
import { HKDF_SHA256_VECTORS } from './fixtures/hkdf-rfc5869.ts';
import { openssl } from './fixtures/openssl.ts';
import { hkdfExpand, hkdfExtract, hkdfSha256 } from './hkdf.ts';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** `openssl kdf ... HKDF`: OpenSSL's own HKDF through its CLI, with any info length. */
function opensslHkdf(ikm: Buffer, info: Buffer, length: number): Buffer {
  const out = openssl([
    'kdf',
    '-keylen',
    String(length),
    '-kdfopt',
    'digest:SHA256',
    '-kdfopt',
    `hexkey:${ikm.toString('hex')}`,
    '-kdfopt',
    `hexinfo:${info.toString('hex')}`,
    '-binary',
    'HKDF',
  ]);
  return out;
}

describe('hkdfSha256 over HMAC', () => {
  for (const v of HKDF_SHA256_VECTORS) {
    it(`matches ${v.name}, also as separate extract and expand`, () => {
      const salt = v.salt === '' ? undefined : hex(v.salt);
      expect(hkdfSha256(hex(v.ikm), salt, hex(v.info), v.length).toString('hex')).toBe(v.okm);
      expect(hkdfExpand(hkdfExtract(hex(v.ikm), salt), hex(v.info), v.length).toString('hex')).toBe(v.okm);
    });
  }

  it('equals node:crypto hkdfSync wherever hkdfSync works (info up to 1024 bytes)', () => {
    for (const infoLength of [0, 1, 31, 32, 33, 500, 1024]) {
      for (const length of [1, 32, 64, 96, 100]) {
        const ikm = randomBytes(32);
        const info = randomBytes(infoLength);
        const expected = Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), info, length));
        expect(hkdfSha256(ikm, undefined, info, length).equals(expected)).toBe(true);
      }
    }
  });

  it('equals openssl kdf HKDF for an info longer than 1024 bytes', () => {
    const ikm = randomBytes(32);
    for (const infoLength of [1025, 1045, 4096]) {
      const info = randomBytes(infoLength);
      expect(hkdfSha256(ikm, undefined, info, 96).equals(opensslHkdf(ikm, info, 96))).toBe(true);
    }
  });

  it('refuses an output length outside 1..8160', () => {
    const prk = createSecretKey(randomBytes(32));
    expect(() => hkdfExpand(prk, Buffer.alloc(0), 0)).toThrow(RangeError);
    expect(() => hkdfExpand(prk, Buffer.alloc(0), 8161)).toThrow(RangeError);
    expect(hkdfExpand(prk, Buffer.alloc(0), 8160)).toHaveLength(8160);
  });
});

describe('convergent contexts of 1004..1024 bytes (review finding: they returned 500)', () => {
  const material = randomBytes(32);

  for (const size of [1003, 1004, 1010, 1024]) {
    it(`derives keys for a ${size}-byte context, the same bytes as openssl's HKDF`, () => {
      const context = randomBytes(size);
      const okm = convergentOkm(material, context);
      const info = Buffer.concat([CONVERGENT_INFO, context]);
      expect(okm.equals(opensslHkdf(material, info, 96))).toBe(true);
      const keys = deriveConvergentKeys(material, context);
      const body = sealConvergent(keys, undefined, Buffer.from('secret'));
      expect(openConvergent(deriveConvergentKeys(material, context), body).toString()).toBe('secret');
    });
  }
});
