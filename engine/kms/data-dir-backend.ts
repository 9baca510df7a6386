/**
 * The KMS plugin's local backend: a key in a standalone data dir (`keyward serve --data-dir`), as a
 * static pod on a control-plane node uses it, since the apiserver cannot depend on in-cluster pods
 * to start.
 *
 * It only reads the data dir's key records and master key (and writes its own nonce count beside
 * them: nonce-file.ts, so its encryptions count in the key's nonce budget). It takes no lock, so
 * it runs beside a `keyward serve` on the same data dir, which stays the only writer (rotation,
 * disable, automatic rotation, deletion all happen there). Records are replaced by rename
 * (atomic-write.ts), so a read always sees a whole record; the plugin notices a change by the
 * file's identity (inode, size, mtime) and re-reads it. Material is unwrapped with the master key
 * on first use of a version and kept in memory; a version that no longer unwraps makes the
 * plugin read the master key again once (the master key was rotated and everything re-wrapped).
 *
 * The cryptography runs in the engine's CryptoEngine (one worker thread), so the plugin's
 * ciphertexts are the engine's `keyward:v<N>:` format and any Keyward tool can read them.
 */

import { access, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCiphertext } from '../crypto/format.ts';
import type { MasterKeys } from '../crypto/master-keys.ts';
import { CryptoEngine, type KeyRing } from '../engine.ts';
import { invalidCiphertext, KeywardError } from '../errors.ts';
import type { KeyRecord } from '../keys/model.ts';
import { countsNonces, DEFAULT_NONCE_BUDGET } from '../keys/nonce-budget.ts';
import { incarnationId, MaterialCache } from '../service/rings.ts';
import { errnoCode, isErrno } from '../store/errno.ts';
import { MASTER_KEY_ENV, MASTER_KEY_FILE, readMasterKeys } from '../store/master-key.ts';
import { decodeKeyRecord } from '../store/record-codec.ts';
import type { KeySnapshot, KmsBackend } from './backend.ts';
import { KmsNonceLedger } from './nonce-file.ts';

/** Options of {@link DataDirBackend.open}. */
export interface DataDirBackendOptions {
  dataDir: string;
  namespace: string;
  name: string;
  /** For `KEYWARD_MASTER_KEY_FILE`; default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Worker threads of the crypto pool; default 1 (the apiserver calls rarely). */
  threads?: number;
  /** This plugin's id for its nonce count (`kmsPluginId(socket)`); default `kms-plugin`. */
  pluginId?: string;
  /** Random-nonce encryptions per key version; keyward serve's `--nonce-budget`; 2^30. */
  nonceBudget?: number;
}

/**
 * Where FileKeyStore keeps a record (engine/store/file-key-store.ts): one file per key, named by
 * the lowercased key name. The plugin reads that file alone instead of opening the store, which
 * would load (and tidy) every record of a data dir another process owns.
 */
export function recordPath(dataDir: string, namespace: string, name: string): string {
  return join(dataDir, 'keys', namespace, `${name.toLowerCase()}.json`);
}

/** See the module comment. Create with `DataDirBackend.open`. */
export class DataDirBackend implements KmsBackend {
  readonly description: string;
  readonly #dataDir: string;
  readonly #namespace: string;
  readonly #name: string;
  readonly #path: string;
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #engine: CryptoEngine;
  #record: KeyRecord | undefined;
  #stamp: string | undefined;
  #checkedAt = Number.NEGATIVE_INFINITY;
  #reloading: Promise<void> | undefined;
  #master: MasterKeys | undefined;
  #cache: MaterialCache | undefined;
  readonly #rings = new Map<number, KeyRing>();
  readonly #nonces: KmsNonceLedger;

