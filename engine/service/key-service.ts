/**
 * KeyService: the standalone backend. It combines the durable FileKeyStore, the pure lifecycle
 * (§3), the CryptoEngine, the master key wrapping (§4.3), usage history and the rotation and
 * deletion scheduler. It is the only writer of its store, so it keeps every record in memory too
 * and serves reads and the crypto hot path from there; writes go to the store first and to
 * memory only once durable.
 *
 * Its parts: key-entries.ts (the keys in memory over the store, and their locks),
 * lifecycle-work.ts (new versions, destruction, scheduled work), key-nonces.ts (random-nonce
 * counting against the store and a kms-plugin), key-entry-view.ts (what `list` and `get` show).
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
  checkUsable,
  createKeyRecord,
  DEFAULT_DELETION_DELAY_MS,
  type LifecycleOptions,
  recentlyUsed,
  transitionOrThrow,
} from '../keys/lifecycle.ts';
import type { KeyOperation } from '../keys/model.ts';
import { DEFAULT_NONCE_BUDGET } from '../keys/nonce-budget.ts';
import { checkRegion, parseKeySpec, parseKeyUpdate, validateKeyName } from '../keys/spec.ts';
import type { FileKeyStore } from '../store/file-key-store.ts';
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
import { indexKey, KeyEntries, type KeyEntry, keyNotFound } from './key-entries.ts';
import { keyEntryView } from './key-entry-view.ts';
import { type ExternalNonceCounts, KeyNonces } from './key-nonces.ts';
import { LifecycleWork, type ScheduledAction } from './lifecycle-work.ts';
import { NonceLedger } from './nonce-ledger.ts';
import { MaterialCache } from './rings.ts';
import { Scheduler } from './scheduler.ts';
import { UsageRecorder, withUsage } from './usage.ts';

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
  externalNonces?: ExternalNonceCounts;
  /** The clock; tests may pass their own. */
  now?: () => number;
  /**
   * Told of each action no request asked for, once it is durable: a rotation on schedule or at
   * the nonce budget, a destruction at the scheduled time (the audit log records them).
   */
  onScheduledAction?: (action: ScheduledAction) => void;
}

const RECENT_USE_DAYS = 7;

/** See the module comment. Create with `KeyService.start`. */
export class KeyService extends CryptoBackend implements KeyBackend, KeyAdmin {
  readonly admin: KeyAdmin = this;
  readonly #master: MasterKeys;
  readonly #log: Logger;
  readonly #region: string | undefined;
  readonly #lifecycle: LifecycleOptions;
  readonly #now: () => number;
  readonly #entries: KeyEntries;
  readonly #usage = new UsageRecorder();
  readonly #work: LifecycleWork;
  readonly #nonces: KeyNonces;
  readonly #scheduler: Scheduler;
  readonly #flushTimer: NodeJS.Timeout;
  #ready = false;
  #closed = false;

