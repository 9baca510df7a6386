/**
 * The checkpoint key (docs/audit.md "Checkpoints"): HKDF-SHA256 of the master key with a label of
 * its own, so it is independent of every other use of the master key, and a public key id derived
 * the same way with another label, so a verifier knows which master key keyed a checkpoint (after
 * a master-key rotation it is given several) without learning anything about it.
 *
 *   K_audit = HKDF-SHA256(ikm = master key, salt = "", info = "keyward audit checkpoint v1", 32)
 *   key id  = hex(HKDF-SHA256(ikm = master key, salt = "", info = "keyward audit key id v1", 8))
 *   mac     = BLAKE3-keyed(K_audit, prev ‖ canonical bytes of the checkpoint without `mac`)
 */
import { hkdfSync, type KeyObject } from 'node:crypto';
import { createBLAKE3, type IHasher } from 'hash-wasm';

const EMPTY = Buffer.alloc(0);
const KEY_INFO = Buffer.from('keyward audit checkpoint v1');
const ID_INFO = Buffer.from('keyward audit key id v1');

/** A derived checkpoint key: its id (public) and the keyed BLAKE3 MAC under it. */
export interface CheckpointKey {
  /** 16 hex characters naming the master key; says nothing about it. */
  readonly id: string;
  /** hex(BLAKE3-keyed(K_audit, prev ‖ canonical)). */
  mac(prevHex: string, canonical: string): string;
}

/** The checkpoint key's bytes and the id that names its master key. */
export interface CheckpointKeyMaterial {
  key: Uint8Array;
  id: string;
}

/** Master key material: a secret KeyObject (the engine's) or its 32 raw bytes (the verifier's). */
export type MasterKeyInput = KeyObject | Uint8Array;

/**
 * The checkpoint key's bytes and id for `master`, without the MAC: what a master-key rotation
 * keeps of a retired master key so that checkpoints made under it can still be verified, though
 * the key itself is erased (HKDF is one-way: these bytes unwrap no material).
 */
export function checkpointKeyMaterial(master: MasterKeyInput): CheckpointKeyMaterial {
  return {
    key: new Uint8Array(hkdfSync('sha256', master, EMPTY, KEY_INFO, 32)),
    id: Buffer.from(hkdfSync('sha256', master, EMPTY, ID_INFO, 8)).toString('hex'),
  };
}

/**
 * `source`'s current master key as checkpoint-key material, derived again only when the master
 * key changes (the same object means the same key): what both the log and the audit thread read
 * once per batch.
 */
export function checkpointKeyMaterialOf(
  source: () => MasterKeyInput | undefined,
): () => CheckpointKeyMaterial | undefined {
  let from: MasterKeyInput | undefined;
  let material: CheckpointKeyMaterial | undefined;
  return () => {
    const master = source();
    if (master !== from) {
      from = master;
      material = master === undefined ? undefined : checkpointKeyMaterial(master);
    }
    return material;
  };
}

/** Derives the checkpoint key of `master` (see the module comment). */
export async function deriveCheckpointKey(master: MasterKeyInput): Promise<CheckpointKey> {
  const { key, id } = checkpointKeyMaterial(master);
  return checkpointKeyFrom(key, id);
}

/** The checkpoint key from its bytes and id (as `checkpointKeyMaterial` gives them). */
export async function checkpointKeyFrom(key: Uint8Array, id: string): Promise<CheckpointKey> {
  // hash-wasm keeps a view of the key and writes it into its memory on every init(), so this
  // buffer lives as long as the hasher (it is the hasher's own, never logged or exported).
  const hasher: IHasher = await createBLAKE3(256, key);
  return {
    id,
    mac(prevHex, canonical) {
      hasher.init();
      hasher.update(Buffer.from(prevHex, 'hex'));
      hasher.update(canonical);
      return hasher.digest('hex');
    },
  };
}
