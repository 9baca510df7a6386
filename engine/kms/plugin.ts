/**
 * The KMS v2 plugin's logic (`Status`, `Encrypt`, `Decrypt`), free of gRPC: `grpc-server.ts`
 * calls it and maps its KeywardErrors to gRPC status codes.
 *
 * What the apiserver relies on (KEP-3299), and how this holds to it:
 * - the `key_id` from Status is authoritative, and an Encrypt whose `key_id` differs is thrown
 *   away and counts as a failure. Status decides the `key_id` and the key version it stands for;
 *   Encrypt seals under exactly that version and answers exactly that `key_id`. A backend that
 *   cannot pin the version (a remote engine, which always uses its current one) and finds the key
 *   rotated since Status refuses the Encrypt: the next Status reports the new `key_id`.
 * - Status answers `healthz: "ok"` only after a fresh encrypt/decrypt round trip through the
 *   backend; otherwise healthz says why, in one line (the apiserver shows it in /readyz), and
 *   the `key_id` is empty (see `status`).
 * - a `key_id` is never reused (key-id.ts, key-id-history.ts).
 * Each ciphertext is bound to its `key_id` as AES-GCM additional data, so a ciphertext presented
 * with another `key_id` does not decrypt.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { parseCiphertext } from '../crypto/format.ts';
import { invalidArgument, KeywardError } from '../errors.ts';
import type { KeySnapshot, KmsBackend } from './backend.ts';
import { baseKeyId, type KeyVersionIdentity, parseKeyId, versionTag } from './key-id.ts';
import type { KeyIdHistory } from './key-id-history.ts';
import {
  type DecryptRequest,
  type DecryptResponse,
  type EncryptRequest,
  type EncryptResponse,
  KMS_API_VERSION,
  type StatusResponse,
} from './proto.ts';

/**
 * The largest plaintext Encrypt takes. The apiserver sends a 32-byte DEK seed and refuses an
 * encrypted DEK of 1 kB or more; 512 bytes stays well inside that once sealed and base64-encoded.
 */
export const MAX_ENCRYPT_PLAINTEXT = 512;

/** How stale the key's state may be for Encrypt and Decrypt (a disable takes effect this fast). */
const STATE_MAX_AGE_MS = 1_000;

const PROBE_AAD = Buffer.from('keyward kms-plugin status probe');

/** The additional data that binds a ciphertext to its `key_id`. */
export function keyIdAad(keyId: string): Buffer {
  return Buffer.from(`keyward kms-plugin v2\0${keyId}`, 'utf8');
}

/** Options of {@link KmsPlugin}. */
export interface KmsPluginOptions {
  backend: KmsBackend;
  history: KeyIdHistory;
  namespace: string;
  name: string;
  logger: Logger;
}

interface Reported {
  keyId: string;
  base: string;
  version: number;
}

function identity(snap: KeySnapshot, version: number): KeyVersionIdentity | undefined {
  const versionCreatedTime = snap.versions.get(version);
  if (versionCreatedTime === undefined) return undefined;
  return {
    namespace: snap.namespace,
    name: snap.name,
    keyCreatedTime: snap.createdTime,
    version,
    versionCreatedTime,
  };
}

/** See the module comment. */
export class KmsPlugin {
  readonly #backend: KmsBackend;
  readonly #history: KeyIdHistory;
  readonly #key: string;
  readonly #log: Logger;
  #reported: Reported | undefined;
  #status: Promise<StatusResponse> | undefined;
  #health: string | undefined;

  constructor(opts: KmsPluginOptions) {
    this.#backend = opts.backend;
    this.#history = opts.history;
    this.#key = `${opts.namespace}/${opts.name}`;
    this.#log = opts.logger;
  }

  /** The `key_id` of the last healthy Status, if any. */
  get keyId(): string | undefined {
    return this.#reported?.keyId;
  }

