/**
 * The crypto worker: runs one batch per task. Key versions are registered once per worker, under
 * the id of their material (protocol.ts `TaskKey`): a task names only the id, and a worker that
 * lacks it hands the task back to be sent again with the material. What the worker keeps of a key
 * is KeyObjects (OpenSSL memory), never the raw bytes: the material it receives is zeroed once
 * they are made. For convergent keys it keeps the HKDF pseudorandom key (another KeyObject), from
 * which each context's keys are expanded and cached by (key id, context digest).
 *
 * Eviction: the pool broadcasts the ids of disabled or destroyed keys on a BroadcastChannel; the
 * worker drops them and their derived keys as soon as its event loop turns (the pool runs Piscina
 * without its Atomics wait loop, so an idle worker gets the message), and drains the channel at
 * the start of every task too, so no task runs on a key evicted before it was sent.
 *
 * Plaintexts are zeroed as soon as they are packed: the request payload (plaintexts to encrypt,
 * ciphertexts) after the batch, and decrypted plaintexts and data keys after they are copied into
 * the result, which is transferred (moved, not copied) to the main thread.
 */
import { createHash, type KeyObject, randomFillSync } from 'node:crypto';
import {
  BroadcastChannel,
  type MessagePort,
  receiveMessageOnPort,
  threadId,
  workerData,
} from 'node:worker_threads';
import { move } from 'piscina';
import { openAesGcm, sealAesGcm } from '../crypto/aes-gcm.ts';
import {
  type ConvergentKeys,
  convergentPrk,
  deriveConvergentKeysFromPrk,
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
  type PoolBroadcast,
  type WireKey,
  type WorkerOp,
} from './protocol.ts';

const NONCE_BYTES = 12;
// Bounded so a long-lived worker cannot grow without limit; Map order gives a cheap FIFO eviction.
const MAX_CACHED_KEYS = 2048;
const MAX_CACHED_CONTEXTS = 4096;

/** What a worker keeps of one key version: KeyObjects only. */
interface WorkerKey {
  prepared: PreparedKey;
  /** Convergent AES keys: HKDF-Extract of the material, from which contexts are expanded. */
  prk?: KeyObject;
}

const keys = new Map<string, WorkerKey>();
/** Convergent derived keys by `${key id}|${context digest}`. */
const contexts = new Map<string, ConvergentKeys>();
const EMPTY = Buffer.alloc(0);
let registrations = 0;

/** Ops whose outputs are plaintext (decrypted bytes or fresh data keys): zeroed once packed. */
const PLAINTEXT_OUTPUTS: ReadonlySet<WorkerOp> = new Set([
  'aes-open',
  'aes-open-convergent',
  'rsa-decrypt',
  'data-key',
]);

function evict(ids: readonly string[]): void {
  const gone = new Set(ids);
  for (const id of ids) keys.delete(id);
  for (const cacheKey of contexts.keys()) {
    if (gone.has(cacheKey.slice(0, cacheKey.indexOf('|')))) contexts.delete(cacheKey);
  }
}

const channelName = (workerData as { channel?: string } | undefined)?.channel;
const channel = channelName === undefined ? undefined : new BroadcastChannel(channelName);

function onBroadcast(message: PoolBroadcast): void {
  if (message.type === 'evict') evict(message.ids);
  else if (message.type === 'census') {
    channel!.postMessage({
      type: 'census-reply',
      request: message.request,
      threadId,
      ids: [...keys.keys()],
      contexts: contexts.size,
      registrations,
    } satisfies PoolBroadcast);
  }
}

if (channel !== undefined) {
  channel.onmessage = (event) => onBroadcast((event as unknown as { data: PoolBroadcast }).data);
  // The worker lives as long as Piscina keeps it; the channel must not hold it open on its own.
  channel.unref();
}

/** Applies evictions already posted (they are queued before any task sent after them). */
function drainBroadcasts(): void {
  if (channel === undefined) return;
  // receiveMessageOnPort takes a BroadcastChannel too (Node ≥ 15.4); @types/node types a port.
  const port = channel as unknown as MessagePort;
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    onBroadcast(m.message as PoolBroadcast);
  }
}

