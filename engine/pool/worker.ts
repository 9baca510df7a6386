/**
 * The crypto worker: runs one batch per task. KeyObjects and convergent derived keys are cached
 * per worker, so a batch pays for key parsing at most once; randomness (nonces, data keys) is
 * drawn once per batch.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { move } from 'piscina';
import { openAesGcm, sealAesGcm } from '../crypto/aes-gcm.ts';
import {
  type ConvergentKeys,
  deriveConvergentKeys,
  openConvergent,
  sealConvergent,
} from '../crypto/convergent.ts';
import {
  type PreparedKey,
  type PreparedKeyPair,
  type PreparedSecretKey,
  prepareKey,
} from '../crypto/prepared-key.ts';
import { decryptRsaOaep, encryptRsaOaep } from '../crypto/rsa-oaep.ts';
import { defaultSignatureAlgorithm, signBytes, verifyBytes } from '../crypto/signing.ts';
import { PackedBatch, packBatch } from './packing.ts';
import {
  type BatchResult,
  type BatchTask,
  FIELDS_PER_OP,
  ITEM_FAILED,
  ITEM_INVALID,
  type TaskKey,
} from './protocol.ts';

const NONCE_BYTES = 12;
// Bounded so a long-lived worker cannot grow without limit; Map order gives a cheap FIFO eviction.
const MAX_CACHED_KEYS = 2048;
const MAX_CACHED_CONTEXTS = 4096;

const keyCache = new Map<string, PreparedKey>();
const convergentCache = new Map<string, ConvergentKeys>();
const EMPTY = Buffer.alloc(0);

function remember<V>(cache: Map<string, V>, limit: number, id: string, value: V): V {
  if (cache.size >= limit) cache.delete(cache.keys().next().value!);
  cache.set(id, value);
  return value;
}

function preparedKey(key: TaskKey): PreparedKey {
  return (
    keyCache.get(key.id) ?? remember(keyCache, MAX_CACHED_KEYS, key.id, prepareKey(key.usage, key.material))
  );
}

// Derived keys are cached by (key version, context digest): the digest keeps caller contexts
// out of the worker's memory and bounds the cache key's size.
function convergentKeys(key: TaskKey, context: Uint8Array): ConvergentKeys {
  const id = `${key.id}|${createHash('sha256').update(context).digest('base64')}`;
  return (
    convergentCache.get(id) ??
    remember(convergentCache, MAX_CACHED_CONTEXTS, id, deriveConvergentKeys(key.material, context))
  );
}

/** Runs one item; returns its output, or a status byte when it failed. */
type ItemRunner = (batch: PackedBatch, item: number) => Buffer | number;

function runnerFor(task: BatchTask, count: number): ItemRunner {
  const prepared = preparedKey(task.key);
  // The engine only sends ops the key's usage allows, so the needed KeyObject is there.
  const key = prepared as Partial<PreparedSecretKey> & Partial<PreparedKeyPair>;
  const { prehashed = false, dataKeyBytes = 0 } = task.params;
  switch (task.op) {
    case 'aes-seal': {
      const nonces = randomFillSync(Buffer.allocUnsafe(count * NONCE_BYTES));
      return (b, i) =>
        sealAesGcm(key.secret!, nonces.subarray(i * 12, i * 12 + 12), b.field(i, 0), b.field(i, 1));
    }
    case 'aes-seal-convergent':
      return (b, i) => {
        return sealConvergent(convergentKeys(task.key, b.field(i, 2)), b.field(i, 1), b.field(i, 0));
      };
    case 'aes-open':
      return (b, i) => openAesGcm(key.secret!, b.field(i, 0), b.field(i, 1));
    case 'aes-open-convergent':
      return (b, i) => openConvergent(convergentKeys(task.key, b.field(i, 2)), b.field(i, 0), b.field(i, 1));
    case 'rsa-encrypt':
      return (b, i) => encryptRsaOaep(key.publicKey!, b.field(i, 0));
    case 'rsa-decrypt':
      return (b, i) => decryptRsaOaep(key.privateKey!, b.field(i, 0));
    case 'sign': {
      const algorithm = task.params.algorithm ?? defaultSignatureAlgorithm(task.key.usage);
      return (b, i) => signBytes(prepared, b.field(i, 0), { algorithm, prehashed });
    }
    case 'verify': {
      const algorithm = task.params.algorithm ?? defaultSignatureAlgorithm(task.key.usage);
      return (b, i) =>
        verifyBytes(prepared, b.field(i, 0), b.field(i, 1), { algorithm, prehashed })
          ? Buffer.of(1)
          : Buffer.of(0);
    }
    case 'data-key': {
      const plaintexts = randomFillSync(Buffer.allocUnsafe(count * dataKeyBytes));
      const nonces = randomFillSync(Buffer.allocUnsafe(count * NONCE_BYTES));
      return (b, i) => {
        const plaintext = plaintexts.subarray(i * dataKeyBytes, (i + 1) * dataKeyBytes);
        let sealed: Buffer;
        if (task.key.usage === 'RSA2048') {
          sealed = encryptRsaOaep(key.publicKey!, plaintext);
        } else if (task.key.convergent) {
          sealed = sealConvergent(convergentKeys(task.key, b.field(i, 1)), b.field(i, 0), plaintext);
        } else {
          sealed = sealAesGcm(key.secret!, nonces.subarray(i * 12, i * 12 + 12), plaintext, b.field(i, 0));
        }
        return Buffer.concat([plaintext, sealed]);
      };
    }
  }
}

/**
 * Piscina entry point: runs a batch and returns the packed result (transferred back).
 * One item's failure never fails the others.
 */
export default function runBatch(task: BatchTask): BatchResult {
  const batch = new PackedBatch(task.payload);
  if (batch.fields !== FIELDS_PER_OP[task.op]) throw new RangeError('batch field count does not match op');
  const count = batch.count;
  const outputs: Buffer[] = new Array(count);
  const status = new Uint8Array(count);
  const run = runnerFor(task, count);
  for (let i = 0; i < count; i++) {
    try {
      const out = run(batch, i);
      outputs[i] = out as Buffer;
    } catch (err) {
      outputs[i] = EMPTY;
      // Authentication failures come back as KeywardError INVALID_ARGUMENT; anything else is
      // reported without detail so no key-dependent message crosses back.
      status[i] = (err as { code?: string }).code === 'INVALID_ARGUMENT' ? ITEM_INVALID : ITEM_FAILED;
    }
  }
  return move(packBatch(count + 1, 1, (i) => (i < count ? outputs[i] : status))) as ArrayBuffer;
}
