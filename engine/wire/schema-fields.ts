/** Field schemas shared by the request and response schemas. */
import { base64Length } from '../crypto/limits.ts';
import type { Schema } from './validate.ts';

/**
 * Canonical standard base64 with padding: whole quanta, then `xx==` whose second character has
 * its low 4 bits zero, or `xxx=` whose third has its low 2 bits zero. `decodeBase64` enforces the
 * same rule by a round trip (faster), so the validator leaves this pattern to it; a unit test
 * holds the two to the same answers.
 */
export const BASE64_PATTERN =
  '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$';

/** A base64 field of `minBytes..maxBytes` bytes; over the maximum is 413 PAYLOAD_TOO_LARGE. */
export const base64 = (description: string, maxBytes: number, minBytes = 0): Schema => ({
  type: 'string',
  contentEncoding: 'base64',
  pattern: BASE64_PATTERN,
  ...(minBytes > 0 ? { minLength: base64Length(minBytes) } : {}),
  maxLength: base64Length(maxBytes),
  description,
});

/** A ciphertext or signature string. */
export const ciphertext: Schema = { type: 'string', description: 'keyward:v<N>:<base64>' };
