/**
 * Key material at rest (PRODUCT.md §4.3): AES-256-GCM under a 32-byte master key, with a fresh
 * random nonce, and an AAD that binds the blob to its store, key name, usage and version. The blob
 * names the master-key version that wrapped it, so a store can hold blobs of two master-key
 * versions while a master-key rotation re-wraps them (engine/store/master-key-rotation.ts).
 *
 * Blob, master-key version 1 (format 1, unchanged since the first release):
 *   `0x01 ‖ nonce(12) ‖ ciphertext ‖ tag(16)`
 *   AAD `"keyward wrap v1" ‖ lp(store) ‖ lp(lowercase name) ‖ lp(usage) ‖ u32be(version)`
 * Blob, master-key version m ≥ 2 (format 2):
 *   `0x02 ‖ u32be(m) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`
 *   AAD `"keyward wrap v2" ‖ u32be(m) ‖ lp(store) ‖ lp(lowercase name) ‖ lp(usage) ‖ u32be(version)`
 * where lp(s) = u32be(byte length of UTF-8 s) ‖ UTF-8 s. Length prefixes make the encoding
 * injective (no two bindings share an AAD); names are unique ignoring case, so the name is bound
 * lowercased and "Foo" and "foo" are the same key. The master-key version is in the AAD too, so a
 * header edited to name another version cannot authenticate.
 * Any mismatch or tampering throws `invalidCiphertext('wrapped')`: it names no key and no bytes.
 */
import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { invalidCiphertext, KeywardError } from '../errors.ts';
import type { KeyUsage } from '../keys/model.ts';
import { MIN_AES_BODY, NONCE_LENGTH, openAesGcm, sealAesGcm } from './aes-gcm.ts';
import { asMasterKeys, isMasterKeyVersion, type MasterKeys } from './master-keys.ts';

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

/** The first byte of a blob wrapped under master-key version 1. */
export const WRAP_FORMAT_V1 = 0x01;
/** The first byte of a blob wrapped under master-key version 2 or later. */
export const WRAP_FORMAT_V2 = 0x02;

const WRAP_TAG_V1 = Buffer.from('keyward wrap v1', 'latin1');
const WRAP_TAG_V2 = Buffer.from('keyward wrap v2', 'latin1');
const V2_HEADER = 5;

function assertMaster(master: KeyObject | undefined): asserts master is KeyObject {
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

function u32(value: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(value, 0);
  return out;
}

/**
 * The AAD for a binding under master-key version `masterKeyVersion` (see the header). Exported for
 * tests and docs.
 */
export function wrapAad(binding: WrapBinding, masterKeyVersion = 1): Buffer {
  const { store, name, usage, version } = binding;
  if (typeof store !== 'string' || typeof name !== 'string' || typeof usage !== 'string') {
    throw new KeywardError('INTERNAL', 'wrap binding is malformed');
  }
  if (!isMasterKeyVersion(version)) {
    throw new KeywardError('INTERNAL', 'wrap binding version is out of range');
  }
  const fields = [
    lengthPrefixed(store),
    lengthPrefixed(name.toLowerCase()),
    lengthPrefixed(usage),
    u32(version),
  ];
  return masterKeyVersion === 1
    ? Buffer.concat([WRAP_TAG_V1, ...fields])
    : Buffer.concat([WRAP_TAG_V2, u32(masterKeyVersion), ...fields]);
}

/**
 * Wraps `material` bound to `binding`, under the current master-key version (a bare KeyObject is
 * master-key version 1).
 */
export function wrapMaterial(
  master: KeyObject | MasterKeys,
  binding: WrapBinding,
  material: Uint8Array,
): Buffer {
  const keys = asMasterKeys(master);
  const version = keys.current;
  const key = keys.key(version);
  assertMaster(key);
  const body = sealAesGcm(key, randomBytes(NONCE_LENGTH), material, wrapAad(binding, version));
  if (version === 1) {
    const out = Buffer.allocUnsafe(1 + body.length);
    out[0] = WRAP_FORMAT_V1;
    out.set(body, 1);
    return out;
  }
  const out = Buffer.allocUnsafe(V2_HEADER + body.length);
  out[0] = WRAP_FORMAT_V2;
  out.writeUInt32BE(version, 1);
  out.set(body, V2_HEADER);
  return out;
}

/**
 * The master-key version a blob names, or undefined when the blob is not a wrapped blob at all.
 * Accepts the bytes or the stored base64.
 */
export function wrappedMasterKeyVersion(wrapped: Uint8Array | string): number | undefined {
  // 8 base64 characters are the first 6 bytes: enough for the header.
  const head = typeof wrapped === 'string' ? Buffer.from(wrapped.slice(0, 8), 'base64') : wrapped;
  if (head.length < 1) return undefined;
  if (head[0] === WRAP_FORMAT_V1) return 1;
  if (head[0] !== WRAP_FORMAT_V2 || head.length < V2_HEADER) return undefined;
  const version = Buffer.from(head.buffer, head.byteOffset, V2_HEADER).readUInt32BE(1);
  return isMasterKeyVersion(version) ? version : undefined;
}

/**
 * Unwraps a blob made by `wrapMaterial` with the same binding, under the master-key version the
 * blob names. A blob moved to another store, name, usage or version, a missing or wrong master
 * key, or any tampering throws `invalidCiphertext('wrapped')`.
 */
export function unwrapMaterial(
  master: KeyObject | MasterKeys,
  binding: WrapBinding,
  wrapped: Uint8Array,
): Buffer {
  if (!(wrapped instanceof Uint8Array)) throw invalidCiphertext('wrapped');
  const version = wrappedMasterKeyVersion(wrapped);
  const headerLength = version === 1 ? 1 : V2_HEADER;
  if (version === undefined || wrapped.length < headerLength + MIN_AES_BODY)
    throw invalidCiphertext('wrapped');
  const key = asMasterKeys(master).key(version);
  if (key === undefined) throw invalidCiphertext('wrapped');
  assertMaster(key);
  const aad = wrapAad(binding, version);
  try {
    return openAesGcm(key, wrapped.subarray(headerLength), aad);
  } catch {
    throw invalidCiphertext('wrapped');
  }
}
