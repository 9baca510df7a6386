/**
 * KeyService: the standalone backend. It combines the durable FileKeyStore, the pure lifecycle
 * (§3), the CryptoEngine, the master key wrapping (§4.3), usage history and the rotation and
 * deletion scheduler. It is the only writer of its store, so it keeps every record in memory too
 * and serves reads and the crypto hot path from there; writes go to the store first and to
 * memory only once durable.
 */
import type { Logger } from 'pino';
import { fingerprint } from '../crypto/fingerprint.ts';
import type { MasterKeys } from '../crypto/master-keys.ts';
import { generateMaterialAsync } from '../crypto/material.ts';
import { wrapMaterial } from '../crypto/wrap.ts';
import type { CryptoEngine, KeyRing } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import {
  applyKeyUpdate,
  applyNewVersion,
  checkUsable,
  createKeyRecord,
  DEFAULT_DELETION_DELAY_MS,
  evaluate,
  type LifecycleEffect,
  type LifecycleOptions,
  recentlyUsed,
  transitionOrThrow,
} from '../keys/lifecycle.ts';
import type { KeyOperation, KeyRecord } from '../keys/model.ts';
import { countsNonces, DEFAULT_NONCE_BUDGET, nonceCount, withNonceCount } from '../keys/nonce-budget.ts';
import { checkRegion, foldKeyName, parseKeySpec, parseKeyUpdate, validateKeyName } from '../keys/spec.ts';
import { errnoCode } from '../store/errno.ts';
import type { FileKeyStore } from '../store/file-key-store.ts';
import { KeyedQueue } from '../store/keyed-queue.ts';
import { validateNamespace } from '../store/namespace.ts';
import type {
  ActionResult,
  CreateKeyInput,
  KeyAction,
  KeyAdmin,
  KeyBackend,
  KeyPatch,
  KeyView,
} from './backend.ts';
import { CryptoBackend } from './crypto-backend.ts';
import { NonceLedger, type NonceLedgerOwner } from './nonce-ledger.ts';
import { MaterialCache } from './rings.ts';
import { Scheduler } from './scheduler.ts';
import { UsageRecorder, withUsage } from './usage.ts';
import { toKeyView } from './view.ts';

/** Options of `KeyService.start`. */
export interface KeyServiceOptions {
  store: FileKeyStore;
  /** The master keys; new material is wrapped under the current version. */
  master: MasterKeys;
  engine: CryptoEngine;
  logger: Logger;
  /** Key versions kept unwrapped on the main thread (loaded-keys.ts; default 4096). */
  maxLoadedVersions?: number;
  /** The region this engine serves (`--region`); Isolated keys of other regions are refused. */
  region?: string;
  /** Deletion delay; 72 h unless a test shortens it. */
  deletionDelayMs?: number;
  /** Random-nonce encryptions per key version before the key rotates (default 2^30). */
  nonceBudget?: number;
  /** How often usage history is written to the store (and external nonce counts are read). */
  usageFlushMs?: number;
  /**
   * Random-nonce counts made outside this server per version of a key (a `kms-plugin --data-dir`
   * on the same data dir: engine/kms/nonce-file.ts). Added to the key's count; the key rotates
   * when the sum reaches the budget.
   */
  externalNonces?: (record: KeyRecord) => Promise<ReadonlyMap<number, number>>;
  /** The clock; tests may pass their own. */
  now?: () => number;
  /**
   * Told of each action no request asked for, once it is durable: a rotation on schedule or at
   * the nonce budget, a destruction at the scheduled time (the audit log records them).
   */
  onScheduledAction?: (action: ScheduledAction) => void;
}

/** A lifecycle action the service took by itself (see `onScheduledAction`). */
export interface ScheduledAction {
  operation: 'rotate' | 'destroy';
  namespace: string;
  name: string;
  /** The version made current (rotate), or the last current one (destroy). */
  version: number;
  trigger: 'rotation-schedule' | 'nonce-budget' | 'deletion-schedule';
}

