/**
 * Turns one validated request into a worker item: the op, the key version, the packed fields,
 * and how to read the worker's outcome back. Validation happens here, once per request, so the
 * worker's hot loop trusts its input. Shared by single calls and batches.
 */
import { assertAad, assertContext, assertPlaintextSize, assertSignData } from './crypto/assert.ts';
import { formatCiphertext, parseCiphertext } from './crypto/format.ts';
import { DATA_KEY_BITS, MAX_AES_PLAINTEXT, SIGNATURE_ALGORITHM_NAMES } from './crypto/limits.ts';
import { RSA_OAEP_BODY_LENGTH } from './crypto/rsa-oaep.ts';
import type { SignatureAlgorithm } from './crypto/signing.ts';
import { invalidArgument, invalidCiphertext, KeywardError } from './errors.ts';
import type { KeyOperation, KeyUsage } from './keys/model.ts';
import type { ItemFields, ItemOutcome } from './pool/items.ts';
import { ITEM_INVALID, type TaskKey, type TaskParams, type WorkerOp } from './pool/protocol.ts';
import { keyRevoked } from './pool/task-errors.ts';

/** The versions of one key, as the service resolves them. The engine never sees wrapped blobs. */
export interface KeyRing {
  /** A label of the key incarnation, for logs; workers cache by each version's own `TaskKey.id`. */
  readonly id: string;
  readonly usage: KeyUsage;
  readonly convergent: boolean;
  readonly currentVersion: number;
  /**
   * The pool's handle of a version, or undefined when the key has no such version. May throw a
   * KeywardError when the version's material cannot be unwrapped.
   */
  version(version: number): TaskKey | undefined;
}

export interface EncryptInput {
  plaintext: Uint8Array;
  aad?: Uint8Array;
  context?: Uint8Array;
}
export interface DecryptInput {
  ciphertext: string;
  aad?: Uint8Array;
  context?: Uint8Array;
}
export interface SignInput {
  data: Uint8Array;
  prehashed?: boolean;
  algorithm?: SignatureAlgorithm;
}
export interface VerifyInput extends SignInput {
  signature: string;
}
export interface DataKeyInput {
  /** 128, 256 (default) or 512. */
  bits?: number;
  aad?: Uint8Array;
  context?: Uint8Array;
  /** Return the plaintext data key too (default true); false for envelope encryption. */
  includePlaintext?: boolean;
}

export interface CiphertextOutput {
  ciphertext: string;
  keyVersion: number;
}
export interface PlaintextOutput {
  plaintext: Buffer;
}
export interface SignatureOutput {
  signature: string;
  keyVersion: number;
}
export interface VerifyOutput {
  valid: boolean;
}
export interface DataKeyOutput {
  ciphertext: string;
  plaintext?: Buffer;
  keyVersion: number;
}

/** How a worker outcome becomes the API result (see `finishPlan`). */
type ResultKind = 'ciphertext' | 'plaintext' | 'signature' | 'verify' | 'data-key';

/**
 * One item ready for the pool, and what `finishPlan` needs to turn its outcome into the API
 * result. Plain data, no closure: a batch allocates as little per item as it can.
 */
export interface Plan<T> {
  op: WorkerOp;
  key: TaskKey;
  params: TaskParams;
  /** Items with equal batch keys may share a worker task. */
  batchKey: string;
  fields: ItemFields;
  result: ResultKind;
  /** The key version the result names (encrypt, sign, data-key). */
  version: number;
  /** data-key: plaintext bytes at the start of the outcome, and whether the caller gets them. */
  dataKeyBytes?: number;
  includePlaintext?: boolean;
  /** Phantom: the result type. */
  readonly _result?: T;
}

/** The longest ciphertext body of any key: an AES-GCM seal of the largest plaintext. */
const MAX_CIPHERTEXT_BODY = MAX_AES_PLAINTEXT + 12 + 16;

/** Turns a worker outcome into the API result of `plan`, or throws the item's error. */
export function finishPlan<T>(plan: Plan<T>, outcome: ItemOutcome): T {
  return finishAny(plan, outcome) as T;
}

function finishAny(plan: Plan<unknown>, outcome: ItemOutcome): unknown {
  switch (plan.result) {
    case 'verify':
      return { valid: typeof outcome !== 'number' && outcome[0] === 1 };
    case 'ciphertext':
      if (typeof outcome === 'number') failed(outcome);
      return { ciphertext: formatCiphertext(plan.version, outcome), keyVersion: plan.version };
    case 'plaintext':
      if (typeof outcome === 'number') failed(outcome);
      return { plaintext: outcome };
    case 'signature':
      if (typeof outcome === 'number') failed(outcome, 'data');
      return { signature: formatCiphertext(plan.version, outcome), keyVersion: plan.version };
    case 'data-key': {
      if (typeof outcome === 'number') failed(outcome, 'data-key');
      const bytes = plan.dataKeyBytes!;
      const ciphertext = formatCiphertext(plan.version, outcome.subarray(bytes));
      if (plan.includePlaintext)
        return { ciphertext, plaintext: outcome.subarray(0, bytes), keyVersion: plan.version };
      outcome.fill(0, 0, bytes); // the caller asked not to see it: do not leave it in memory either
      return { ciphertext, keyVersion: plan.version };
    }
  }
}

