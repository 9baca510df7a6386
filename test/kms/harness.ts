/**
 * Real processes for the KMS plugin suites: `keyward kms-plugin` as a child process on a unix
 * socket, and a gRPC client built from the published `.proto` that calls it as the apiserver does.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import type { DecryptResponse, EncryptResponse, StatusResponse } from '../../engine/kms/proto.ts';
import { kmsClientConstructor } from '../../engine/kms/proto.ts';
import { MAIN } from '../cli/harness.ts';

export { MAIN, runCli, startServerProcess } from '../cli/harness.ts';

type Callback<T> = (err: ServiceError | null, value?: T) => void;
interface RawClient {
  Status(req: object, opts: { deadline: number }, cb: Callback<StatusResponse>): void;
  Encrypt(req: object, opts: { deadline: number }, cb: Callback<EncryptResponse>): void;
  Decrypt(req: object, opts: { deadline: number }, cb: Callback<DecryptResponse>): void;
  close(): void;
}

/** A KMS v2 client on a unix socket; every call has a deadline, as the apiserver's do. */
export class KmsClient {
  readonly #raw: RawClient;
  #uid = 0;

  constructor(socketPath: string) {
    const Client = kmsClientConstructor() as unknown as new (address: string, creds: unknown) => RawClient;
    this.#raw = new Client(`unix://${socketPath}`, credentials.createInsecure());
  }

  status(timeoutMs = 10_000): Promise<StatusResponse> {
    return this.#call('Status', {}, timeoutMs);
  }

  encrypt(plaintext: Buffer, timeoutMs = 10_000): Promise<EncryptResponse> {
    return this.#call('Encrypt', { plaintext, uid: `test-${++this.#uid}` }, timeoutMs);
  }

  decrypt(ciphertext: Buffer, keyId: string, timeoutMs = 10_000): Promise<DecryptResponse> {
    return this.#call('Decrypt', { ciphertext, key_id: keyId, uid: `test-${++this.#uid}` }, timeoutMs);
  }

  close(): void {
    this.#raw.close();
  }

  #call<T>(method: 'Status' | 'Encrypt' | 'Decrypt', req: object, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      (this.#raw[method] as (r: object, o: { deadline: number }, cb: Callback<T>) => void).call(
        this.#raw,
        req,
        { deadline: Date.now() + timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value as T)),
      );
    });
  }
}

/** The gRPC error of a rejected call (`code`, `details`). */
export async function grpcError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('the call succeeded');
}

/** A running `keyward kms-plugin`. */
export interface PluginProcess {
  proc: ChildProcess;
  socketPath: string;
  client: KmsClient;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL; resolves when it is gone. */
  kill9(): Promise<void>;
}

/** Options of {@link startPlugin}. */
export interface StartPluginOptions {
  env?: Record<string, string>;
  /** Resolve once the process exits instead of waiting for it to serve (for start failures). */
  expectExit?: boolean;
}

/** Runs `keyward kms-plugin --listen unix://<socketPath> ...args` and waits until it serves. */
export async function startPlugin(
  socketPath: string,
  args: string[],
  opts: StartPluginOptions = {},
): Promise<PluginProcess> {
  const proc = spawn(process.execPath, [MAIN, 'kms-plugin', '--listen', `unix://${socketPath}`, ...args], {
    env: {
      ...process.env,
      KEYWARD_ADDR: '',
      KEYWARD_TOKEN: '',
      KEYWARD_CA_FILE: '',
      KEYWARD_LOG_LEVEL: 'debug',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c) => {
    out += c;
  });
  proc.stderr!.on('data', (c) => {
    out += c;
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const client = new KmsClient(socketPath);
  const plugin: PluginProcess = {
    proc,
    socketPath,
    client,
    output: () => out,
    stop: async () => {
      client.close();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      client.close();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
  if (opts.expectExit) {
    await exited;
    return plugin;
  }
  const deadline = Date.now() + 60_000;
  while (!(out.includes('"kms plugin serving"') && existsSync(socketPath))) {
    if (proc.exitCode !== null) throw new Error(`kms-plugin exited ${proc.exitCode}: ${out}`);
    if (Date.now() > deadline) throw new Error(`kms-plugin did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return plugin;
}

/**
 * Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`.
 * (test/cluster/harness.ts has the same helper, but importing it pulls vitest into the bench.)
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
