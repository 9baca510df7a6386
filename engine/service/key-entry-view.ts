/**
 * The API view of one of the standalone service's keys: the stored record (view.ts) with what the
 * process knows beyond it merged in: usage not yet flushed, random nonces spent and counted by a
 * kms-plugin, and the fingerprint of the current version.
 */
import { fingerprint } from '../crypto/fingerprint.ts';
import { KeywardError } from '../errors.ts';
import { nonceCount, withNonceCount } from '../keys/nonce-budget.ts';
import type { KeyView } from './backend.ts';
import { indexKey, type KeyEntry } from './key-entries.ts';
import { type UsageRecorder, withUsage } from './usage.ts';
import { toKeyView } from './view.ts';

/**
 * The view, with usage not yet flushed merged in and the fingerprint of the current version.
 * `usage` is the service's recorder (read after the fingerprint, so the view has every use so far).
 */
export async function keyEntryView(entry: KeyEntry, usage: UsageRecorder): Promise<KeyView> {
  const record = entry.record;
  const id = indexKey(record.namespace, record.name);
  let fp = entry.fingerprint;
  let materialError = entry.materialError;
  if (fp === undefined || fp.version !== record.currentVersion) {
    try {
      const material = entry.cache.material(record.currentVersion);
      if (material === undefined)
        throw new KeywardError('INTERNAL', 'the current key version is unavailable');
      try {
        fp = { version: record.currentVersion, value: await fingerprint(record.usage, material) };
      } finally {
        material.fill(0);
      }
      entry.fingerprint = fp;
    } catch (err) {
      // A key whose material cannot be unwrapped is still listed, with the reason.
      fp = undefined;
      materialError ??= (err as Error).message;
    }
  }
  // Versions this process encrypted under show what it spent, not the unspent reservation ahead.
  let shown = withUsage(record, usage.peek(id));
  for (const [version, counter] of entry.nonces.spent()) shown = withNonceCount(shown, version, counter.used);
  // Plus what a kms-plugin on this data dir counted.
  for (const [version, n] of entry.external ?? [])
    if (shown.versions.some((v) => v.version === version))
      shown = withNonceCount(shown, version, nonceCount(shown, version) + n);
  const view = toKeyView(shown, fp?.value ?? null);
  if (materialError !== undefined) view.materialError = materialError;
  return view;
}
