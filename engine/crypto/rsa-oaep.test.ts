import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidCiphertext } from '../errors.ts';
import { errorOf } from './fixtures/error-of.ts';
import { openssl, type Scratch, scratch } from './fixtures/openssl.ts';
import { formatCiphertext, parseCiphertext } from './format.ts';
import { MAX_RSA_OAEP_PLAINTEXT } from './limits.ts';
import { generateMaterial } from './material.ts';
import { type PreparedKeyPair, prepareKey } from './prepared-key.ts';
import { exportPublicKey } from './public-key.ts';
import { decryptRsaOaep, encryptRsaOaep } from './rsa-oaep.ts';

const OAEP = [
  '-pkeyopt',
  'rsa_padding_mode:oaep',
  '-pkeyopt',
  'rsa_oaep_md:sha256',
  '-pkeyopt',
  'rsa_mgf1_md:sha256',
];
const INVALID = invalidCiphertext().toJSON();

let tmp: Scratch;
let key: PreparedKeyPair;
let pubPath: string;
let privPath: string;

beforeAll(() => {
  tmp = scratch();
  const material = generateMaterial('RSA2048');
  key = prepareKey('RSA2048', material) as PreparedKeyPair;
  pubPath = tmp.write('pub.pem', exportPublicKey(key).pem);
  privPath = tmp.write('priv.der', material);
});
afterAll(() => tmp.dispose());

describe('RSA-OAEP-SHA256', () => {
  it('round-trips 0 to 190 bytes', () => {
    for (const n of [0, 1, 32, 189, MAX_RSA_OAEP_PLAINTEXT]) {
      const pt = randomBytes(n);
      const body = encryptRsaOaep(key.publicKey, pt);
      expect(body.length).toBe(256);
      expect(decryptRsaOaep(key.privateKey, body).equals(pt)).toBe(true);
    }
  });

  it('cannot encrypt more than 190 bytes', () => {
    expect(() => encryptRsaOaep(key.publicKey, randomBytes(191))).toThrow();
  });

  it('decrypts what openssl pkeyutl encrypts with OAEP/SHA-256/MGF1-SHA-256', () => {
    const pt = randomBytes(190);
    const inPath = tmp.write('pt', pt);
    const ct = openssl(['pkeyutl', '-encrypt', '-pubin', '-inkey', pubPath, '-in', inPath, ...OAEP]);
    expect(decryptRsaOaep(key.privateKey, ct).equals(pt)).toBe(true);
  });

  it('encrypts what openssl pkeyutl decrypts with OAEP/SHA-256/MGF1-SHA-256 (and not with SHA-1 MGF1)', () => {
    const pt = Buffer.from('a data key, say');
    const ctPath = tmp.write('ct', encryptRsaOaep(key.publicKey, pt));
    const out = openssl([
      'pkeyutl',
      '-decrypt',
      '-inkey',
      privPath,
      '-keyform',
      'DER',
      '-in',
      ctPath,
      ...OAEP,
    ]);
    expect(out.equals(pt)).toBe(true);
    expect(() =>
      openssl([
        'pkeyutl',
        '-decrypt',
        '-inkey',
        privPath,
        '-keyform',
        'DER',
        '-in',
        ctPath,
        '-pkeyopt',
        'rsa_padding_mode:oaep',
        '-pkeyopt',
        'rsa_oaep_md:sha256',
        '-pkeyopt',
        'rsa_mgf1_md:sha1',
      ]),
    ).toThrow();
  });

  it('fails identically for every single-bit flip, wrong lengths and a wrong key', () => {
    const text = formatCiphertext(1, encryptRsaOaep(key.publicKey, Buffer.from('secret')));
    const { body } = parseCiphertext(text);
    // Every bit of the 256-byte block: each costs one RSA private operation.
    for (let bit = 0; bit < body.length * 8; bit++) {
      const c = Buffer.from(body);
      c[bit >> 3]! ^= 1 << (bit & 7);
      expect(
        errorOf(() => decryptRsaOaep(key.privateKey, parseCiphertext(formatCiphertext(1, c)).body)),
      ).toEqual(INVALID);
    }
    for (const bad of [
      Buffer.alloc(0),
      body.subarray(1),
      Buffer.concat([body, Buffer.of(0)]),
      Buffer.alloc(256, 0xff),
    ]) {
      expect(errorOf(() => decryptRsaOaep(key.privateKey, bad))).toEqual(INVALID);
    }
    const other = prepareKey('RSA2048', generateMaterial('RSA2048')) as PreparedKeyPair;
    expect(errorOf(() => decryptRsaOaep(other.privateKey, body))).toEqual(INVALID);
  });
});
