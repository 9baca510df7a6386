/**
 * The pure projection of a Key's stored material into its `status` (PRODUCT.md §8). All
 * conditions go through `setConditions`, so their lastTransitionTime only moves when their
 * status does. Nothing secret is read or written here: of the wrapped material only the
 * master-key version in its header is read (`masterKeyVersion`).
 */

import { wrappedMasterKeyVersion } from '../engine/crypto/wrap.ts';
import { nextRotationTime } from '../engine/keys/lifecycle.ts';
import type { KeyResource, KeyResourceStatus, KeyStatusVersion } from '../engine/kube/key-resource.ts';
import { toKubeTime } from '../engine/kube/key-resource.ts';
import type { StoredKey } from '../engine/kube/material-secret.ts';
import { setConditions } from './conditions.ts';
import type { MaterialConflict } from './plan.ts';

/**
 * The status of `key` given its material after reconciliation (`stored`), or the conflict that
 * keeps it from having any. `now` stamps changed conditions.
 */
export function buildStatus(
  key: KeyResource,
  stored: StoredKey | undefined,
  conflict: MaterialConflict | undefined,
  now: number,
): KeyResourceStatus {
  const generation = key.metadata.generation;
  const previous = key.status?.conditions;
  const g = generation === undefined ? {} : { observedGeneration: generation };
  if (conflict !== undefined || stored === undefined) {
    const reason = conflict?.reason ?? 'MaterialMissing';
    const message = conflict?.message ?? 'the key has no material yet';
    const status: KeyResourceStatus = {
      conditions: setConditions(
        previous,
        [
          { type: 'Ready', status: 'False', reason, message, ...g },
          { type: 'Enabled', status: 'False', reason, message: 'the key has no usable material', ...g },
          {
            type: 'PendingDeletion',
            status: 'False',
            reason: 'NotScheduled',
            message: 'no deletion is scheduled',
            ...g,
          },
        ],
        now,
      ),
    };
    if (generation !== undefined) status.observedGeneration = generation;
    return status;
  }
  const r = stored.record;
  const enabled = r.state === 'Enabled';
  const pending = r.state === 'PendingDeletion';
  const scheduled = r.deletionScheduledTime === undefined ? undefined : toKubeTime(r.deletionScheduledTime);
  const status: KeyResourceStatus = {
    conditions: setConditions(
      previous,
      [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Reconciled',
          message: `material is stored; version ${r.currentVersion} is current`,
          ...g,
        },
        {
          type: 'Enabled',
          status: enabled ? 'True' : 'False',
          reason: r.state,
          message: enabled
            ? 'the key can be used'
            : pending
              ? 'the key is pending deletion and refuses every operation'
              : 'the key is disabled and refuses every operation',
          ...g,
        },
        pending
          ? {
              type: 'PendingDeletion',
              status: 'True',
              reason: 'DeletionScheduled',
              message: `the material will be erased at ${scheduled}`,
              ...g,
            }
          : {
              type: 'PendingDeletion',
              status: 'False',
              reason: 'NotScheduled',
              message: 'no deletion is scheduled',
              ...g,
            },
      ],
      now,
    ),
    state: r.state,
    currentVersion: r.currentVersion,
    versions: r.versions.map((v) => {
      const m = v.wrapped === '' ? undefined : wrappedMasterKeyVersion(v.wrapped);
      const out: KeyStatusVersion = { version: v.version, createdTime: toKubeTime(v.createdTime) };
      if (m !== undefined) out.masterKeyVersion = m;
      return out;
    }),
    createdTime: toKubeTime(r.createdTime),
  };
  const wrapping = status.versions?.find((v) => v.version === r.currentVersion)?.masterKeyVersion;
  if (wrapping !== undefined) status.masterKeyVersion = wrapping;
  const next = nextRotationTime(r);
  if (next !== undefined) status.nextRotationTime = toKubeTime(next);
  if (scheduled !== undefined) status.deletionScheduledTime = scheduled;
  if (stored.fingerprint !== undefined) status.fingerprint = stored.fingerprint;
  if (r.lastUsedTime !== undefined) status.lastUsedTime = toKubeTime(r.lastUsedTime);
  if (Object.keys(r.operationCounts).length > 0) status.operationCounts = { ...r.operationCounts };
  if (generation !== undefined) status.observedGeneration = generation;
  if (stored.rotateHandled !== undefined) status.rotateHandled = stored.rotateHandled;
  return status;
}

/**
 * True when two statuses are equal as JSON (so an unchanged status is not written again).
 * `reconciledBy` is left out: a new leader does not rewrite every status just to sign it.
 */
export function sameStatus(a: KeyResourceStatus | undefined, b: KeyResourceStatus | undefined): boolean {
  const { reconciledBy: _a, ...x } = a ?? {};
  const { reconciledBy: _b, ...y } = b ?? {};
  return canonical(x) === canonical(y);
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([x], [y]) => x.localeCompare(y)),
        )
      : v,
  );
}
