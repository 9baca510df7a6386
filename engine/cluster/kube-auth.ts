/**
 * Kubernetes authentication and authorization for the engine's cluster mode (PRODUCT.md §6):
 * - the caller's bearer token goes to a TokenReview with `spec.audiences: [keyward]`; the review
 *   must say authenticated AND list `keyward` in `status.audiences`, else 401;
 * - each operation is a SubjectAccessReview on group `keyward.io`, resource `keys`, the verb, the
 *   key's namespace and name, for the user, groups, uid and extra the TokenReview returned;
 *   a denial is 403.
 *
 * Decisions are cached in bounded LRU caches, in the spirit of kube-apiserver's own webhook token
 * and authorization caches: TokenReviews by the SHA-256 of the token (never the token), SARs by the
 * exact attributes. Concurrent identical reviews share one request.
 * - A decision is **fresh** for `tokenTtlMs` (10 s) or `decisionTtlMs` (5 s). Past that, a
 *   positive decision is still served while a background review refreshes it
 *   (stale-while-revalidate), so a cached caller never waits on the apiserver; the refreshed
 *   answer (a revocation, say) applies from the next request on.
 * - When the apiserver cannot answer, a positive decision keeps being served for up to
 *   `staleTtlMs` (2 min) after it was obtained (stale-if-error), so callers validated before an
 *   outage keep working through it. A token's decision is never used past the token's `exp`.
 * - Negative decisions are cached while fresh only. A caller without a usable cached decision gets
 *   503 UNAVAILABLE when the review fails (apiserver unreachable, a timeout, a 5xx, the engine's
 *   own RBAC missing): an error never allows anything that was not allowed before it.
 * docs/cluster-engine.md states the revocation latency these imply.
 */ import { createHash } from 'node:crypto';
import { AuthenticationV1Api, AuthorizationV1Api, type V1UserInfo } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { KeywardError } from '../errors.ts';
import {
  type Authenticator,
  type AuthRequest,
  type AuthVerb,
  bearerToken,
  type Principal,
} from '../http/auth.ts';
import { describeError, type KubeClient } from '../kube/client.ts';
import { TtlCache } from './ttl-cache.ts';

/** The audience callers' projected tokens must carry. */
export const KEYWARD_AUDIENCE = 'keyward';
/** API group and resource that SubjectAccessReviews ask about. */
export const KEY_SAR_GROUP = 'keyward.io';
export const KEY_SAR_RESOURCE = 'keys';

/** Verbs checked with a SubjectAccessReview; the admin verbs never reach the apiserver. */
const REVIEWED_VERBS: ReadonlySet<AuthVerb> = new Set<AuthVerb>([
  'encrypt',
  'decrypt',
  're-encrypt',
  'sign',
  'verify',
  'generate-data-key',
  'get-public-key',
  'list',
  'get',
]);

/** Options of {@link KubeAuthenticator}. */
export interface KubeAuthOptions {
  /** The engine's own client: it needs `create` on tokenreviews and subjectaccessreviews. */
  client: KubeClient;
  /** Audience required of callers' tokens; `keyward`. */
  audience?: string;
  /** How long a TokenReview result is reused (capped by the token's expiry); 10 s. */
  tokenTtlMs?: number;
  /** How long a SubjectAccessReview decision is reused; 5 s. */
  decisionTtlMs?: number;
  /**
   * How long after it was obtained a positive decision may still be served while the apiserver
   * cannot be reached (never past a token's expiry); 2 min. 0 turns stale serving off.
   */
  staleTtlMs?: number;
  /** Entries per cache; 10 000. */
  maxEntries?: number;
  /** A review that takes longer fails closed (503); 5 s. */
  requestTimeoutMs?: number;
  /** Epoch ms clock; tests may pass their own. */
  now?: () => number;
  log?: Logger;
}

/** The user a TokenReview established, as the SAR must repeat it. */
interface KubeUser {
  username: string;
  uid: string | undefined;
  groups: string[];
  extra: Record<string, string[]>;
}

type TokenDecision =
  | { ok: true; user: KubeUser; expiresAt: number | undefined }
  | { ok: false; reason: string };

/** A cached decision: fresh until `freshUntil`; a positive one usable until `staleUntil`. */
interface Cached<V> {
  value: V;
  freshUntil: number;
  staleUntil: number;
  /** After a failed background refresh: no new attempt before this (no storm on an outage). */
  retryAt?: number;
}

/** How long a failed background refresh waits before the next attempt. */
const REFRESH_RETRY_MS = 1_000;

/**
 * Principals made here carry their Kubernetes user in this map rather than in fields, so a
 * principal from anywhere else (or a forged object) has no user and is refused.
 */
const USERS = new WeakMap<Principal, KubeUser>();

const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('base64url');