function register(wire: WireKey, material: Uint8Array): WorkerKey {
  try {
    const entry: WorkerKey = { prepared: prepareKey(wire.usage, material) };
    if (wire.convergent) entry.prk = convergentPrk(material);
    if (keys.size >= MAX_CACHED_KEYS) evict([keys.keys().next().value!]);
    keys.set(wire.id, entry);
    registrations++;
    return entry;
  } finally {
    material.fill(0);
  }
}

// Derived keys are cached by (key version, context digest): the digest keeps caller contexts
// out of the worker's memory and bounds the cache key's size.
function convergentKeys(id: string, entry: WorkerKey, context: Uint8Array): ConvergentKeys {
  const cacheKey = `${id}|${createHash('sha256').update(context).digest('base64')}`;
  let derived = contexts.get(cacheKey);
  if (derived === undefined) {
    derived = deriveConvergentKeysFromPrk(entry.prk!, context);
    if (contexts.size >= MAX_CACHED_CONTEXTS) contexts.delete(contexts.keys().next().value!);
    contexts.set(cacheKey, derived);
  }
  return derived;
}

/** Runs one item; returns its output, or a status byte when it failed. */
type ItemRunner = (batch: PackedBatch, item: number) => Buffer | number;

function runnerFor(task: BatchTask, entry: WorkerKey, count: number, scratch: Buffer[]): ItemRunner {
  const prepared = entry.prepared;
  const id = task.key.id;
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
      return (b, i) => sealConvergent(convergentKeys(id, entry, b.field(i, 2)), b.field(i, 1), b.field(i, 0));
    case 'aes-open':
      return (b, i) => openAesGcm(key.secret!, b.field(i, 0), b.field(i, 1));
    case 'aes-open-convergent':
      return (b, i) => openConvergent(convergentKeys(id, entry, b.field(i, 2)), b.field(i, 0), b.field(i, 1));
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
      scratch.push(plaintexts);
      const nonces = randomFillSync(Buffer.allocUnsafe(count * NONCE_BYTES));
      return (b, i) => {
        const plaintext = plaintexts.subarray(i * dataKeyBytes, (i + 1) * dataKeyBytes);
        let sealed: Buffer;
        if (task.key.usage === 'RSA2048') {
          sealed = encryptRsaOaep(key.publicKey!, plaintext);
        } else if (task.key.convergent) {
          sealed = sealConvergent(convergentKeys(id, entry, b.field(i, 1)), b.field(i, 0), plaintext);
        } else {
          sealed = sealAesGcm(key.secret!, nonces.subarray(i * 12, i * 12 + 12), plaintext, b.field(i, 0));
        }
        return Buffer.concat([plaintext, sealed]);
      };
    }
  }
}

/**
 * Piscina entry point: runs a batch and returns the packed result (transferred back), or, when
 * this worker does not hold the task's key and the task brought no material, the task's payload
 * (a Uint8Array view, moved back) so the pool can send it again with the material.
 * One item's failure never fails the others.
 */
export default function runBatch(task: BatchTask): BatchResult {
  drainBroadcasts();
  let entry = keys.get(task.key.id);
  if (task.key.material !== undefined) {
    if (entry === undefined) entry = register(task.key, task.key.material);
    else task.key.material.fill(0);
  }
  if (entry === undefined) return move(new Uint8Array(task.payload)) as Uint8Array;
  const batch = new PackedBatch(task.payload);
  if (batch.fields !== FIELDS_PER_OP[task.op]) throw new RangeError('batch field count does not match op');
  const count = batch.count;
  const outputs: Buffer[] = new Array(count);
  const status = new Uint8Array(count);
  const scratch: Buffer[] = [];
  const run = runnerFor(task, entry, count, scratch);
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
  const result = packBatch(count + 1, 1, (i) => (i < count ? outputs[i] : status));
  // Packed and about to be moved: wipe what held plaintext here.
  new Uint8Array(task.payload).fill(0);
  if (PLAINTEXT_OUTPUTS.has(task.op)) for (const out of outputs) out.fill(0);
  for (const s of scratch) s.fill(0);
  return move(result) as ArrayBuffer;
}
