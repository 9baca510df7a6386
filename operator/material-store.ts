/**
 * Secret I/O for key material and the master key, in the operator's namespace. Only the leader
 * calls the writing methods. Writes are conditional on resourceVersion, so a stale read (or a
 * stale leader) gets a 409 and the reconcile is retried instead of overwriting newer material.
 */
import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { fingerprint } from '../engine/crypto/fingerprint.ts';
import { generateMaterial, generateMaterialAsync } from '../engine/crypto/material.ts';
import { wrapMaterial } from '../engine/crypto/wrap.ts';
import { isConflict, isNotFound } from '../engine/kube/client.ts';
import {
  MASTER_KEY_ENTRY,
  MASTER_KEY_SECRET,
  masterKeyFromSecret,
} from '../engine/kube/master-key-secret.ts';
import {
  decodeMaterialSecret,
  encodeMaterialSecret,
  MANAGED_BY,
  materialSecretName,
  type StoredKey,
} from '../engine/kube/material-secret.ts';

export { MASTER_KEY_ENTRY, MASTER_KEY_SECRET } from '../engine/kube/master-key-secret.ts';

/**
 * Returns the master key from Secret `name`, creating it with 32 random bytes when absent. An
 * existing Secret is never overwritten; when two operators race to create it, the loser (409)
 * reads the winner's. `onCreated` is called when this call created it (the audit log records it).
 */
export async function ensureMasterKey(
  core: CoreV1Api,
  namespace: string,
  name = MASTER_KEY_SECRET,
  onCreated?: () => void,
): Promise<KeyObject> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return masterKeyFromSecret(await core.readNamespacedSecret({ name, namespace }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const raw = randomBytes(32);
    try {
      await core.createNamespacedSecret({
        namespace,
        body: {
          metadata: {
            name,
            labels: { 'app.kubernetes.io/managed-by': MANAGED_BY, 'keyward.io/master-key': 'true' },
          },
          type: 'keyward.io/master-key',
          data: { [MASTER_KEY_ENTRY]: raw.toString('base64') },
        },
      });
      onCreated?.();
      return createSecretKey(raw);
    } catch (err) {
      if (!isConflict(err)) throw err;
    } finally {
      raw.fill(0);
    }
  }
  throw new Error('could not read or create the master-key Secret');
}

/** A material Secret as read: the decoded key and the resourceVersion to write against. */
export interface LoadedMaterial {
  stored: StoredKey;
  resourceVersion: string | undefined;
}

/** Where the store reads Secrets from: an informer cache of material Secrets. */
export interface SecretCache {
  get(name: string, namespace: string): V1Secret | undefined;
}

/**
 * Reads, writes and erases material Secrets.
 *
 * Reads come from the informer cache, overlaid with this process's own recent writes until the
 * cache has caught up with them (`observe`). Only the leader writes these Secrets, so its own
 * last write is the newest version; should anyone else change a Secret meanwhile, the next
 * conditional write fails with 409, the overlay is replaced by a fresh read, and the queue
 * retries. Without a cache (`cache` undefined) every load is a GET.
 */
export class MaterialStore {
  private readonly core: CoreV1Api;
  private readonly namespace: string;
  private readonly master: KeyObject;
  private readonly cache: SecretCache | undefined;
  private readonly writer: string | undefined;
  /** Secret name → our last written version (null: we deleted it). */
  private readonly overlay = new Map<string, V1Secret | null>();

  /**
   * `core` should be fenced by the leadership term; `writer` (the replica's Lease identity) is
   * recorded on every Secret written (annotation `keyward.io/written-by`).
   */
  constructor(
    core: CoreV1Api,
    operatorNamespace: string,
    master: KeyObject,
    cache?: SecretCache,
    writer?: string,
  ) {
    this.core = core;
    this.namespace = operatorNamespace;
    this.master = master;
    this.cache = cache;
    this.writer = writer;
  }

  /** Tells the store what the informer now shows, dropping overlay entries it has caught up with. */
  observe(name: string, secret: V1Secret | null): void {
    if (!this.overlay.has(name)) return;
    const mine = this.overlay.get(name);
    if (
      mine === null ? secret === null : secret?.metadata?.resourceVersion === mine?.metadata?.resourceVersion
    ) {
      this.overlay.delete(name);
    }
  }

