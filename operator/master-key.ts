/**
 * The operator's master key: read from its Secret, created only for a cluster that has never had
 * material, and followed while the replica leads.
 *
 * - A missing master-key Secret is created (32 random bytes) only when no material Secret exists:
 *   a new master key over existing material would make it unreadable for good (issue #11). With
 *   material present the operator logs what to do and runs without a master key: every Key with
 *   material then reports `Ready=False` reason `MasterKeyMismatch`, nothing is generated or
 *   overwritten, and restoring the Secret brings the keys back.
 * - The Secret is read again every `pollMs`; when it changed (a restore, a master-key rotation)
 *   `onChange` runs, so every Key is checked against the new set.
 * - While any existing material does not match the master key held (`mismatched`), no material
 *   is wrapped at all, not even for new Keys: it would be unreadable once the right master key
 *   is restored.
 */
import { randomBytes } from 'node:crypto';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { describeError, isConflict, isNotFound } from '../engine/kube/client.ts';
import {
  MASTER_KEY_ENTRY,
  MASTER_KEY_ROTATED_ANNOTATION,
  type MasterKeySet,
  masterKeyMismatch,
  masterKeysFromSecret,
  ROTATE_MASTER_KEY_ANNOTATION,
  withNewMasterKeyVersion,
  withoutMasterKeyVersions,
  wrappingVersions,
} from '../engine/kube/master-key-secret.ts';
import { decodeMaterialSecret, MANAGED_BY, type StoredKey } from '../engine/kube/material-secret.ts';
import type { Logger } from './log.ts';

/** What reading the master key gave. */
export type MasterKeyState =
  /** `created`: this call created the Secret (the audit log records it). */
  | { kind: 'ready'; set: MasterKeySet; secret: V1Secret; created?: true }
  /** The Secret is absent while material exists: it must be restored, never re-created. */
  | { kind: 'missing' };

/**
 * Reads the master-key Secret `name`, creating it when absent and `hasMaterial()` is false. An
 * existing Secret is never overwritten; when two operators race to create it, the loser (409)
 * reads the winner's. Throws on apiserver errors and on a malformed Secret.
 */
export async function loadMasterKey(
  core: CoreV1Api,
  namespace: string,
  name: string,
  hasMaterial: () => boolean,
): Promise<MasterKeyState> {
  let created = false;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const secret = await core.readNamespacedSecret({ name, namespace });
      const set = masterKeysFromSecret(secret);
      return created ? { kind: 'ready', set, secret, created } : { kind: 'ready', set, secret };
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (hasMaterial()) return { kind: 'missing' };
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
      created = true;
    } catch (err) {
      if (!isConflict(err)) throw err;
    } finally {
      raw.fill(0);
    }
  }
  throw new Error('could not read or create the master-key Secret');
}

/** Options of {@link MasterKeyWatch}. */
export interface MasterKeyWatchOptions {
  core: CoreV1Api;
  namespace: string;
  name: string;
  /** True when a material Secret exists (the informer cache). */
  hasMaterial: () => boolean;
  /**
   * Every material Secret (the informer cache), to find master-key versions nothing uses;
   * undefined while the cache is not synced (then nothing is retired).
   */
  listMaterial?: () => V1Secret[] | undefined;
  /** Called after the set changed (appeared, was replaced, or went missing). */
  onChange: () => void;
  /** How often the Secret is read again; 10 s. */
  pollMs?: number;
  log: Logger;
  signal: AbortSignal;
}

/** Holds the current master-key state for one leadership term (see the module comment). */
export class MasterKeyWatch {
  readonly #o: MasterKeyWatchOptions;
  #state: MasterKeyState | undefined;
  #timer: NodeJS.Timeout | undefined;
  #created = false;
  /**
   * Set when some existing material does not match the master key held: then nothing new is
   * wrapped either (it would be lost when the right master key is restored). Re-decided whenever
   * the Secret changes.
   */
  mismatched = false;

  constructor(o: MasterKeyWatchOptions) {
    this.#o = o;
  }

  /** The master keys, or undefined while the Secret is missing over existing material. */
  get set(): MasterKeySet | undefined {
    return this.#state?.kind === 'ready' ? this.#state.set : undefined;
  }

  /** True when this term's first read created the master-key Secret. */
  get created(): boolean {
    return this.#created;
  }

  /** The master-key Secret's name, for messages. */
  get secretName(): string {
    return `${this.#o.namespace}/${this.#o.name}`;
  }

