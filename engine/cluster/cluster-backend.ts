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
import type { KeyObject } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { fingerprint } from '../crypto/fingerprint.ts';
import type { CryptoEngine, KeyRing } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import type { KeyOperation, KeyRecord } from '../keys/model.ts';
import { checkRegion } from '../keys/spec.ts';
import type { InformerEvent } from '../kube/informer-supervisor.ts';
import { type KeyResource, kubeTimeMs } from '../kube/key-resource.ts';
import { decodeMaterialSecret, materialSecretName, type StoredKey } from '../kube/material-secret.ts';
import type { KeyBackend, KeyView } from '../service/backend.ts';
import { CryptoBackend } from '../service/crypto-backend.ts';
import { MaterialCache } from '../service/rings.ts';
import { toKeyView } from '../service/view.ts';
import type { KeySources } from './key-sources.ts';
import { checkUsableInCluster, effectiveState } from './key-state.ts';
import type { UsageCounter } from './usage-report.ts';

/** Options of {@link ClusterKeyBackend}. */
export interface ClusterBackendOptions {
  sources: KeySources;
  engine: CryptoEngine;
  counter: UsageCounter;
  /** The region this engine serves; Isolated keys of other regions are refused. */
  region?: string;
  log: Logger;
  now?: () => number;
}

interface Entry {
  resourceVersion: string | undefined;
  stored: StoredKey;
  cache: MaterialCache;
  fingerprint?: { version: number; value: string };
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

/** See the module comment. */
export class ClusterKeyBackend extends CryptoBackend implements KeyBackend {
  readonly admin = undefined;
  readonly #sources: KeySources;
  readonly #counter: UsageCounter;
  readonly #region: string | undefined;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  constructor(o: ClusterBackendOptions) {
    super(o.engine);
    this.#sources = o.sources;
    this.#counter = o.counter;
    this.#region = o.region;
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
      return;
    }
    // An update that is not a plain rotation (another incarnation, changed blobs) drops the
    // unwrapped material now rather than on the next use.
    if (type === 'update' && (obj as V1Secret).metadata?.resourceVersion !== entry.resourceVersion) {
      try {
        const next = decodeMaterialSecret({ data: (obj as V1Secret).data ?? {} });
        if (!compatible(entry.stored.record, next.record)) this.#drop(name, entry);
      } catch {
        this.#drop(name, entry);
      }
    }
  }

  #drop(name: string, entry: Entry): void {
    if (this.#entries.get(name) === entry) this.#entries.delete(name);
    entry.cache.destroy();
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
    for (const e of this.#entries.values()) e.cache.destroy();
    this.#entries.clear();
  }

  // ---- plumbing --------------------------------------------------------------------------------

  #checkReady(): KeyObject {
    const master = this.#sources.master();
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
    return entry.cache.ring();
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
    existing?.cache.destroy();
    const entry: Entry = {
      resourceVersion: rv,
      stored,
      cache: new MaterialCache(master, r, this.loadedKeys),
    };
    this.#entries.set(secretName, entry);
    return entry;
  }

  async #view(key: KeyResource, entry: Entry): Promise<KeyView> {
    const r = entry.stored.record;
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
