/**
 * Convergent (deterministic) AES-256-GCM, PRODUCT.md §4.2: a synthetic IV, as in Vault's
 * convergent version 3. For material K and context C:
 *
 *   okm   = HKDF-SHA256(ikm = K, salt = "", info = "keyward convergent v1" ‖ C, L)
 *   Kenc  = okm[0:32], Kmac = okm[32:64]                   (exactly §4.2)
 *   nonce = HMAC-SHA256(Kmac, plaintext)[0:12]              when there is no AAD (exactly §4.2)
 *   nonce = HMAC-SHA256(Kaad, u32be(|aad|) ‖ aad ‖ plaintext)[0:12], Kaad = okm[64:96], with AAD
 *   body  = AES-256-GCM(Kenc, nonce, plaintext, aad)
 *
 * Why the AAD case deviates (docs/crypto.md): the brief's `aad ‖ plaintext` is ambiguous.
 * ("ab", "c") and ("a", "bc") give the same HMAC input, hence the same nonce under the same Kenc
 * for two different plaintexts: a GCM nonce reuse, which leaks the XOR of the plaintexts and the
 * GHASH key (so forgeries). A caller who controls aad and plaintext could trigger it at will.
 * A length prefix alone would change the no-AAD case too, and could still collide with a bare
 * plaintext that happens to start with such a prefix if both shared one key. So the AAD case gets
 * its own HMAC key and an injective encoding, and the no-AAD case stays byte-for-byte §4.2.
 * HKDF-Expand is prefix-consistent, so asking for 96 bytes leaves Kenc and Kmac unchanged.
 * An empty AAD counts as no AAD, as it does in GCM.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { openAesGcm, sealAesGcm } from './aes-gcm.ts';
import { hkdfExpand, hkdfExtract } from './hkdf.ts';

/** The HKDF info prefix of §4.2; the context follows it. */
export const CONVERGENT_INFO = Buffer.from('keyward convergent v1', 'latin1');

const OKM_LENGTH = 96;
const NONCE_LENGTH = 12;

/** The keys derived for one (material, context) pair. Cache them by (key, version, context digest). */
export interface ConvergentKeys {
  /** Kenc = okm[0:32], the AES-256-GCM key. */
  readonly enc: KeyObject;
  /** Kmac = okm[32:64], the HMAC-SHA256 key for the nonce when there is no AAD. */
  readonly mac: KeyObject;
  /** Kaad = okm[64:96], the HMAC-SHA256 key for the nonce when there is AAD. */
  readonly aadMac: KeyObject;
}

/**
 * The raw HKDF output for (material, context): 96 bytes, of which the first 64 are §4.2's okm.
 * Exported for tests and for callers that hash it into a cache key; treat it as secret.
 */
export function convergentOkm(material: Uint8Array, context: Uint8Array): Buffer {
  return expandOkm(convergentPrk(material), context);
}

/**
 * HKDF-Extract of the material (salt ""): the only secret the context derivations need. A worker
 * keeps it as a KeyObject instead of the raw material.
 */
export function convergentPrk(material: Uint8Array): KeyObject {
  return hkdfExtract(material);
}

function expandOkm(prk: KeyObject, context: Uint8Array): Buffer {
  const info = Buffer.allocUnsafe(CONVERGENT_INFO.length + context.length);
  info.set(CONVERGENT_INFO, 0);
  info.set(context, CONVERGENT_INFO.length);
  return hkdfExpand(prk, info, OKM_LENGTH);
}

/** Derives Kenc, Kmac and Kaad from 32-byte material and a 1..1024-byte context (see the header). */
export function deriveConvergentKeys(material: Uint8Array, context: Uint8Array): ConvergentKeys {
  return deriveConvergentKeysFromPrk(convergentPrk(material), context);
}

/** `deriveConvergentKeys` from the material's `convergentPrk`. */
export function deriveConvergentKeysFromPrk(prk: KeyObject, context: Uint8Array): ConvergentKeys {
  const okm = expandOkm(prk, context);
  const keys: ConvergentKeys = {
    enc: createSecretKey(okm.subarray(0, 32)),
    mac: createSecretKey(okm.subarray(32, 64)),
    aadMac: createSecretKey(okm.subarray(64, 96)),
  };
  okm.fill(0); // createSecretKey copied the bytes into OpenSSL.
  return keys;
}

/** The 12-byte synthetic nonce for `plaintext` (and `aad`, when non-empty) under `keys`. */
export function convergentNonce(
  keys: ConvergentKeys,
  aad: Uint8Array | undefined,
  plaintext: Uint8Array,
): Buffer {
  if (aad === undefined || aad.length === 0) {
    return createHmac('sha256', keys.mac).update(plaintext).digest().subarray(0, NONCE_LENGTH);
  }
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(aad.length, 0);
  return createHmac('sha256', keys.aadMac)
    .update(len)
    .update(aad)
    .update(plaintext)
    .digest()
    .subarray(0, NONCE_LENGTH);
}

/** Convergent encryption: `nonce ‖ ciphertext ‖ tag`, identical for identical (keys, aad, plaintext). */
export function sealConvergent(
  keys: ConvergentKeys,
  aad: Uint8Array | undefined,
  plaintext: Uint8Array,
): Buffer {
  return sealAesGcm(keys.enc, convergentNonce(keys, aad, plaintext), plaintext, aad);
}

/** Convergent decryption; a wrong context, AAD or any tampering throws `invalidCiphertext()`. */
export function openConvergent(keys: ConvergentKeys, body: Uint8Array, aad?: Uint8Array): Buffer {
  return openAesGcm(keys.enc, body, aad);
}