interface Entry {
  record: KeyRecord;
  cache: MaterialCache;
  fingerprint?: { version: number; value: string };
  /** Why some version's material cannot be unwrapped (found at start); the key fails alone. */
  materialError?: string;
  /** Random-nonce counters of the versions this process encrypted under (nonce-ledger.ts). */
  nonces: NonceLedger;
  /** `externalNonces` of the key as last read. */
  external?: ReadonlyMap<number, number>;
}

const RECENT_USE_DAYS = 7;

const indexKey = (namespace: string, name: string): string => `${namespace}/${foldKeyName(name)}`;

function notFound(name: string): KeywardError {
  return new KeywardError('KEY_NOT_FOUND', `key ${name} not found`, { field: 'name' });
}

/** See the module comment. Create with `KeyService.start`. */
export class KeyService extends CryptoBackend implements KeyBackend, KeyAdmin {
  readonly admin: KeyAdmin = this;
  readonly #store: FileKeyStore;
  readonly #master: MasterKeys;
  readonly #log: Logger;
  readonly #region: string | undefined;
  readonly #lifecycle: LifecycleOptions;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #locks = new KeyedQueue();
  readonly #usage = new UsageRecorder();
  readonly #scheduler: Scheduler;
  readonly #flushTimer: NodeJS.Timeout;
  readonly #externalNonces: KeyServiceOptions['externalNonces'];
  readonly #onScheduledAction: ((action: ScheduledAction) => void) | undefined;
  #ready = false;
  #closed = false;

