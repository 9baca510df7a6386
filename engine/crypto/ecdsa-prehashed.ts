/**
 * ECDSA P-256 over a precomputed SHA-256 digest. node:crypto always hashes what it signs
 * (`sign(null, ...)` uses SHA-256 for EC keys), so this path is assembled from what Node does
 * offer:
 * - signing: OpenSSL computes R = k·G (constant-time, via ECDH.setPrivateKey); the scalar
 *   arithmetic s = k⁻¹(z + r·d) mod n runs on BigInt, blinded by a fresh random b
 *   (s = (b·k)⁻¹ · (b·z + (b·r)·d)) so the non-constant-time BigInt steps see only values masked
 *   by b;
 * - verifying: plain public-key ECDSA verification, R' = u1·G + u2·Q. OpenSSL computes u1·G;
 *   u2·Q is a BigInt sum over a per-key cached table of 2^i·Q. It touches only public values
 *   (digest, signature, public key), so timing does not matter. About 1–2 ms, more than OpenSSL's
 *   own verify; prehashed verification is the rare path.
 * Signatures are ordinary ECDSA signatures of the message the digest came from (see the tests).
 */
import { createECDH, type KeyObject, randomBytes } from 'node:crypto';

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** Jacobian point [X, Y, Z]; Z = 0 is the point at infinity. */
type Jac = readonly [bigint, bigint, bigint];
const INF: Jac = [0n, 1n, 0n];

function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

/** Modular inverse by the extended Euclidean algorithm; only ever applied to public or blinded values. */
function inv(a: bigint, m: bigint): bigint {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0
    ? 0n
    : BigInt(`0x${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex')}`);
}

function to32(x: bigint): Buffer {
  return Buffer.from(x.toString(16).padStart(64, '0'), 'hex');
}

/** A uniform scalar in [1, n-1]: 384 random bits reduced, so the bias is below 2⁻¹²⁸. */
function randomScalar(): bigint {
  return (toBigInt(randomBytes(48)) % (N - 1n)) + 1n;
}

const scalarCache = new WeakMap<KeyObject, bigint>();
const pointCache = new WeakMap<KeyObject, Jac>();

