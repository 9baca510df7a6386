/**
 * Authentication and authorization for the HTTP API. The server only knows the `Authenticator`
 * interface: standalone mode uses one admin bearer token (`TokenAuthenticator`); the Kubernetes
 * cluster mode plugs in TokenReview + SubjectAccessReview behind the same two calls.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { KeywardError } from '../errors.ts';

/** Who is calling, as the authenticator established it. */
export interface Principal {
  /** A user or ServiceAccount name, for logs and audit. Never a token. */
  name: string;
  /** The Kubernetes user's uid (TokenReview), for audit. */
  uid?: string;
  groups?: string[];
}

/**
 * The verbs an authorizer sees. The crypto verbs match PRODUCT.md §6 (SubjectAccessReview verbs
 * on `keys.keyward.io`); the admin verbs name the admin routes.
 */
export type AuthVerb =
  | 'encrypt'
  | 'decrypt'
  | 're-encrypt'
  | 'sign'
  | 'verify'
  | 'generate-data-key'
  | 'get-public-key'
  | 'list'
  | 'get'
  | 'create'
  | 'update'
  | 'enable'
  | 'disable'
  | 'rotate'
  | 'request-deletion'
  | 'cancel-deletion'
  | 'delete';

/** The parts of a request an authenticator may look at. */
export interface AuthRequest {
  headers: IncomingHttpHeaders;
  remoteAddress: string | undefined;
}

/** Pluggable auth: throw `UNAUTHENTICATED` / `PERMISSION_DENIED` KeywardErrors to refuse. */
export interface Authenticator {
  /** Establishes the caller; throws KeywardError UNAUTHENTICATED when it cannot. */
  authenticate(request: AuthRequest): Promise<Principal>;
  /** Allows or refuses one verb on a key (name undefined for list/create); throws PERMISSION_DENIED. */
  authorize(principal: Principal, verb: AuthVerb, namespace: string, name: string | undefined): Promise<void>;
}

/**
 * What a bearer token may hold: visible ASCII, no spaces (RFC 6750's b64token is narrower still).
 * A token outside this could never be sent in an Authorization header, so it is refused at start.
 */
export const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

/** Shortest admin token accepted. */
export const MIN_TOKEN_LENGTH = 16;

/** Extracts a bearer token from the Authorization header, or undefined. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const header = headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  return match?.[1];
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Standalone auth: one admin token grants everything. The comparison hashes both sides first so
 * that `timingSafeEqual` sees equal lengths and the time taken says nothing about the token.
 */
export class TokenAuthenticator implements Authenticator {
  readonly #expected: Buffer;

  /** `source` names where the token came from (`KEYWARD_TOKEN`, a file), for the error. */
  constructor(token: string, source = 'the admin token') {
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new KeywardError(
        'INVALID_ARGUMENT',
        `${source}: the token must be at least ${MIN_TOKEN_LENGTH} characters`,
        {
          field: 'token',
        },
      );
    }
    if (!TOKEN_PATTERN.test(token)) {
      throw new KeywardError(
        'INVALID_ARGUMENT',
        `${source}: the token may hold only visible ASCII characters (no spaces or control characters); no request could ever send it`,
        { field: 'token' },
      );
    }
    this.#expected = digest(token);
  }

  async authenticate(request: AuthRequest): Promise<Principal> {
    const token = bearerToken(request.headers);
    if (token === undefined) {
      throw new KeywardError('UNAUTHENTICATED', 'missing bearer token (Authorization: Bearer <token>)');
    }
    if (!timingSafeEqual(digest(token), this.#expected)) {
      throw new KeywardError('UNAUTHENTICATED', 'invalid token');
    }
    return { name: 'admin' };
  }

  async authorize(): Promise<void> {
    // The admin token may do everything.
  }
}
