/**
 * One item of each worker operation (protocol.ts `WorkerOp`), shared by the crypto workers and the
 * main thread's inline fast path (inline.ts), so both run exactly the same code on the same
 * KeyObjects. Also the two per-thread helpers they need: random nonces drawn in blocks, and the
 * bounded cache of convergent keys derived per context.
 */
import { createHash, type KeyObject, randomFillSync } from 'node:crypto';
import { openAesGcm, sealAesGcm } from '../crypto/aes-gcm.ts';
import {
  type ConvergentKeys,
  deriveConvergentKeysFromPrk,
  openConvergent,
  sealConvergent,
} from '../crypto/convergent.ts';
import { MAX_AES_PLAINTEXT } from '../crypto/limits.ts';
import type { PreparedKey, PreparedKeyPair, PreparedSecretKey } from '../crypto/prepared-key.ts';
import { decryptRsaOaep, encryptRsaOaep, RSA_OAEP_BODY_LENGTH } from '../crypto/rsa-oaep.ts';
import { defaultSignatureAlgorithm, signBytes, verifyBytes } from '../crypto/signing.ts';
import type { TaskParams, WorkerOp } from './protocol.ts';

/** What a thread keeps of one key version: KeyObjects only, never raw bytes. */
export interface HeldKey {
  prepared: PreparedKey;
  /** Convergent AES keys: HKDF-Extract of the material, from which contexts are expanded. */
  prk?: KeyObject;
}

const NONCE_BYTES = 12;
const NONCES_PER_DRAW = 256;

/**
 * Random 96-bit GCM nonces, drawn from the CSPRNG a block at a time (PRODUCT.md §5: randomness
 * once per batch, not per item) and handed out once each. A nonce is never handed out twice: the
 * block is refilled only when every nonce in it was used.
 */
export class NonceSource {
  #block = Buffer.alloc(0);
  #next = 0;

  /** A fresh 12-byte nonce (a view into the current block; the block is never reused). */
  next(): Buffer {
    if (this.#next + NONCE_BYTES > this.#block.length) {
      this.#block = randomFillSync(Buffer.allocUnsafeSlow(NONCE_BYTES * NONCES_PER_DRAW));
      this.#next = 0;
    }
    const nonce = this.#block.subarray(this.#next, this.#next + NONCE_BYTES);
    this.#next += NONCE_BYTES;
    return nonce;
  }
}

/**
 * Convergent keys derived per (key version, context), bounded: past `max` entries the oldest
 * is dropped (Map order, FIFO). The cache key is a SHA-256 digest of the context, so caller
 * contexts never stay in memory and every key has the same size.
 */