/** See the module comment. */
export class KubeAuthenticator implements Authenticator {
  readonly #client: KubeClient;
  readonly #authn: AuthenticationV1Api;
  readonly #authz: AuthorizationV1Api;
  readonly #audience: string;
  readonly #tokenTtlMs: number;
  readonly #decisionTtlMs: number;
  readonly #staleTtlMs: number;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #tokens: TtlCache<string, Cached<TokenDecision>>;
  readonly #decisions: TtlCache<string, Cached<boolean>>;
  readonly #inflight = new Map<string, Promise<unknown>>();
  #failures = { loggedAt: 0, count: 0 };
  /** Reviews sent to the apiserver (tests and metrics: shows the caches work). */
  reviews = { token: 0, access: 0 };
  /** Requests served on a stale positive decision (past its fresh TTL). */
  staleServed = 0;

  constructor(options: KubeAuthOptions) {
    this.#client = options.client;
    this.#authn = options.client.api(AuthenticationV1Api);
    this.#authz = options.client.api(AuthorizationV1Api);
    this.#audience = options.audience ?? KEYWARD_AUDIENCE;
    this.#tokenTtlMs = options.tokenTtlMs ?? 10_000;
    this.#decisionTtlMs = options.decisionTtlMs ?? 5_000;
    this.#staleTtlMs = options.staleTtlMs ?? 120_000;
    this.#timeoutMs = options.requestTimeoutMs ?? 5_000;
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
    const maxEntries = options.maxEntries ?? 10_000;
    // The caches keep their own monotonic clock unless a test gave one.
    const clock = options.now === undefined ? {} : { now: options.now };
    this.#tokens = new TtlCache({ maxEntries, ...clock });
    this.#decisions = new TtlCache({ maxEntries, ...clock });
  }

