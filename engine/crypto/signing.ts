/**
 * Sign and verify (PRODUCT.md §4.1). RSA2048: RSASSA-PSS-SHA256 with the maximum salt length
 * (verifies with `openssl -sigopt rsa_pss_saltlen:max`), or PKCS#1 v1.5 on request. ECDSA: P-256
 * with SHA-256, DER by default, raw r‖s (JWS ES256) on request. `prehashed: true` means `data`
 * is already the 32-byte SHA-256 digest of the message; the signature is then the same kind of
 * signature the message would have got, checked against openssl in the tests.
 *
 * ECDSA signatures are always low-S (s ≤ n/2); verify accepts high-S too, as every standard
 * implementation does (ecdsa-low-s.ts and docs/crypto.md say why).
 */
import { constants, sign, verify } from 'node:crypto';
import { KeywardError } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';
import { derToRaw, lowSDer } from './ecdsa-low-s.ts';
import { signEcdsaDigest, verifyEcdsaDigest } from './ecdsa-prehashed.ts';
import { SIGNATURE_ALGORITHM_NAMES } from './limits.ts';
import type { PreparedKey, PreparedKeyPair } from './prepared-key.ts';
import { signPkcs1Digest, signPssDigest, verifyPkcs1Digest, verifyPssDigest } from './rsa-prehashed.ts';

/** The signature algorithms a key may use. */
export type SignatureAlgorithm = (typeof SIGNATURE_ALGORITHM_NAMES)[number];

/** Every signature algorithm, for schemas. */
export const SIGNATURE_ALGORITHMS: readonly SignatureAlgorithm[] = SIGNATURE_ALGORITHM_NAMES;

/** How to sign or verify. */
export interface SignatureOptions {
  algorithm: SignatureAlgorithm;
  /** True when `data` is a 32-byte SHA-256 digest rather than the message. */
  prehashed: boolean;
}

/** The algorithm used when a request names none: PSS for RSA2048, DER ECDSA for ECDSA. */
export function defaultSignatureAlgorithm(usage: KeyUsage): SignatureAlgorithm {
  if (usage === 'RSA2048') return 'RSASSA_PSS_SHA_256';
  if (usage === 'ECDSA') return 'ECDSA_SHA_256';
  throw new KeywardError('KEY_STATE', `an ${usage} key cannot sign or verify`, { field: 'usage' });
}

function usageOf(algorithm: SignatureAlgorithm): KeyUsage | undefined {
  switch (algorithm) {
    case 'RSASSA_PSS_SHA_256':
    case 'RSASSA_PKCS1_V1_5_SHA_256':
      return 'RSA2048';
    case 'ECDSA_SHA_256':
    case 'ECDSA_SHA_256_RAW':
      return 'ECDSA';
    default:
      return undefined;
  }
}

// The HTTP edge has validated the algorithm's name; sign and verify still check that it pairs
// with the key: one switch, and a programming error cannot feed an EC key to the RSA padding code.
function pairOf(key: PreparedKey, algorithm: SignatureAlgorithm): PreparedKeyPair {
  if (key.usage === 'AES256' || usageOf(algorithm) !== key.usage) {
    throw new KeywardError('INTERNAL', 'signature algorithm does not match the key');
  }
  return key;
}

const PSS = constants.RSA_PKCS1_PSS_PADDING;

// OpenSSL signs DER, then s is made low (ecdsa-low-s.ts): every ECDSA signature Keyward returns is
// low-S, whatever the form. The raw form is converted here rather than asked of node:crypto:
// `dsaEncoding: 'ieee-p1363'` halves signing throughput on Node 24 (measured).
function signEcdsaLowS(privateKey: PreparedKeyPair['privateKey'], data: Uint8Array): Buffer {
  return lowSDer(sign('sha256', data, privateKey));
}

/** Signs `data` (a message, or a SHA-256 digest when prehashed). Returns the raw signature bytes. */
export function signBytes(key: PreparedKey, data: Uint8Array, options: SignatureOptions): Buffer {
  const { privateKey } = pairOf(key, options.algorithm);
  switch (options.algorithm) {
    case 'RSASSA_PSS_SHA_256':
      return options.prehashed
        ? signPssDigest(privateKey, data)
        : sign('sha256', data, {
            key: privateKey,
            padding: PSS,
            saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN,
          });
    case 'RSASSA_PKCS1_V1_5_SHA_256':
      return options.prehashed ? signPkcs1Digest(privateKey, data) : sign('sha256', data, privateKey);
    case 'ECDSA_SHA_256':
      if (options.prehashed) return signEcdsaDigest(privateKey, data, 'der');
      return signEcdsaLowS(privateKey, data);
    case 'ECDSA_SHA_256_RAW':
      if (options.prehashed) return signEcdsaDigest(privateKey, data, 'raw');
      return derToRaw(signEcdsaLowS(privateKey, data));
  }
}

/**
 * Verifies `signature` over `data`. Returns false, never throws, for a wrong, truncated or
 * garbled signature (PSS accepts any salt length). Throws only for a key/algorithm mismatch.
 */
export function verifyBytes(
  key: PreparedKey,
  data: Uint8Array,
  signature: Uint8Array,
  options: SignatureOptions,
): boolean {
  const { publicKey } = pairOf(key, options.algorithm);
  try {
    switch (options.algorithm) {
      case 'RSASSA_PSS_SHA_256':
        return options.prehashed
          ? verifyPssDigest(publicKey, data, signature)
          : verify(
              'sha256',
              data,
              { key: publicKey, padding: PSS, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
              signature,
            );
      case 'RSASSA_PKCS1_V1_5_SHA_256':
        return options.prehashed
          ? verifyPkcs1Digest(publicKey, data, signature)
          : verify('sha256', data, publicKey, signature);
      case 'ECDSA_SHA_256': {
        if (!options.prehashed) return verify('sha256', data, publicKey, signature);
        return verifyEcdsaDigest(publicKey, data, signature, 'der');
      }
      case 'ECDSA_SHA_256_RAW': {
        if (!options.prehashed) {
          return verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature);
        }
        return verifyEcdsaDigest(publicKey, data, signature, 'raw');
      }
    }
  } catch {
    return false;
  }
  return false;
}
