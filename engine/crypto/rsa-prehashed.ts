/**
 * RSA signatures over a precomputed SHA-256 digest. node:crypto's `sign(null, ...)` hashes its
 * input with the key's default digest (SHA-256) rather than signing it as a digest, and Node
 * exposes no EVP_PKEY_sign; so the encodings are done here (RFC 8017 §9.1 EMSA-PSS and §9.2
 * EMSA-PKCS1-v1_5) and OpenSSL does the RSA private operation (with its blinding) via
 * `privateEncrypt`. The results are ordinary RSASSA signatures of the message whose digest was
 * given: `openssl pkeyutl -verify -pkeyopt digest:sha256` and `crypto.verify('sha256', m, ...)`
 * accept them (see signing.test.ts).
 */
import {
  constants,
  createHash,
  type KeyObject,
  privateEncrypt,
  publicDecrypt,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';

const HASH_LENGTH = 32;
/** DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');
const ZERO8 = Buffer.alloc(8);

function modulusBits(key: KeyObject): number {
  return key.asymmetricKeyDetails?.modulusLength ?? 2048;
}

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** MGF1 with SHA-256 (RFC 8017 §B.2.1), XORed into `target` in place. */
function xorMgf1(seed: Uint8Array, target: Uint8Array): void {
  const counter = Buffer.alloc(4);
  for (let off = 0, i = 0; off < target.length; i++, off += HASH_LENGTH) {
    counter.writeUInt32BE(i, 0);
    const block = sha256(seed, counter);
    for (let j = 0; j < HASH_LENGTH && off + j < target.length; j++) target[off + j]! ^= block[j]!;
  }
}

/** RSASSA-PKCS1-v1_5 signature of a SHA-256 digest. */
export function signPkcs1Digest(privateKey: KeyObject, digest: Uint8Array): Buffer {
  const t = Buffer.concat([SHA256_DIGEST_INFO, digest]);
  return privateEncrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, t);
}

/** Verifies an RSASSA-PKCS1-v1_5 signature of a SHA-256 digest; false on any failure. */
export function verifyPkcs1Digest(publicKey: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== Math.ceil(modulusBits(publicKey) / 8)) return false;
  let t: Buffer;
  try {
    t = publicDecrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
  } catch {
    return false;
  }
  const expected = Buffer.concat([SHA256_DIGEST_INFO, digest]);
  return t.length === expected.length && timingSafeEqual(t, expected);
}

/** RSASSA-PSS (SHA-256, MGF1-SHA-256, maximum salt length) signature of a SHA-256 digest. */
export function signPssDigest(privateKey: KeyObject, digest: Uint8Array): Buffer {
  const modBits = modulusBits(privateKey);
  const k = Math.ceil(modBits / 8);
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const sLen = emLen - HASH_LENGTH - 2; // the maximum, as RSA_PSS_SALTLEN_MAX_SIGN
  const salt = randomBytes(sLen);
  const h = sha256(ZERO8, digest, salt);
  const em = Buffer.alloc(k); // k - emLen leading zero bytes, then EM
  const off = k - emLen;
  const dbLen = emLen - HASH_LENGTH - 1;
  // DB = PS (empty at maximum salt) ‖ 0x01 ‖ salt
  em[off + dbLen - sLen - 1] = 0x01;
  em.set(salt, off + dbLen - sLen);
  xorMgf1(h, em.subarray(off, off + dbLen));
  em[off]! &= 0xff >>> (8 * emLen - emBits);
  em.set(h, off + dbLen);
  em[off + emLen - 1] = 0xbc;
  return privateEncrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, em);
}

/** Verifies an RSASSA-PSS-SHA256 signature of a digest with any salt length; false on failure. */
export function verifyPssDigest(publicKey: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  const modBits = modulusBits(publicKey);
  const k = Math.ceil(modBits / 8);
  if (signature.length !== k) return false;
  let m: Buffer;
  try {
    m = publicDecrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, signature);
  } catch {
    return false;
  }
  if (m.length !== k) return false;
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const off = k - emLen;
  for (let i = 0; i < off; i++) if (m[i] !== 0) return false;
  if (m[off + emLen - 1] !== 0xbc) return false;
  const dbLen = emLen - HASH_LENGTH - 1;
  const topMask = 0xff >>> (8 * emLen - emBits);
  if ((m[off]! & ~topMask & 0xff) !== 0) return false;
  const db = Buffer.from(m.subarray(off, off + dbLen));
  const h = m.subarray(off + dbLen, off + dbLen + HASH_LENGTH);
  xorMgf1(h, db);
  db[0]! &= topMask;
  let i = 0;
  while (i < dbLen && db[i] === 0) i++;
  if (i >= dbLen || db[i] !== 0x01) return false;
  const salt = db.subarray(i + 1);
  return timingSafeEqual(sha256(ZERO8, digest, salt), h);
}
