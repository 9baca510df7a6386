/** The API view of a stored key (PRODUCT.md §6): ISO times, no material. */
import { wrappedMasterKeyVersion } from '../crypto/wrap.ts';
import { nextRotationTime } from '../keys/lifecycle.ts';
import type { KeyRecord } from '../keys/model.ts';
import type { KeyView } from './backend.ts';

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/**
 * Builds the view of `record`; `fingerprint` covers the current version (null when its material
 * cannot be unwrapped). Each version shows the master-key version its blob names.
 */
export function toKeyView(record: KeyRecord, fingerprint: string | null): KeyView {
  return {
    name: record.name,
    namespace: record.namespace,
    usage: record.usage,
    convergent: record.convergent,
    boundary: record.boundary,
    region: record.region ?? null,
    rotation: { enabled: record.rotation.enabled, periodDays: record.rotation.periodDays },
    memo: record.memo,
    state: record.state,
    currentVersion: record.currentVersion,
    versions: record.versions.map((v) => {
      const out: KeyView['versions'][number] = {
        version: v.version,
        createdTime: iso(v.createdTime)!,
        masterKeyVersion: wrappedMasterKeyVersion(v.wrapped) ?? null,
      };
      if (v.nonceCount !== undefined) out.nonceCount = v.nonceCount;
      return out;
    }),
    createdTime: iso(record.createdTime)!,
    nextRotationTime: iso(nextRotationTime(record)),
    deletionScheduledTime: iso(record.deletionScheduledTime),
    fingerprint,
    lastUsedTime: iso(record.lastUsedTime),
    operationCounts: { ...record.operationCounts },
  };
}
