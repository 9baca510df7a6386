/**
 * The standalone service's random-nonce counters of one key (nonce-budget.ts has the rules): what
 * this process spent per version, against the reservation recorded in the key's record. `spend`
 * is on the crypto hot path: within the reservation it only adds in memory and returns the ring
 * as is; past it, it has the owner record a new reservation (one write for many callers), or
 * rotate the key when the version's budget is spent, and returns the ring to encrypt with.
 */
import type { KeyRing } from '../engine.ts';
import type { KeyRecord } from '../keys/model.ts';
import { decideNonces, type NonceCounter, nonceCount } from '../keys/nonce-budget.ts';

/** What the ledger needs from the service that owns the key. */
export interface NonceLedgerOwner {
  /** Random-nonce encryptions per version. */
  readonly budget: number;
  /** The key's record as stored now. */
  record(): KeyRecord;
  /**
   * Runs `task` under the key's lock (it may see another caller's work done already). The task
   * records reservations with `reserve` and rotates with `rotate`.
   */
  locked(task: () => Promise<void>): Promise<void>;
  /** Records `count` as the durable reservation of `version` (an atomic store write). */
  reserve(version: number, count: number): Promise<void>;
  /** Rotates the key because `version` spent its budget (a `nonce-budget` rotation). */
  rotate(version: number): Promise<void>;
  /** The ring to use now: the key must still be usable (throws KEY_STATE otherwise). */
  ring(): KeyRing;
  /**
   * What others counted under `version` outside this record (a `kms-plugin --data-dir` beside
   * the server: engine/kms/nonce-file.ts), as last read; added to every decision.
   */
  external?(version: number): number;
}

/** The decision for `count` more under `version`, with what others counted added. */
function decide(owner: NonceLedgerOwner, counter: NonceCounter, version: number, count: number) {
  const ext = owner.external?.(version) ?? 0;
  const decision = decideNonces(
    { used: counter.used + ext, reserved: counter.reserved + ext },
    count,
    owner.budget,
  );
  return decision.action === 'reserve' ? { ...decision, reserved: decision.reserved - ext } : decision;
}

/** See the module comment. One per key incarnation. */
export class NonceLedger {
  readonly #counters = new Map<number, NonceCounter>();

  /** The counter of `version`; a fresh process takes the durable reservation as spent. */
  counter(record: KeyRecord, version: number): NonceCounter {
    let counter = this.#counters.get(version);
    if (counter === undefined) {
      // A crash can only over-count: whatever was reserved may have been used.
      const reserved = nonceCount(record, version);
      counter = { used: reserved, reserved };
      this.#counters.set(version, counter);
    }
    return counter;
  }

  /** What this process spent per version it encrypted under. */
  spent(): ReadonlyMap<number, NonceCounter> {
    return this.#counters;
  }

  /** Counts `count` encryptions under `ring`'s current version before they happen. */
  spend(owner: NonceLedgerOwner, ring: KeyRing, count: number): KeyRing | Promise<KeyRing> {
    const counter = this.counter(owner.record(), ring.currentVersion);
    if (decide(owner, counter, ring.currentVersion, count).action !== 'proceed')
      return this.#slow(owner, ring, count);
    counter.used += count;
    return ring;
  }

  /**
   * Gives back `count` encryptions spent under `version` that did not happen. Only ever lowers the
   * in-memory count to what really ran; the durable reservation stays (an over-count is fine).
   */
  refund(version: number, count: number): void {
    const counter = this.#counters.get(version);
    if (counter !== undefined) counter.used = Math.max(0, counter.used - count);
  }

  async #slow(owner: NonceLedgerOwner, first: KeyRing, count: number): Promise<KeyRing> {
    let ring = first;
    for (;;) {
      const version = ring.currentVersion;
      if (decide(owner, this.counter(owner.record(), version), version, count).action === 'proceed') {
        this.counter(owner.record(), version).used += count;
        return ring;
      }
      await owner.locked(async () => {
        // Decided again under the lock: a concurrent caller may have reserved or rotated already.
        const counter = this.counter(owner.record(), version);
        const decision = decide(owner, counter, version, count);
        if (decision.action === 'reserve') {
          await owner.reserve(version, decision.reserved);
          counter.reserved = decision.reserved;
        } else if (decision.action === 'rotate' && owner.record().currentVersion === version) {
          await owner.rotate(version);
        }
      });
      // After a rotation (ours or another caller's) encrypt under the new current version.
      ring = owner.ring();
    }
  }
}