export class DerivedKeyCache {
  readonly max: number;
  readonly #entries = new Map<string, ConvergentKeys>();

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The keys of `context` under key version `id` (whose PRK `held` has), derived once. */
  get(id: string, held: HeldKey, context: Uint8Array): ConvergentKeys {
    const cacheKey = `${id}|${createHash('sha256').update(context).digest('base64')}`;
    let derived = this.#entries.get(cacheKey);
    if (derived === undefined) {
      if (held.prk === undefined) throw new Error('not a convergent key');
      derived = deriveConvergentKeysFromPrk(held.prk, context);
      if (this.#entries.size >= this.max) this.#entries.delete(this.#entries.keys().next().value!);
      this.#entries.set(cacheKey, derived);
    }
    return derived;
  }

  /** Drops everything derived from the key versions `ids`. */
  evict(ids: ReadonlySet<string>): void {
    for (const cacheKey of this.#entries.keys()) {
      if (ids.has(cacheKey.slice(0, cacheKey.indexOf('|')))) this.#entries.delete(cacheKey);
    }
  }
}

/** What one thread needs to run items: its nonces and its derived-key cache. */
export interface ItemContext {
  nonces: NonceSource;
  derived: DerivedKeyCache;
}

/** Ops whose outputs are plaintext (decrypted bytes or fresh data keys): zeroed once used. */
export const PLAINTEXT_OUTPUTS: ReadonlySet<WorkerOp> = new Set([
  'aes-open',
  'aes-open-convergent',
  'rsa-decrypt',
  'data-key',
]);

/**
 * The most bytes the output of one item can take, from its input field lengths: what the pool
 * reserves for it before the worker runs it.
 */
export function outputBound(op: WorkerOp, params: TaskParams, inputBytes: number): number {
  switch (op) {
    case 'aes-seal':
    case 'aes-seal-convergent':
      // nonce ‖ ciphertext ‖ tag; the plaintext is at most the whole input.
      return Math.min(inputBytes, MAX_AES_PLAINTEXT) + 28;
    case 'aes-open':
    case 'aes-open-convergent':
      return inputBytes;
    case 'rsa-encrypt':
    case 'rsa-decrypt':
      return RSA_OAEP_BODY_LENGTH;
    case 'data-key':
      return (params.dataKeyBytes ?? 0) * 2 + RSA_OAEP_BODY_LENGTH;
    case 'sign':
      // RSA-2048 signatures are 256 bytes; P-256 DER at most 72.
      return RSA_OAEP_BODY_LENGTH;
    case 'verify':
      return 1;
  }
}

const VALID = Buffer.of(1);
const NOT_VALID = Buffer.of(0);

/**
 * Runs one item of `op` with key version `id` (its KeyObjects in `held`); fields as
 * protocol.ts `FIELDS_PER_OP` orders them, empty fields as empty buffers. Returns the output
 * bytes, or throws: a KeywardError INVALID_ARGUMENT for input that fails authentication, anything
 * else for other failures (callers map both to a status without detail).
 */
export function runItem(
  op: WorkerOp,
  id: string,
  held: HeldKey,
  params: TaskParams,
  f0: Uint8Array,
  f1: Uint8Array,
  f2: Uint8Array,
  ctx: ItemContext,
): Buffer {
  // The engine only sends ops the key's usage allows, so the needed KeyObject is there.
  const key = held.prepared as Partial<PreparedSecretKey> & Partial<PreparedKeyPair>;
  switch (op) {
    case 'aes-seal':
      return sealAesGcm(key.secret!, ctx.nonces.next(), f0, f1.length > 0 ? f1 : undefined);
    case 'aes-seal-convergent':
      return sealConvergent(ctx.derived.get(id, held, f2), f1.length > 0 ? f1 : undefined, f0);
    case 'aes-open':
      return openAesGcm(key.secret!, f0, f1.length > 0 ? f1 : undefined);
    case 'aes-open-convergent':
      return openConvergent(ctx.derived.get(id, held, f2), f0, f1.length > 0 ? f1 : undefined);
    case 'rsa-encrypt':
      return encryptRsaOaep(key.publicKey!, f0);
    case 'rsa-decrypt':
      return decryptRsaOaep(key.privateKey!, f0);
    case 'sign': {
      const algorithm = params.algorithm ?? defaultSignatureAlgorithm(held.prepared.usage);
      return signBytes(held.prepared, f0, { algorithm, prehashed: params.prehashed === true });
    }
    case 'verify': {
      const algorithm = params.algorithm ?? defaultSignatureAlgorithm(held.prepared.usage);
      return verifyBytes(held.prepared, f0, f1, { algorithm, prehashed: params.prehashed === true })
        ? VALID
        : NOT_VALID;
    }
    case 'data-key':
      return dataKey(id, held, params, f0, f1, ctx);
  }
}

/** A random data key of `params.dataKeyBytes`, sealed: plaintext ‖ sealed body. */
function dataKey(
  id: string,
  held: HeldKey,
  params: TaskParams,
  aad: Uint8Array,
  context: Uint8Array,
  ctx: ItemContext,
): Buffer {
  const bytes = params.dataKeyBytes ?? 0;
  const key = held.prepared as Partial<PreparedSecretKey> & Partial<PreparedKeyPair>;
  // Its own zeroed buffer (never a slice of Buffer's shared pool), wiped once copied out.
  const plaintext = randomFillSync(Buffer.alloc(bytes));
  try {
    let sealed: Buffer;
    if (held.prepared.usage === 'RSA2048') sealed = encryptRsaOaep(key.publicKey!, plaintext);
    else if (held.prk !== undefined)
      sealed = sealConvergent(
        ctx.derived.get(id, held, context),
        aad.length > 0 ? aad : undefined,
        plaintext,
      );
    else sealed = sealAesGcm(key.secret!, ctx.nonces.next(), plaintext, aad.length > 0 ? aad : undefined);
    const out = Buffer.allocUnsafeSlow(bytes + sealed.length);
    out.set(plaintext, 0);
    out.set(sealed, bytes);
    return out;
  } finally {
    plaintext.fill(0);
  }
}
