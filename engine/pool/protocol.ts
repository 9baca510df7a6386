/**
 * The messages between the engine's main thread and its crypto workers. An item task is one batch
 * of one operation under one key version, its items and outputs in one buffer that moves to the
 * worker and back (buffers.ts, layout.ts); a request task is a whole batch request, its raw body
 * transferred (request-runner.ts).
 */
import type { PreparedKey } from '../crypto/prepared-key.ts';
import type { SignatureAlgorithm } from '../crypto/signing.ts';
import type { BatchOperation } from '../engine.ts';
import type { KeyUsage } from '../keys/model.ts';
import type { WireRing } from './request-runner.ts';

/** The operations a worker runs. Each names the fields its items carry, in order. */
export type WorkerOp =
  /** AES-256-GCM with random nonces: [plaintext, aad] → nonce‖ct‖tag. */
  | 'aes-seal'
  /** Convergent AES (PRODUCT.md §4.2): [plaintext, aad, context] → nonce‖ct‖tag. */
  | 'aes-seal-convergent'
  /** [body, aad] → plaintext. */
  | 'aes-open'
  /** [body, aad, context] → plaintext. */
  | 'aes-open-convergent'
  /** RSA-OAEP-SHA256: [plaintext] → block. */
  | 'rsa-encrypt'
  /** [block] → plaintext. */
  | 'rsa-decrypt'
  /** Random data keys of `dataKeyBytes`, sealed: [aad, context] → plaintext ‖ sealed body. */
  | 'data-key'
  /** [data] → signature. */
  | 'sign'
  /** [data, signature] → one byte, 1 when valid. */
  | 'verify';

/** Number of packed fields per item for each op. */
export const FIELDS_PER_OP: Readonly<Record<WorkerOp, number>> = {
  'aes-seal': 2,
  'aes-seal-convergent': 3,
  'aes-open': 2,
  'aes-open-convergent': 3,
  'rsa-encrypt': 1,
  'rsa-decrypt': 1,
  'data-key': 2,
  sign: 1,
  verify: 2,
};

/**
 * One key version as the main thread hands it to the pool. Tasks carry only `id`: a worker that
 * does not hold the id yet answers "missing", and the pool sends the task again with the material,
 * which the worker keeps under the id (registration once per worker and version). The id names the
 * material itself (a random id per load, never reused), so two keys never share a cache entry,
 * even a key re-created under the same name in the same millisecond.
 */
export interface TaskKey {
  /** Random and unique per loaded material: the workers' cache key. Not secret. */
  readonly id: string;
  readonly usage: KeyUsage;
  readonly convergent: boolean;
  /**
   * A fresh, exact-size copy of the material (raw AES key or PKCS#8 DER) for one registration;
   * the pool transfers it, so no copy stays on this thread. Undefined once the key was revoked
   * (disabled or destroyed): the pool then fails the task instead of registering it again.
   */
  exportMaterial(): Uint8Array | undefined;
  /** The KeyObjects on the main thread (public-key export); undefined once revoked. */
  prepared(): PreparedKey | undefined;
  /** True once the key was revoked (disabled or destroyed). */
  readonly revoked: boolean;
}

/** What a task carries of its key: the id, and the material only when registering. */
export interface WireKey {
  id: string;
  usage: KeyUsage;
  convergent: boolean;
  /** Present when the worker must register the key first; transferred, zeroed after use. */
  material?: Uint8Array;
}

/** Per-batch parameters: the same for every item of the batch. */
export interface TaskParams {
  algorithm?: SignatureAlgorithm;
  prehashed?: boolean;
  /** For `data-key`: bytes of random plaintext per item. */
  dataKeyBytes?: number;
}

/**
 * An item task: one op over items of one key version, laid out in `buffer` (layout.ts), which is
 * transferred. The worker writes each item's output and status into it and moves it back.
 */
export interface ItemTask {
  kind: 'items';
  op: WorkerOp;
  key: WireKey;
  params: TaskParams;
  buffer: ArrayBuffer;
}

/** An item task's answer: its buffer back, and whether it ran (false: the key was missing). */
export interface ItemResult {
  ran: boolean;
  buffer: ArrayBuffer;
}

/** A whole batch request (request-runner.ts). `body` is transferred. */
export interface RequestTask {
  kind: 'request';
  op: BatchOperation;
  ring: WireRing;
  body: ArrayBuffer;
  /** Material of key ids the worker may lack (transferred, zeroed after use). */
  keys?: WireKey[];
}

/** What the pool sends a worker. */
export type WorkerTask = ItemTask | RequestTask;

/** `workerData` of every pool worker. */
export interface PoolWorkerData {
  /** The BroadcastChannel of evictions and census requests. */
  channel: string;
  /** The worker's modules, types stripped, by file URL (worker-entry.mjs). */
  sources: Record<string, string>;
  /** Bounds of the worker's caches: key versions, and convergent keys derived per context. */
  maxKeys: number;
  maxDerivedKeys: number;
}

/** A worker's V8 heap, for the census (bytes). */
export interface WorkerHeap {
  used: number;
  total: number;
  external: number;
  /** Size of each V8 heap space (`new_space`, `old_space`, ...). */
  spaces: Record<string, number>;
}

// Per-item outcome in a batch result: 0 is success (the status buffer starts zeroed), else one of:
/** A decrypt or unwrap that failed authentication: reported as the single "invalid" error. */
export const ITEM_INVALID = 1;
/** Anything else that failed for one item (reported without detail). */
export const ITEM_FAILED = 2;

/** Messages on the pool's BroadcastChannel (name in the workers' `workerData.channel`). */
export type PoolBroadcast =
  /** Main → workers: drop these key ids and everything derived from them. */
  | { type: 'evict'; ids: string[] }
  /** Main → workers: report the ids you hold (diagnostics and tests). */
  | { type: 'census'; request: number }
  /** Worker → main: the answer to a census. */
  | {
      type: 'census-reply';
      request: number;
      threadId: number;
      /** Key ids held. */
      ids: string[];
      /** Convergent derived-key sets held. */
      contexts: number;
      /** Key registrations (material received and prepared) since the worker started. */
      registrations: number;
      heap: WorkerHeap;
    };
