/**
 * The master-key Secret: written by the operator, read by the operator and every engine replica.
 * One place for its name, entries and parsing, and for the check that a material Secret was
 * wrapped under the master keys this Secret holds.
 *
 * `data` entries:
 * - `master.key`: master-key version 1 (32 bytes), the only entry before master-key rotation;
 * - `master.key.v<N>`: master-key version N ≥ 2, added by a cluster master-key rotation;
 * - `current`: the version that wraps new material (decimal); absent: the highest version held;
 * - `audit.key.v<N>`: kept when master-key version N is retired: its audit checkpoint key (32
 *   bytes) ‖ its key id (8 bytes), both HKDF of the retired key (engine/audit/checkpoint-key.ts),
 *   so `keyward audit verify --master-key-secret` still verifies checkpoints made under N. They
 *   unwrap nothing; like the standalone master-key file format 2.
 *
 * Each material Secret records the key-check value (engine/crypto/master-keys.ts) of every
 * master-key version its blobs are wrapped under (`StoredKey.masterKeyChecks`). A master-key
 * Secret replaced by another (deleted and re-created, restored from the wrong backup) is then
 * detected without unwrapping anything: its check values differ. Check values reveal nothing
 * about the keys; errors and messages name versions and Secrets, never bytes.
 */
import { createSecretKey, type KeyObject } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { checkpointKeyMaterial } from '../audit/checkpoint-key.ts';
import {
  isMasterKeyVersion,
  MASTER_KEY_BYTES,
  type MasterKeys,
  masterKeyCheckValue,
  sameCheckValue,
} from '../crypto/master-keys.ts';
import { unwrapMaterial, wrapMaterial, wrappedMasterKeyVersion } from '../crypto/wrap.ts';
import type { StoredKey } from './material-secret.ts';

/** Default name of the master-key Secret (in the operator's namespace). */
export const MASTER_KEY_SECRET = 'keyward-master-key';
/** `data` entry holding master-key version 1. */
export const MASTER_KEY_ENTRY = 'master.key';
/** `data` entry naming the current master-key version. */
export const MASTER_KEY_CURRENT_ENTRY = 'current';

/** The `data` entry of master-key version `version`. */
export function masterKeyEntry(version: number): string {
  return version === 1 ? MASTER_KEY_ENTRY : `${MASTER_KEY_ENTRY}.v${version}`;
}

/** What a master-key Secret holds: the keys, their check values, and its resourceVersion. */
export interface MasterKeySet extends MasterKeys {
  /** Master-key version → key-check value (32 hex digits). */
  readonly checks: ReadonlyMap<number, string>;
  /** The versions held, ascending. */
  readonly versions: readonly number[];
  /** The Secret's resourceVersion when read (a change means the set must be read again). */
  readonly resourceVersion: string | undefined;
}

/** Parses a master-key Secret; the error names entries, never bytes. */
export function masterKeysFromSecret(secret: V1Secret): MasterKeySet {
  const keys = new Map<number, KeyObject>();
  const checks = new Map<number, string>();
  for (const [entry, value] of Object.entries(secret.data ?? {})) {
    const version = entryVersion(entry);
    if (version === undefined) continue;
    const raw = Buffer.from(value, 'base64');
    try {
      if (raw.length !== MASTER_KEY_BYTES) {
        throw new Error(`the master-key Secret must hold 32 bytes in data["${entry}"]`);
      }
      keys.set(version, createSecretKey(raw));
      checks.set(version, masterKeyCheckValue(raw));
    } finally {
      raw.fill(0);
    }
  }
  if (keys.size === 0) {
    throw new Error(`the master-key Secret must hold 32 bytes in data["${MASTER_KEY_ENTRY}"]`);
  }
  const versions = [...keys.keys()].sort((a, b) => a - b);
  const named = secret.data?.[MASTER_KEY_CURRENT_ENTRY];
  const current =
    named === undefined ? versions.at(-1)! : Number(Buffer.from(named, 'base64').toString('latin1').trim());
  if (!keys.has(current)) {
    throw new Error(`the master-key Secret names current version ${String(current)}, which it does not hold`);
  }
  return {
    current,
    key: (version) => keys.get(version),
    checks,
    versions,
    resourceVersion: secret.metadata?.resourceVersion,
  };
}

