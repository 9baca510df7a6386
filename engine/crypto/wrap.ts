/**
 * Key material at rest (PRODUCT.md §4.3): AES-256-GCM under the 32-byte master key, with a fresh
 * random nonce, and an AAD that binds the blob to its store, key name, usage and version.
 *
 * Blob: `0x01 (format) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`.
 * AAD:  `"keyward wrap v1" ‖ lp(store) ‖ lp(lowercase name) ‖ lp(usage) ‖ u32be(version)`,
 *       where lp(s) = u32be(byte length of UTF-8 s) ‖ UTF-8 s. Length prefixes make the encoding
 *       injective (no two bindings share an AAD); names are unique ignoring case, so the name is
 *       bound lowercased and "Foo" and "foo" are the same key.
 * Any mismatch or tampering throws `invalidCiphertext('wrapped')`: it names no key and no bytes.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import { invalidCiphertext, KeywardError } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';
import { MIN_AES_BODY, NONCE_LENGTH, openAesGcm, sealAesGcm } from './aes-gcm.ts';

/** What a wrapped blob is bound to. */
export interface WrapBinding {
  /** The key store: a namespace, or `default` standalone. */
  store: string;
  /** The key name; bound lowercased. */
  name: string;
  usage: KeyUsage;
  /** The key version, 1, 2, ... */
  version: number;
}

/** The first byte of every wrapped blob; a future format would use another. */
export const WRAP_FORMAT_V1 = 0x01;

const WRAP_TAG = Buffer.from('keyward wrap v1', 'latin1');

function assertMaster(master: KeyObject): void {
  if (master?.type !== 'secret' || master.symmetricKeySize !== 32) {
    throw new KeywardError('INTERNAL', 'the master key must be a 32-byte secret key');
  }
}

function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  out.set(bytes, 4);
  return out;
}

/** The AAD for a binding (see the header). Exported for tests and docs. */
export function wrapAad(binding: WrapBinding): Buffer {
  const { store, name, usage, version } = binding;
  if (typeof store !== 'string' || typeof name !== 'string' || typeof usage !== 'string') {
    throw new KeywardError('INTERNAL', 'wrap binding is malformed');
  }
  if (!Number.isInteger(version) || version < 1 || version > 0xffffffff) {
    throw new KeywardError('INTERNAL', 'wrap binding version is out of range');
  }
  const v = Buffer.allocUnsafe(4);
  v.writeUInt32BE(version, 0);
  return Buffer.concat([
    WRAP_TAG,
    lengthPrefixed(store),
    lengthPrefixed(name.toLowerCase()),
    lengthPrefixed(usage),
    v,
  ]);
}

/** Wraps `material` under `master`, bound to `binding`. */
export function wrapMaterial(master: KeyObject, binding: WrapBinding, material: Uint8Array): Buffer {
  assertMaster(master);
  const body = sealAesGcm(master, randomBytes(NONCE_LENGTH), material, wrapAad(binding));
  const out = Buffer.allocUnsafe(1 + body.length);
  out[0] = WRAP_FORMAT_V1;
  out.set(body, 1);
  return out;
}

/**
 * Unwraps a blob made by `wrapMaterial` with the same master and binding. A blob moved to
 * another store, name, usage or version, a wrong master or any tampering throws
 * `invalidCiphertext('wrapped')`.
 */
export function unwrapMaterial(master: KeyObject, binding: WrapBinding, wrapped: Uint8Array): Buffer {
  assertMaster(master);
  if (
    !(wrapped instanceof Uint8Array) ||
    wrapped.length < 1 + MIN_AES_BODY ||
    wrapped[0] !== WRAP_FORMAT_V1
  ) {
    throw invalidCiphertext('wrapped');
  }
  const aad = wrapAad(binding);
  try {
    return openAesGcm(master, wrapped.subarray(1), aad);
  } catch {
    throw invalidCiphertext('wrapped');
  }
}
