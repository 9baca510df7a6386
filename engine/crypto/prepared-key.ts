/**
 * Turns unwrapped material into node:crypto KeyObjects once, so no operation parses DER or PEM
 * or copies raw key bytes into OpenSSL again (PRODUCT.md §4: a secret KeyObject runs AES-GCM
 * about 2.5× faster than a raw Buffer key on Node 24).
 */
import { createPrivateKey, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { KeywardError } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';
import { AES_KEY_LENGTH } from './material.ts';

/** An AES256 key version ready for use. */
export interface PreparedSecretKey {
  readonly usage: 'AES256';
  readonly secret: KeyObject;
}

/** An RSA2048 or ECDSA key version ready for use. */
export interface PreparedKeyPair {
  readonly usage: 'RSA2048' | 'ECDSA';
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** A key version's KeyObjects, by usage. */
export type PreparedKey = PreparedSecretKey | PreparedKeyPair;

// The message names no bytes: material must never reach an error.
function malformed(usage: KeyUsage): KeywardError {
  return new KeywardError('INTERNAL', `${usage} key material is malformed`);
}

/**
 * Builds the KeyObjects for one key version. Throws a KeywardError INTERNAL (no bytes in the
 * message) when the material does not match the usage: a 32-byte AES key, an RSA 2048-bit or a
 * P-256 PKCS#8 DER private key.
 */
export function prepareKey(usage: KeyUsage, material: Uint8Array): PreparedKey {
  if (!(material instanceof Uint8Array)) throw malformed(usage);
  if (usage === 'AES256') {
    if (material.length !== AES_KEY_LENGTH) throw malformed(usage);
    return { usage, secret: createSecretKey(material) };
  }
  if (usage !== 'RSA2048' && usage !== 'ECDSA') throw new KeywardError('INTERNAL', 'unknown key usage');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(material), format: 'der', type: 'pkcs8' });
  } catch {
    throw malformed(usage);
  }
  const details = privateKey.asymmetricKeyDetails;
  const ok =
    usage === 'RSA2048'
      ? privateKey.asymmetricKeyType === 'rsa' && details?.modulusLength === 2048
      : privateKey.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1';
  if (!ok) throw malformed(usage);
  return { usage, privateKey, publicKey: createPublicKey(privateKey) };
}
