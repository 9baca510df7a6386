import { createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeywardError } from '../errors.ts';
import { generateMaterial, generateMaterialAsync } from './material.ts';
import { prepareKey } from './prepared-key.ts';

describe('generateMaterial / generateMaterialAsync', () => {
  it('AES256 is 32 fresh random bytes', async () => {
    const a = generateMaterial('AES256');
    const b = await generateMaterialAsync('AES256');
    expect(a.length).toBe(32);
    expect(b.length).toBe(32);
    expect(a.equals(b)).toBe(false);
  });

  for (const sync of [true, false]) {
    it(`${sync ? 'sync' : 'async'}: RSA2048 is a PKCS#8 DER RSA-2048 key with e = 65537`, async () => {
      const der = sync ? generateMaterial('RSA2048') : await generateMaterialAsync('RSA2048');
      const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      expect(key.asymmetricKeyType).toBe('rsa');
      expect(key.asymmetricKeyDetails).toMatchObject({ modulusLength: 2048, publicExponent: 65537n });
    });

    it(`${sync ? 'sync' : 'async'}: ECDSA is a PKCS#8 DER P-256 key`, async () => {
      const der = sync ? generateMaterial('ECDSA') : await generateMaterialAsync('ECDSA');
      const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      expect(key.asymmetricKeyType).toBe('ec');
      expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    });
  }

  it('refuses an unknown usage', async () => {
    expect(() => generateMaterial('DES' as never)).toThrow(KeywardError);
    await expect(generateMaterialAsync('DES' as never)).rejects.toThrow(KeywardError);
  });
});

describe('prepareKey', () => {
  it('builds a secret KeyObject for AES and a key pair otherwise', () => {
    const aes = prepareKey('AES256', generateMaterial('AES256'));
    expect(aes.usage === 'AES256' && aes.secret.type === 'secret' && aes.secret.symmetricKeySize === 32).toBe(
      true,
    );
    const ec = prepareKey('ECDSA', generateMaterial('ECDSA'));
    expect(ec.usage === 'ECDSA' && ec.privateKey.type === 'private' && ec.publicKey.type === 'public').toBe(
      true,
    );
  });

  it('refuses material that does not match the usage, without echoing it', () => {
    const aes = generateMaterial('AES256');
    const ec = generateMaterial('ECDSA');
    const cases: Array<[Parameters<typeof prepareKey>[0], Buffer]> = [
      ['AES256', aes.subarray(0, 16)],
      ['AES256', ec],
      ['RSA2048', ec],
      ['ECDSA', aes],
      ['ECDSA', Buffer.alloc(0)],
    ];
    for (const [usage, material] of cases) {
      try {
        prepareKey(usage, material);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(KeywardError);
        expect((err as KeywardError).code).toBe('INTERNAL');
        expect((err as Error).message).toBe(`${usage} key material is malformed`);
      }
    }
  });
});
