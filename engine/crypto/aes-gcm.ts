/**
 * AES-256-GCM with a caller-supplied 96-bit nonce and a 128-bit tag. The body layout is
 * `nonce(12) ‖ ciphertext ‖ tag(16)` (PRODUCT.md §4). The pool draws nonces once per batch, so
 * sealing takes the nonce as an argument; these functions sit on the hot path and check only
 * what would otherwise corrupt the output format.
 */
import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import { invalidCiphertext, KeywardError } from '../errors.ts';

/** GCM nonce length in bytes. */
export const NONCE_LENGTH = 12;
/** GCM tag length in bytes. */
export const TAG_LENGTH = 16;
/** The shortest valid body: nonce and tag around an empty ciphertext. */
export const MIN_AES_BODY = NONCE_LENGTH + TAG_LENGTH;

const GCM = 'aes-256-gcm';
const TAG_OPTIONS = { authTagLength: TAG_LENGTH } as const;

/**
 * Encrypts `plaintext` under `key` (a 32-byte secret KeyObject) with `nonce` and optional `aad`.
 * Returns `nonce ‖ ciphertext ‖ tag`. The nonce must never repeat under one key.
 */
export function sealAesGcm(
  key: KeyObject,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad?: Uint8Array,
): Buffer {
  // GCM accepts other nonce lengths, which would silently break the body layout: refuse them.
  if (nonce.length !== NONCE_LENGTH) throw new KeywardError('INTERNAL', 'AES-GCM nonce must be 12 bytes');
  const cipher = createCipheriv(GCM, key, nonce, TAG_OPTIONS);
  if (aad !== undefined) cipher.setAAD(aad);
  const ct = cipher.update(plaintext);
  cipher.final(); // GCM is a stream mode: final() emits nothing but computes the tag.
  const out = Buffer.allocUnsafe(NONCE_LENGTH + ct.length + TAG_LENGTH);
  out.set(nonce, 0);
  out.set(ct, NONCE_LENGTH);
  out.set(cipher.getAuthTag(), NONCE_LENGTH + ct.length);
  return out;
}

/**
 * Decrypts and authenticates a `nonce ‖ ciphertext ‖ tag` body. Every failure (short body,
 * wrong key, wrong AAD, any flipped bit) throws the same `invalidCiphertext()`.
 */
export function openAesGcm(key: KeyObject, body: Uint8Array, aad?: Uint8Array): Buffer {
  if (body.length < MIN_AES_BODY) throw invalidCiphertext();
  const tagStart = body.length - TAG_LENGTH;
  let pt: Buffer | undefined;
  try {
    const decipher = createDecipheriv(GCM, key, body.subarray(0, NONCE_LENGTH), TAG_OPTIONS);
    decipher.setAuthTag(body.subarray(tagStart));
    if (aad !== undefined) decipher.setAAD(aad);
    pt = decipher.update(body.subarray(NONCE_LENGTH, tagStart));
    decipher.final();
    return pt;
  } catch {
    // The bytes decrypted before the tag check are unauthenticated: wipe them before dropping.
    pt?.fill(0);
    throw invalidCiphertext();
  }
}
