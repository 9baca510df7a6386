/**
 * The standalone service's side of random-nonce counting (keys/nonce-budget.ts has the rules,
 * nonce-ledger.ts each key's counters): what a key's ledger may do (record a reservation in the
 * store, rotate the key at its budget), the counts a kms-plugin on the same data dir made, and the
 * unspent reservations given back at a clean stop.
 */
import type { Logger } from 'pino';
import type { KeyRing } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { checkUsable, type LifecycleOptions } from '../keys/lifecycle.ts';
import type { KeyRecord } from '../keys/model.ts';
import { countsNonces, nonceCount, withNonceCount } from '../keys/nonce-budget.ts';
import { errnoCode } from '../store/errno.ts';
import { indexKey, type KeyEntries, type KeyEntry } from './key-entries.ts';
import type { LifecycleWork } from './lifecycle-work.ts';
import type { NonceLedgerOwner } from './nonce-ledger.ts';

/**
 * Reads the random-nonce counts made outside this server per version of `record`'s key (a
 * `kms-plugin --data-dir` on the same data dir: engine/kms/nonce-file.ts).
 */
export type ExternalNonceCounts = (record: KeyRecord) => Promise<ReadonlyMap<number, number>>;

/** What `KeyNonces` works on and with. */
export interface KeyNoncesOptions {
  entries: KeyEntries;
  /** Rotates a key at its nonce budget. */
  work: LifecycleWork;
  /** The service's lifecycle options (`nonceBudget` is always set). */
  lifecycle: LifecycleOptions;
  log: Logger;
  external: ExternalNonceCounts | undefined;
}

/** See the module comment. */
export class KeyNonces {
  readonly #entries: KeyEntries;
  readonly #work: LifecycleWork;
  readonly #lifecycle: LifecycleOptions;
  readonly #log: Logger;
  readonly #externalNonces: ExternalNonceCounts | undefined;
  readonly #owners = new WeakMap<KeyEntry, NonceLedgerOwner>();

  constructor(opts: KeyNoncesOptions) {
    this.#entries = opts.entries;
    this.#work = opts.work;
    this.#lifecycle = opts.lifecycle;
    this.#log = opts.log;
    this.#externalNonces = opts.external;
  }

  /** Counts `count` random-nonce encryptions under `ring` of `entry`'s key (NonceLedger.spend). */
  spend(entry: KeyEntry, ring: KeyRing, count: number): KeyRing | Promise<KeyRing> {
    let owner = this.#owners.get(entry);
    if (owner === undefined) {
      owner = this.#nonceOwner(entry);
      this.#owners.set(entry, owner);
    }
    return entry.nonces.spend(owner, ring, count);
  }

  /**
   * What `entry`'s ledger may ask of the service. Made once per entry (`spend` runs for every
   * encryption): each member reads the entry when called, so it never goes stale.
   */
  #nonceOwner(entry: KeyEntry): NonceLedgerOwner {
    return {
      budget: this.#lifecycle.nonceBudget!,
      record: () => entry.record,
      locked: (task) => this.#entries.locked(entry, () => task()),
      reserve: async (version, count) => {
        try {
          await this.#entries.save(entry, withNonceCount(entry.record, version, count));
        } catch (err) {
          // Never encrypt uncounted: with no durable reservation the encryption waits for a store
          // that can write (a full disk, say). Decryption is unaffected.
          this.#log.error(
            { err, key: indexKey(entry.record.namespace, entry.record.name) },
            'nonce count not recorded',
          );
          throw new KeywardError(
            'UNAVAILABLE',
            `the key's nonce count cannot be recorded (${errnoCode(err)}); encryption resumes once the store can write`,
            { retryAfterSeconds: 1 },
          );
        }
      },
      rotate: async (version) => {
        checkUsable(entry.record);
        await this.#work.addVersion(entry, {
          type: 'add-version',
          version: version + 1,
          reason: 'nonce-budget',
        });
      },
      ring: () => {
        checkUsable(entry.record);
        return entry.cache.ring();
      },
      external: (version) => entry.external?.get(version) ?? 0,
    };
  }

  /**
   * Reads the counts made outside this server (`externalNonces`) and rotates every key whose
   * current version reached its budget with them: the plugin encrypts, this server rotates.
   */
  async checkExternal(): Promise<void> {
    const read = this.#externalNonces;
    if (read === undefined) return;
    for (const entry of [...this.#entries.values()]) {
      const r = entry.record;
      if (!countsNonces(r)) continue;
      try {
        entry.external = await read(r);
        const ext = entry.external.get(r.currentVersion) ?? 0;
        if (ext === 0 || r.state !== 'Enabled') continue;
        const own = Math.max(
          nonceCount(r, r.currentVersion),
          entry.nonces.spent().get(r.currentVersion)?.used ?? 0,
        );
        if (own + ext < this.#lifecycle.nonceBudget!) continue;
        await this.#entries.locked(entry, async (e) => {
          if (e.record.currentVersion !== r.currentVersion || e.record.state !== 'Enabled') return;
          await this.#work.addVersion(e, {
            type: 'add-version',
            version: r.currentVersion + 1,
            reason: 'nonce-budget',
          });
        });
      } catch (err) {
        this.#log.warn({ err, key: indexKey(r.namespace, r.name) }, 'external nonce counts not checked');
      }
    }
  }

  /**
   * On a clean stop nothing more is encrypted, so each unspent reservation is given back: the
   * record keeps the exact count, and a restart resumes from it. (After a crash the whole
   * reservation counts as spent instead.)
   */
  async trimReservations(): Promise<void> {
    for (const entry of this.#entries.values()) {
      for (const [version, counter] of entry.nonces.spent()) {
        if (counter.used >= counter.reserved) continue;
        try {
          await this.#entries.locked(entry, (e) =>
            this.#entries.save(e, withNonceCount(e.record, version, counter.used)),
          );
          counter.reserved = counter.used;
        } catch (err) {
          // Harmless: the larger reservation stays, an over-count.
          this.#log.warn(
            { err, key: indexKey(entry.record.namespace, entry.record.name) },
            'nonce count not trimmed',
          );
        }
      }
    }
  }
}
