/**
 * The format of the Secrets that hold key material (one Secret per Key, in the operator's
 * namespace). Pure encode/decode, shared by the operator (the only writer) and the engine's
 * cluster mode, which reads these Secrets through an informer (engine/cluster/key-sources.ts).
 *
 * Secret `kkey.<namespace>.<name>` (`.` cannot occur in a namespace or a Key name, so the name is
 * unambiguous), type `keyward.io/key-material`, labels below. `data`:
 * - `record.json`: the key's record without material (see `StoredRecordJson`): spec snapshot,
 *   state, versions and their times, the rotation anchor, the deletion schedule, the owning
 *   Key's uid, the handled rotate annotation, the fingerprint, each version's random-nonce count
 *   (`nonceCount`) and the key-check values of the master-key versions that wrapped the blobs
 *   (`masterKeyChecks`). Times are epoch milliseconds.
 * - `v<N>`: version N's material wrapped with AES-256-GCM under the master key, AAD-bound to
 *   {store: namespace, name, usage, version} (engine/crypto/wrap.ts). The Secret's base64 value is
 *   exactly `KeyVersionRecord.wrapped`.
 */
import type { KeyRecord, KeyVersionRecord } from '../keys/model.ts';

/** Secret type of material Secrets. */
export const MATERIAL_SECRET_TYPE = 'keyward.io/key-material';
/** Label present on every material Secret: an informer selects `keyward.io/material=true`. */
export const MATERIAL_LABEL = 'keyward.io/material';
/** Label holding the Key's namespace (the key store). */
export const KEY_NAMESPACE_LABEL = 'keyward.io/key-namespace';
/** Label holding the Key's name. */
export const KEY_NAME_LABEL = 'keyward.io/key-name';
/** Annotation naming the operator replica (its Lease identity) that wrote the Secret. */
export const WRITTEN_BY_ANNOTATION = 'keyward.io/written-by';
/** Standard managed-by label value. */
export const MANAGED_BY = 'keyward-operator';
/** `data` entry of the record. */
export const RECORD_ENTRY = 'record.json';
/** Current version of the record format. */
export const RECORD_FORMAT = 1;

/** The stored key: the lifecycle record plus what only the operator needs. */
export interface StoredKey {
  /** The lifecycle record; `versions[].wrapped` holds the wrapped material (base64). */
  record: KeyRecord;
  /** uid of the Key object that owns the material; absent once released (cancel-deletion). */
  ownerUid?: string;
  /** The last keyward.io/rotate value that triggered (or was recorded without) a rotation. */
  rotateHandled?: string;
  /** Fingerprint of the current version (not secret). */
  fingerprint?: string;
  /**
   * Usage already counted into `record.operationCounts`, per engine instance
   * (`identity/instance` → cumulative counts by operation, and by `v<N>.nonces` for the
   * random-nonce reservations of version N), so folding reports is exact (operator/usage.ts).
   */
  usageSeen?: Record<string, Record<string, number>>;
  /** When usage was last folded in (epoch ms): folds are at most once per interval. */
  usageFoldedTime?: number;
  /**
   * Master-key version → key-check value of the master key that wrapped this Secret's blobs
   * (engine/kube/master-key-secret.ts): a mismatched master key is detected without unwrapping.
   */
  masterKeyChecks?: Record<string, string>;
}

/** `record.json`: the record without material, plus the operator's bookkeeping. */
export interface StoredRecordJson extends Omit<KeyRecord, 'versions'> {
  format: number;
  versions: Array<Omit<KeyVersionRecord, 'wrapped'>>;
  ownerUid?: string;
  rotateHandled?: string;
  fingerprint?: string;
  usageSeen?: StoredKey['usageSeen'];
  usageFoldedTime?: number;
  masterKeyChecks?: Record<string, string>;
}

/** The Secret fields this module produces and reads (a subset of V1Secret). */
export interface MaterialSecret {
  apiVersion?: string;
  kind?: string;
  type?: string;
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
  };
  data?: Record<string, string>;
}

/** The deterministic Secret name for Key `name` in `namespace`. */
export function materialSecretName(namespace: string, name: string): string {
  return `kkey.${namespace}.${name}`;
}

