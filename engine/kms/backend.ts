/**
 * Where the KMS plugin's key lives: a local data dir (`data-dir-backend.ts`) or a remote engine
 * (`remote-backend.ts`). The plugin logic (`plugin.ts`) sees only this interface.
 */
import type { KeyState, KeyUsage } from '../keys/model.ts';

/** The public facts of a key that the plugin needs. Times are milliseconds since the epoch. */
export interface KeySnapshot {
  namespace: string;
  name: string;
  usage: KeyUsage;
  convergent: boolean;
  state: KeyState;
  createdTime: number;
  currentVersion: number;
  /** Every version the key has, with its creation time. */
  versions: ReadonlyMap<number, number>;
}

/** See the module comment. Every call fails with a KeywardError that says why. */
export interface KmsBackend {
  /** For logs: `data dir /var/lib/keyward` or `engine https://...`. Never a secret. */
  readonly description: string;
  /**
   * The key as the backend has it. A copy younger than `maxAgeMs` may be returned without asking
   * the backend again; 0 always asks (a remote call, or a stat of the record file).
   */
  snapshot(maxAgeMs: number, timeoutMs: number): Promise<KeySnapshot>;
  /**
   * Encrypts `plaintext` with `aad`. A backend that can choose the version uses `version`; a
   * remote engine always uses its current one. Returns the `keyward:v<N>:` ciphertext and the
   * version it names.
   */
  encrypt(
    version: number,
    plaintext: Uint8Array,
    aad: Uint8Array,
    timeoutMs: number,
  ): Promise<{ ciphertext: string; version: number }>;
  /** Decrypts a `keyward:v<N>:` ciphertext with `aad`. */
  decrypt(ciphertext: string, aad: Uint8Array, timeoutMs: number): Promise<Buffer>;
  /** Releases what the backend holds (worker threads, sockets, material). */
  close(): Promise<void>;
}