  private constructor(opts: KeyServiceOptions) {
    super(opts.engine, opts.maxLoadedVersions);
    this.#store = opts.store;
    this.#master = opts.master;
    this.#log = opts.logger;
    this.#region = opts.region;
    this.#lifecycle = {
      deletionDelayMs: opts.deletionDelayMs ?? DEFAULT_DELETION_DELAY_MS,
      nonceBudget: opts.nonceBudget ?? DEFAULT_NONCE_BUDGET,
    };
    this.#now = opts.now ?? Date.now;
    this.#onScheduledAction = opts.onScheduledAction;
    this.#scheduler = new Scheduler({
      nextWake: () => this.#nextWake(),
      runDue: (now) => this.#runDue(now),
      now: this.#now,
      onError: (err) => this.#log.error({ err }, 'scheduled lifecycle work failed; retrying'),
    });
    this.#externalNonces = opts.externalNonces;
    this.#flushTimer = setInterval(() => {
      void this.flushUsage();
      void this.#checkExternalNonces();
    }, opts.usageFlushMs ?? 5_000);
    this.#flushTimer.unref();
  }

  /**
   * Loads every key, carries out what fell due while the process was down (destroys keys past
   * their deletion time, rotates overdue keys once), then arms the scheduler.
   */
  static async start(opts: KeyServiceOptions): Promise<KeyService> {
    const service = new KeyService(opts);
    for (const record of await opts.store.list()) {
      const entry: Entry = {
        record,
        cache: new MaterialCache(opts.master, record, service.loadedKeys),
        nonces: new NonceLedger(),
      };
      // Every version is unwrapped once now: a damaged one is reported here, and the key fails
      // alone (its operations answer KEY_STATE; listing shows it with materialError).
      const error = entry.cache.check();
      if (error !== undefined) {
        entry.materialError = error;
        service.#log.error(
          { key: indexKey(record.namespace, record.name), reason: error },
          'key material unavailable',
        );
      }
      service.#entries.set(indexKey(record.namespace, record.name), entry);
    }
    try {
      await service.#runDue(service.#now());
    } catch (err) {
      service.#log.error({ err }, 'lifecycle work due at start failed; will retry');
    }
    service.#scheduler.reschedule();
    service.#ready = true;
    return service;
  }

  ready(): boolean {
    return this.#ready && !this.#closed;
  }

  // ---- reads -----------------------------------------------------------------------------------

  async list(namespace: string): Promise<KeyView[]> {
    validateNamespace(namespace);
    const entries = [...this.#entries.values()]
      .filter((e) => e.record.namespace === namespace)
      .sort((a, b) => a.record.name.toLowerCase().localeCompare(b.record.name.toLowerCase()));
    return Promise.all(entries.map((e) => this.#view(e)));
  }

  async get(namespace: string, name: string): Promise<KeyView> {
    return this.#view(this.#entry(namespace, name));
  }

  // ---- admin -----------------------------------------------------------------------------------

  async create(namespace: string, input: CreateKeyInput): Promise<KeyView> {
    validateNamespace(namespace);
    const body = input as unknown as Record<string, unknown>;
    const name = validateKeyName(body.name);
    const spec = parseKeySpec(body, { ignoreFields: ['name'] });
    if (spec.boundary === 'Isolated' && spec.region !== this.#region) {
      // An engine creating a key it would then refuse to serve helps no one.
      throw new KeywardError(
        'INVALID_ARGUMENT',
        this.#region === undefined
          ? 'this engine serves no region (start it with --region); it cannot hold an Isolated key'
          : `an Isolated key on this engine must have region ${this.#region}`,
        { field: 'region' },
      );
    }
    const id = indexKey(namespace, name);
    const existing = this.#entries.get(id);
    if (existing) {
      throw new KeywardError('ALREADY_EXISTS', `a key named ${existing.record.name} already exists`, {
        field: 'name',
      });
    }
    return this.#locks.run(id, async () => {
      const now = this.#now();
      const material = await generateMaterialAsync(spec.usage);
      try {
        const wrapped = wrapMaterial(
          this.#master,
          { store: namespace, name, usage: spec.usage, version: 1 },
          material,
        );
        const record = createKeyRecord(
          {
            namespace,
            name,
            spec,
            firstVersion: { version: 1, createdTime: now, wrapped: wrapped.toString('base64') },
          },
          now,
        );
        const value = await fingerprint(spec.usage, material);
        await this.#store.create(record);
        const entry: Entry = {
          record,
          cache: new MaterialCache(this.#master, record, this.loadedKeys),
          fingerprint: { version: 1, value },
          nonces: new NonceLedger(),
        };
        this.#entries.set(id, entry);
        this.#log.info({ key: id, usage: spec.usage }, 'key created');
        this.#scheduler.reschedule();
        return this.#view(entry);
      } finally {
        material.fill(0);
      }
    });
  }

  async update(namespace: string, name: string, patch: KeyPatch): Promise<KeyView> {
    const entry = this.#entry(namespace, name);
    const update = parseKeyUpdate(patch, entry.record);
    return this.#locked(entry, async (e) => {
      await this.#save(e, applyKeyUpdate(e.record, update, this.#now()));
      this.#scheduler.reschedule();
      return this.#view(e);
    });
  }

  async action(namespace: string, name: string, action: KeyAction): Promise<ActionResult> {
    const entry = this.#entry(namespace, name);
    return this.#locked(entry, async (e) => {
      const now = this.#now();
      const warnings: string[] = [];
      if (action === 'request-deletion') {
        const current = withUsage(e.record, this.#usage.peek(indexKey(namespace, name)));
        if (recentlyUsed(current, now)) {
          warnings.push(
            `key was used in the last ${RECENT_USE_DAYS} days (last use ${new Date(current.lastUsedTime!).toISOString()}); ` +
              'callers may still depend on it. Cancel the deletion before it is scheduled if so.',
          );
        }
      }
      const result = transitionOrThrow(e.record, action, now, this.#lifecycle);
      for (const effect of result.effects) {
        if (effect.type === 'destroy') {
          await this.#destroy(e);
          this.#scheduler.reschedule();
          return { warnings };
        }
        await this.#addVersion(e, effect);
      }
      if (result.effects.length === 0 && result.changed) await this.#save(e, result.record);
      // A key that may not be used any more leaves every worker now, not when a cache fills up.
      if (e.record.state !== 'Enabled') this.engine.evict(e.cache.evict());
      this.#log.info({ key: indexKey(namespace, name), action, state: e.record.state }, 'key action');
      this.#scheduler.reschedule();
      return warnings.length > 0 ? { key: await this.#view(e), warnings } : { key: await this.#view(e) };
    });
  }

  // ---- crypto ----------------------------------------------------------------------------------

  // ---- lifecycle plumbing ------------------------------------------------------------------------

  /** Writes pending usage history to the store, one write per touched key. */
  async flushUsage(): Promise<void> {
    const pending = this.#usage.takeAll();
    await Promise.all(
      [...pending].map(async ([id, usage]) => {
        const entry = this.#entries.get(id);
        if (entry === undefined) return;
        try {
          await this.#locked(entry, (e) => this.#save(e, withUsage(e.record, usage)));
        } catch (err) {
          if (this.#entries.get(id) === entry) this.#usage.restore(id, usage);
          this.#log.warn({ err, key: id }, 'usage history not saved yet; will retry');
        }
      }),
    );
  }

  /** Stops the scheduler, writes pending usage, and closes the engine. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#scheduler.stop();
    clearInterval(this.#flushTimer);
    await this.flushUsage();
    await this.engine.close();
    await this.#trimNonceReservations();
    for (const e of this.#entries.values()) e.cache.destroy();
  }

  /**
   * On a clean stop nothing more is encrypted, so each unspent reservation is given back: the
   * record keeps the exact count, and a restart resumes from it. (After a crash the whole
   * reservation counts as spent instead.)
   */
  async #trimNonceReservations(): Promise<void> {
    for (const entry of this.#entries.values()) {
      for (const [version, counter] of entry.nonces.spent()) {
        if (counter.used >= counter.reserved) continue;
        try {
          await this.#locked(entry, (e) => this.#save(e, withNonceCount(e.record, version, counter.used)));
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

  #entry(namespace: string, name: string): Entry {
    const entry = this.#entries.get(indexKey(namespace, name));
    if (entry === undefined) throw notFound(name);
    return entry;
  }

  /** The ring of a key that may be used here. The crypto hot path. */
  protected override usableRing(namespace: string, name: string): KeyRing {
    const entry = this.#entries.get(indexKey(namespace, name));
    if (entry === undefined) throw notFound(name);
    checkUsable(entry.record);
    checkRegion(entry.record, this.#region);
    return entry.cache.ring();
  }

  /** Records uses that succeeded (see CryptoBackend.recordUse). */
  protected override recordUse(namespace: string, name: string, op: KeyOperation, count: number): void {
    const id = indexKey(namespace, name);
    if (this.#entries.has(id)) this.#usage.record(id, op, count, this.#now());
  }

  metricsKey(namespace: string, name: string): string | undefined {
    const record = this.#entries.get(indexKey(namespace, name))?.record;
    return record === undefined ? undefined : `${record.namespace}/${record.name}`;
  }

  /** Counts random-nonce encryptions before they happen (nonce-ledger.ts); rotates at the budget. */
  protected override randomNonces(
    namespace: string,
    name: string,
    ring: KeyRing,
    count: number,
  ): KeyRing | Promise<KeyRing> {
    const entry = this.#entry(namespace, name);
    return entry.nonces.spend(this.#nonceOwner(entry), ring, count);
  }

  /** Gives back counted encryptions a batch request did not run (see CryptoBackend.batchRequest). */
  protected override returnNonces(namespace: string, name: string, ring: KeyRing, count: number): void {
    const entry = this.#entries.get(indexKey(namespace, name));
    // A key destroyed and created again meanwhile is another incarnation: leave its count alone.
    if (entry === undefined || entry.cache.ring().id !== ring.id) return;
    entry.nonces.refund(ring.currentVersion, count);
  }

  #nonceOwner(entry: Entry): NonceLedgerOwner {
    return {
      budget: this.#lifecycle.nonceBudget!,
      record: () => entry.record,
      locked: (task) => this.#locked(entry, () => task()),
      reserve: async (version, count) => {
        try {
          await this.#save(entry, withNonceCount(entry.record, version, count));
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
        await this.#addVersion(entry, { type: 'add-version', version: version + 1, reason: 'nonce-budget' });
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
  async #checkExternalNonces(): Promise<void> {
    const read = this.#externalNonces;
    if (read === undefined || this.#closed) return;
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
        await this.#locked(entry, async (e) => {
          if (e.record.currentVersion !== r.currentVersion || e.record.state !== 'Enabled') return;
          await this.#addVersion(e, {
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

  /** Runs `task` under the key's lock, on the entry as it is then; KEY_NOT_FOUND if it is gone. */
  #locked<T>(entry: Entry, task: (e: Entry) => Promise<T>): Promise<T> {
    const id = indexKey(entry.record.namespace, entry.record.name);
    return this.#locks.run(id, async () => {
      const current = this.#entries.get(id);
      if (current !== entry) throw notFound(entry.record.name);
      return task(current);
    });
  }

  /** Persists `record` and, once durable, makes it the entry's record. */
  async #save(entry: Entry, record: KeyRecord): Promise<void> {
    await this.#store.put(record);
    entry.record = record;
    entry.cache.update(record);
  }

  async #addVersion(entry: Entry, effect: Extract<LifecycleEffect, { type: 'add-version' }>): Promise<void> {
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
      await this.#save(entry, next);
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

  async #destroy(entry: Entry): Promise<void> {
    const id = indexKey(entry.record.namespace, entry.record.name);
    await this.#store.remove(entry.record.namespace, entry.record.name);
    this.#entries.delete(id);
    this.#usage.drop(id);
    this.engine.evict(entry.cache.destroy());
    this.#log.info({ key: id }, 'key destroyed');
  }

  #nextWake(): number | undefined {
    const now = this.#now();
    let earliest: number | undefined;
    for (const e of this.#entries.values()) {
      const wake = evaluate(e.record, now, this.#lifecycle).nextWakeTime;
      if (wake !== undefined && (earliest === undefined || wake < earliest)) earliest = wake;
    }
    return earliest;
  }

  /** Carries out every destruction and scheduled rotation due at `now`. */
  async #runDue(now: number): Promise<void> {
    let failures = 0;
    for (const entry of [...this.#entries.values()]) {
      if (evaluate(entry.record, now, this.#lifecycle).due.length === 0) continue;
      try {
        await this.#locked(entry, async (e) => {
          for (const effect of evaluate(e.record, now, this.#lifecycle).due) {
            if (effect.type === 'destroy') {
              await this.#destroy(e);
              const { namespace, name, currentVersion: version } = e.record;
              const trigger = 'deletion-schedule';
              this.#onScheduledAction?.({ operation: 'destroy', namespace, name, version, trigger });
            } else await this.#addVersion(e, effect);
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

  /** The view, with usage not yet flushed merged in and the fingerprint of the current version. */
  async #view(entry: Entry): Promise<KeyView> {
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
    let shown = withUsage(record, this.#usage.peek(id));
    for (const [version, counter] of entry.nonces.spent())
      shown = withNonceCount(shown, version, counter.used);
    // Plus what a kms-plugin on this data dir counted.
    for (const [version, n] of entry.external ?? [])
      if (shown.versions.some((v) => v.version === version))
        shown = withNonceCount(shown, version, nonceCount(shown, version) + n);
    const view = toKeyView(shown, fp?.value ?? null);
    if (materialError !== undefined) view.materialError = materialError;
    return view;
  }
}