  async authenticate(request: AuthRequest): Promise<Principal> {
    const token = bearerToken(request.headers);
    if (token === undefined) {
      throw new KeywardError(
        'UNAUTHENTICATED',
        `missing bearer token (send a ServiceAccount token with audience ${this.#audience})`,
      );
    }
    const id = sha256(token);
    const decision = await this.#decide(
      this.#tokens,
      `t:${id}`,
      id,
      () => this.#reviewToken(token),
      (d) => d.ok,
      (d) => this.#tokenTimes(d),
    );
    if (!decision.ok) throw new KeywardError('UNAUTHENTICATED', decision.reason);
    if (decision.expiresAt !== undefined && decision.expiresAt <= this.#now()) {
      throw new KeywardError('UNAUTHENTICATED', 'the token has expired');
    }
    const principal: Principal = {
      name: decision.user.username,
      ...(decision.user.uid === undefined ? {} : { uid: decision.user.uid }),
      groups: [...decision.user.groups],
    };
    USERS.set(principal, decision.user);
    return principal;
  }

  async authorize(
    principal: Principal,
    verb: AuthVerb,
    namespace: string,
    name: string | undefined,
  ): Promise<void> {
    if (!REVIEWED_VERBS.has(verb)) {
      // Keys are managed through Key resources in cluster mode: no admin route is served, so
      // there is nothing to ask the apiserver about.
      throw new KeywardError(
        'METHOD_NOT_ALLOWED',
        'keys are managed through Key resources in this mode; this route is not available',
      );
    }
    const user = USERS.get(principal);
    if (user === undefined) throw new KeywardError('UNAUTHENTICATED', 'the caller was not authenticated');
    const attrs = { verb, namespace, name: name ?? '' };
    const id = sha256(JSON.stringify([user.username, user.uid, user.groups, user.extra, attrs]));
    const allowed = await this.#decide(
      this.#decisions,
      `a:${id}`,
      id,
      () => this.#reviewAccess(user, attrs),
      (a) => a,
      (a) => {
        const now = this.#now();
        return { freshUntil: now + this.#decisionTtlMs, staleUntil: a ? now + this.#staleTtlMs : 0 };
      },
    );
    if (!allowed) {
      const what = name === undefined ? `keys in namespace ${namespace}` : `key ${namespace}/${name}`;
      throw new KeywardError('PERMISSION_DENIED', `${user.username} may not ${verb} ${what}`);
    }
  }

  /**
   * The cached decision for `id`, reviewing when there is none usable. Fresh: used as is. Stale
   * and positive (within `staleUntil`): used at once, and refreshed in the background; a failed
   * refresh keeps it. Otherwise the review is awaited, and its failure is the caller's 503.
   */
  async #decide<V>(
    cache: TtlCache<string, Cached<V>>,
    flight: string,
    id: string,
    review: () => Promise<V>,
    positive: (v: V) => boolean,
    times: (v: V) => { freshUntil: number; staleUntil: number },
  ): Promise<V> {
    const now = this.#now();
    const cached = cache.get(id);
    if (cached !== undefined && now < cached.freshUntil) return cached.value;
    const fetchInto = (run: () => Promise<V>): Promise<V> =>
      this.#once(flight, async () => {
        const value = await run();
        const t = times(value);
        cache.set(id, { value, ...t }, Math.max(t.freshUntil, t.staleUntil) - this.#now());
        return value;
      });
    if (cached === undefined || !positive(cached.value) || now >= cached.staleUntil) return fetchInto(review);
    this.staleServed++;
    if (cached.retryAt !== undefined && now < cached.retryAt) return cached.value;
    // A just-restarted apiserver answers from caches that have not synced yet (RBAC with no
    // bindings says "not allowed"): a positive decision turns negative only on the word of an
    // apiserver that is ready. Any failure keeps the stale decision (#call logged it) and waits
    // a moment before the next attempt.
    fetchInto(async () => {
      const value = await review();
      if (!positive(value) && !(await this.#client.apiserverReady())) {
        this.#log?.warn(
          'a review turned negative while the apiserver is not ready; keeping the previous decision',
        );
        throw new Error('the apiserver is not ready');
      }
      return value;
    }).catch(() => {
      cached.retryAt = this.#now() + REFRESH_RETRY_MS;
    });
    return cached.value;
  }

  /** Token decisions: fresh for the token TTL, positive ones stale-usable; never past `exp`. */
  #tokenTimes(decision: TokenDecision): { freshUntil: number; staleUntil: number } {
    const now = this.#now();
    if (!decision.ok) return { freshUntil: now + this.#tokenTtlMs, staleUntil: 0 };
    const exp = decision.expiresAt ?? Number.POSITIVE_INFINITY;
    return {
      freshUntil: Math.min(now + this.#tokenTtlMs, exp),
      staleUntil: Math.min(now + this.#staleTtlMs, exp),
    };
  }

  async #reviewToken(token: string): Promise<TokenDecision> {
    this.reviews.token++;
    const review = await this.#call('TokenReview', () =>
      this.#authn.createTokenReview({
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token, audiences: [this.#audience] },
        },
      }),
    );
    const status = review.status;
    if (status?.authenticated !== true || status.user?.username === undefined) {
      // The apiserver's own error text can describe the token's claims; keep the answer generic.
      return { ok: false, reason: 'the token is invalid, expired or not meant for this service' };
    }
    if (!(status.audiences ?? []).includes(this.#audience)) {
      return { ok: false, reason: `the token's audience does not include ${this.#audience}` };
    }
    return { ok: true, user: toUser(status.user), expiresAt: jwtExpiry(token) };
  }

  async #reviewAccess(
    user: KubeUser,
    attrs: { verb: string; namespace: string; name: string },
  ): Promise<boolean> {
    this.reviews.access++;
    const review = await this.#call('SubjectAccessReview', () =>
      this.#authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            groups: user.groups,
            ...(user.uid === undefined ? {} : { uid: user.uid }),
            extra: user.extra,
            resourceAttributes: {
              group: KEY_SAR_GROUP,
              resource: KEY_SAR_RESOURCE,
              verb: attrs.verb,
              namespace: attrs.namespace,
              ...(attrs.name === '' ? {} : { name: attrs.name }),
            },
          },
        },
      }),
    );
    // Only an explicit allow counts; a denied or undecided review refuses.
    return review.status?.allowed === true && review.status.denied !== true;
  }

  /**
   * Runs one review with a deadline (the client's own, and this one should the client's be
   * longer); every failure becomes 503 UNAVAILABLE (fail closed).
   */
  async #call<T>(what: string, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${this.#timeoutMs} ms`)), this.#timeoutMs);
    });
    try {
      return await Promise.race([run(), deadline]);
    } catch (err) {
      this.#logFailure(what, err);
      throw new KeywardError(
        'UNAVAILABLE',
        `cannot reach the Kubernetes API to check access (${what} failed); try again`,
        { retryAfterSeconds: 1 },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** Logs a failed review, at most once a second (an outage fails every request's review). */
  #logFailure(what: string, err: unknown): void {
    const now = this.#now();
    this.#failures.count++;
    if (now - this.#failures.loggedAt < 1000) return;
    this.#log?.warn(
      { review: what, err: describeError(err), failedSinceLastLog: this.#failures.count },
      'access review failed',
    );
    this.#failures = { loggedAt: now, count: 0 };
  }

  /** Shares one in-flight review between concurrent identical requests. */
  #once<T>(key: string, run: () => Promise<T>): Promise<T> {
    const pending = this.#inflight.get(key);
    if (pending !== undefined) return pending as Promise<T>;
    const promise = run().finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, promise);
    return promise;
  }
}

function toUser(user: V1UserInfo): KubeUser {
  const extra: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(user.extra ?? {})) extra[k] = [...v];
  return { username: user.username ?? '', uid: user.uid, groups: [...(user.groups ?? [])], extra };
}

/**
 * The `exp` claim of a JWT, in epoch ms, read without verifying anything: it only shortens how
 * long an already verified review is reused. Undefined for opaque tokens.
 */
export function jwtExpiry(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === undefined) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
