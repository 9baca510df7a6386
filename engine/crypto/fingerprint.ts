/**
 * Key fingerprints (PRODUCT.md §2): `blake3:` + 32 hex digits (the first 16 bytes of BLAKE3).
 * - RSA2048 and ECDSA: BLAKE3 of the DER SPKI of the public key, so anyone with the public key
 *   (`GET .../public-key`, or `openssl pkey -pubout -outform DER`) can recompute it.
 * - AES256: a keyed check value. fk = HKDF-SHA256(ikm = K, salt = "", info =
 *   "keyward fingerprint v1", 32), then keyed BLAKE3(fk, "keyward key check value v1"). A PRF
 *   output reveals nothing about K; deriving fk first keeps K itself out of a second primitive
 *   (no cross-algorithm key reuse with AES-GCM and the convergent HKDF, whose info differs).
 * The SPKI hasher of hash-wasm is created once (its WASM init is async) and reused; each use runs
 * init-update-digest synchronously, so concurrent callers cannot interleave on it. The AES check
 * value uses hash-wasm's one-shot keyed `blake3`.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { blake3, createBLAKE3, type IHasher } from 'hash-wasm';
import { KeywardError } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';
import { hkdfSha256 } from './hkdf.ts';
import { AES_KEY_LENGTH } from './material.ts';

const FINGERPRINT_INFO = Buffer.from('keyward fingerprint v1', 'latin1');
const CHECK_LABEL = Buffer.from('keyward key check value v1', 'latin1');
const HEX_DIGITS = 32;

let hasher: Promise<IHasher> | undefined;

function spkiOf(material: Uint8Array): Buffer {
  try {
    const priv = createPrivateKey({ key: Buffer.from(material), format: 'der', type: 'pkcs8' });
    return createPublicKey(priv).export({ type: 'spki', format: 'der' });
  } catch {
    throw new KeywardError('INTERNAL', 'key material is malformed');
  }
}

/** The fingerprint of a key version's material (see the header). */
export async function fingerprint(usage: KeyUsage, material: Uint8Array): Promise<string> {
  if (usage === 'AES256') {
    if (material.length !== AES_KEY_LENGTH) throw new KeywardError('INTERNAL', 'key material is malformed');
    const fk = hkdfSha256(material, undefined, FINGERPRINT_INFO, 32);
    const hex = await blake3(CHECK_LABEL, 256, fk);
    fk.fill(0);
    return `blake3:${hex.slice(0, HEX_DIGITS)}`;
  }
  const spki = spkiOf(material);
  hasher ??= createBLAKE3(256);
  const h = await hasher;
  return `blake3:${h.init().update(spki).digest('hex').slice(0, HEX_DIGITS)}`;
}