/** The current master key of the Secret (what the audit checkpoints and older callers use). */
export function masterKeyFromSecret(secret: V1Secret): KeyObject {
  const set = masterKeysFromSecret(secret);
  return set.key(set.current)!;
}

function entryVersion(entry: string): number | undefined {
  if (entry === MASTER_KEY_ENTRY) return 1;
  const m = /^master\.key\.v([0-9]{1,10})$/.exec(entry);
  if (m === null) return undefined;
  const version = Number(m[1]);
  return isMasterKeyVersion(version) && version >= 2 ? version : undefined;
}

/** The master-key versions the blobs of `stored` are wrapped under (unreadable blobs: none). */
export function wrappingVersions(stored: StoredKey): Set<number> {
  const out = new Set<number>();
  for (const v of stored.record.versions) {
    if (v.wrapped === '') continue;
    const m = wrappedMasterKeyVersion(v.wrapped);
    if (m !== undefined) out.add(m);
  }
  return out;
}

/**
 * Why the material of `stored` cannot be used with the master keys `held` (undefined: it can).
 * Pure. Where the Secret records a check value for a master-key version, the held key must have
 * the same one; a material Secret written before check values existed is checked by unwrapping
 * one blob per master-key version instead. `secretName` names the master-key Secret in messages.
 */
export function masterKeyMismatch(
  stored: StoredKey,
  held: MasterKeySet | undefined,
  secretName: string,
): string | undefined {
  const advice =
    `restore the master-key Secret ${secretName} that wrapped it (from a backup); ` +
    'nothing was overwritten, and the key serves again once the right master key is back';
  if (held === undefined) {
    return `the master-key Secret ${secretName} is missing, so this key's material cannot be unwrapped: ${advice}`;
  }
  const recorded = stored.masterKeyChecks ?? {};
  const r = stored.record;
  for (const m of wrappingVersions(stored)) {
    const check = recorded[String(m)];
    const mine = held.checks.get(m);
    if (mine === undefined) {
      return `this key's material is wrapped under master-key version ${m}, which the master-key Secret ${secretName} does not hold: ${advice}`;
    }
    if (check !== undefined) {
      if (!sameCheckValue(check, mine)) {
        return `master-key version ${m} in ${secretName} does not match the one that wrapped this key's material (check values differ): ${advice}`;
      }
      continue;
    }
    // Written before check values: unwrap one blob under m (the result is zeroed at once).
    const v = r.versions.find((x) => x.wrapped !== '' && wrappedMasterKeyVersion(x.wrapped) === m);
    if (v === undefined) continue;
    try {
      unwrapMaterial(
        held,
        { store: r.namespace, name: r.name, usage: r.usage, version: v.version },
        Buffer.from(v.wrapped, 'base64'),
      ).fill(0);
    } catch {
      return `master-key version ${m} in ${secretName} does not unwrap this key's material: ${advice}`;
    }
  }
  return undefined;
}

/**
 * The check values to record in `stored` for the master-key versions its blobs use: recorded
 * values are kept (a write never replaces the check of material it did not wrap), missing ones
 * are taken from `held`, and versions no blob uses any more are dropped.
 */
export function recordChecks(stored: StoredKey, held: MasterKeySet): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of wrappingVersions(stored)) {
    const check = stored.masterKeyChecks?.[String(m)] ?? held.checks.get(m);
    if (check !== undefined) out[String(m)] = check;
  }
  return out;
}

/** Annotation on the master-key Secret asking for a master-key rotation: any new value. */
export const ROTATE_MASTER_KEY_ANNOTATION = 'keyward.io/rotate-master-key';
/** Annotation recording the last rotation request carried out (its value). */
export const MASTER_KEY_ROTATED_ANNOTATION = 'keyward.io/master-key-rotated';

/**
 * The Secret's `data` after adding master-key version `held.versions.at(-1) + 1` (from `raw`, 32
 * bytes) and making it current. Pure; the caller writes it conditionally on resourceVersion.
 */
export function withNewMasterKeyVersion(
  data: Record<string, string>,
  held: MasterKeySet,
  raw: Uint8Array,
): { data: Record<string, string>; version: number } {
  const version = (held.versions.at(-1) ?? 0) + 1;
  return {
    version,
    data: {
      ...data,
      [masterKeyEntry(version)]: Buffer.from(raw).toString('base64'),
      [MASTER_KEY_CURRENT_ENTRY]: Buffer.from(String(version)).toString('base64'),
    },
  };
}

