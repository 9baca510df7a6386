/**
 * The cryptographic half of a KeyBackend, shared by the standalone KeyService and the cluster
 * engine's backend: each resolves a usable KeyRing its own way (file store or informers), and the
 * operations themselves are the same calls into the CryptoEngine.
 */
import type { JsonWebKey } from 'node:crypto';
import type {
  BatchInputs,
  BatchItemResult,
  BatchOperation,
  BatchOutputs,
  CiphertextOutput,
  CryptoEngine,
  DataKeyInput,
  DataKeyOutput,
  DecryptInput,
  EncryptInput,
  KeyRing,
  SignatureOutput,
  SignInput,
  VerifyInput,
} from '../engine.ts';
import type { KeyOperation } from '../keys/model.ts';

/** See the module comment. Subclasses supply `usableRing`. */
export abstract class CryptoBackend {
  protected readonly engine: CryptoEngine;

  constructor(engine: CryptoEngine) {
    this.engine = engine;
  }

  /**
   * The ring of a key that may be used for `operation` here (it exists, is Enabled, is in this
   * engine's region), recording `count` uses; throws the KeywardError that says why not.
   */
  protected abstract usableRing(
    namespace: string,
    name: string,
    operation: KeyOperation,
    count: number,
  ): KeyRing;

  /** Items waiting in the engine's queue, for /metrics. */
  queueDepth(): number {
    return this.engine.pool.pendingItems;
  }

  async encrypt(namespace: string, name: string, input: EncryptInput): Promise<CiphertextOutput> {
    return this.engine.encrypt(this.usableRing(namespace, name, 'encrypt', 1), input);
  }

  async decrypt(namespace: string, name: string, input: DecryptInput): Promise<{ plaintext: Buffer }> {
    return this.engine.decrypt(this.usableRing(namespace, name, 'decrypt', 1), input);
  }

  async reEncrypt(namespace: string, name: string, input: DecryptInput): Promise<CiphertextOutput> {
    return this.engine.reEncrypt(this.usableRing(namespace, name, 're-encrypt', 1), input);
  }

  async sign(namespace: string, name: string, input: SignInput): Promise<SignatureOutput> {
    return this.engine.sign(this.usableRing(namespace, name, 'sign', 1), input);
  }

  async verify(namespace: string, name: string, input: VerifyInput): Promise<{ valid: boolean }> {
    return this.engine.verify(this.usableRing(namespace, name, 'verify', 1), input);
  }

  async dataKey(namespace: string, name: string, input: DataKeyInput): Promise<DataKeyOutput> {
    return this.engine.dataKey(this.usableRing(namespace, name, 'generate-data-key', 1), input);
  }

  async publicKey(
    namespace: string,
    name: string,
    version?: number,
  ): Promise<{ keyVersion: number; pem: string; jwk: JsonWebKey }> {
    return this.engine.publicKey(this.usableRing(namespace, name, 'get-public-key', 1), version);
  }

  /** One operation over many items, the key resolved (and its use counted) once. */
  async batch<O extends BatchOperation>(
    namespace: string,
    name: string,
    op: O,
    items: BatchInputs[O][],
  ): Promise<BatchItemResult<BatchOutputs[O]>[]> {
    return this.engine.batch(op, this.usableRing(namespace, name, op, items.length), items);
  }
}
