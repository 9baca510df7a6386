/**
 * The `Key` custom resource (keys.keyward.io/v1alpha1) as TypeScript types, with the names the
 * operator uses for it. The CRD in `crds/keys.keyward.io.yaml` documents each field for users;
 * these types mirror it. Times in status are RFC 3339 strings, as Kubernetes shows them.
 */
import type { KeyBoundary, KeyOperation, KeyState, KeyUsage } from '../keys/model.ts';

/** API group of the Key resource. */
export const KEY_GROUP = 'keyward.io';
/** API version served and stored. */
export const KEY_VERSION = 'v1alpha1';
/** Plural resource name. */
export const KEY_PLURAL = 'keys';
/** The finalizer that holds a deleted Key until its material is erased or released. */
export const FINALIZER = 'keyward.io/key-protection';
/** Each new value of this annotation triggers exactly one rotation. */
export const ROTATE_ANNOTATION = 'keyward.io/rotate';
/** `"true"` on a Key pending deletion erases its material at once. */
export const DELETE_NOW_ANNOTATION = 'keyward.io/delete-now';
/** `"true"` on a deleted Key keeps its material as Disabled and releases the object. */
export const CANCEL_DELETION_ANNOTATION = 'keyward.io/cancel-deletion';

/** The condition types of a Key's status. */
export type KeyConditionType = 'Ready' | 'Enabled' | 'PendingDeletion';

/** A metav1.Condition. */
export interface Condition {
  /** Ready, Enabled or PendingDeletion. */
  type: string;
  /** "True", "False" or "Unknown". */
  status: 'True' | 'False' | 'Unknown';
  /** A CamelCase reason. */
  reason: string;
  /** A human-readable message; never anything secret. */
  message: string;
  /** RFC 3339: when `status` last changed. */
  lastTransitionTime: string;
  /** The generation the condition was computed from. */
  observedGeneration?: number;
}

/** `spec` of a Key, after the apiserver applied the schema defaults. */
export interface KeyResourceSpec {
  /** What the key does; immutable. */
  usage: KeyUsage;
  /** AES256 only; immutable. */
  convergent?: boolean;
  /** Global or Isolated; immutable. */
  boundary?: KeyBoundary;
  /** Required when Isolated; immutable. */
  region?: string;
  /** Automatic rotation policy. */
  rotation?: { enabled?: boolean; periodDays?: number };
  /** Free text, up to 100 characters. */
  memo?: string;
  /** The desired lifecycle state. */
  state?: KeyState;
}

/** One version as shown in status. */
export interface KeyStatusVersion {
  /** 1, 2, ... */
  version: number;
  /** RFC 3339 creation time. */
  createdTime: string;
  /** The master-key version wrapping this version's material (absent when erased). */
  masterKeyVersion?: number;
}

/** `status` of a Key (PRODUCT.md §8). */
export interface KeyResourceStatus {
  /** Ready, Enabled, PendingDeletion. */
  conditions?: Condition[];
  /** The observed state of the material. */
  state?: KeyState;
  /** The current version. */
  currentVersion?: number;
  /** Every version, oldest first. */
  versions?: KeyStatusVersion[];
  /** The master-key version wrapping the current version's material (see the CRD). */
  masterKeyVersion?: number;
  /** When the material was first created. */
  createdTime?: string;
  /** The next automatic rotation, if one is scheduled. */
  nextRotationTime?: string;
  /** When the material will be erased, while PendingDeletion. */
  deletionScheduledTime?: string;
  /** The BLAKE3 fingerprint of the current version. */
  fingerprint?: string;
  /** The last cryptographic use. */
  lastUsedTime?: string;
  /** Uses per operation, as the engines reported them. */
  operationCounts?: Partial<Record<KeyOperation, number>>;
  /** The generation this status reflects. */
  observedGeneration?: number;
  /** The last handled value of the keyward.io/rotate annotation. */
  rotateHandled?: string;
  /** The operator replica (its Lease identity) that wrote this status. */
  reconciledBy?: string;
}

/** The metadata fields the operator reads. */
export interface KeyResourceMetadata {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date;
  finalizers?: string[];
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

/** A Key object as read from the apiserver. */
export interface KeyResource {
  apiVersion?: string;
  kind?: string;
  metadata: KeyResourceMetadata;
  spec: KeyResourceSpec;
  status?: KeyResourceStatus;
}

/** Converts a Kubernetes time (a string, or a Date as client-node sometimes gives) to epoch ms. */
export function kubeTimeMs(value: string | Date | undefined): number | undefined {
  if (value === undefined || value === null) return undefined;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

/** Epoch ms to RFC 3339 in UTC; whole seconds are written as Kubernetes writes them (no `.000`). */
export function toKubeTime(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}