/** The `data` entry keeping the audit checkpoint key of retired master-key version `version`. */
export function auditKeyEntry(version: number): string {
  return `${AUDIT_KEY_PREFIX}${version}`;
}
const AUDIT_KEY_PREFIX = 'audit.key.v';
const AUDIT_KEY_BYTES = 32;
const AUDIT_ID_BYTES = 8;

/** The audit checkpoint key kept for a retired master-key version. */
export interface RetiredAuditKey {
  version: number;
  /** 32 bytes (a copy: zero it after use). */
  key: Buffer;
  /** 16 hex characters, the id its checkpoints carry. */
  id: string;
}

/**
 * The audit checkpoint keys a master-key Secret keeps for retired versions (`audit.key.v<N>`).
 * Throws on a malformed entry, naming it, never bytes.
 */
export function retiredAuditKeysFromSecret(secret: V1Secret): RetiredAuditKey[] {
  const out: RetiredAuditKey[] = [];
  for (const [entry, value] of Object.entries(secret.data ?? {})) {
    if (!entry.startsWith(AUDIT_KEY_PREFIX)) continue;
    const version = Number(entry.slice(AUDIT_KEY_PREFIX.length));
    const raw = Buffer.from(value, 'base64');
    if (!/^[0-9]{1,10}$/.test(entry.slice(AUDIT_KEY_PREFIX.length)) || !isMasterKeyVersion(version)) {
      raw.fill(0);
      throw new Error(`the master-key Secret has a malformed entry data["${entry}"]`);
    }
    if (raw.length !== AUDIT_KEY_BYTES + AUDIT_ID_BYTES) {
      raw.fill(0);
      throw new Error(`the master-key Secret must hold 40 bytes in data["${entry}"]`);
    }
    out.push({
      version,
      key: Buffer.from(raw.subarray(0, AUDIT_KEY_BYTES)),
      id: raw.subarray(AUDIT_KEY_BYTES).toString('hex'),
    });
    raw.fill(0);
  }
  return out.sort((a, b) => a.version - b.version);
}

/**
 * The Secret's `data` without the master-key versions in `retire` (never the current one), each
 * replaced by its audit checkpoint key (`audit.key.v<N>`, see the module comment): the key
 * itself is erased, checkpoints made under it stay verifiable. Pure.
 */
export function withoutMasterKeyVersions(
  data: Record<string, string>,
  held: MasterKeySet,
  retire: ReadonlySet<number>,
): Record<string, string> {
  const out = { ...data };
  for (const v of retire) {
    if (v === held.current) continue;
    const master = held.key(v);
    if (master !== undefined) {
      const { key, id } = checkpointKeyMaterial(master);
      const kept = Buffer.concat([key, Buffer.from(id, 'hex')]);
      out[auditKeyEntry(v)] = kept.toString('base64');
      kept.fill(0);
      key.fill(0);
    }
    delete out[masterKeyEntry(v)];
  }
  return out;
}

/** The material `stored` re-wrapped under the current master-key version of `held` (pure). */
export function rewrapStored(stored: StoredKey, held: MasterKeySet): StoredKey {
  const r = stored.record;
  const versions = r.versions.map((v) => {
    if (v.wrapped === '' || wrappedMasterKeyVersion(v.wrapped) === held.current) return v;
    const binding = { store: r.namespace, name: r.name, usage: r.usage, version: v.version };
    const material = unwrapMaterial(held, binding, Buffer.from(v.wrapped, 'base64'));
    try {
      return { ...v, wrapped: wrapMaterial(held, binding, material).toString('base64') };
    } finally {
      material.fill(0);
    }
  });
  const out: StoredKey = { ...stored, record: { ...r, versions } };
  out.masterKeyChecks = recordChecks({ ...out, masterKeyChecks: {} }, held);
  return out;
}

/** True when some blob of `stored` is wrapped under a master-key version other than the current. */
export function needsRewrap(stored: StoredKey, held: MasterKeySet): boolean {
  for (const m of wrappingVersions(stored)) if (m !== held.current) return true;
  return false;
}
