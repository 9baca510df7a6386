/**
 * The messages between the engine's main thread and its crypto workers. One task is one batch:
 * one key version, one operation, items packed in a single transferred ArrayBuffer.
 */
import type { SignatureAlgorithm } from '../crypto/signing.ts';
import type { KeyUsage } from '../keys/model.ts';

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

/** The key version a batch runs under. Material is small and sent each time; workers cache by id. */
export interface TaskKey {
  /** Unique per key incarnation and version: the worker cache key. */
  id: string;
  usage: KeyUsage;
  convergent: boolean;
  /** Unwrapped material (raw AES key or PKCS#8 DER). Never logged. */
  material: Uint8Array;
}

/** Per-batch parameters: the same for every item of the batch. */
export interface TaskParams {
  algorithm?: SignatureAlgorithm;
  prehashed?: boolean;
  /** For `data-key`: bytes of random plaintext per item. */
  dataKeyBytes?: number;
}

/** One batch sent to a worker. `payload` is transferred. */
export interface BatchTask {
  op: WorkerOp;
  key: TaskKey;
  params: TaskParams;
  payload: ArrayBuffer;
}

/** Per-item outcome in a batch result. */
export const ITEM_OK = 0;
/** A decrypt or unwrap that failed authentication: reported as the single "invalid" error. */
export const ITEM_INVALID = 1;
/** Anything else that failed for one item (reported without detail). */
export const ITEM_FAILED = 2;

/**
 * A batch result: a packed buffer of `count + 1` single-field items, where item `count` is
 * the status byte of every item (ITEM_OK, ITEM_INVALID, ITEM_FAILED).
 */
export type BatchResult = ArrayBuffer;
