/**
 * The KMS plugin's gRPC server on a unix socket, with @grpc/grpc-js: the three RPCs of
 * `KeyManagementService`, each bounded by the apiserver's deadline (capped by `--timeout`), and
 * KeywardErrors mapped to gRPC status codes. Logs carry the apiserver's request `uid`, the RPC,
 * the outcome and the time taken; never a plaintext, a ciphertext or key material.
 *
 * The socket file is created mode 0600 (the apiserver runs as root, or as the same user). A
 * socket left behind by a killed plugin is replaced; a socket another process still answers on,
 * or a path that is not a socket, is refused. Closing removes the socket.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import {
  status as GrpcStatus,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { type ErrorCode, KeywardError } from '../errors.ts';
import { errnoCode, isErrno } from '../store/errno.ts';
import type { KmsPlugin } from './plugin.ts';
import { kmsServiceDefinition } from './proto.ts';

/** gRPC status code of each Keyward error code. */
export const GRPC_CODE: Readonly<Record<ErrorCode, GrpcStatus>> = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  PAYLOAD_TOO_LARGE: GrpcStatus.INVALID_ARGUMENT,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  KEY_NOT_FOUND: GrpcStatus.NOT_FOUND,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  METHOD_NOT_ALLOWED: GrpcStatus.UNIMPLEMENTED,
  KEY_STATE: GrpcStatus.FAILED_PRECONDITION,
  OVERLOADED: GrpcStatus.RESOURCE_EXHAUSTED,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  INTERNAL: GrpcStatus.INTERNAL,
};

/** Requests are a DEK seed, a `key_id` and at most 32 kB of annotations: refuse anything huge. */
const MAX_MESSAGE_BYTES = 64 * 1024;
// Leave the apiserver this much of its deadline to receive our answer.
const DEADLINE_MARGIN_MS = 50;

/** Options of {@link startKmsServer}. */
export interface KmsServerOptions {
  /** Absolute path of the unix socket. */
  socketPath: string;
  plugin: KmsPlugin;
  logger: Logger;
  /** Longest a call may take when the apiserver's deadline allows more. */
  timeoutMs: number;
}

/** A running plugin server. */
export interface KmsServer {
  socketPath: string;
  /** Stops taking calls, lets running ones finish for up to `graceMs`, and removes the socket. */
  close(graceMs?: number): Promise<void>;
}

/** Removes a socket left by a dead plugin; refuses a live one or a path that is not a socket. */
export async function claimSocketPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw new KeywardError('INVALID_ARGUMENT', `cannot use the socket path ${path} (${errnoCode(err)})`, {
      field: 'listen',
    });
  }
  if (!isSocket)
    throw new KeywardError('INVALID_ARGUMENT', `${path} exists and is not a socket; refusing to replace it`, {
      field: 'listen',
    });
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive)
    throw new KeywardError(
      'UNAVAILABLE',
      `another process is serving on ${path}; is a plugin already running?`,
      {
        field: 'listen',
      },
    );
  await unlink(path).catch((err: unknown) => {
    if (!isErrno(err, 'ENOENT')) throw err;
  });
}

function remainingMs(deadline: Date | number, cap: number): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return cap;
  return Math.min(cap, at - Date.now() - DEADLINE_MARGIN_MS);
}

function toServiceError(err: unknown): Partial<ServiceError> {
  if (err instanceof KeywardError) return { code: GRPC_CODE[err.code], details: err.message.split('\n')[0]! };
  return { code: GrpcStatus.INTERNAL, details: 'the KMS plugin failed unexpectedly; see its log' };
}

/** Binds the socket and serves until `close`. */
export async function startKmsServer(opts: KmsServerOptions): Promise<KmsServer> {
  const { plugin, logger: log, timeoutMs } = opts;
  await claimSocketPath(opts.socketPath);
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });

  const unary =
    <Req extends { uid?: string }, Res>(rpc: string, run: (req: Req, timeoutMs: number) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const started = performance.now();
      const uid = typeof call.request.uid === 'string' ? call.request.uid.slice(0, 64) : undefined;
      const budget = remainingMs(call.getDeadline(), timeoutMs);
      const work =
        budget <= 0
          ? Promise.reject(new KeywardError('UNAVAILABLE', 'the call arrived after its deadline'))
          : run(call.request, budget);
      work.then(
        (response) => {
          log.debug({ rpc, uid, ms: Math.round(performance.now() - started) }, 'kms call');
          callback(null, response);
        },
        (err: unknown) => {
          const e = toServiceError(err);
          if (!(err instanceof KeywardError)) log.error({ rpc, uid, err }, 'kms call failed unexpectedly');
          else
            log.warn(
              { rpc, uid, code: err.code, reason: e.details, ms: Math.round(performance.now() - started) },
              'kms call failed',
            );
          callback(e as ServiceError, null);
        },
      );
    };

  server.addService(kmsServiceDefinition(), {
    Status: unary('Status', (_req: { uid?: string }, ms) => plugin.status(ms)),
    Encrypt: unary('Encrypt', (req, ms) => plugin.encrypt(req as never, ms)),
    Decrypt: unary('Decrypt', (req, ms) => plugin.decrypt(req as never, ms)),
  });

  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${opts.socketPath}`, ServerCredentials.createInsecure(), (err) => {
      if (err) reject(new KeywardError('UNAVAILABLE', `cannot listen on ${opts.socketPath}: ${err.message}`));
      else resolve();
    });
  });
  await chmod(opts.socketPath, 0o600);
  const ino = (await lstat(opts.socketPath)).ino;

  let closing: Promise<void> | undefined;
  const close = (graceMs = 5_000): Promise<void> => {
    closing ??= (async () => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      // Remove the socket only if it is still ours (not one a successor already bound).
      try {
        if ((await lstat(opts.socketPath)).ino === ino) await unlink(opts.socketPath);
      } catch {
        // Gone already.
      }
    })();
    return closing;
  };
  return { socketPath: opts.socketPath, close };
}