  private constructor(opts: KeyServiceOptions) {
    super(opts.engine, opts.maxLoadedVersions);
    this.#entries = new KeyEntries(opts.store);
    this.#master = opts.master;
    this.#log = opts.logger;
    this.#region = opts.region;
    this.#lifecycle = {
      deletionDelayMs: opts.deletionDelayMs ?? DEFAULT_DELETION_DELAY_MS,
      nonceBudget: opts.nonceBudget ?? DEFAULT_NONCE_BUDGET,
    };
    this.#now = opts.now ?? Date.now;
    this.#work = new LifecycleWork({
      entries: this.#entries,
      master: this.#master,
      engine: this.engine,
      usage: this.#usage,
      log: this.#log,
      lifecycle: this.#lifecycle,
      now: this.#now,
      onScheduledAction: opts.onScheduledAction,
    });
    this.#nonces = new KeyNonces({
      entries: this.#entries,
      work: this.#work,
      lifecycle: this.#lifecycle,
      log: this.#log,
      external: opts.externalNonces,
    });
    this.#scheduler = new Scheduler({
      nextWake: () => this.#work.nextWake(),
      runDue: (now) => this.#work.runDue(now),
      now: this.#now,
      onError: (err) => this.#log.error({ err }, 'scheduled lifecycle work failed; retrying'),
    });
    this.#flushTimer = setInterval(() => {
      void this.flushUsage();
      if (!this.#closed) void this.#nonces.checkExternal();
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
      const entry: KeyEntry = {
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
      service.#entries.load(indexKey(record.namespace, record.name), entry);
    }
    try {
      await service.#work.runDue(service.#now());
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
    return Promise.all(entries.map((e) => keyEntryView(e, this.#usage)));
  }

  async get(namespace: string, name: string): Promise<KeyView> {
    return keyEntryView(this.#entries.find(namespace, name), this.#usage);
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
    return this.#entries.lock(id, async () => {
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
        const entry: KeyEntry = {
          record,
          cache: new MaterialCache(this.#master, record, this.loadedKeys),
          fingerprint: { version: 1, value },
          nonces: new NonceLedger(),
        };
        await this.#entries.create(id, entry);
        this.#log.info({ key: id, usage: spec.usage }, 'key created');
        this.#scheduler.reschedule();
        return keyEntryView(entry, this.#usage);
      } finally {
        material.fill(0);
      }
    });
  }

  async update(namespace: string, name: string, patch: KeyPatch): Promise<KeyView> {
    const entry = this.#entries.find(namespace, name);
    const update = parseKeyUpdate(patch, entry.record);
    return this.#entries.locked(entry, async (e) => {
      await this.#entries.save(e, applyKeyUpdate(e.record, update, this.#now()));
      this.#scheduler.reschedule();
      return keyEntryView(e, this.#usage);
    });
  }

  async action(namespace: string, name: string, action: KeyAction): Promise<ActionResult> {
    const entry = this.#entries.find(namespace, name);
    return this.#entries.locked(entry, async (e) => {
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
          await this.#work.destroy(e);
          this.#scheduler.reschedule();
          return { warnings };
        }
        await this.#work.addVersion(e, effect);
      }
      if (result.effects.length === 0 && result.changed) await this.#entries.save(e, result.record);
      // A key that may not be used any more leaves every worker now, not when a cache fills up.
      if (e.record.state !== 'Enabled') this.engine.evict(e.cache.evict());
      this.#log.info({ key: indexKey(namespace, name), action, state: e.record.state }, 'key action');
      this.#scheduler.reschedule();
      return warnings.length > 0
        ? { key: await keyEntryView(e, this.#usage), warnings }
        : { key: await keyEntryView(e, this.#usage) };
    });
  }

  // ---- lifecycle plumbing ------------------------------------------------------------------------

  /** Writes pending usage history to the store, one write per touched key. */
  async flushUsage(): Promise<void> {
    const pending = this.#usage.takeAll();
    await Promise.all(
      [...pending].map(async ([id, usage]) => {
        const entry = this.#entries.get(id);
        if (entry === undefined) return;
        try {
          await this.#entries.locked(entry, (e) => this.#entries.save(e, withUsage(e.record, usage)));
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
    await this.#nonces.trimReservations();
    for (const e of this.#entries.values()) e.cache.destroy();
  }

  /** The ring of a key that may be used here. The crypto hot path. */
  protected override usableRing(namespace: string, name: string): KeyRing {
    const entry = this.#entries.get(indexKey(namespace, name));
    if (entry === undefined) throw keyNotFound(name);
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
    return this.#nonces.spend(this.#entries.find(namespace, name), ring, count);
  }

  /** Gives back counted encryptions a batch request did not run (see CryptoBackend.batchRequest). */
  protected override returnNonces(namespace: string, name: string, ring: KeyRing, count: number): void {
    const entry = this.#entries.get(indexKey(namespace, name));
    // A key destroyed and created again meanwhile is another incarnation: leave its count alone.
    if (entry === undefined || entry.cache.ring().id !== ring.id) return;
    entry.nonces.refund(ring.currentVersion, count);
  }
}
