/**
 * Master keys (PRODUCT.md §4.3): the 32-byte AES-256 keys that wrap all key material at rest. A
 * store may hold material wrapped under several master-key versions while a master-key rotation
 * runs; `MasterKeys` gives the key of each version and the current one, which wraps new material.
 *
 * The key-check value proves that a master key is the one that wrapped a store's material, without
 * unwrapping anything and without revealing the key: kcv = HKDF-SHA256(ikm = master key, salt = "",
 * info = "keyward master-key check v1", 16 bytes), in hex. HKDF's output is a PRF of the key, so
 * the check value says nothing about the key, and the label keeps it apart from every other use of
 * the key (AES-GCM wrapping). Pure: no I/O.
 */
import { createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { KeywardError } from '../errors.ts';
import { hkdfSha256 } from './hkdf.ts';

/** Master key length: AES-256. */
export const MASTER_KEY_BYTES = 32;

/** The master-key versions a store can use; `current` wraps new material. */
export interface MasterKeys {
  /** The version that wraps new material (and re-wrapped material during a rotation). */
  readonly current: number;
  /** The key of `version`, or undefined when this process does not hold it. */
  key(version: number): KeyObject | undefined;
}

const CHECK_INFO = Buffer.from('keyward master-key check v1', 'latin1');
const CHECK_BYTES = 16;

/** Checks a master-key version number: an integer 1..2^32-1. */
export function isMasterKeyVersion(version: unknown): version is number {
  return Number.isInteger(version) && (version as number) >= 1 && (version as number) <= 0xffffffff;
}

/** The key-check value of raw master-key bytes (see the header): 32 hex digits. */
export function masterKeyCheckValue(raw: Uint8Array): string {
  if (raw.length !== MASTER_KEY_BYTES) throw new KeywardError('INTERNAL', 'a master key is 32 bytes');
  const okm = hkdfSha256(raw, undefined, CHECK_INFO, CHECK_BYTES);
  try {
    return okm.toString('hex');
  } finally {
    okm.fill(0);
  }
}

/** Compares two check values in constant time (for equal lengths). */
export function sameCheckValue(a: string, b: string): boolean {
  const x = Buffer.from(a, 'latin1');
  const y = Buffer.from(b, 'latin1');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** MasterKeys over raw versions (copied into KeyObjects; the caller zeroes its buffers). */
export function masterKeysFrom(raw: ReadonlyMap<number, Uint8Array>, current: number): MasterKeys {
  const keys = new Map<number, KeyObject>();
  for (const [version, bytes] of raw) {
    if (!isMasterKeyVersion(version) || bytes.length !== MASTER_KEY_BYTES) {
      throw new KeywardError('INTERNAL', 'a master-key version is malformed');
    }
    keys.set(version, createSecretKey(bytes));
  }
  if (!keys.has(current)) throw new KeywardError('INTERNAL', `master-key version ${current} is not held`);
  return { current, key: (version) => keys.get(version) };
}

/** A single master key as version 1: what the cluster's master-key Secret holds today. */
export function singleMasterKey(key: KeyObject): MasterKeys {
  return { current: 1, key: (version) => (version === 1 ? key : undefined) };
}

/** Accepts either form: a bare KeyObject is master-key version 1. */
export function asMasterKeys(master: KeyObject | MasterKeys): MasterKeys {
  return 'current' in master && typeof master.current === 'number'
    ? master
    : singleMasterKey(master as KeyObject);
}
