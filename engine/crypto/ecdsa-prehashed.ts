/**
 * ECDSA P-256 over a precomputed SHA-256 digest. node:crypto always hashes what it signs
 * (`sign(null, ...)` still applies SHA-256 for EC keys) and offers no raw-digest ECDSA, so this
 * one path uses @noble/curves: an audited implementation, rather than scalar arithmetic of our
 * own. Messages (the common path) stay on OpenSSL in signing.ts.
 * Signatures are ordinary ECDSA signatures of the message the digest came from (see the tests).
 */
import type { KeyObject } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { KeywardError } from '../errors.ts';

/** The wire forms Keyward offers: DER (default) and raw r‖s (JWS ES256). */
export type EcdsaEncoding = 'der' | 'raw';

// The public point is exported once per KeyObject (public, so caching it is harmless). The private
// scalar is not cached: each signature exports it from the KeyObject (OpenSSL memory) into a
// buffer that is zeroed as soon as noble has signed. That costs about 17 µs per signature against
// noble's ~500 µs; a long-lived JS copy of the scalar would outlive a key's destruction until the
// garbage collector ran, and could be read from a heap snapshot. (noble turns the scalar into a
// BigInt during the call; BigInts cannot be zeroed, and become garbage when the call returns.)
const points = new WeakMap<KeyObject, Uint8Array>();

// SEC 1 ECPrivateKey DER as OpenSSL exports a P-256 key: 30 77 02 01 01 04 20 <d: 32 bytes> ...
const SEC1_PREFIX = Buffer.from('30770201010420', 'hex');

/** Calls `use` with the private scalar d, zeroing every copy afterwards. */
function withSecretScalar<T>(privateKey: KeyObject, use: (d: Uint8Array) => T): T {
  const der = privateKey.export({ format: 'der', type: 'sec1' });
  try {
    if (der.length < SEC1_PREFIX.length + 32 || !der.subarray(0, SEC1_PREFIX.length).equals(SEC1_PREFIX)) {
      throw new KeywardError('INTERNAL', 'ECDSA key material is malformed');
    }
    return use(der.subarray(SEC1_PREFIX.length, SEC1_PREFIX.length + 32));
  } finally {
    der.fill(0);
  }
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

/** Signs a 32-byte digest, low-S; hedged nonces (RFC 6979 plus fresh randomness). */
export function signEcdsaDigest(privateKey: KeyObject, digest: Uint8Array, encoding: EcdsaEncoding): Buffer {
  const format = encoding === 'der' ? 'der' : 'compact';
  // noble signs low-S by default (lowS: true), the same policy as the OpenSSL path.
  return withSecretScalar(privateKey, (d) =>
    Buffer.from(p256.sign(digest, d, { prehash: false, format, lowS: true, extraEntropy: true })),
  );
}

/**
 * Verifies a signature over a 32-byte digest. High-S signatures are accepted, as on the OpenSSL
 * path (see ecdsa-low-s.ts). Returns false, never throws, for malformed signatures.
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
