/**
 * The master-key Secret: written once by the operator, read by the operator and every engine
 * replica. One place for its name, entry and parsing.
 */
import { createSecretKey, type KeyObject } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';

/** Default name of the master-key Secret (in the operator's namespace). */
export const MASTER_KEY_SECRET = 'keyward-master-key';
/** `data` entry holding the 32-byte master key. */
export const MASTER_KEY_ENTRY = 'master.key';

/** The 32-byte master key of the Secret; the error names the entry, never its bytes. */
export function masterKeyFromSecret(secret: V1Secret): KeyObject {
  const value = secret.data?.[MASTER_KEY_ENTRY];
  const raw = value === undefined ? undefined : Buffer.from(value, 'base64');
  if (raw === undefined || raw.length !== 32) {
    throw new Error(`the master-key Secret must hold 32 bytes in data["${MASTER_KEY_ENTRY}"]`);
  }
  const key = createSecretKey(raw);
  raw.fill(0);
  return key;
}
