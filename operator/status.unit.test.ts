/** status.masterKeyVersion: the master-key version read from the blobs' header (issue #11). */
import { createSecretKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { wrapMaterial } from '../engine/crypto/wrap.ts';
import { createKeyRecord } from '../engine/keys/lifecycle.ts';
import { FINALIZER, type KeyResource } from '../engine/kube/key-resource.ts';
import type { StoredKey } from '../engine/kube/material-secret.ts';
import { buildStatus, sameStatus } from './status.ts';

const NOW = Date.UTC(2026, 10, 29, 10);
const spec = {
  usage: 'AES256',
  convergent: false,
  boundary: 'Global',
  rotation: { enabled: true, periodDays: 90 },
  memo: '',
} as const;
const key: KeyResource = {
  metadata: { name: 'orders', namespace: 'team-a', uid: 'u', generation: 1, finalizers: [FINALIZER] },
  spec: { ...spec, state: 'Enabled' },
};

/** A stored key whose versions are wrapped under the given master-key versions, in order. */
function storedUnder(...masterVersions: number[]): StoredKey {
  const blob = (version: number, m: number): string =>
    wrapMaterial(
      { current: m, key: () => createSecretKey(randomBytes(32)) },
      { store: 'team-a', name: 'orders', usage: 'AES256', version },
      randomBytes(32),
    ).toString('base64');
  const record = createKeyRecord(
    {
      namespace: 'team-a',
      name: 'orders',
      spec: { ...spec, rotation: { ...spec.rotation } },
      firstVersion: { version: 1, createdTime: NOW, wrapped: blob(1, masterVersions[0]!) },
    },
    NOW,
  );
  for (const [i, m] of masterVersions.slice(1).entries()) {
    record.versions.push({ ...record.versions[0]!, version: i + 2, wrapped: blob(i + 2, m) });
    record.currentVersion = i + 2;
  }
  return { record, ownerUid: 'u' } as StoredKey;
}

describe('status.masterKeyVersion', () => {
  it('is the master-key version wrapping the current key version; each version shows its own', () => {
    const status = buildStatus(key, storedUnder(1, 3), undefined, NOW);
    expect(status.masterKeyVersion).toBe(3);
    expect(status.versions?.map((v) => [v.version, v.masterKeyVersion])).toEqual([
      [1, 1],
      [2, 3],
    ]);
  });

  it('is left out for erased material, and an unchanged status is equal (no extra write)', () => {
    const stored = storedUnder(2, 2);
    stored.record.versions[0]!.wrapped = '';
    const a = buildStatus(key, stored, undefined, NOW);
    expect(a.versions?.[0]).not.toHaveProperty('masterKeyVersion');
    expect(a.masterKeyVersion).toBe(2);
    const b = buildStatus({ ...key, status: a }, stored, undefined, NOW + 5_000);
    expect(sameStatus(a, b)).toBe(true);
  });
});
