import { createPublicKey } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openssl, type Scratch, scratch } from './fixtures/openssl.ts';
import { generateMaterial } from './material.ts';
import { prepareKey } from './prepared-key.ts';
import { exportPublicKey } from './public-key.ts';

let tmp: Scratch;
beforeAll(() => {
  tmp = scratch();
});
afterAll(() => tmp.dispose());

describe('exportPublicKey', () => {
  for (const usage of ['RSA2048', 'ECDSA'] as const) {
    it(`${usage}: the PEM is the SPKI of the material's public key, per openssl`, () => {
      const material = generateMaterial(usage);
      const { pem } = exportPublicKey(prepareKey(usage, material));
      expect(pem.startsWith('-----BEGIN PUBLIC KEY-----\n')).toBe(true);
      const fromOpenssl = openssl([
        'pkey',
        '-inform',
        'DER',
        '-in',
        tmp.write(`${usage}.der`, material),
        '-pubout',
      ]);
      expect(pem).toBe(fromOpenssl.toString());
    });

    it(`${usage}: the JWK imports back and matches the PEM`, () => {
      const { pem, jwk } = exportPublicKey(prepareKey(usage, generateMaterial(usage)));
      expect(jwk).not.toHaveProperty('d');
      const back = createPublicKey({ key: jwk, format: 'jwk' });
      expect(back.export({ type: 'spki', format: 'pem' })).toBe(pem);
    });
  }

  it('gives RSA JWKs kty/n/e only, and EC JWKs crv/x/y with alg ES256 and use sig', () => {
    const rsa = exportPublicKey(prepareKey('RSA2048', generateMaterial('RSA2048'))).jwk;
    expect(Object.keys(rsa).sort()).toEqual(['e', 'kty', 'n']);
    expect(rsa).toMatchObject({ kty: 'RSA', e: 'AQAB' });
    const ec = exportPublicKey(prepareKey('ECDSA', generateMaterial('ECDSA'))).jwk;
    expect(Object.keys(ec).sort()).toEqual(['alg', 'crv', 'kty', 'use', 'x', 'y']);
    expect(ec).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
  });

  it('refuses AES keys with KEY_STATE', () => {
    expect(() => exportPublicKey(prepareKey('AES256', generateMaterial('AES256')))).toThrow(
      expect.objectContaining({ code: 'KEY_STATE' }),
    );
  });
});
