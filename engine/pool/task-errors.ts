/**
 * The errors a pool task fails its callers with when the task itself could not run: its key was
 * revoked before a worker registered it, or its worker failed.
 */
import { KeywardError } from '../errors.ts';

const REVOKED_MESSAGE = 'the key was disabled or destroyed while the operation was pending';

/** A task whose key was disabled or destroyed before a worker could register it. */
export function keyRevoked(): KeywardError {
  return new KeywardError('KEY_STATE', REVOKED_MESSAGE);
}

/**
 * True for `keyRevoked()`'s error: the ring an operation held was revoked meanwhile. That also
 * happens when the same material was only replaced (a cluster engine re-reads a key re-wrapped
 * under a new master-key version), so the backend looks again before it answers (crypto-backend.ts).
 */
export function isKeyRevoked(err: unknown): boolean {
  return err instanceof KeywardError && err.code === 'KEY_STATE' && err.message === REVOKED_MESSAGE;
}

/**
 * A worker that died mid-batch (crash, OOM, terminate) fails its callers with a retryable error;
 * Piscina starts a replacement. Anything else thrown by a whole task is a defect, not worth a
 * retry. The cause is not passed on either way: it may name internals.
 */
export function workerFailure(cause: unknown): KeywardError {
  const message = cause instanceof Error ? cause.message : '';
  if (/worker exited|terminat/i.test(message)) {
    return new KeywardError('UNAVAILABLE', 'a crypto worker failed during the operation; retry', {
      retryable: true,
      retryAfterSeconds: 1,
    });
  }
  return new KeywardError('INTERNAL', 'the crypto worker could not run the batch');
}
