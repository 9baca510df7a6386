/**
 * The contract between the HTTP layer and whatever holds the keys. The standalone `KeyService`
 * implements all of it; the Kubernetes cluster mode plugs in an informer-backed backend that
 * has no `admin` part (keys are managed through `Key` resources there), so the admin routes
 * answer 405 METHOD_NOT_ALLOWED.
 */

import type { JsonWebKey } from 'node:crypto';
import type {
  BatchInputs,
  BatchOperation,
  BatchOutputs,
  BatchRequestOutcome,
  BatchItemResult as BatchResult,
  CiphertextOutput,
  DataKeyInput,
  DecryptInput,
  EncryptInput,
  SignatureOutput,
  SignInput,
  VerifyInput,
} from '../engine.ts';
import type { KeyBoundary, KeyOperation, KeyState, KeyUsage, RotationPolicy } from '../keys/model.ts';
import type { WorkerCache } from '../pool/worker-channel.ts';

/** A key as the API shows it (PRODUCT.md §6). Times are ISO-8601 strings; never material. */
export interface KeyView {
  name: string;
  namespace: string;
  usage: KeyUsage;
  convergent: boolean;
  boundary: KeyBoundary;
  region: string | null;
  rotation: RotationPolicy;
  memo: string;
  state: KeyState;
  currentVersion: number;
  versions: Array<{
    version: number;
    createdTime: string;
    /** The master-key version that wraps this version's material (null: unreadable blob). */
    masterKeyVersion: number | null;
    /**
     * AES keys with random nonces: random-nonce encryptions counted under this version, an upper
     * bound (counts are reserved ahead; docs/crypto.md). The key rotates at its nonce budget.
     */
    nonceCount?: number;
  }>;
  createdTime: string;
  nextRotationTime: string | null;
  deletionScheduledTime: string | null;
  /** Null when the current version's material cannot be unwrapped (see `materialError`). */
  fingerprint: string | null;
  lastUsedTime: string | null;
  operationCounts: Partial<Record<KeyOperation, number>>;
  /** Present when some version's material cannot be unwrapped: why. The key's operations fail. */
  materialError?: string;
}

/** A create request as it arrives (unvalidated fields beyond JSON types; the backend validates). */
export interface CreateKeyInput {
  name: string;
  usage: string;
  convergent?: boolean;
  boundary?: string;
  region?: string;
  rotation?: { enabled?: boolean; periodDays?: number };
  memo?: string;
}

/** The mutable part of a key: memo and rotation. */
export interface KeyPatch {
  memo?: string;
  rotation?: { enabled?: boolean; periodDays?: number };
}

/** The lifecycle actions of PRODUCT.md §3 (`delete-now` is `DELETE .../keys/{name}`). */
export type KeyAction =
  | 'enable'
  | 'disable'
  | 'rotate'
  | 'request-deletion'
  | 'cancel-deletion'
  | 'delete-now';

/** The result of an action: the key after it (absent once destroyed) and any warnings. */
export interface ActionResult {
  key?: KeyView;
  /** e.g. a deletion requested for a key used in the last 7 days. */
  warnings?: string[];
}

/** Key management: absent in the Kubernetes cluster mode. */
export interface KeyAdmin {
  create(namespace: string, input: CreateKeyInput): Promise<KeyView>;
  update(namespace: string, name: string, patch: KeyPatch): Promise<KeyView>;
  action(namespace: string, name: string, action: KeyAction): Promise<ActionResult>;
}

/** The inputs and outputs of the cryptographic operations are the engine's own (engine.ts). */
/** One batch item's outcome: its output or its own error (one bad item never fails the others). */
export type {
  BatchInputs,
  BatchItemResult as BatchResult,
  BatchOperation,
  BatchOutputs,
  BatchRequestOutcome,
  CiphertextOutput,
  DataKeyInput,
  DecryptInput,
  EncryptInput,
  SignatureOutput,
  SignInput,
  VerifyInput,
} from '../engine.ts';

/** The operations that have a batch route. */
export const BATCH_OPERATIONS: readonly BatchOperation[] = [
  'encrypt',
  'decrypt',
  're-encrypt',
  'sign',
  'verify',
];

/** Reads and cryptography: what every backend offers. */
export interface KeyBackend {
  /** Key management; undefined when keys are managed elsewhere (admin routes answer 405). */
  readonly admin: KeyAdmin | undefined;
  list(namespace: string): Promise<KeyView[]>;
  get(namespace: string, name: string): Promise<KeyView>;
  encrypt(namespace: string, name: string, input: EncryptInput): Promise<CiphertextOutput>;
  decrypt(namespace: string, name: string, input: DecryptInput): Promise<{ plaintext: Buffer }>;
  reEncrypt(namespace: string, name: string, input: DecryptInput): Promise<CiphertextOutput>;
  sign(namespace: string, name: string, input: SignInput): Promise<SignatureOutput>;
  verify(namespace: string, name: string, input: VerifyInput): Promise<{ valid: boolean }>;
  dataKey(
    namespace: string,
    name: string,
    input: DataKeyInput,
  ): Promise<{ ciphertext: string; plaintext?: Buffer; keyVersion: number }>;
  publicKey(
    namespace: string,
    name: string,
    version?: number,
  ): Promise<{ keyVersion: number; pem: string; jwk: JsonWebKey }>;
  /**
   * Runs one operation over many items with the key resolved once. The key-level checks
   * (exists, Enabled, region) fail the whole call; item-level errors land in their slot.
   */
  batch<O extends BatchOperation>(
    namespace: string,
    name: string,
    op: O,
    items: BatchInputs[O][],
  ): Promise<BatchResult<BatchOutputs[O]>[]>;
  /**
   * Runs one whole batch request from its raw JSON body in a crypto worker (parsing, checks,
   * crypto and the response body happen there). The same key-level checks as `batch` throw first;
   * a body that is not a valid batch comes back as `{type: 'error'}`.
   */
  batchRequest(
    namespace: string,
    name: string,
    op: BatchOperation,
    body: Uint8Array,
  ): Promise<BatchRequestOutcome>;
  /**
   * The stored `namespace/name` of the key `name` (any case the backend accepts) when it exists,
   * else undefined: the only `key` label /metrics may carry, so callers cannot add series.
   */
  metricsKey(namespace: string, name: string): string | undefined;
  /** True once the backend can serve (store open, engine started, caches synced). */
  ready(): boolean;
  /** Items waiting in the engine's queue, for /metrics. */
  queueDepth(): number;
  /** Crypto workers that died outside a task since start, for /metrics. */
  workerErrors?(): number;
  /** The pool's bytes and each worker's heap, for /metrics. */
  poolMemory?(): Promise<PoolMemory>;
}

/** What `KeyBackend.poolMemory` reports. */
export interface PoolMemory {
  /** Bytes of items and requests waiting or running (bounded by the pool's maxPendingBytes). */
  pendingBytes: number;
  /** Bytes of task buffers kept for reuse (bounded by the pool's retainedBytes). */
  retainedBytes: number;
  /** Each worker's caches and V8 heap. */
  workers: WorkerCache[];
}
