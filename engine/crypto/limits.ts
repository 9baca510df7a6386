/**
 * Every limit of the API in one place (PRODUCT.md §2, §4.1, §4.2, §6): payload sizes, the key-name,
 * namespace and region rules, the rotation bounds, the memo length, the closed lists (usages,
 * boundaries, signature algorithms, data-key sizes), batch and body sizes and the version cap.
 *
 * The key-spec validator (`keys/spec.ts`), the engine's asserts (`assert.ts`), the HTTP schemas
 * (`wire/schemas.ts`, and so `/openapi.json`) and the CLI's flag checks all derive from these
 * constants, so a change here changes all of them. Plain constants, no I/O: usable from worker
 * threads too.
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

/** The data-key size when the caller names none, in bits. */
export const DEFAULT_DATA_KEY_BITS = 256;

/** Length of a SHA-256 digest: what `prehashed: true` data must be. */
export const SHA256_DIGEST_LENGTH = 32;

// ---- keys (§2) ---------------------------------------------------------------------------------

/** The key types, in the order the docs list them. */
export const KEY_USAGE_NAMES = ['AES256', 'RSA2048', 'ECDSA'] as const;

/** Where a key may be used. */
export const KEY_BOUNDARY_NAMES = ['Global', 'Isolated'] as const;

/** The signature algorithms (RSA2048: PSS default, PKCS#1 v1.5; ECDSA: DER default, raw r‖s). */
export const SIGNATURE_ALGORITHM_NAMES = [
  'RSASSA_PSS_SHA_256',
  'RSASSA_PKCS1_V1_5_SHA_256',
  'ECDSA_SHA_256',
  'ECDSA_SHA_256_RAW',
] as const;

/** §2: 3 to 15 characters, starting with a letter; letters, digits, `_` and `-` (ASCII only). */
export const KEY_NAME_PATTERN = '^[A-Za-z][A-Za-z0-9_-]{2,14}$';

/** Shortest and longest key name. */
export const MIN_KEY_NAME = 3;
export const MAX_KEY_NAME = 15;

/** A key-store namespace: a Kubernetes namespace name (DNS-1123 label, at most 63 characters). */
export const NAMESPACE_PATTERN = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$';

/** A region (`--region`, a key's `region`): a DNS label, like a namespace (the CRD repeats it; a test compares). */
export const REGION_PATTERN = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$';

/** Longest memo, in characters (Unicode code points, as JSON Schema's `maxLength` counts). */
export const MAX_MEMO_CHARS = 100;

/** Bounds of `rotation.periodDays`, and its default. */
export const MIN_ROTATION_PERIOD_DAYS = 1;
export const MAX_ROTATION_PERIOD_DAYS = 730;
export const DEFAULT_ROTATION_PERIOD_DAYS = 90;

/**
 * Most versions a key may hold. A key at the cap refuses a manual rotation (KEY_STATE) and is no
 * longer rotated automatically; its views stay bounded (about 60 KB for a GET at the cap). At a
 * rotation a day that is 2.7 years; at the default 90 days, 246 years.
 */
export const MAX_KEY_VERSIONS = 1000;

/** Largest version number the API parses (`?version=`): nine digits, always below 2^31. */
export const MAX_VERSION_NUMBER = 999_999_999;

// ---- requests (§6) -----------------------------------------------------------------------------

/** Most items a batch may hold. */
export const MAX_BATCH_ITEMS = 1000;

/** Body limits in bytes: one operation (32 KiB as base64, plus aad and context), a batch, admin. */
export const BODY_LIMITS = { single: 128 * 1024, batch: 16 * 1024 * 1024, admin: 16 * 1024 } as const;

/** Characters of standard base64 (with padding) for `bytes` bytes. */
export function base64Length(bytes: number): number {
  return 4 * Math.ceil(bytes / 3);
}