// Batch keys are made once per key version and kind, not per item: a template string per item
// costs a concatenation and a flattening on every Map lookup of the batch.
const batchKeys = new WeakMap<TaskKey, Map<string, string>>();
function batchKeyOf(key: TaskKey, kind: string): string {
  let keys = batchKeys.get(key);
  if (keys === undefined) {
    keys = new Map();
    batchKeys.set(key, keys);
  }
  let batchKey = keys.get(kind);
  if (batchKey === undefined) {
    batchKey = `${key.id}|${kind}`;
    keys.set(kind, batchKey);
  }
  return batchKey;
}

/** Which usages allow which operation (PRODUCT.md §2). */
const ALLOWED: Readonly<Record<KeyUsage, readonly KeyOperation[]>> = {
  AES256: ['encrypt', 'decrypt', 're-encrypt', 'generate-data-key'],
  RSA2048: ['encrypt', 'decrypt', 're-encrypt', 'generate-data-key', 'sign', 'verify', 'get-public-key'],
  ECDSA: ['sign', 'verify', 'get-public-key'],
};

const DEFAULT_ALGORITHM: Readonly<Record<KeyUsage, SignatureAlgorithm | undefined>> = {
  AES256: undefined,
  RSA2048: 'RSASSA_PSS_SHA_256',
  ECDSA: 'ECDSA_SHA_256',
};
const ALGORITHMS: Readonly<Record<KeyUsage, readonly SignatureAlgorithm[]>> = {
  AES256: [],
  RSA2048: ['RSASSA_PSS_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_256'],
  ECDSA: ['ECDSA_SHA_256', 'ECDSA_SHA_256_RAW'],
};

/** Refuses an operation the key's usage does not allow, with KEY_STATE (PRODUCT.md §6). */
export function assertUsage(ring: KeyRing, operation: KeyOperation): void {
  if (!ALLOWED[ring.usage].includes(operation)) {
    throw new KeywardError('KEY_STATE', `an ${ring.usage} key does not support ${operation}`);
  }
}

/** The worker-facing key of one version, or undefined when the ring has no such version. */
export function taskKey(ring: KeyRing, version: number): TaskKey | undefined {
  return ring.version(version);
}

function currentKey(ring: KeyRing): TaskKey {
  const key = taskKey(ring, ring.currentVersion);
  // A ring's current version is missing only once its material was dropped (destroyed, or
  // replaced by a re-read): the same answer as a task whose key was revoked in the queue.
  if (key === undefined) throw keyRevoked();
  return key;
}

// A convergent key needs a context on every call; any other key refuses one rather than
// silently ignoring it, so nobody believes a context protects them when it does not.
function checkContext(ring: KeyRing, context: Uint8Array | undefined): void {
  if (ring.convergent) {
    if (context === undefined) throw invalidArgument('context', 'context is required for a convergent key');
    assertContext(context);
  } else if (context !== undefined) {
    throw invalidArgument('context', 'context is only accepted by convergent keys');
  }
}

function checkAad(ring: KeyRing, aad: Uint8Array | undefined): void {
  if (aad !== undefined && ring.usage !== 'AES256')
    throw invalidArgument('aad', `an ${ring.usage} key does not take aad`);
  assertAad(aad);
}

function failed(outcome: ItemOutcome, field = 'ciphertext'): never {
  throw outcome === ITEM_INVALID
    ? invalidCiphertext(field)
    : new KeywardError('INTERNAL', 'the operation failed');
}

/** Plans an encrypt under the current version. */
export function planEncrypt(ring: KeyRing, input: EncryptInput): Plan<CiphertextOutput> {
  assertUsage(ring, 'encrypt');
  assertPlaintextSize(ring.usage, input.plaintext);
  checkAad(ring, input.aad);
  checkContext(ring, input.context);
  const key = currentKey(ring);
  const version = ring.currentVersion;
  const op: WorkerOp =
    ring.usage === 'RSA2048' ? 'rsa-encrypt' : ring.convergent ? 'aes-seal-convergent' : 'aes-seal';
  return {
    op,
    key,
    params: {},
    batchKey: batchKeyOf(key, op),
    fields: op === 'rsa-encrypt' ? [input.plaintext] : [input.plaintext, input.aad, input.context],
    result: 'ciphertext',
    version,
  };
}