  private constructor(opts: DataDirBackendOptions) {
    this.#dataDir = opts.dataDir;
    this.#namespace = opts.namespace;
    this.#name = opts.name;
    this.#path = recordPath(opts.dataDir, opts.namespace, opts.name);
    this.#env = opts.env ?? process.env;
    this.#engine = new CryptoEngine({ threads: opts.threads ?? 1 });
    this.description = `data dir ${opts.dataDir}`;
    this.#nonces = new KmsNonceLedger(
      opts.dataDir,
      opts.pluginId ?? 'kms-plugin',
      opts.nonceBudget ?? DEFAULT_NONCE_BUDGET,
    );
  }

  /** Checks that the data dir exists (a typo should stop the start, not look like a missing key). */
  static async open(opts: DataDirBackendOptions): Promise<DataDirBackend> {
    let isDir: boolean;
    try {
      isDir = (await stat(opts.dataDir)).isDirectory();
    } catch (err) {
      throw new KeywardError(
        'INVALID_ARGUMENT',
        `cannot use the data dir ${opts.dataDir} (${errnoCode(err)})`,
        { field: 'data-dir' },
      );
    }
    if (!isDir)
      throw new KeywardError('INVALID_ARGUMENT', `${opts.dataDir} is not a directory`, { field: 'data-dir' });
    return new DataDirBackend(opts);
  }

  async snapshot(maxAgeMs: number): Promise<KeySnapshot> {
    if (this.#record === undefined || performance.now() - this.#checkedAt >= maxAgeMs) await this.#reload();
    const record = this.#record;
    if (record === undefined) throw this.#notFound();
    return toSnapshot(record);
  }

  async encrypt(
    version: number,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ): Promise<{ ciphertext: string; version: number }> {
    await this.#ensureMaterial(version);
    // Counted durably before the random nonce is drawn (nonce-file.ts).
    const record = this.#record;
    if (record === undefined) throw this.#notFound();
    if (countsNonces(record)) await this.#nonces.spend(record, version);
    const out = await this.#engine.encrypt(this.#ring(version), { plaintext, aad });
    return { ciphertext: out.ciphertext, version: out.keyVersion };
  }

  async decrypt(ciphertext: string, aad: Uint8Array): Promise<Buffer> {
    const { version } = parseCiphertext(ciphertext);
    await this.#ensureMaterial(version);
    return (await this.#engine.decrypt(this.#ring(version), { ciphertext, aad })).plaintext;
  }

  async close(): Promise<void> {
    await this.#engine.close();
    this.#cache?.destroy();
  }

  #notFound(): KeywardError {
    return new KeywardError(
      'KEY_NOT_FOUND',
      `key ${this.#namespace}/${this.#name} not found in the data dir ${this.#dataDir}`,
      { field: 'key' },
    );
  }

  /** Re-reads the record when its file changed; one reload at a time. */
  #reload(): Promise<void> {
    this.#reloading ??= this.#doReload().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async #doReload(): Promise<void> {
    let stamp: string;
    try {
      const st = await stat(this.#path, { bigint: true });
      stamp = `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) {
        throw new KeywardError('UNAVAILABLE', `cannot read ${this.#path} (${errnoCode(err)})`);
      }
      this.#forget();
      this.#checkedAt = performance.now();
      throw this.#notFound();
    }
    this.#checkedAt = performance.now();
    if (stamp === this.#stamp && this.#record !== undefined) return;
    let text: string;
    try {
      text = await readFile(this.#path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        this.#forget();
        throw this.#notFound();
      }
      throw new KeywardError('UNAVAILABLE', `cannot read ${this.#path} (${errnoCode(err)})`);
    }
    const record = decodeKeyRecord(text, `${this.#namespace}/${this.#name.toLowerCase()}.json`);
    if (record.namespace !== this.#namespace || record.name.toLowerCase() !== this.#name.toLowerCase()) {
      throw new KeywardError('INTERNAL', `${this.#path} holds another key's record`);
    }
    this.#master ??= await this.#loadMaster();
    const previous = this.#record;
    if (
      this.#cache === undefined ||
      previous === undefined ||
      incarnationId(previous) !== incarnationId(record)
    ) {
      // A new incarnation (destroyed and created again): nothing of the old one may be used.
      this.#cache?.destroy();
      this.#cache = new MaterialCache(this.#master, record);
      this.#rings.clear();
    } else {
      this.#cache.update(record);
    }
    this.#record = record;
    this.#stamp = stamp;
  }

  #forget(): void {
    this.#cache?.destroy();
    this.#cache = undefined;
    this.#record = undefined;
    this.#stamp = undefined;
    this.#rings.clear();
  }

  /**
   * The master key, read the way `keyward serve` reads it. It is never created here: a data dir
   * without one holds no key this plugin could use.
   */
  async #loadMaster(): Promise<MasterKeys> {
    const external = this.#env[MASTER_KEY_ENV];
    if (external === undefined || external === '') {
      try {
        await access(join(this.#dataDir, MASTER_KEY_FILE));
      } catch (err) {
        throw new KeywardError(
          'UNAVAILABLE',
          `the data dir ${this.#dataDir} has no readable ${MASTER_KEY_FILE} (${errnoCode(err)}) and ${MASTER_KEY_ENV} is not set`,
        );
      }
    }
    // Every version the file holds: during a master-key rotation records of both versions unwrap.
    return readMasterKeys(this.#dataDir, this.#env);
  }

  /** The engine's ring pinned to `version` (the same object per version, so workers cache keys). */
  #ring(version: number): KeyRing {
    let ring = this.#rings.get(version);
    if (ring === undefined) {
      const record = this.#record;
      if (record === undefined) throw this.#notFound();
      ring = {
        id: incarnationId(record),
        usage: record.usage,
        convergent: record.convergent,
        currentVersion: version,
        version: (v) => this.#cache?.version(v),
      };
      this.#rings.set(version, ring);
    }
    return ring;
  }

  /**
   * Unwraps `version` before the engine asks for it synchronously. If it does not unwrap, the
   * master key may have been rotated (every record re-wrapped under a new one): read it again
   * once and retry.
   */
  async #ensureMaterial(version: number): Promise<void> {
    const record = this.#record;
    if (record === undefined) throw this.#notFound();
    if (!record.versions.some((v) => v.version === version)) throw invalidCiphertext();
    try {
      this.#cache!.version(version);
      return;
    } catch {
      // fall through: reload the master key
    }
    this.#master = await this.#loadMaster();
    this.#cache?.destroy();
    this.#cache = new MaterialCache(this.#master, record);
    this.#rings.clear();
    try {
      this.#cache.version(version);
    } catch {
      throw new KeywardError(
        'INTERNAL',
        `key ${this.#namespace}/${this.#name} version ${version} does not unwrap with the data dir's master key`,
      );
    }
  }
}

/** The snapshot of a stored record. */
export function toSnapshot(record: KeyRecord): KeySnapshot {
  return {
    namespace: record.namespace,
    name: record.name,
    usage: record.usage,
    convergent: record.convergent,
    state: record.state,
    createdTime: record.createdTime,
    currentVersion: record.currentVersion,
    versions: new Map(record.versions.map((v) => [v.version, v.createdTime])),
  };
}
