/**
 * The key model shared by every layer (PRODUCT.md §2). Types only: validation lives in
 * `spec.ts`, state rules in `lifecycle.ts`. Times are milliseconds since the epoch inside the
 * engine and ISO-8601 strings at the edges (HTTP, CRD status).
 */
import { type KEY_BOUNDARY_NAMES, KEY_USAGE_NAMES } from '../crypto/limits.ts';

/** What a key does. Immutable. */
export type KeyUsage = (typeof KEY_USAGE_NAMES)[number];
export const KEY_USAGES: readonly KeyUsage[] = KEY_USAGE_NAMES;

/** The lifecycle states of PRODUCT.md §3. A destroyed key no longer exists. */
export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';
export const KEY_STATES: readonly KeyState[] = ['Enabled', 'Disabled', 'PendingDeletion'];

/** Where a key may be used: anywhere, or only by an engine serving `region`. */
export type KeyBoundary = (typeof KEY_BOUNDARY_NAMES)[number];

/** The cryptographic operations a key can be asked for, as counted in the usage history. */
export type KeyOperation =
  | 'encrypt'
  | 'decrypt'
  | 're-encrypt'
  | 'sign'
  | 'verify'
  | 'generate-data-key'
  | 'get-public-key';
export const KEY_OPERATIONS: readonly KeyOperation[] = [
  'encrypt',
  'decrypt',
  're-encrypt',
  'sign',
  'verify',
  'generate-data-key',
  'get-public-key',
];

/** Automatic rotation settings. */
export interface RotationPolicy {
  /** Rotate automatically every `periodDays`. */
  enabled: boolean;
  /** Whole days between automatic rotations, 1..730. */
  periodDays: number;
}

/** What a caller declares when creating a key (a `Key` resource's spec, or a POST body). */
export interface KeySpec {
  usage: KeyUsage;
  /** AES256 only: the same version, context and plaintext always give the same ciphertext. */
  convergent: boolean;
  boundary: KeyBoundary;
  /** Required when boundary is Isolated: the region whose engines may use the key. */
  region?: string;
  rotation: RotationPolicy;
  /** Free text, up to 100 characters. */
  memo: string;
}

/** One version of a key's material. */
export interface KeyVersionRecord {
  /** 1, 2, ... */
  version: number;
  createdTime: number;
  /**
   * Material wrapped under a master key (see engine/crypto/wrap.ts), base64. The blob names the
   * master-key version that wrapped it.
   */
  wrapped: string;
  /**
   * AES keys with random nonces: an upper bound of the random-nonce AES-GCM encryptions made
   * under this version (never an under-count; see engine/keys/nonce-budget.ts). Absent: none.
   */
  nonceCount?: number;
}

/** The stored form of a key: spec, lifecycle state, versions and usage history. */
export interface KeyRecord extends KeySpec {
  /** The key store: a Kubernetes namespace, or `default` standalone. */
  namespace: string;
  name: string;
  state: KeyState;
  createdTime: number;
  currentVersion: number;
  versions: KeyVersionRecord[];
  /**
   * The point the automatic rotation schedule counts from: creation, then each automatic
   * rotation's due time. Manual rotations leave it alone, so they do not shift the schedule.
   */
  rotationAnchorTime: number;
  /** Set while PendingDeletion. */
  deletionScheduledTime?: number;
  lastUsedTime?: number;
  operationCounts: Partial<Record<KeyOperation, number>>;
}