/** Plans a decrypt under the version the ciphertext names. Unknown versions look like tampering. */
export function planDecrypt(ring: KeyRing, input: DecryptInput): Plan<PlaintextOutput> {
  assertUsage(ring, 'decrypt');
  if (typeof input.ciphertext !== 'string')
    throw invalidArgument('ciphertext', 'ciphertext must be a string');
  checkAad(ring, input.aad);
  checkContext(ring, input.context);
  const { version, body } = parseCiphertext(input.ciphertext);
  // Longer than any ciphertext the key can make: as invalid as tampered bytes, and refused before
  // it takes room in the pool (which sizes every item's task by its input).
  if (body.length > MAX_CIPHERTEXT_BODY) throw invalidCiphertext();
  const key = taskKey(ring, version);
  if (key === undefined) throw invalidCiphertext();
  const op: WorkerOp =
    ring.usage === 'RSA2048' ? 'rsa-decrypt' : ring.convergent ? 'aes-open-convergent' : 'aes-open';
  return {
    op,
    key,
    params: {},
    batchKey: batchKeyOf(key, op),
    fields: op === 'rsa-decrypt' ? [body] : [body, input.aad, input.context],
    result: 'plaintext',
    version,
  };
}

function signatureParams(ring: KeyRing, input: SignInput): TaskParams & { algorithm: SignatureAlgorithm } {
  const algorithm = input.algorithm ?? DEFAULT_ALGORITHM[ring.usage]!;
  if (!ALGORITHMS[ring.usage].includes(algorithm)) {
    throw invalidArgument('algorithm', `algorithm must be one of ${ALGORITHMS[ring.usage].join(', ')}`);
  }
  if (input.prehashed !== undefined && typeof input.prehashed !== 'boolean') {
    throw invalidArgument('prehashed', 'prehashed must be a boolean');
  }
  const prehashed = input.prehashed === true;
  assertSignData(input.data, prehashed);
  return { algorithm, prehashed };
}

const kinds = (op: string): Record<SignatureAlgorithm, readonly [string, string]> =>
  Object.fromEntries(
    SIGNATURE_ALGORITHM_NAMES.map((a) => [a, [`${op}|${a}|false`, `${op}|${a}|true`] as const]),
  ) as Record<SignatureAlgorithm, readonly [string, string]>;
const SIGN_KINDS = kinds('sign');
const VERIFY_KINDS = kinds('verify');

/** Plans a signature under the current version. */
export function planSign(ring: KeyRing, input: SignInput): Plan<SignatureOutput> {
  assertUsage(ring, 'sign');
  const params = signatureParams(ring, input);
  const key = currentKey(ring);
  const version = ring.currentVersion;
  return {
    op: 'sign',
    key,
    params,
    batchKey: batchKeyOf(key, SIGN_KINDS[params.algorithm][params.prehashed ? 1 : 0]),
    fields: [input.data],
    result: 'signature',
    version,
  };
}

/**
 * Plans a verify. A malformed signature or one naming an unknown version is simply not valid:
 * verify answers true or false, never an error, for anything in the signature field.
 */
export function planVerify(ring: KeyRing, input: VerifyInput): Plan<VerifyOutput> | VerifyOutput {
  assertUsage(ring, 'verify');
  const params = signatureParams(ring, input);
  if (typeof input.signature !== 'string') throw invalidArgument('signature', 'signature must be a string');
  let parsed: { version: number; body: Buffer };
  try {
    parsed = parseCiphertext(input.signature, 'signature');
  } catch {
    return { valid: false };
  }
  // No signature of these keys is longer (RSA-2048: 256 bytes; P-256 DER: at most 72).
  if (parsed.body.length > RSA_OAEP_BODY_LENGTH) return { valid: false };
  const key = taskKey(ring, parsed.version);
  if (key === undefined) return { valid: false };
  return {
    op: 'verify',
    key,
    params,
    batchKey: batchKeyOf(key, VERIFY_KINDS[params.algorithm][params.prehashed ? 1 : 0]),
    fields: [input.data, parsed.body],
    result: 'verify',
    version: parsed.version,
  };
}

/** Plans a data key: random bytes drawn in the worker, sealed under the current version. */
export function planDataKey(ring: KeyRing, input: DataKeyInput): Plan<DataKeyOutput> {
  assertUsage(ring, 'generate-data-key');
  const bits = input.bits ?? 256;
  if (!DATA_KEY_BITS.includes(bits))
    throw invalidArgument('bits', `bits must be one of ${DATA_KEY_BITS.join(', ')}`);
  if (input.includePlaintext !== undefined && typeof input.includePlaintext !== 'boolean') {
    throw invalidArgument('includePlaintext', 'includePlaintext must be a boolean');
  }
  checkAad(ring, input.aad);
  checkContext(ring, input.context);
  const key = currentKey(ring);
  const version = ring.currentVersion;
  const bytes = bits / 8;
  const includePlaintext = input.includePlaintext !== false;
  return {
    op: 'data-key',
    key,
    params: { dataKeyBytes: bytes },
    batchKey: batchKeyOf(key, `data-key|${bytes}`),
    fields: [input.aad, input.context],
    result: 'data-key',
    version,
    dataKeyBytes: bytes,
    includePlaintext,
  };
}