  /**
   * Status: reads the key afresh, checks it can serve, runs a round trip, and reports the
   * current version's `key_id`. Concurrent calls share one check. Never throws: a failure is an
   * unhealthy answer with the reason in `healthz` and an empty `key_id`.
   *
   * Why empty: kube-apiserver (v1.35) extends the life of its current DEK seed on every Status
   * whose `key_id` matches, healthy or not, but never on an invalid (empty) one. An empty `key_id`
   * therefore gives every failure, a disabled key or an unreachable engine included, the same
   * bounded grace as a plugin that is down: writes go on for at most 3 minutes, then stop until
   * the key serves again. The apiserver keeps its own last `key_id` meanwhile.
   */
  status(timeoutMs: number): Promise<StatusResponse> {
    this.#status ??= this.#checkStatus(timeoutMs).finally(() => {
      this.#status = undefined;
    });
    return this.#status;
  }

  async #checkStatus(timeoutMs: number): Promise<StatusResponse> {
    let healthz = 'ok';
    try {
      await this.#probe(timeoutMs);
    } catch (err) {
      if (!(err instanceof KeywardError)) this.#log.error({ err }, 'status check failed unexpectedly');
      healthz = reason(err);
    }
    if (healthz !== this.#health) {
      if (healthz === 'ok')
        this.#log.info({ key: this.#key, keyId: this.#reported?.keyId }, 'kms plugin healthy');
      else this.#log.warn({ key: this.#key, healthz }, 'kms plugin unhealthy');
      this.#health = healthz;
    }
    return { version: KMS_API_VERSION, healthz, key_id: healthz === 'ok' ? this.#reported!.keyId : '' };
  }

  async #probe(timeoutMs: number): Promise<void> {
    // Two tries: a remote engine may rotate between our read and our encrypt.
    for (let attempt = 0; ; attempt++) {
      const snap = await this.#backend.snapshot(0, timeoutMs);
      this.#checkServable(snap);
      const version = snap.currentVersion;
      const id = identity(snap, version);
      if (id === undefined)
        throw new KeywardError('UNAVAILABLE', `key ${this.#key} lists no current version`);
      const probe = randomBytes(32);
      const sealed = await this.#backend.encrypt(version, probe, PROBE_AAD, timeoutMs);
      if (sealed.version !== version) {
        if (attempt === 0) continue;
        throw new KeywardError('UNAVAILABLE', `key ${this.#key} is being rotated; retrying`);
      }
      const opened = await this.#backend.decrypt(sealed.ciphertext, PROBE_AAD, timeoutMs);
      if (opened.length !== probe.length || !timingSafeEqual(opened, probe))
        throw new KeywardError(
          'INTERNAL',
          `an encrypt/decrypt round trip with key ${this.#key} gave other bytes`,
        );
      const base = baseKeyId(id);
      const { keyId, changed } = await this.#history.report(base);
      if (changed) {
        this.#log.info(
          { key: this.#key, version, keyId, previousKeyId: this.#reported?.keyId },
          'key_id changed: the apiserver will seal new DEKs under it',
        );
      }
      this.#reported = { keyId, base, version };
      return;
    }
  }

  /** Encrypt: seals the apiserver's DEK seed under the version Status reported. */
  async encrypt(req: EncryptRequest, timeoutMs: number): Promise<EncryptResponse> {
    const plaintext = req.plaintext;
    if (!Buffer.isBuffer(plaintext) || plaintext.length === 0)
      throw invalidArgument('plaintext', 'plaintext must not be empty');
    if (plaintext.length > MAX_ENCRYPT_PLAINTEXT)
      throw invalidArgument('plaintext', `plaintext must be at most ${MAX_ENCRYPT_PLAINTEXT} bytes`);
    let reported = this.#reported;
    if (reported === undefined) {
      // A restarted plugin asked to Encrypt before any Status: decide the key_id first.
      const status = await this.status(timeoutMs);
      reported = this.#reported;
      if (status.healthz !== 'ok' || reported === undefined)
        throw new KeywardError('UNAVAILABLE', status.healthz);
    }
    const snap = await this.#backend.snapshot(STATE_MAX_AGE_MS, timeoutMs);
    this.#checkServable(snap);
    const id = identity(snap, reported.version);
    if (id === undefined || baseKeyId(id) !== reported.base)
      throw new KeywardError(
        'UNAVAILABLE',
        `key ${this.#key} changed since the last Status; the next Status reports it`,
      );
    const sealed = await this.#backend.encrypt(
      reported.version,
      plaintext,
      keyIdAad(reported.keyId),
      timeoutMs,
    );
    if (sealed.version !== reported.version)
      throw new KeywardError(
        'UNAVAILABLE',
        `key ${this.#key} was rotated since the last Status; the next Status reports the new key_id`,
      );
    return { ciphertext: Buffer.from(sealed.ciphertext, 'utf8'), key_id: reported.keyId, annotations: {} };
  }

  /** Decrypt: opens a DEK seed under the version its `key_id` names. */
  async decrypt(req: DecryptRequest, timeoutMs: number): Promise<DecryptResponse> {
    const parsed = typeof req.key_id === 'string' ? parseKeyId(req.key_id) : undefined;
    if (parsed === undefined)
      throw invalidArgument('key_id', 'key_id was not issued by a Keyward KMS plugin');
    const [namespace, name] = this.#key.split('/') as [string, string];
    if (parsed.namespace !== namespace || parsed.name !== name.toLowerCase())
      throw new KeywardError(
        'KEY_NOT_FOUND',
        `key_id names key ${parsed.namespace}/${parsed.name}; this plugin serves ${this.#key}`,
        { field: 'key_id' },
      );
    const ciphertext = Buffer.isBuffer(req.ciphertext) ? req.ciphertext.toString('utf8') : '';
    let version: number;
    try {
      version = parseCiphertext(ciphertext).version;
    } catch {
      throw invalidArgument('ciphertext', 'ciphertext is invalid');
    }
    if (version !== parsed.version)
      throw invalidArgument('ciphertext', 'ciphertext does not match its key_id');
    let snap = await this.#backend.snapshot(STATE_MAX_AGE_MS, timeoutMs);
    // A version we have not seen yet: another control-plane node's plugin may have seen the
    // rotation first. Read the key once more before calling it unknown.
    if (!snap.versions.has(version)) snap = await this.#backend.snapshot(0, timeoutMs);
    const id = identity(snap, version);
    if (id === undefined)
      throw new KeywardError('KEY_NOT_FOUND', `key ${this.#key} has no version ${version}`, {
        field: 'key_id',
      });
    if (versionTag(id) !== parsed.tag)
      throw new KeywardError(
        'KEY_NOT_FOUND',
        `key_id names a version ${version} that key ${this.#key} does not have: an earlier incarnation of the key (destroyed and created again) or a forged key_id`,
        { field: 'key_id' },
      );
    this.#checkUsable(snap);
    const plaintext = await this.#backend.decrypt(ciphertext, keyIdAad(req.key_id), timeoutMs);
    return { plaintext };
  }

  /** The key can be this plugin's key at all, and is usable now. */
  #checkServable(snap: KeySnapshot): void {
    if (snap.usage !== 'AES256' || snap.convergent)
      throw new KeywardError(
        'KEY_STATE',
        `key ${this.#key} is ${snap.convergent ? 'a convergent AES256 key' : `an ${snap.usage} key`}; the KMS plugin needs a non-convergent AES256 key`,
      );
    this.#checkUsable(snap);
  }

  #checkUsable(snap: KeySnapshot): void {
    if (snap.state === 'Enabled') return;
    const [, name] = this.#key.split('/');
    throw new KeywardError(
      'KEY_STATE',
      snap.state === 'Disabled'
        ? `key ${this.#key} is Disabled: the cluster cannot seal or open DEKs until it is enabled again (keyward key enable ${name})`
        : `key ${this.#key} is PendingDeletion: cancel the deletion and enable it, or the cluster's encrypted data will be lost`,
    );
  }
}

/** The one-line reason Status gives for a failure; never a stack trace or a byte of material. */
function reason(err: unknown): string {
  if (err instanceof KeywardError) return err.message.split('\n')[0]!;
  return 'the KMS plugin failed unexpectedly; see its log';
}
