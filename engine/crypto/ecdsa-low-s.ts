/**
 * Low-S ECDSA P-256 signatures, and the two wire forms (DER and raw r‖s).
 *
 * An ECDSA signature (r, s) has a twin (r, n − s) that verifies just as well. OpenSSL returns
 * whichever its nonce gives, so half of its signatures are "high-S". Keyward signs low-S only
 * (s ≤ n/2, as BIP 62 and many JOSE and blockchain verifiers require), so a signature it returns
 * is canonical. Verify accepts both, as OpenSSL, Go, Java, AWS KMS and Vault do: a signature made
 * elsewhere by a standard implementation must verify here. docs/crypto.md explains the policy.
 *
 * Big-endian byte arithmetic on fixed 32-byte values: no BigInt, so nothing secret is involved
 * and nothing here depends on the key.
 */

/** Bytes of a P-256 scalar. */
export const P256_SCALAR_BYTES = 32;

/** n, the order of the P-256 group. */
const N = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
/** ⌊n/2⌋. s is low when s ≤ this. */
const HALF_N = Buffer.from('7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8', 'hex');

/** True when the 32-byte big-endian `s` is above n/2. */
export function isHighS(s: Uint8Array): boolean {
  return Buffer.compare(s, HALF_N) > 0;
}

/** n − s for a 32-byte big-endian s in 1..n−1, as a new 32-byte buffer. */
function negateModN(s: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(P256_SCALAR_BYTES);
  let borrow = 0;
  for (let i = P256_SCALAR_BYTES - 1; i >= 0; i--) {
    const d = N[i]! - s[i]! - borrow;
    out[i] = d & 0xff;
    borrow = d < 0 ? 1 : 0;
  }
  return out;
}

/**
 * Returns the raw `r ‖ s` signature with s made low (the twin when s > n/2). The input is not
 * changed. Throws RangeError for a length other than 64 bytes.
 */
export function lowSRaw(raw: Uint8Array): Buffer {
  if (raw.length !== 2 * P256_SCALAR_BYTES) throw new RangeError('a raw P-256 signature is 64 bytes');
  const out = Buffer.from(raw);
  const s = out.subarray(P256_SCALAR_BYTES);
  if (isHighS(s)) out.set(negateModN(s), P256_SCALAR_BYTES);
  return out;
}

/** One DER INTEGER of a non-negative big-endian value: minimal, with a 0x00 before a high bit. */
function derInteger(value: Uint8Array): Buffer {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start++;
  const body = value.subarray(start);
  const pad = body[0]! & 0x80 ? 1 : 0;
  const out = Buffer.allocUnsafe(2 + pad + body.length);
  out[0] = 0x02;
  out[1] = pad + body.length;
  if (pad) out[2] = 0;
  out.set(body, 2 + pad);
  return out;
}

/**
 * The 64-byte raw `r ‖ s` of a DER ECDSA P-256 signature as OpenSSL writes it (short-form lengths,
 * minimal integers). Throws RangeError for anything else.
 */
export function derToRaw(der: Uint8Array): Buffer {
  const out = Buffer.alloc(2 * P256_SCALAR_BYTES);
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2)
    throw new RangeError('not a DER signature');
  let at = 2;
  for (const offset of [0, P256_SCALAR_BYTES]) {
    const len = der[at + 1]!;
    if (der[at] !== 0x02 || len < 1 || len > P256_SCALAR_BYTES + 1 || at + 2 + len > der.length) {
      throw new RangeError('not a DER signature');
    }
    let value = der.subarray(at + 2, at + 2 + len);
    if (value.length === P256_SCALAR_BYTES + 1) {
      if (value[0] !== 0) throw new RangeError('not a DER signature');
      value = value.subarray(1);
    }
    out.set(value, offset + P256_SCALAR_BYTES - value.length);
    at += 2 + len;
  }
  if (at !== der.length) throw new RangeError('not a DER signature');
  return out;
}

/**
 * A DER signature with s made low: the input itself when s is already low (half the time, and no
 * copy), else the DER of the twin.
 */
export function lowSDer(der: Buffer): Buffer {
  // s is the second INTEGER: read it in place, and build anything only when it is high.
  const rLen = der[3]!;
  const sAt = 4 + rLen;
  const s = der.subarray(sAt + 2, sAt + 2 + der[sAt + 1]!);
  const high = s.length > P256_SCALAR_BYTES || (s.length === P256_SCALAR_BYTES && isHighS(s));
  return high ? rawToDer(lowSRaw(derToRaw(der))) : der;
}

/** The DER `SEQUENCE { INTEGER r, INTEGER s }` of a 64-byte raw signature (at most 72 bytes). */
export function rawToDer(raw: Uint8Array): Buffer {
  if (raw.length !== 2 * P256_SCALAR_BYTES) throw new RangeError('a raw P-256 signature is 64 bytes');
  const r = derInteger(raw.subarray(0, P256_SCALAR_BYTES));
  const s = derInteger(raw.subarray(P256_SCALAR_BYTES));
  return Buffer.concat([Buffer.of(0x30, r.length + s.length), r, s]);
}
