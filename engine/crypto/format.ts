/**
 * The text form of ciphertexts and signatures (PRODUCT.md §4): `keyward:v<N>:<base64>`.
 * Parsing is strict so that one ciphertext has exactly one spelling: N is a positive decimal
 * without leading zeros (at most 9 digits, so it is always a safe integer), and the body is
 * canonical standard base64 with padding. Anything else is `invalidCiphertext(field)`, the same
 * error a failed decryption gives, so malformed and tampered input look alike.
 */
import { invalidCiphertext, KeywardError } from '../errors.ts';

/** The largest version the format can carry (9 decimal digits). */
export const MAX_FORMAT_VERSION = 999_999_999;

const PREFIX = 'keyward:v';
const VERSION = /^[1-9][0-9]{0,8}$/;

/** The parsed form of a `keyward:v<N>:` string. */
export interface ParsedCiphertext {
  version: number;
  body: Buffer;
}

/** Formats `body` under key version `version` as `keyward:v<version>:<base64>`. */
export function formatCiphertext(version: number, body: Uint8Array): string {
  if (!Number.isInteger(version) || version < 1 || version > MAX_FORMAT_VERSION) {
    throw new KeywardError('INTERNAL', 'key version out of range for the ciphertext format');
  }
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const b64 = bytes.toString('base64');
  return `keyward:v${version}:${b64}`;
}

/**
 * Parses a `keyward:v<N>:<base64>` string. Throws `invalidCiphertext(field)` for anything that
 * is not exactly that shape, including an empty body.
 */
export function parseCiphertext(text: string, field = 'ciphertext'): ParsedCiphertext {
  if (typeof text !== 'string' || !text.startsWith(PREFIX)) throw invalidCiphertext(field);
  const colon = text.indexOf(':', PREFIX.length);
  if (colon < 0) throw invalidCiphertext(field);
  const version = text.slice(PREFIX.length, colon);
  const b64 = text.slice(colon + 1);
  if (!VERSION.test(version) || b64.length === 0) throw invalidCiphertext(field);
  // Canonical base64 by round trip: Node's decoder skips bad characters and accepts the URL-safe
  // alphabet, so anything that does not encode back to the same text is malformed. Much faster
  // than a validating regex over the whole body.
  const body = Buffer.from(b64, 'base64');
  if (body.toString('base64') !== b64) throw invalidCiphertext(field);
  return { version: Number(version), body };
}
