/**
 * Argument checks for the edge of the engine. The hot functions of this folder trust their
 * callers (they run per item, up to ~150k/s); the engine calls these once per request instead.
 * Each throws a typed KeywardError that names the field and never echoes the bytes.
 */

import { invalidArgument, KeywardError, payloadTooLarge } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';
import {
  MAX_AAD,
  MAX_AES_PLAINTEXT,
  MAX_CONTEXT,
  MAX_RSA_OAEP_PLAINTEXT,
  MAX_SIGN_MESSAGE,
  MIN_CONTEXT,
  SHA256_DIGEST_LENGTH,
} from './limits.ts';

/** Throws INVALID_ARGUMENT unless `value` is a Uint8Array (Buffers included), like noble's `abytes`. */
export function abytes(value: unknown, field: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument(field, `${field} must be bytes`);
}

/**
 * Checks a plaintext against the limit of the key's usage: 32 KiB for AES256, 190 bytes for
 * RSA2048 (OAEP-SHA256). ECDSA keys do not encrypt, so they are refused with KEY_STATE.
 */
export function assertPlaintextSize(usage: KeyUsage, plaintext: unknown, field = 'plaintext'): void {
  abytes(plaintext, field);
  if (usage === 'AES256') {
    if (plaintext.length > MAX_AES_PLAINTEXT) throw payloadTooLarge(field, MAX_AES_PLAINTEXT);
  } else if (usage === 'RSA2048') {
    if (plaintext.length > MAX_RSA_OAEP_PLAINTEXT) throw payloadTooLarge(field, MAX_RSA_OAEP_PLAINTEXT);
  } else {
    throw new KeywardError('KEY_STATE', `an ${usage} key cannot encrypt`, { field: 'usage' });
  }
}

/** A convergent context must be 1 to 1024 bytes (PRODUCT.md §4.2). */
export function assertContext(context: unknown, field = 'context'): asserts context is Uint8Array {
  abytes(context, field);
  if (context.length < MIN_CONTEXT) throw invalidArgument(field, `${field} must not be empty`);
  if (context.length > MAX_CONTEXT) throw payloadTooLarge(field, MAX_CONTEXT);
}

/** Optional AAD: absent, or bytes up to 8 KiB. An empty AAD is the same as none in GCM. */
export function assertAad(aad: unknown, field = 'aad'): asserts aad is Uint8Array | undefined {
  if (aad === undefined) return;
  abytes(aad, field);
  if (aad.length > MAX_AAD) throw payloadTooLarge(field, MAX_AAD);
}

/** Sign/verify data: a message of up to 8 KiB, or exactly a 32-byte SHA-256 digest when prehashed. */
export function assertSignData(
  data: unknown,
  prehashed: boolean,
  field = 'data',
): asserts data is Uint8Array {
  abytes(data, field);
  if (prehashed) {
    if (data.length !== SHA256_DIGEST_LENGTH) {
      throw invalidArgument(
        field,
        `${field} must be a ${SHA256_DIGEST_LENGTH}-byte SHA-256 digest when prehashed`,
      );
    }
  } else if (data.length > MAX_SIGN_MESSAGE) {
    throw payloadTooLarge(field, MAX_SIGN_MESSAGE);
  }
}
