/**
 * The bytes of a master-key file: one or more master-key versions. Pure: no I/O. Three forms are
 * read, so a file made by hand or mounted from a Secret keeps working:
 *
 * - exactly 32 raw bytes: master-key version 1 (what Keyward wrote before master-key rotation);
 * - 44 characters of standard base64 of 32 bytes, optionally followed by a newline: version 1;
 * - the versioned form, written once a store has more than version 1:
 *     "KWMK" ‖ 0x01 (format) ‖ u8 count ‖ count × (u32be version ‖ 32 key bytes),
 *   versions strictly increasing. Binary on purpose: no key byte ever becomes a JS string, which
 *   could not be zeroed;
 * - the same with the audit keys of retired versions, once a rotation retired one:
 *     "KWMK" ‖ 0x02 ‖ u8 count ‖ count × entry, where an entry is
 *     0x00 ‖ u32be version ‖ 32 key bytes                          (a master key), or
 *     0x01 ‖ u32be version ‖ 32 checkpoint-key bytes ‖ 8 id bytes  (a retired version's audit key).
 *   The audit key (engine/audit/checkpoint-key.ts) is HKDF of the retired master key: it verifies
 *   the audit checkpoints made under that version and unwraps nothing.
 *
 * Parsed keys are returned as Buffers the caller must zero; errors never contain key bytes.
 */
import { isMasterKeyVersion, MASTER_KEY_BYTES } from '../crypto/master-keys.ts';

/** Magic of the versioned form. */
const MAGIC = Buffer.from('KWMK', 'latin1');
const FORMAT = 0x01;
const FORMAT_WITH_AUDIT = 0x02;
const HEADER = MAGIC.length + 2;
const ENTRY = 4 + MASTER_KEY_BYTES;
const AUDIT_ID_BYTES = 8;
/** At most this many entries in one file (a rotation keeps two master keys at a time). */
export const MAX_MASTER_KEY_VERSIONS = 255;
/** Largest size of a valid master-key file. */
export const MAX_MASTER_KEY_FILE_BYTES = HEADER + MAX_MASTER_KEY_VERSIONS * (1 + ENTRY + AUDIT_ID_BYTES);

/** Why bytes are not a master-key file; the message names sizes and forms, never contents. */
export class MasterKeyFileError extends Error {}

/** The audit checkpoint key of a retired master-key version. */
export interface RetiredAuditKey {
  version: number;
  /** 32 bytes; zero after use. */
  key: Buffer;
  /** 16 hex digits: the key id checkpoints name. */
  id: string;
}

/** Everything a master-key file holds (buffers to zero after use). */
export interface MasterKeyFileContents {
  keys: Map<number, Buffer>;
  auditKeys: RetiredAuditKey[];
}

/** Parses a master-key file's bytes into version → 32-byte key (copies; zero them after use). */
export function parseMasterKeyFile(bytes: Uint8Array): Map<number, Buffer> {
  const { keys, auditKeys } = parseMasterKeyFileContents(bytes);
  for (const a of auditKeys) a.key.fill(0);
  return keys;
}

/** Parses a master-key file's master keys and retired audit keys (copies; zero them after use). */
export function parseMasterKeyFileContents(bytes: Uint8Array): MasterKeyFileContents {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The versioned form is never 32 bytes long (6 + 36n), so 32 bytes are always a raw key, even
  // one that happens to start with the magic.
  if (buf.length === MASTER_KEY_BYTES) return { keys: new Map([[1, Buffer.from(buf)]]), auditKeys: [] };
  if (buf.length >= MAGIC.length && buf.subarray(0, MAGIC.length).equals(MAGIC)) return parseVersioned(buf);
  const b64 = parseBase64Key(buf);
  if (b64 !== undefined) return { keys: new Map([[1, b64]]), auditKeys: [] };
  throw new MasterKeyFileError(
    `must hold exactly ${MASTER_KEY_BYTES} raw bytes, 44 characters of base64, or Keyward's versioned form (found ${buf.length} bytes)`,
  );
}

