/**
 * The public half of an RSA2048 or ECDSA key version, as PEM (SPKI) and JWK (RFC 7517).
 * The JWK carries `alg: "ES256"` and `use: "sig"` for ECDSA keys, whose only use is ES256
 * signing. RSA2048 keys both encrypt (RSA-OAEP-256) and sign (PS256 or RS256), so neither `use`
 * nor `alg` would be true of them and both are left out. `kid` is the caller's to add.
 */
import type { JsonWebKey } from 'node:crypto';
import { KeywardError } from '../errors.ts';
import type { PreparedKey } from './prepared-key.ts';

/** A public key in the two forms the API returns. */
export interface ExportedPublicKey {
  pem: string;
  jwk: JsonWebKey;
}

/** Exports the public key of an RSA2048 or ECDSA key version. AES keys have none (KEY_STATE). */
export function exportPublicKey(key: PreparedKey): ExportedPublicKey {
  if (key.usage === 'AES256') {
    throw new KeywardError('KEY_STATE', 'an AES256 key has no public key', { field: 'usage' });
  }
  const pem = key.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const raw = key.publicKey.export({ format: 'jwk' });
  const jwk: JsonWebKey =
    key.usage === 'ECDSA'
      ? { kty: 'EC', crv: raw.crv, x: raw.x, y: raw.y, alg: 'ES256', use: 'sig' }
      : { kty: 'RSA', n: raw.n, e: raw.e };
  return { pem, jwk };
}
