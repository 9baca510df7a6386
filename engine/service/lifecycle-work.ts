/**
 * The I/O the pure lifecycle (keys/lifecycle.ts) asks of the standalone service: a new version
 * (fresh material, wrapped under the current master key, stored), a destruction, and every effect
 * the schedule says is due (what the Scheduler runs, and `KeyService.start` once).
 */
import type { Logger } from 'pino';
import { fingerprint } from '../crypto/fingerprint.ts';
import type { MasterKeys } from '../crypto/master-keys.ts';
import { generateMaterialAsync } from '../crypto/material.ts';
import { wrapMaterial } from '../crypto/wrap.ts';
import type { CryptoEngine } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { applyNewVersion, evaluate, type LifecycleEffect, type LifecycleOptions } from '../keys/lifecycle.ts';
import { nonceCount } from '../keys/nonce-budget.ts';
import { indexKey, type KeyEntries, type KeyEntry } from './key-entries.ts';
import type { UsageRecorder } from './usage.ts';

/** A lifecycle action the service took by itself (see `KeyServiceOptions.onScheduledAction`). */
export interface ScheduledAction {
  operation: 'rotate' | 'destroy';
  namespace: string;
  name: string;
  /** The version made current (rotate), or the last current one (destroy). */
  version: number;
  trigger: 'rotation-schedule' | 'nonce-budget' | 'deletion-schedule';
}

/** What `LifecycleWork` works on and with: the service's keys and collaborators. */
export interface LifecycleWorkOptions {
  entries: KeyEntries;
  /** The master keys; new material is wrapped under the current version. */
  master: MasterKeys;
  /** Told to evict a destroyed key's versions from every worker. */
  engine: CryptoEngine;
  /** Usage history; a destroyed key's pending usage is dropped. */
  usage: UsageRecorder;
  log: Logger;
  lifecycle: LifecycleOptions;
  now: () => number;
  /** Told of each action no request asked for, once it is durable. */
  onScheduledAction: ((action: ScheduledAction) => void) | undefined;
}

/**
 * See the module comment. `addVersion` and `destroy` run under the key's lock (callers hold it:
 * `KeyEntries.locked`); `runDue` takes each key's lock itself.
 */
export class LifecycleWork {
  readonly #entries: KeyEntries;
  readonly #master: MasterKeys;
  readonly #engine: CryptoEngine;
  readonly #usage: UsageRecorder;
  readonly #log: Logger;
  readonly #lifecycle: LifecycleOptions;
  readonly #now: () => number;
  readonly #onScheduledAction: ((action: ScheduledAction) => void) | undefined;

  constructor(opts: LifecycleWorkOptions) {
    this.#entries = opts.entries;
    this.#master = opts.master;
    this.#engine = opts.engine;
    this.#usage = opts.usage;
    this.#log = opts.log;
    this.#lifecycle = opts.lifecycle;
    this.#now = opts.now;
    this.#onScheduledAction = opts.onScheduledAction;
  }

  /** Generates, wraps and stores version `effect.version`, making it current (a rotation). */
  async addVersion(
    entry: KeyEntry,
    effect: Extract<LifecycleEffect, { type: 'add-version' }>,
  ): Promise<void> {
    const r = entry.record;
    const material = await generateMaterialAsync(r.usage);
    try {
      const wrapped = wrapMaterial(
        this.#master,
        { store: r.namespace, name: r.name, usage: r.usage, version: effect.version },
        material,
      );
      const next = applyNewVersion(r, effect, {
        version: effect.version,
        createdTime: this.#now(),
        wrapped: wrapped.toString('base64'),
      });
      const value = await fingerprint(r.usage, material);
      await this.#entries.save(entry, next);
      entry.fingerprint = { version: effect.version, value };
      const key = indexKey(r.namespace, r.name);
      if (effect.reason !== 'manual') {
        const trigger = effect.reason === 'nonce-budget' ? 'nonce-budget' : 'rotation-schedule';
        const action = { operation: 'rotate', version: effect.version, trigger } as const;
        this.#onScheduledAction?.({ ...action, namespace: r.namespace, name: r.name });
      }
      if (effect.reason === 'nonce-budget') {
        this.#log.warn(
          {
            key,
            version: effect.version,
            reason: effect.reason,
            nonceCount: nonceCount(r, r.currentVersion),
            nonceBudget: this.#lifecycle.nonceBudget,
          },
          `key rotated: version ${r.currentVersion} reached its nonce budget of ${this.#lifecycle.nonceBudget} ` +
            `random-nonce encryptions${r.rotation.enabled ? '' : ' (automatic rotation is off; the budget rotates it anyway)'}`,
        );
      } else {
        this.#log.info({ key, version: effect.version, reason: effect.reason }, 'key rotated');
      }
    } finally {
      material.fill(0);
    }
  }

  /** Removes the key from the store and memory, and its material from every worker. */
  async destroy(entry: KeyEntry): Promise<void> {
    const id = await this.#entries.remove(entry);
    this.#usage.drop(id);
    this.#engine.evict(entry.cache.destroy());
    this.#log.info({ key: id }, 'key destroyed');
  }

  /** The earliest time some key has lifecycle work due, if any (the Scheduler's `nextWake`). */
  nextWake(): number | undefined {
    const now = this.#now();
    let earliest: number | undefined;
    for (const e of this.#entries.values()) {
      const wake = evaluate(e.record, now, this.#lifecycle).nextWakeTime;
      if (wake !== undefined && (earliest === undefined || wake < earliest)) earliest = wake;
    }
    return earliest;
  }

  /** Carries out every destruction and scheduled rotation due at `now`. */
  async runDue(now: number): Promise<void> {
    let failures = 0;
    for (const entry of [...this.#entries.values()]) {
      if (evaluate(entry.record, now, this.#lifecycle).due.length === 0) continue;
      try {
        await this.#entries.locked(entry, async (e) => {
          for (const effect of evaluate(e.record, now, this.#lifecycle).due) {
            if (effect.type === 'destroy') {
              await this.destroy(e);
              const { namespace, name, currentVersion: version } = e.record;
              const trigger = 'deletion-schedule';
              this.#onScheduledAction?.({ operation: 'destroy', namespace, name, version, trigger });
            } else await this.addVersion(e, effect);
          }
        });
      } catch (err) {
        failures++;
        this.#log.error(
          { err, key: indexKey(entry.record.namespace, entry.record.name) },
          'lifecycle work failed',
        );
      }
    }
    if (failures > 0) throw new KeywardError('INTERNAL', `${failures} scheduled lifecycle action(s) failed`);
  }
}