function privateScalar(privateKey: KeyObject): bigint {
  let d = scalarCache.get(privateKey);
  if (d === undefined) {
    d = toBigInt(Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url'));
    scalarCache.set(privateKey, d);
  }
  return d;
}

function publicPoint(publicKey: KeyObject): Jac {
  let q = pointCache.get(publicKey);
  if (q === undefined) {
    const jwk = publicKey.export({ format: 'jwk' });
    q = [toBigInt(Buffer.from(jwk.x!, 'base64url')), toBigInt(Buffer.from(jwk.y!, 'base64url')), 1n];
    pointCache.set(publicKey, q);
  }
  return q;
}

// Point doubling for a = -3 (dbl-2001-b).
function dbl(p: Jac): Jac {
  const [x, y, z] = p;
  if (z === 0n || y === 0n) return INF;
  const zz = mod(z * z, P);
  const yy = mod(y * y, P);
  const m = mod(3n * (x - zz) * (x + zz), P);
  const s = mod(4n * x * yy, P);
  const x3 = mod(m * m - 2n * s, P);
  const y3 = mod(m * (s - x3) - 8n * yy * yy, P);
  return [x3, y3, mod(2n * y * z, P)];
}

// General Jacobian addition (add-1998-cmo-2).
function add(p: Jac, q: Jac): Jac {
  if (p[2] === 0n) return q;
  if (q[2] === 0n) return p;
  const [x1, y1, z1] = p;
  const [x2, y2, z2] = q;
  const z1z1 = mod(z1 * z1, P);
  const z2z2 = mod(z2 * z2, P);
  const u1 = mod(x1 * z2z2, P);
  const u2 = mod(x2 * z1z1, P);
  const s1 = mod(y1 * z2 * z2z2, P);
  const s2 = mod(y2 * z1 * z1z1, P);
  if (u1 === u2) return s1 === s2 ? dbl(p) : INF;
  const h = mod(u2 - u1, P);
  const r = mod(s2 - s1, P);
  const hh = mod(h * h, P);
  const hhh = mod(h * hh, P);
  const v = mod(u1 * hh, P);
  const x3 = mod(r * r - hhh - 2n * v, P);
  const y3 = mod(r * (v - x3) - s1 * hhh, P);
  return [x3, y3, mod(z1 * z2 * h, P)];
}

/** Affine [x, y] of a Jacobian point (not infinity). Public values only. */
function toAffine(p: Jac): Jac {
  const zi = inv(p[2], P);
  const zi2 = mod(zi * zi, P);
  return [mod(p[0] * zi2, P), mod(p[1] * zi2 * zi, P), 1n];
}

const tableCache = new WeakMap<KeyObject, Jac[]>();

/** 2^i·Q for i = 0..255, affine, computed once per public key: u·Q then needs no doublings. */
function powersOf(publicKey: KeyObject): Jac[] {
  let table = tableCache.get(publicKey);
  if (table === undefined) {
    table = [];
    let q = publicPoint(publicKey);
    for (let i = 0; i < 256; i++) {
      table.push(q);
      q = toAffine(dbl(q));
    }
    tableCache.set(publicKey, table);
  }
  return table;
}

/**
 * u1·G + u2·Q. OpenSSL computes u1·G (u1 is public here, derived from the digest and the
 * signature); u2·Q sums the cached powers of Q. Public inputs only.
 */
function mulAdd(u1: bigint, u2: bigint, publicKey: KeyObject): Jac {
  let acc = INF;
  if (u1 !== 0n) {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(to32(u1));
    const g = ecdh.getPublicKey();
    acc = [toBigInt(g.subarray(1, 33)), toBigInt(g.subarray(33, 65)), 1n];
  }
  const table = powersOf(publicKey);
  for (let i = 0; i < 256; i++) {
    if ((u2 >> BigInt(i)) & 1n) acc = add(acc, table[i]!);
  }
  return acc;
}

/** Signs a 32-byte digest; returns (r, s) as two integers in [1, n-1]. */
export function signEcdsaDigest(privateKey: KeyObject, digest: Uint8Array): { r: bigint; s: bigint } {
  const d = privateScalar(privateKey);
  const z = toBigInt(digest); // P-256 with SHA-256: the digest is as long as n, no truncation
  const ecdh = createECDH('prime256v1');
  for (;;) {
    const k = randomScalar();
    ecdh.setPrivateKey(to32(k));
    const r = toBigInt(ecdh.getPublicKey().subarray(1, 33)) % N;
    if (r === 0n) continue;
    const b = randomScalar();
    const tInv = inv((b * k) % N, N);
    const e = ((b * z) % N) + ((((b * r) % N) * d) % N);
    const s = (tInv * e) % N;
    if (s !== 0n) return { r, s };
  }
}

/** Verifies (r, s) over a 32-byte digest against a P-256 public key. Never throws for bad input. */
export function verifyEcdsaDigest(publicKey: KeyObject, digest: Uint8Array, r: bigint, s: bigint): boolean {
  if (r <= 0n || r >= N || s <= 0n || s >= N) return false;
  const z = toBigInt(digest) % N;
  const w = inv(s, N);
  const pt = mulAdd((z * w) % N, (r * w) % N, publicKey);
  if (pt[2] === 0n) return false;
  const zz = mod(pt[2] * pt[2], P);
  // x(R) ≡ r (mod n) without an inversion: X ≡ x·Z² (mod p), trying x = r and, if below p, r + n.
  if (mod(r * zz, P) === pt[0]) return true;
  return r + N < P && mod((r + N) * zz, P) === pt[0];
}

/** Encodes (r, s) as r‖s, 32 bytes each (IEEE P1363, JWS ES256). */
export function encodeRaw(r: bigint, s: bigint): Buffer {
  return Buffer.concat([to32(r), to32(s)]);
}

/** Decodes r‖s; undefined unless exactly 64 bytes. */
export function decodeRaw(sig: Uint8Array): { r: bigint; s: bigint } | undefined {
  if (sig.length !== 64) return undefined;
  return { r: toBigInt(sig.subarray(0, 32)), s: toBigInt(sig.subarray(32)) };
}

function derInteger(x: bigint): Buffer {
  let bytes = to32(x);
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  bytes = bytes.subarray(i);
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.of(0), bytes]);
  return Buffer.concat([Buffer.of(0x02, bytes.length), bytes]);
}

/** Encodes (r, s) as the DER SEQUENCE of two INTEGERs (X9.62), always under 128 bytes. */
export function encodeDer(r: bigint, s: bigint): Buffer {
  const body = Buffer.concat([derInteger(r), derInteger(s)]);
  return Buffer.concat([Buffer.of(0x30, body.length), body]);
}

function readDerInteger(sig: Uint8Array, at: number): { value: bigint; next: number } | undefined {
  if (sig[at] !== 0x02) return undefined;
  const len = sig[at + 1];
  if (len === undefined || len === 0 || len > 33 || at + 2 + len > sig.length) return undefined;
  const bytes = sig.subarray(at + 2, at + 2 + len);
  if (bytes[0]! & 0x80) return undefined; // negative
  if (len > 1 && bytes[0] === 0 && !(bytes[1]! & 0x80)) return undefined; // not minimal
  return { value: toBigInt(bytes), next: at + 2 + len };
}

/** Decodes a strict (minimal, no trailing bytes) DER ECDSA signature; undefined when malformed. */
export function decodeDer(sig: Uint8Array): { r: bigint; s: bigint } | undefined {
  if (sig.length < 8 || sig[0] !== 0x30 || sig[1] !== sig.length - 2) return undefined;
  const r = readDerInteger(sig, 2);
  if (r === undefined) return undefined;
  const s = readDerInteger(sig, r.next);
  if (s === undefined || s.next !== sig.length) return undefined;
  return { r: r.value, s: s.value };
}
