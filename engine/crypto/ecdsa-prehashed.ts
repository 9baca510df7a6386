/**
 * ECDSA P-256 over a precomputed SHA-256 digest. node:crypto always hashes what it signs
 * (`sign(null, ...)` still applies SHA-256 for EC keys) and offers no raw-digest ECDSA, so this
 * one path uses @noble/curves: an audited implementation, rather than scalar arithmetic of our
 * own. Messages (the common path) stay on OpenSSL in signing.ts.
 * Signatures are ordinary ECDSA signatures of the message the digest came from (see the tests).
 */
import type { KeyObject } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';

/** The wire forms Keyward offers: DER (default) and raw r‖s (JWS ES256). */
export type EcdsaEncoding = 'der' | 'raw';

// The scalar and point are exported once per KeyObject: the worker reuses KeyObjects, so a hot
// key pays the JWK export once.
const secrets = new WeakMap<KeyObject, Uint8Array>();
const points = new WeakMap<KeyObject, Uint8Array>();

function secretScalar(privateKey: KeyObject): Uint8Array {
  let d = secrets.get(privateKey);
  if (d === undefined) {
    d = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
    secrets.set(privateKey, d);
  }
  return d;
}

function publicPoint(publicKey: KeyObject): Uint8Array {
  let q = points.get(publicKey);
  if (q === undefined) {
    const jwk = publicKey.export({ format: 'jwk' });
    q = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
    points.set(publicKey, q);
  }
  return q;
}

/** Signs a 32-byte digest; hedged nonces (RFC 6979 plus fresh randomness). */
export function signEcdsaDigest(privateKey: KeyObject, digest: Uint8Array, encoding: EcdsaEncoding): Buffer {
  const format = encoding === 'der' ? 'der' : 'compact';
  return Buffer.from(
    p256.sign(digest, secretScalar(privateKey), { prehash: false, format, extraEntropy: true }),
  );
}

/**
 * Verifies a signature over a 32-byte digest. High-S signatures are accepted, as OpenSSL makes
 * them. Returns false, never throws, for malformed signatures.
 */
export function verifyEcdsaDigest(
  publicKey: KeyObject,
  digest: Uint8Array,
  signature: Uint8Array,
  encoding: EcdsaEncoding,
): boolean {
  try {
    const format = encoding === 'der' ? 'der' : 'compact';
    return p256.verify(signature, digest, publicPoint(publicKey), { prehash: false, lowS: false, format });
  } catch {
    return false;
  }
}
