/**
 * Fresh key material for one key version. AES256 is 32 random bytes; RSA2048 (e = 65537) and
 * ECDSA (P-256) are PKCS#8 DER private keys, the form `prepareKey` and `wrapMaterial` take.
 */
import { generateKeyPair, generateKeyPairSync, randomBytes } from 'node:crypto';
import { KeywardError } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';

/** Length of AES256 material. */
export const AES_KEY_LENGTH = 32;

const RSA_OPTIONS = { modulusLength: 2048, publicExponent: 65537 } as const;
const EC_OPTIONS = { namedCurve: 'P-256' } as const;
const DER_PKCS8 = { type: 'pkcs8', format: 'der' } as const;
const DER_SPKI = { type: 'spki', format: 'der' } as const;

function unknownUsage(usage: string): KeywardError {
  return new KeywardError('INTERNAL', `unknown key usage ${JSON.stringify(usage)}`);
}

/**
 * Generates material synchronously. RSA keygen takes 50–200 ms and blocks the thread: servers
 * should call `generateMaterialAsync` instead.
 */
export function generateMaterial(usage: KeyUsage): Buffer {
  switch (usage) {
    case 'AES256':
      return randomBytes(AES_KEY_LENGTH);
    case 'RSA2048':
      return generateKeyPairSync('rsa', {
        ...RSA_OPTIONS,
        privateKeyEncoding: DER_PKCS8,
        publicKeyEncoding: DER_SPKI,
      }).privateKey;
    case 'ECDSA':
      return generateKeyPairSync('ec', {
        ...EC_OPTIONS,
        privateKeyEncoding: DER_PKCS8,
        publicKeyEncoding: DER_SPKI,
      }).privateKey;
    default:
      throw unknownUsage(usage);
  }
}

/** Generates material on libuv's thread pool, so the event loop stays free during RSA keygen. */
export function generateMaterialAsync(usage: KeyUsage): Promise<Buffer> {
  if (usage === 'AES256') {
    return new Promise((resolve, reject) => {
      randomBytes(AES_KEY_LENGTH, (err, buf) => (err ? reject(err) : resolve(buf)));
    });
  }
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, _pub: Buffer, priv: Buffer): void => (err ? reject(err) : resolve(priv));
    if (usage === 'RSA2048') {
      generateKeyPair(
        'rsa',
        { ...RSA_OPTIONS, privateKeyEncoding: DER_PKCS8, publicKeyEncoding: DER_SPKI },
        done,
      );
    } else if (usage === 'ECDSA') {
      generateKeyPair(
        'ec',
        { ...EC_OPTIONS, privateKeyEncoding: DER_PKCS8, publicKeyEncoding: DER_SPKI },
        done,
      );
    } else {
      reject(unknownUsage(usage));
    }
  });
}