/** The data entry of version `version`. */
export function versionEntry(version: number): string {
  return `v${version}`;
}

/** Builds the Secret for `stored` in `operatorNamespace` (no resourceVersion: callers add it). */
export function encodeMaterialSecret(
  operatorNamespace: string,
  stored: StoredKey,
  writtenBy?: string,
): MaterialSecret {
  const { versions, ...rest } = stored.record;
  const json: StoredRecordJson = {
    ...rest,
    format: RECORD_FORMAT,
    // nonceCount: the random-nonce count the budget rotates by (engine/keys/nonce-budget.ts).
    versions: versions.map((v) =>
      v.nonceCount === undefined
        ? { version: v.version, createdTime: v.createdTime }
        : { version: v.version, createdTime: v.createdTime, nonceCount: v.nonceCount },
    ),
  };
  if (stored.ownerUid !== undefined) json.ownerUid = stored.ownerUid;
  if (stored.rotateHandled !== undefined) json.rotateHandled = stored.rotateHandled;
  if (stored.fingerprint !== undefined) json.fingerprint = stored.fingerprint;
  if (stored.usageSeen !== undefined) json.usageSeen = stored.usageSeen;
  if (stored.usageFoldedTime !== undefined) json.usageFoldedTime = stored.usageFoldedTime;
  if (stored.masterKeyChecks !== undefined) json.masterKeyChecks = stored.masterKeyChecks;
  const data: Record<string, string> = {
    [RECORD_ENTRY]: Buffer.from(JSON.stringify(json)).toString('base64'),
  };
  for (const v of versions) data[versionEntry(v.version)] = v.wrapped;
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: MATERIAL_SECRET_TYPE,
    metadata: {
      name: materialSecretName(rest.namespace, rest.name),
      namespace: operatorNamespace,
      labels: {
        'app.kubernetes.io/managed-by': MANAGED_BY,
        [MATERIAL_LABEL]: 'true',
        [KEY_NAMESPACE_LABEL]: rest.namespace,
        [KEY_NAME_LABEL]: rest.name,
      },
      ...(writtenBy === undefined ? {} : { annotations: { [WRITTEN_BY_ANNOTATION]: writtenBy } }),
    },
    data,
  };
}

/**
 * Reads a material Secret. Throws on a malformed one (a missing version, an unknown format):
 * the operator must never act, least of all erase, on a record it does not understand.
 */
export function decodeMaterialSecret(secret: Pick<MaterialSecret, 'data'>): StoredKey {
  const raw = secret.data?.[RECORD_ENTRY];
  if (raw === undefined) throw new Error('material Secret has no record.json');
  const json = JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as StoredRecordJson;
  if (json.format !== RECORD_FORMAT) throw new Error(`unknown material record format ${String(json.format)}`);
  const {
    format: _format,
    ownerUid,
    rotateHandled,
    fingerprint,
    usageSeen,
    usageFoldedTime,
    masterKeyChecks,
    versions,
    ...rest
  } = json;
  const record: KeyRecord = {
    ...rest,
    versions: versions.map((v) => {
      const wrapped = secret.data?.[versionEntry(v.version)];
      if (wrapped === undefined) throw new Error(`material Secret lacks version ${v.version}`);
      const out: KeyVersionRecord = { version: v.version, createdTime: v.createdTime, wrapped };
      if (typeof v.nonceCount === 'number' && Number.isSafeInteger(v.nonceCount) && v.nonceCount >= 0)
        out.nonceCount = v.nonceCount;
      return out;
    }),
  };
  const stored: StoredKey = { record };
  if (ownerUid !== undefined) stored.ownerUid = ownerUid;
  if (rotateHandled !== undefined) stored.rotateHandled = rotateHandled;
  if (fingerprint !== undefined) stored.fingerprint = fingerprint;
  if (usageSeen !== undefined) stored.usageSeen = usageSeen;
  if (usageFoldedTime !== undefined) stored.usageFoldedTime = usageFoldedTime;
  if (masterKeyChecks !== undefined) stored.masterKeyChecks = masterKeyChecks;
  return stored;
}
