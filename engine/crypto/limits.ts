/**
 * The size limits of PRODUCT.md §4.1 and §4.2, in bytes unless named otherwise. One place, so the
 * engine, the HTTP schemas and the asserts in `assert.ts` cannot drift apart.
 */

/** Largest AES256 plaintext; larger payloads should use data keys (envelope encryption). */
export const MAX_AES_PLAINTEXT = 32768;

/** Largest RSA-OAEP-SHA256 plaintext for a 2048-bit key: 256 - 2·32 - 2 = 190 bytes. */
export const MAX_RSA_OAEP_PLAINTEXT = 190;

/** Largest message for sign/verify when it is not prehashed. */
export const MAX_SIGN_MESSAGE = 8192;

/** Smallest convergent context. */
export const MIN_CONTEXT = 1;

/** Largest convergent context. */
export const MAX_CONTEXT = 1024;

/** Largest additional authenticated data. */
export const MAX_AAD = 8192;

/** The data-key sizes a caller may ask for, in bits. */
export const DATA_KEY_BITS: readonly number[] = [128, 256, 512];

/** Length of a SHA-256 digest: what `prehashed: true` data must be. */
export const SHA256_DIGEST_LENGTH = 32;
