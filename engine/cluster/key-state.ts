/**
 * Whether a key may be used in cluster mode, from what the engine sees (pure). The truth is the
 * material record the operator wrote plus the Key object: its status (what the operator last
 * reconciled) and, so that a disable or a deletion takes effect before the operator has caught
 * up, its spec and deletionTimestamp. The most restrictive of them wins; the engine never serves a
 * key that any of them says is not Enabled.
 */

import { KeywardError } from '../errors.ts';
import { checkUsable } from '../keys/lifecycle.ts';
import type { KeyState } from '../keys/model.ts';
import type { KeyResource } from '../kube/key-resource.ts';
import type { StoredKey } from '../kube/material-secret.ts';

/** The state the API shows and the engine enforces. */
export function effectiveState(key: KeyResource, stored: StoredKey): KeyState {
  const recordState = stored.record.state;
  if (recordState !== 'Enabled') return recordState;
  if (key.metadata.deletionTimestamp !== undefined && key.metadata.deletionTimestamp !== null) {
    return 'PendingDeletion';
  }
  const desired = key.spec?.state ?? 'Enabled';
  const observed = key.status?.state;
  if (desired === 'PendingDeletion' || observed === 'PendingDeletion') return 'PendingDeletion';
  if (desired === 'Disabled' || observed === 'Disabled') return 'Disabled';
  return 'Enabled';
}

/**
 * Throws KEY_STATE unless the Key and its material agree that it is Enabled and reconciled:
 * the material is owned by this very Key object (not a deleted namesake), has the Key's usage,
 * and the operator has written a status for it.
 */
export function checkUsableInCluster(key: KeyResource, stored: StoredKey): void {
  const notReady = (why: string): KeywardError =>
    new KeywardError('KEY_STATE', `the key is not ready: ${why}; the operator has not reconciled it yet`);
  if (stored.ownerUid === undefined || stored.ownerUid !== key.metadata.uid) {
    throw notReady('its material is not bound to this Key object');
  }
  if (stored.record.usage !== key.spec?.usage) throw notReady('its material has another usage');
  if (key.status?.state === undefined) throw notReady('it has no status');
  checkUsable({ state: effectiveState(key, stored) });
}
