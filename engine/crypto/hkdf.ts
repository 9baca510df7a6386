/**
 * HKDF-SHA256 (RFC 5869) in one place, so the exact call that convergent encryption, fingerprints
 * and the master-key check rely on is the one the RFC test vectors and openssl check.
 *
 * Built on HMAC-SHA256 (`createHmac`, OpenSSL) rather than `hkdfSync`: OpenSSL's HKDF as Node
 * calls it refuses an `info` over 1024 bytes, and the convergent info is a 21-byte label plus a
 * context of up to 1024 bytes, so contexts of 1004..1024 bytes failed (review finding). HMAC takes
 * any length; the output is the same bytes (the tests compare with `hkdfSync` below the limit and
 * with `openssl kdf ... HKDF` above it).
 *
 * The extract step is separate so a worker can keep only the pseudorandom key, as a KeyObject,
 * instead of the raw key material: Expand needs nothing else.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';

/** SHA-256 output length: HashLen of RFC 5869. */
const HASH_LEN = 32;
/** RFC 5869: L <= 255 * HashLen. */
const MAX_OKM = 255 * HASH_LEN;
const ZERO_SALT = Buffer.alloc(HASH_LEN);

/**
 * HKDF-Extract: PRK = HMAC-SHA256(salt, ikm), as a secret KeyObject. An absent or empty salt is
 * HashLen zero bytes (RFC 5869 §2.2); HMAC pads a short key with zeros, so both agree.
 */
export function hkdfExtract(ikm: Uint8Array, salt?: Uint8Array): KeyObject {
  const prk = createHmac('sha256', salt === undefined || salt.length === 0 ? ZERO_SALT : salt)
    .update(ikm)
    .digest();
  try {
    return createSecretKey(prk);
  } finally {
    prk.fill(0); // createSecretKey copied it into OpenSSL
  }
}

/**
 * HKDF-Expand: `length` bytes (1..8160) of T(1) ‖ T(2) ‖ ..., where
 * T(i) = HMAC-SHA256(PRK, T(i-1) ‖ info ‖ i). Any `info` length.
 */
export function hkdfExpand(prk: KeyObject, info: Uint8Array, length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > MAX_OKM) {
    throw new RangeError(`HKDF output length must be 1..${MAX_OKM}`);
  }
  const out = Buffer.allocUnsafe(length);
  let previous: Buffer = Buffer.alloc(0);
  const counter = Buffer.alloc(1);
  for (let offset = 0, i = 1; offset < length; i++) {
    counter[0] = i;
    const block = createHmac('sha256', prk).update(previous).update(info).update(counter).digest();
    previous.fill(0);
    block.copy(out, offset, 0, Math.min(HASH_LEN, length - offset));
    offset += HASH_LEN;
    previous = block;
  }
  previous.fill(0);
  return out;
}

/**
 * HKDF-SHA256 extract-and-expand of `ikm` with `salt` (empty means HashLen zero bytes, as the RFC
 * says) and `info` of any length, giving `length` bytes (at most 255·32).
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array | undefined,
  info: Uint8Array,
  length: number,
): Buffer {
  return hkdfExpand(hkdfExtract(ikm, salt), info, length);
}
