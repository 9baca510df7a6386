/**
 * The nonce budget (PRODUCT.md §4.4). AES-256-GCM with random 96-bit nonces stays within NIST's
 * collision bound for about 2^32 encryptions per key; Keyward counts random-nonce encryptions per
 * key version and rotates the key when a version reaches its budget (default 2^30), even when
 * scheduled rotation is off. Convergent keys are exempt: their nonce is synthetic (a MAC of the
 * plaintext), so a repeat means the same plaintext, not a collision (docs/crypto.md).
 *
 * A count must never be under: an encryption the counter forgot could push a version past its
 * budget unseen. So a process reserves counts durably before it spends them, in blocks, and a
 * restart takes the durable reservation as spent: a crash between an encryption and any write can
 * only over-count, by at most one block per version. Pure: the standalone service persists
 * `KeyVersionRecord.nonceCount`; the cluster folds engines' usage reports into the same field
 * (phase 2) and both ask `evaluate` (lifecycle.ts), which calls `nonceBudgetReached` here.
 */
import type { KeyRecord, KeyUsage } from './model.ts';

/** The default budget per key version: 2^30 random-nonce encryptions. */
export const DEFAULT_NONCE_BUDGET = 2 ** 30;
/** The largest budget accepted: 2^32 (NIST SP 800-38D §8.3 for random 96-bit IVs). */
export const MAX_NONCE_BUDGET = 2 ** 32;
/** The largest reservation block: a crash over-counts by at most this much per version. */
const MAX_BLOCK = 2 ** 20;

/** True for keys whose encryptions draw random nonces: AES256 keys that are not convergent. */
export function countsNonces(key: { usage: KeyUsage; convergent: boolean }): boolean {
  return key.usage === 'AES256' && !key.convergent;
}

/** The reservation block for `budget`: budget/1024, within 1..2^20. */
export function reservationBlock(budget: number): number {
  return Math.min(MAX_BLOCK, Math.max(1, Math.floor(budget / 1024)));
}

/** A version's counter in a running process: `used` spent, `reserved` durably recorded. */
export interface NonceCounter {
  used: number;
  reserved: number;
}

/** What to do before `n` more random-nonce encryptions under a version. */
export type NonceDecision =
  /** Within the durable reservation: spend it (`used += n`) and encrypt. */
  | { action: 'proceed' }
  /** Record `reserved` durably first, then decide again. */
  | { action: 'reserve'; reserved: number }
  /** The version has no budget left for `n`: rotate the key, then use the new version. */
  | { action: 'rotate' };

/**
 * Decides for `n` encryptions under a version at `counter`, with `budget` per version. A version
 * that has encrypted nothing yet takes any `n` (a batch larger than a tiny test budget still goes
 * through once); otherwise the budget is never passed.
 */
export function decideNonces(counter: NonceCounter, n: number, budget: number): NonceDecision {
  const { used, reserved } = counter;
  if (used > 0 && used + n > budget) return { action: 'rotate' };
  if (used + n <= reserved) return { action: 'proceed' };
  // Reserve a block ahead, but not past the budget (nor less than this request needs).
  const wanted = used + n + reservationBlock(budget);
  return { action: 'reserve', reserved: Math.max(used + n, Math.min(wanted, budget)) };
}

/** The durable count of `version` (0 when none is recorded). */
export function nonceCount(key: Pick<KeyRecord, 'versions'>, version: number): number {
  return key.versions.find((v) => v.version === version)?.nonceCount ?? 0;
}

/**
 * True when the key's current version has reached its budget and must rotate: the decision that
 * `evaluate` applies to a stored record, in the standalone store and (phase 2) the operator.
 */
export function nonceBudgetReached(
  key: Pick<KeyRecord, 'usage' | 'convergent' | 'versions' | 'currentVersion'>,
  budget: number,
): boolean {
  return countsNonces(key) && nonceCount(key, key.currentVersion) >= budget;
}

/** `key` with the durable count of `version` set to `count` (pure). */
export function withNonceCount(key: KeyRecord, version: number, count: number): KeyRecord {
  return {
    ...key,
    versions: key.versions.map((v) => (v.version === version ? { ...v, nonceCount: count } : v)),
  };
}
