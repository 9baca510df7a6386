/**
 * Typed errors with stable `code` strings. Every layer throws these; the HTTP layer maps them
 * to `{"error":{"code","message","field"}}` with the matching status. Messages never contain key
 * material, plaintext or stack traces.
 */

/**
 * The stable error codes of the API (PRODUCT.md §6), plus the few a KMS user expects beyond them:
 * ALREADY_EXISTS (a key name taken), METHOD_NOT_ALLOWED (admin routes in cluster mode), NOT_FOUND
 * (no such route), UNAVAILABLE (a crashed worker, an unreachable apiserver) and INTERNAL.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'KEY_NOT_FOUND'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'METHOD_NOT_ALLOWED'
  | 'KEY_STATE'
  | 'PAYLOAD_TOO_LARGE'
  | 'OVERLOADED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

/** HTTP status for each code. OVERLOADED is 429 unless the error says 503 (shutting down). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  KEY_NOT_FOUND: 404,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  ALREADY_EXISTS: 409,
  KEY_STATE: 409,
  PAYLOAD_TOO_LARGE: 413,
  OVERLOADED: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

export interface KeywardErrorOptions {
  /** The request field at fault, when there is one (`plaintext`, `rotation.periodDays`, ...). */
  field?: string;
  /** True when the same call may succeed if retried (overload, a crashed worker). */
  retryable?: boolean;
  /** Seconds the caller should wait before retrying; sent as Retry-After. */
  retryAfterSeconds?: number;
  /** Overrides the code's default HTTP status (OVERLOADED as 503, for example). */
  status?: number;
}

/** The one error class of Keyward. `code` is stable; `message` is for humans. */
export class KeywardError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly retryable: boolean;
  readonly retryAfterSeconds: number | undefined;
  readonly status: number;

  constructor(code: ErrorCode, message: string, options: KeywardErrorOptions = {}) {
    super(message);
    this.name = 'KeywardError';
    this.code = code;
    this.field = options.field;
    this.retryable = options.retryable ?? (code === 'OVERLOADED' || code === 'UNAVAILABLE');
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.status = options.status ?? HTTP_STATUS[code];
  }

  /** The JSON body the API sends for this error. */
  toJSON(): { code: ErrorCode; message: string; field?: string } {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, field: this.field };
  }
}

/** A request argument is malformed, of the wrong type, unknown or out of range. */
export function invalidArgument(field: string, message: string): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', message, { field });
}

/**
 * The single error for every failed decrypt or unwrap: tampered bytes, a wrong context or AAD,
 * a wrong or unknown version all look the same to the caller (PRODUCT.md §4.1).
 */
export function invalidCiphertext(field = 'ciphertext'): KeywardError {
  return new KeywardError('INVALID_ARGUMENT', `${field} is invalid`, { field });
}

/** A payload over its limit (PRODUCT.md §4.1). */
export function payloadTooLarge(field: string, limit: number): KeywardError {
  return new KeywardError('PAYLOAD_TOO_LARGE', `${field} exceeds ${limit} bytes`, { field });
}

/** True for any KeywardError (also across module copies, by shape). */
export function isKeywardError(err: unknown): err is KeywardError {
  return err instanceof KeywardError;
}