  /** Reads the master key (retrying apiserver errors until the term ends), then starts polling. */
  async start(): Promise<boolean> {
    let delay = 500;
    while (!this.#o.signal.aborted) {
      try {
        this.#state = await this.#load();
        this.#created = this.#state.kind === 'ready' && this.#state.created === true;
        break;
      } catch (err) {
        if (this.#o.signal.aborted) break;
        this.#o.log.error({ err: describeError(err) }, 'cannot get the master key; retrying');
        await sleep(delay, this.#o.signal);
        delay = Math.min(delay * 2, 10_000);
      }
    }
    if (this.#state === undefined) return false;
    this.#timer = setInterval(() => void this.#poll(), this.#o.pollMs ?? 10_000);
    this.#timer.unref();
    this.#o.signal.addEventListener('abort', () => clearInterval(this.#timer), { once: true });
    return true;
  }

  #rotateOrRetire(state: { set: MasterKeySet; secret: V1Secret }): Promise<boolean> {
    const o = this.#o;
    return rotateOrRetireStep(
      state,
      o.listMaterial?.(),
      async (secret) => {
        await o.core.replaceNamespacedSecret({ name: o.name, namespace: o.namespace, body: secret });
      },
      o.log,
    );
  }

  async #load(): Promise<MasterKeyState> {
    const o = this.#o;
    const state = await loadMasterKey(o.core, o.namespace, o.name, o.hasMaterial);
    if (state.kind === 'missing') {
      o.log.error(
        { secret: this.secretName },
        'the master-key Secret is missing but material Secrets exist: restore it from a backup ' +
          '(a new master key would make every key unreadable); no key is served or changed until then',
      );
    }
    return state;
  }

  async #poll(): Promise<void> {
    if (this.#o.signal.aborted) return;
    let next: MasterKeyState;
    try {
      next = await this.#load();
    } catch (err) {
      if (!this.#o.signal.aborted)
        this.#o.log.warn({ err: describeError(err) }, 'master-key Secret not re-read; keeping the last one');
      return;
    }
    const before = this.set?.resourceVersion ?? this.#state?.kind;
    const after = next.kind === 'ready' ? next.set.resourceVersion : next.kind;
    this.#state = next;
    if (next.kind === 'ready' && !this.mismatched) {
      try {
        if (await this.#rotateOrRetire(next)) return; // the next poll reads what was written
      } catch (err) {
        if (!this.#o.signal.aborted)
          this.#o.log.warn({ err: describeError(err) }, 'master-key rotation step failed; retrying');
      }
    }
    if (before !== after) {
      this.mismatched = false;
      this.#o.log.info({ secret: this.secretName }, 'master-key Secret changed; every Key is checked again');
      this.#o.onChange();
    }
  }
}

/**
 * Cluster master-key rotation (docs/security.md), one resumable step per poll, the Secret being
 * the state: a new value of the annotation keyward.io/rotate-master-key adds a new master-key
 * version and makes it current (one conditional write, which also records the value as handled);
 * every Key is then re-wrapped by its next reconcile (operator/reconciler.ts); a version nothing
 * is wrapped under any more is removed from the Secret, its audit checkpoint key kept there. A killed operator resumes from what the
 * Secret and the material Secrets show. Returns true when it wrote the Secret.
 */
export async function rotateOrRetireStep(
  state: { set: MasterKeySet; secret: V1Secret },
  material: readonly V1Secret[] | undefined,
  write: (secret: V1Secret) => Promise<void>,
  log: Logger,
): Promise<boolean> {
  const { set, secret } = state;
  const annotations = secret.metadata?.annotations ?? {};
  const wanted = annotations[ROTATE_MASTER_KEY_ANNOTATION];
  if (wanted !== undefined && wanted !== '' && wanted !== annotations[MASTER_KEY_ROTATED_ANNOTATION]) {
    const raw = randomBytes(32);
    try {
      const { data, version } = withNewMasterKeyVersion(secret.data ?? {}, set, raw);
      await write({
        ...secret,
        metadata: {
          ...secret.metadata,
          annotations: { ...annotations, [MASTER_KEY_ROTATED_ANNOTATION]: wanted },
        },
        data,
      });
      log.warn(
        { version, previous: set.current },
        `master-key rotation: version ${version} is current; every key's material is re-wrapped under it`,
      );
      return true;
    } finally {
      raw.fill(0);
    }
  }
  if (set.versions.length < 2 || material === undefined) return false;
  const used = new Set<number>();
  for (const m of material) {
    try {
      for (const v of wrappingVersions(decodeMaterialSecret({ data: m.data ?? {} }))) used.add(v);
    } catch {
      return false; // a record this operator cannot read may use any version: retire nothing
    }
  }
  const retire = new Set(set.versions.filter((v) => v !== set.current && !used.has(v)));
  if (retire.size === 0) return false;
  await write({ ...secret, data: withoutMasterKeyVersions(secret.data ?? {}, set, retire) });
  log.warn(
    { retired: [...retire], current: set.current },
    `master-key version(s) ${[...retire].join(', ')} retired: nothing is wrapped under them any more ` +
      '(their audit checkpoint keys are kept in the Secret, so older checkpoints still verify)',
  );
  return true;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/**
 * True when any material Secret among `secrets` was wrapped under a master key other than `set`
 * (check values; see engine/kube/master-key-secret.ts). Secrets that cannot be decoded are left
 * to their own reconcile.
 */
export function anyMaterialMismatch(
  secrets: readonly V1Secret[],
  set: MasterKeySet | undefined,
  secretName: string,
): boolean {
  for (const secret of secrets) {
    let stored: StoredKey;
    try {
      stored = decodeMaterialSecret({ data: secret.data ?? {} });
    } catch {
      continue;
    }
    if (masterKeyMismatch(stored, set, secretName) !== undefined) return true;
  }
  return false;
}