function parseVersioned(buf: Buffer): MasterKeyFileContents {
  const format = buf[MAGIC.length];
  if (buf.length < HEADER || (format !== FORMAT && format !== FORMAT_WITH_AUDIT)) {
    throw new MasterKeyFileError('has an unknown versioned format');
  }
  const count = buf[MAGIC.length + 1]!;
  const out: MasterKeyFileContents = { keys: new Map(), auditKeys: [] };
  const fail = (why: string): never => {
    for (const k of out.keys.values()) k.fill(0);
    for (const a of out.auditKeys) a.key.fill(0);
    throw new MasterKeyFileError(why);
  };
  if (count === 0) fail('lists no master-key version');
  let at = HEADER;
  let previous = 0;
  let previousAudit = 0;
  for (let i = 0; i < count; i++) {
    const kind = format === FORMAT ? 0 : buf[at++];
    const size = kind === 0 ? ENTRY : kind === 1 ? ENTRY + AUDIT_ID_BYTES : -1;
    if (size < 0 || at + size > buf.length) fail(`is truncated (${buf.length} bytes for ${count} entries)`);
    const version = buf.readUInt32BE(at);
    const key = Buffer.from(buf.subarray(at + 4, at + ENTRY));
    if (kind === 0) {
      if (!isMasterKeyVersion(version) || version <= previous) fail('lists master-key versions out of order');
      previous = version;
      out.keys.set(version, key);
    } else {
      if (!isMasterKeyVersion(version) || version <= previousAudit) fail('lists audit keys out of order');
      previousAudit = version;
      out.auditKeys.push({ version, key, id: buf.subarray(at + ENTRY, at + size).toString('hex') });
    }
    at += size;
  }
  if (at !== buf.length) fail(`is padded (${buf.length} bytes for ${count} entries)`);
  if (out.keys.size === 0) fail('holds no master key');
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
 * Encodes versions (and the audit keys of retired versions) for a file: 32 raw bytes when the only
 * entry is master-key version 1 (the form every earlier release reads), else the versioned form.
 * The caller zeroes the returned buffer after use.
 */
export function encodeMasterKeyFile(
  versions: ReadonlyMap<number, Uint8Array>,
  auditKeys: readonly RetiredAuditKey[] = [],
): Buffer {
  const sorted = [...versions.keys()].sort((a, b) => a - b);
  const audits = [...auditKeys].sort((a, b) => a.version - b.version);
  if (sorted.length === 0 || sorted.length + audits.length > MAX_MASTER_KEY_VERSIONS) {
    throw new MasterKeyFileError(`a master-key file holds 1..${MAX_MASTER_KEY_VERSIONS} entries`);
  }
  for (const v of sorted) {
    if (!isMasterKeyVersion(v) || versions.get(v)!.length !== MASTER_KEY_BYTES) {
      throw new MasterKeyFileError('a master-key version is malformed');
    }
  }
  for (const a of audits) {
    if (!isMasterKeyVersion(a.version) || a.key.length !== MASTER_KEY_BYTES || !/^[0-9a-f]{16}$/.test(a.id)) {
      throw new MasterKeyFileError('an audit key is malformed');
    }
  }
  if (audits.length === 0 && sorted.length === 1 && sorted[0] === 1) return Buffer.from(versions.get(1)!);
  const withAudit = audits.length > 0;
  const size = sorted.length * (ENTRY + (withAudit ? 1 : 0)) + audits.length * (1 + ENTRY + AUDIT_ID_BYTES);
  const out = Buffer.alloc(HEADER + size);
  MAGIC.copy(out, 0);
  out[MAGIC.length] = withAudit ? FORMAT_WITH_AUDIT : FORMAT;
  out[MAGIC.length + 1] = sorted.length + audits.length;
  let at = HEADER;
  for (const v of sorted) {
    if (withAudit) out[at++] = 0;
    out.writeUInt32BE(v, at);
    out.set(versions.get(v)!, at + 4);
    at += ENTRY;
  }
  for (const a of audits) {
    out[at++] = 1;
    out.writeUInt32BE(a.version, at);
    out.set(a.key, at + 4);
    out.write(a.id, at + ENTRY, 'hex');
    at += ENTRY + AUDIT_ID_BYTES;
  }
  return out;
}
