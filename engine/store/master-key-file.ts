/**
 * The bytes of a master-key file: one or more master-key versions. Pure: no I/O. Three forms are
 * read, so a file made by hand or mounted from a Secret keeps working:
 *
 * - exactly 32 raw bytes: master-key version 1 (what Keyward wrote before master-key rotation);
 * - 44 characters of standard base64 of 32 bytes, optionally followed by a newline: version 1;
 * - the versioned form, written once a store has more than version 1:
 *     "KWMK" ‖ 0x01 (format) ‖ u8 count ‖ count × (u32be version ‖ 32 key bytes),
 *   versions strictly increasing. Binary on purpose: no key byte ever becomes a JS string, which
 *   could not be zeroed.
 *
 * Parsed keys are returned as Buffers the caller must zero; errors never contain key bytes.
 */
import { isMasterKeyVersion, MASTER_KEY_BYTES } from '../crypto/master-keys.ts';

/** Magic of the versioned form. */
const MAGIC = Buffer.from('KWMK', 'latin1');
const FORMAT = 0x01;
const HEADER = MAGIC.length + 2;
const ENTRY = 4 + MASTER_KEY_BYTES;
/** At most this many versions in one file (a rotation keeps two at a time). */
export const MAX_MASTER_KEY_VERSIONS = 255;
/** Largest size of a valid master-key file. */
export const MAX_MASTER_KEY_FILE_BYTES = HEADER + MAX_MASTER_KEY_VERSIONS * ENTRY;

/** Why bytes are not a master-key file; the message names sizes and forms, never contents. */
export class MasterKeyFileError extends Error {}

/** Parses a master-key file's bytes into version → 32-byte key (copies; zero them after use). */
export function parseMasterKeyFile(bytes: Uint8Array): Map<number, Buffer> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The versioned form is never 32 bytes long (6 + 36n), so 32 bytes are always a raw key, even
  // one that happens to start with the magic.
  if (buf.length === MASTER_KEY_BYTES) return new Map([[1, Buffer.from(buf)]]);
  if (buf.length >= MAGIC.length && buf.subarray(0, MAGIC.length).equals(MAGIC)) return parseVersioned(buf);
  const b64 = parseBase64Key(buf);
  if (b64 !== undefined) return new Map([[1, b64]]);
  throw new MasterKeyFileError(
    `must hold exactly ${MASTER_KEY_BYTES} raw bytes, 44 characters of base64, or Keyward's versioned form (found ${buf.length} bytes)`,
  );
}

function parseVersioned(buf: Buffer): Map<number, Buffer> {
  if (buf.length < HEADER || buf[MAGIC.length] !== FORMAT) {
    throw new MasterKeyFileError('has an unknown versioned format');
  }
  const count = buf[MAGIC.length + 1]!;
  if (count === 0 || buf.length !== HEADER + count * ENTRY) {
    throw new MasterKeyFileError(`is truncated or padded (${buf.length} bytes for ${count} versions)`);
  }
  const out = new Map<number, Buffer>();
  let previous = 0;
  for (let i = 0; i < count; i++) {
    const at = HEADER + i * ENTRY;
    const version = buf.readUInt32BE(at);
    if (!isMasterKeyVersion(version) || version <= previous) {
      for (const k of out.values()) k.fill(0);
      throw new MasterKeyFileError('lists master-key versions out of order');
    }
    previous = version;
    out.set(version, Buffer.from(buf.subarray(at + 4, at + ENTRY)));
  }
  return out;
}

// Standard base64 of 32 bytes: 43 characters and one '=', then an optional newline. Checked byte
// by byte and decoded without building a string of the key.
function parseBase64Key(buf: Buffer): Buffer | undefined {
  let end = buf.length;
  if (end > 0 && buf[end - 1] === 0x0a) end--;
  if (end > 0 && buf[end - 1] === 0x0d) end--;
  if (end !== 44 || buf[43] !== 0x3d) return undefined;
  const out = Buffer.alloc(33);
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (let i = 0; i < 43; i++) {
    const v = base64Value(buf[i]!);
    if (v < 0) {
      out.fill(0);
      return undefined;
    }
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  // 43 characters carry 258 bits: 32 bytes and 2 bits that must be zero (canonical base64).
  const canonical = n === MASTER_KEY_BYTES && (acc & ((1 << bits) - 1)) === 0;
  acc = 0;
  const key = canonical ? Buffer.from(out.subarray(0, MASTER_KEY_BYTES)) : undefined;
  out.fill(0);
  return key;
}

function base64Value(c: number): number {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (c === 0x2b) return 62;
  if (c === 0x2f) return 63;
  return -1;
}

/**
 * Encodes versions for a file: 32 raw bytes when the only version is 1 (the form every earlier
 * release reads), the versioned form otherwise. The caller zeroes the returned buffer after use.
 */
export function encodeMasterKeyFile(versions: ReadonlyMap<number, Uint8Array>): Buffer {
  const sorted = [...versions.keys()].sort((a, b) => a - b);
  if (sorted.length === 0 || sorted.length > MAX_MASTER_KEY_VERSIONS) {
    throw new MasterKeyFileError(`a master-key file holds 1..${MAX_MASTER_KEY_VERSIONS} versions`);
  }
  for (const v of sorted) {
    if (!isMasterKeyVersion(v) || versions.get(v)!.length !== MASTER_KEY_BYTES) {
      throw new MasterKeyFileError('a master-key version is malformed');
    }
  }
  if (sorted.length === 1 && sorted[0] === 1) return Buffer.from(versions.get(1)!);
  const out = Buffer.alloc(HEADER + sorted.length * ENTRY);
  MAGIC.copy(out, 0);
  out[MAGIC.length] = FORMAT;
  out[MAGIC.length + 1] = sorted.length;
  sorted.forEach((v, i) => {
    out.writeUInt32BE(v, HEADER + i * ENTRY);
    out.set(versions.get(v)!, HEADER + i * ENTRY + 4);
  });
  return out;
}
