/**
 * Strict base64 at the edge: standard alphabet, padding required, canonical (unused bits zero).
 * Node's decoder silently skips bad characters, so every input is checked before it is trusted.
 */
import { invalidArgument } from '../errors.ts';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decodes `text` or throws INVALID_ARGUMENT naming `field`. */
export function decodeBase64(text: string, field: string): Buffer {
  if (!BASE64.test(text)) {
    throw invalidArgument(field, `${field} is not valid base64 (standard alphabet, with padding)`);
  }
  // Only the padded last quantum can be non-canonical ("QR==" has non-zero unused bits).
  if (text.endsWith('=')) {
    const last = text.slice(-4);
    if (Buffer.from(last, 'base64').toString('base64') !== last) {
      throw invalidArgument(field, `${field} is not canonical base64`);
    }
  }
  return Buffer.from(text, 'base64');
}

/** Decodes an optional field: undefined stays undefined. */
export function decodeOptional(text: string | undefined, field: string): Buffer | undefined {
  return text === undefined ? undefined : decodeBase64(text, field);
}
