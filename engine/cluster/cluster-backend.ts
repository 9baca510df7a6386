/**
 * The cluster mode's `KeyBackend`: reads only, from informer caches (Keys in all namespaces and
 * the material Secrets of the operator's namespace), so any number of replicas can serve. It has
 * no admin part: keys are managed through `Key` resources, and the admin routes answer 405.
 *
 * Rings are built with the standalone service's `MaterialCache` (engine/service/rings.ts): one per
 * key incarnation, each version unwrapped lazily on first use and kept; a Secret update that only
 * adds versions (a rotation) updates the cache in place, anything else (a new incarnation, a
 * changed wrapped blob) replaces it and zeroes the old material, as does the Secret's deletion.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { fingerprint } from '../crypto/fingerprint.ts';
import { wrappedMasterKeyVersion } from '../crypto/wrap.ts';
import type { CryptoEngine, KeyRing } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import type { KeyOperation, KeyRecord } from '../keys/model.ts';
import { checkRegion } from '../keys/spec.ts';
import type { InformerEvent } from '../kube/informer-supervisor.ts';
import { type KeyResource, kubeTimeMs } from '../kube/key-resource.ts';
import { type MasterKeySet, masterKeyMismatch } from '../kube/master-key-secret.ts';
import { decodeMaterialSecret, materialSecretName, type StoredKey } from '../kube/material-secret.ts';
import type { KeyBackend, KeyView } from '../service/backend.ts';
import { CryptoBackend } from '../service/crypto-backend.ts';
import { MaterialCache } from '../service/rings.ts';
import { toKeyView } from '../service/view.ts';
import type { KeySources } from './key-sources.ts';
import { checkUsableInCluster, effectiveState } from './key-state.ts';
import type { NonceReservations } from './nonce-reservations.ts';
import type { UsageCounter } from './usage-report.ts';

/** Options of {@link ClusterKeyBackend}. */
export interface ClusterBackendOptions {
  sources: KeySources;
  engine: CryptoEngine;
  counter: UsageCounter;
  /** The region this engine serves; Isolated keys of other regions are refused. */
  region?: string;
  /**
   * Counts random-nonce encryptions through the usage reports (nonce-reservations.ts). Without it
   * nothing is counted: only for tests that run no publisher.
   */
  nonces?: NonceReservations;
  log: Logger;
  now?: () => number;
}

interface Entry {
  resourceVersion: string | undefined;
  stored: StoredKey;
  cache: MaterialCache;
  fingerprint?: { version: number; value: string };
  /** Set when the material was wrapped under another master key: the key fails alone. */
  materialError?: string;
}

function notFound(name: string): KeywardError {
  return new KeywardError('KEY_NOT_FOUND', `key ${name} not found`, { field: 'name' });
}

/** Same incarnation, and every version both know is wrapped identically. */
function compatible(a: KeyRecord, b: KeyRecord): boolean {
  if (a.createdTime !== b.createdTime || a.usage !== b.usage || a.convergent !== b.convergent) return false;
  const before = new Map(a.versions.map((v) => [v.version, v.wrapped]));
  return b.versions.every((v) => !before.has(v.version) || before.get(v.version) === v.wrapped);
}

/**
 * Same incarnation and versions, and every blob that changed now names another master-key version:
 * the shape of a master-key rotation's re-wrap (whether the blobs hold the same material is
 * checked when they are unwrapped).
 */
function rewrapOnly(a: KeyRecord, b: KeyRecord): boolean {
  if (a.createdTime !== b.createdTime || a.usage !== b.usage || a.versions.length !== b.versions.length)
    return false;
  const before = new Map(a.versions.map((v) => [v.version, v.wrapped]));
  return b.versions.every((v) => {
    const old = before.get(v.version);
    if (old === undefined) return false;
    return old === v.wrapped || wrappedMasterKeyVersion(old) !== wrappedMasterKeyVersion(v.wrapped);
  });
}