  /** The material of Key `namespace/name`, or undefined. Throws on a Secret it cannot decode. */
  async load(namespace: string, name: string): Promise<LoadedMaterial | undefined> {
    const secretName = materialSecretName(namespace, name);
    let secret: V1Secret | null | undefined;
    if (this.cache === undefined) {
      secret = this.overlay.has(secretName) ? this.overlay.get(secretName) : await this.read(secretName);
    } else {
      const cached = this.cache.get(secretName, this.namespace);
      this.observe(secretName, cached ?? null);
      secret = this.overlay.has(secretName) ? this.overlay.get(secretName) : cached;
    }
    if (secret === null || secret === undefined) return undefined;
    return {
      stored: decodeMaterialSecret({ data: secret.data ?? {} }),
      resourceVersion: secret.metadata?.resourceVersion,
    };
  }

  private async read(secretName: string): Promise<V1Secret | null> {
    try {
      return await this.core.readNamespacedSecret({ name: secretName, namespace: this.namespace });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** After a 409: replace what we believe with a fresh read, so the retry starts from the truth. */
  private async refresh(secretName: string): Promise<void> {
    this.overlay.set(secretName, await this.read(secretName));
  }

  /**
   * Generates, wraps and fingerprints the material of `newVersions` (which have `wrapped: ''`),
   * returning the completed key. Plaintext material lives only in this function.
   */
  async fillVersions(stored: StoredKey, newVersions: readonly number[]): Promise<StoredKey> {
    if (newVersions.length === 0) return stored;
    const r = stored.record;
    let fp = stored.fingerprint;
    const versions = [];
    for (const v of r.versions) {
      if (!newVersions.includes(v.version)) {
        versions.push(v);
        continue;
      }
      // 32 random bytes are cheaper drawn at once than through the thread pool; key pairs are not.
      const material =
        r.usage === 'AES256' ? generateMaterial(r.usage) : await generateMaterialAsync(r.usage);
      try {
        const wrapped = wrapMaterial(
          this.master,
          { store: r.namespace, name: r.name, usage: r.usage, version: v.version },
          material,
        );
        if (v.version === r.currentVersion) fp = await fingerprint(r.usage, material);
        versions.push({ ...v, wrapped: wrapped.toString('base64') });
      } finally {
        material.fill(0);
      }
    }
    const next: StoredKey = { ...stored, record: { ...r, versions } };
    if (fp !== undefined) next.fingerprint = fp;
    return next;
  }

  /** Creates the Secret (409 if it exists) or replaces it at `resourceVersion` (409 if stale). */
  async save(stored: StoredKey, resourceVersion: string | undefined): Promise<void> {
    const body = encodeMaterialSecret(this.namespace, stored, this.writer) as V1Secret;
    const secretName = body.metadata?.name ?? '';
    try {
      let written: V1Secret;
      if (resourceVersion === undefined) {
        written = await this.core.createNamespacedSecret({ namespace: this.namespace, body });
      } else {
        body.metadata = { ...body.metadata, resourceVersion };
        written = await this.core.replaceNamespacedSecret({
          name: secretName,
          namespace: this.namespace,
          body,
        });
      }
      this.overlay.set(secretName, written);
    } catch (err) {
      if (isConflict(err)) await this.refresh(secretName);
      throw err;
    }
  }

  /** Deletes the Secret of Key `namespace/name` (the material is erased); absent is fine. */
  async erase(namespace: string, name: string, resourceVersion: string | undefined): Promise<void> {
    const secretName = materialSecretName(namespace, name);
    try {
      await this.core.deleteNamespacedSecret({
        name: secretName,
        namespace: this.namespace,
        body: resourceVersion === undefined ? {} : { preconditions: { resourceVersion } },
      });
    } catch (err) {
      if (isConflict(err)) await this.refresh(secretName);
      if (!isNotFound(err)) throw err;
    }
    this.overlay.set(secretName, null);
  }
}
