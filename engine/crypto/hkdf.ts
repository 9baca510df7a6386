/**
 * HKDF-SHA256 (RFC 5869) in one place, so the exact call that convergent encryption and
 * fingerprints rely on is the one the RFC test vectors check.
 */
import { hkdfSync } from 'node:crypto';

const EMPTY = Buffer.alloc(0);

/**
 * HKDF-SHA256 extract-and-expand of `ikm` with `salt` (empty means HashLen zero bytes, as the RFC
 * says) and `info`, giving `length` bytes (at most 255·32).
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array | undefined,
  info: Uint8Array,
  length: number,
): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt ?? EMPTY, info, length));
}