/** See the module comment. */
export class ClusterKeyBackend extends CryptoBackend implements KeyBackend {
  readonly admin = undefined;
  readonly #sources: KeySources;
  readonly #counter: UsageCounter;
  readonly #region: string | undefined;
  readonly #nonces: NonceReservations | undefined;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  constructor(o: ClusterBackendOptions) {
    super(o.engine);
    this.#sources = o.sources;
    this.#counter = o.counter;
    this.#region = o.region;
    this.#nonces = o.nonces;
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
  }

  /** Informer events: a deleted material Secret zeroes its cached material at once. */
  onChange(type: InformerEvent, kind: 'key' | 'material', obj: KeyResource | V1Secret): void {
    if (kind !== 'material') return;
    const name = obj.metadata?.name;
    if (name === undefined) return;
    const entry = this.#entries.get(name);
    if (entry === undefined) return;
    if (type === 'delete') {
      this.#drop(name, entry);
      // The incarnation is gone (a new one has another uid): its nonce counters go with it.
      const r = entry.stored.record;
      this.#nonces?.forget(r.namespace, r.name, entry.stored.ownerUid);
      return;
    }
    // An update that is not a plain rotation (another incarnation, changed blobs) drops the
    // unwrapped material now rather than on the next use.
    if (type === 'update' && (obj as V1Secret).metadata?.resourceVersion !== entry.resourceVersion) {
      try {
        const next = decodeMaterialSecret({ data: (obj as V1Secret).data ?? {} });
        // A re-wrap under a new master-key version is left to the next use (#material), which
        // keeps serving while this engine reads the new master key.
        if (!compatible(entry.stored.record, next.record) && !rewrapOnly(entry.stored.record, next.record))
          this.#drop(name, entry);
        // A disabled key (or one pending deletion) leaves no copy in any worker.
        else if (next.record.state !== 'Enabled') this.engine.evict(entry.cache.evict());
      } catch {
        this.#drop(name, entry);
      }
    }
  }

  /** The master-key Secret changed: every entry is checked (and unwrapped) again. */
  onMasterKeyChange(): void {
    for (const [name, entry] of [...this.#entries]) this.#drop(name, entry);
  }

  /** Zeroes an entry's material here and makes every worker forget it. */
  #drop(name: string, entry: Entry): void {
    if (this.#entries.get(name) === entry) this.#entries.delete(name);
    this.engine.evict(entry.cache.destroy());
  }

  ready(): boolean {
    return !this.#closed && this.#sources.synced();
  }

  // ---- reads -----------------------------------------------------------------------------------

  async list(namespace: string): Promise<KeyView[]> {
    this.#checkReady();
    const keys = [...this.#sources.keys.list(namespace)].sort((a, b) =>
      a.metadata.name.localeCompare(b.metadata.name),
    );
    const views: KeyView[] = [];
    for (const key of keys) {
      const entry = this.#material(namespace, key.metadata.name);
      // A Key the operator has not given material yet has nothing to show.
      if (entry === undefined || entry.stored.ownerUid !== key.metadata.uid) continue;
      try {
        views.push(await this.#view(key, entry));
      } catch (err) {
        this.#log.warn(
          { key: `${namespace}/${key.metadata.name}`, err: (err as Error).message },
          'key not listed',
        );
      }
    }
    return views;
  }

  async get(namespace: string, name: string): Promise<KeyView> {
    this.#checkReady();
    const key = this.#sources.keys.get(name, namespace);
    if (key === undefined) throw notFound(name);
    const entry = this.#material(namespace, name);
    if (entry === undefined || entry.stored.ownerUid !== key.metadata.uid) {
      throw new KeywardError('KEY_STATE', 'the key has no material yet; the operator has not reconciled it');
    }
    return this.#view(key, entry);
  }

  // ---- crypto ----------------------------------------------------------------------------------

  /** Stops serving and zeroes every unwrapped version (the engine and sources close elsewhere). */
  close(): void {
    this.#closed = true;
    // The workers stop with the engine (closed first): only the copies here are left to zero.
    for (const e of this.#entries.values()) e.cache.destroy();
    this.#entries.clear();
  }

  // ---- plumbing --------------------------------------------------------------------------------

  #checkReady(): MasterKeySet {
    const master = this.#sources.masterKeys();
    if (this.#closed || master === undefined || !this.#sources.synced()) {
      throw new KeywardError(
        'UNAVAILABLE',
        'the engine is not ready yet (waiting for the Key cache and master key)',
        {
          retryAfterSeconds: 1,
        },
      );
    }
    return master;
  }

  /** The ring of a key that may be used here. The crypto hot path. */
  protected override usableRing(namespace: string, name: string): KeyRing {
    this.#checkReady();
    const key = this.#sources.keys.get(name, namespace);
    if (key === undefined) throw notFound(name);
    const entry = this.#material(namespace, name);
    if (entry === undefined) {
      throw new KeywardError('KEY_STATE', 'the key has no material yet; the operator has not reconciled it');
    }
    checkUsableInCluster(key, entry.stored);
    checkRegion(entry.stored.record, this.#region);
    if (entry.materialError !== undefined) throw new KeywardError('KEY_STATE', entry.materialError);
    return entry.cache.ring();
  }

  /** Reserves random nonces through the usage report before they are drawn (nonce-reservations.ts). */
  protected override randomNonces(
    namespace: string,
    name: string,
    ring: KeyRing,
    count: number,
  ): KeyRing | Promise<KeyRing> {
    const nonces = this.#nonces;
    if (nonces === undefined) return ring;
    const uid = this.#sources.keys.get(name, namespace)?.metadata.uid;
    const stored = (): StoredKey => {
      const entry = this.#material(namespace, name);
      if (entry === undefined) throw new KeywardError('KEY_STATE', 'the key has no material any more');
      return entry.stored;
    };
    // Counted under an earlier version only while the current one's cannot be published: encrypt
    // with that version then, as a replica that has not seen the rotation yet would.
    const under = (version: number): KeyRing =>
      version === ring.currentVersion ? ring : { ...ring, currentVersion: version };
    const spent = nonces.spend(namespace, name, uid, ring.currentVersion, count, stored);
    return typeof spent === 'number' ? under(spent) : spent.then(under);
  }

  /** Counts uses that succeeded (see CryptoBackend.recordUse). */
  protected override recordUse(namespace: string, name: string, op: KeyOperation, count: number): void {
    const key = this.#sources.keys.get(name, namespace);
    if (key !== undefined) this.#counter.record(namespace, name, key.metadata.uid, op, count, this.#now());
  }

  metricsKey(namespace: string, name: string): string | undefined {
    return this.#sources.synced() && this.#sources.keys.get(name, namespace) !== undefined
      ? `${namespace}/${name}`
      : undefined;
  }

  /** The decoded material of Key `namespace/name`, following its Secret's resourceVersion. */
  #material(namespace: string, name: string): Entry | undefined {
    const master = this.#checkReady();
    const secretName = materialSecretName(namespace, name);
    const secret = this.#sources.secrets.get(secretName, this.#sources.namespace);
    const existing = this.#entries.get(secretName);
    if (secret === undefined) {
      if (existing !== undefined) this.#drop(secretName, existing);
      return undefined;
    }
    const rv = secret.metadata?.resourceVersion;
    if (existing !== undefined && rv !== undefined && existing.resourceVersion === rv) return existing;
    let stored: StoredKey;
    try {
      stored = decodeMaterialSecret({ data: secret.data ?? {} });
    } catch (err) {
      this.#log.error({ secret: secretName, err: (err as Error).message }, 'material Secret unreadable');
      throw new KeywardError('INTERNAL', 'the key material record is unreadable');
    }
    const r = stored.record;
    if (r.namespace !== namespace || r.name !== name) {
      // A record copied under another Key's name: its AAD binding would refuse it anyway.
      throw new KeywardError('INTERNAL', 'the key material record does not belong to this key');
    }
    if (existing !== undefined && compatible(existing.stored.record, r)) {
      existing.cache.update(r);
      existing.stored = stored;
      existing.resourceVersion = rv;
      return existing;
    }
    const mismatch = masterKeyMismatch(stored, master, this.#sources.masterKeySecretName);
    if (mismatch !== undefined) {
      // Perhaps re-wrapped under a master-key version this engine has not read yet (a rotation):
      // look now, and meanwhile keep serving what was unwrapped before.
      this.#sources.refreshMaster();
      if (existing !== undefined && existing.materialError === undefined) return existing;
    }
    if (existing !== undefined) this.engine.evict(existing.cache.destroy());
    const entry: Entry = {
      resourceVersion: rv,
      stored,
      cache: new MaterialCache(master, r, this.loadedKeys),
    };
    if (mismatch !== undefined) {
      entry.materialError = mismatch;
      this.#log.error(
        { secret: secretName },
        'key material does not match the master key; the key is refused',
      );
    }
    this.#entries.set(secretName, entry);
    return entry;
  }

  async #view(key: KeyResource, entry: Entry): Promise<KeyView> {
    const r = entry.stored.record;
    if (entry.materialError !== undefined) {
      // Listed with its error: the material cannot be used here, the rest of the key can be shown.
      const view = toKeyView({ ...r, state: effectiveState(key, entry.stored) }, null);
      view.materialError = entry.materialError;
      return view;
    }
    let value = entry.fingerprint?.version === r.currentVersion ? entry.fingerprint.value : undefined;
    if (value === undefined) {
      value = entry.stored.fingerprint;
      if (value === undefined) {
        const material = entry.cache.material(r.currentVersion);
        if (material === undefined)
          throw new KeywardError('INTERNAL', 'the current key version is unavailable');
        value = await fingerprint(r.usage, material);
      }
      entry.fingerprint = { version: r.currentVersion, value };
    }
    const ns = key.metadata.namespace;
    const name = key.metadata.name;
    const lastUsed = [r.lastUsedTime, kubeTimeMs(key.status?.lastUsedTime), this.#counter.lastUsed(ns, name)]
      .filter((t): t is number => t !== undefined)
      .reduce<number | undefined>((a, b) => (a === undefined || b > a ? b : a), undefined);
    const record: KeyRecord = { ...r, state: effectiveState(key, entry.stored) };
    if (lastUsed !== undefined) record.lastUsedTime = lastUsed;
    return toKeyView(record, value);
  }
}
