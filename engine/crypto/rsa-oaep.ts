/**
 * RSA-OAEP with SHA-256 for both the label hash and MGF1 (Node sets MGF1 to `oaepHash`), as
 * `openssl pkeyutl -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256` does. A 2048-bit key
 * takes up to 190 bytes of plaintext; the body is the 256-byte OAEP block.
 */
import { constants, type KeyObject, privateDecrypt, publicEncrypt } from 'node:crypto';
import { invalidCiphertext } from '../errors.ts';

/** The ciphertext length of RSA-2048. */
export const RSA_OAEP_BODY_LENGTH = 256;

/** Encrypts up to 190 bytes (checked at the edge by `assertPlaintextSize`). */
export function encryptRsaOaep(publicKey: KeyObject, plaintext: Uint8Array): Buffer {
  return publicEncrypt(
    { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    plaintext,
  );
}

/** Decrypts an OAEP block; any failure throws the same `invalidCiphertext()`. */
export function decryptRsaOaep(privateKey: KeyObject, body: Uint8Array): Buffer {
  if (body.length !== RSA_OAEP_BODY_LENGTH) throw invalidCiphertext();
  try {
    return privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      body,
    );
  } catch {
    throw invalidCiphertext();
  }
}
