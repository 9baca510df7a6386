/**
 * How Keyward talks to the Kubernetes API: one {@link KubeClient} per process wraps a KubeConfig
 * and makes the API clients, informers and list calls of the operator and the cluster engine.
 *
 * - **Every request has a deadline.** client-node 2.x sends requests through undici with its
 *   default 300 s timeouts, so a hung apiserver (SIGSTOP, a black-holed connection) would hold a
 *   caller for five minutes: longer than any lease. Here each request carries an AbortSignal that
 *   fires after `requestTimeoutMs`.
 * - **Connections are reused.** client-node 2.0.1 builds a new undici Agent for every request, so
 *   every API call pays a TCP and TLS handshake on both ends; under load that, not the
 *   apiserver's storage, bounded the reconcile rate. Here requests share one Agent per TLS
 *   identity (at most one at a time: a rotated client certificate replaces it and the old one is
 *   closed once its requests finish), and `close()` closes it. Only public client-node API is
 *   used (`applyToHTTPSOptions`, `createDispatcherOptions`, `createConfiguration`).
 * - **HTTP/1.1, not HTTP/2.** undici 8 offers h2 and the apiserver picks it. Under Node 24, a
 *   request aborted while its body is being sent on an h2 session can send Node's HTTP/2 layer
 *   into a native loop (`Http2Session::SendPendingData`) that grows the process by hundreds of
 *   MB a second until the kernel kills it; the operator aborts requests whenever a leadership
 *   term ends. client-node 1.x spoke HTTP/1.1 too (test/cluster/kube-client-http1.test.ts).
 * - **A guard can fence writes.** `api(Type, guard)` makes a client whose every request first
 *   calls `guard.check()` and is aborted with `guard.signal`: the operator gives each leadership
 *   term one, so nothing is sent after the term ends and what is in flight is cut off.
 *
 * The small helpers below classify errors and format times.
 */
import { createHash } from 'node:crypto';
import type { AgentOptions, RequestOptions } from 'node:https';
import {
  type ApiType,
  type ConfigurationOptions,
  createConfiguration,
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  PatchStrategy,
  RequestContext,
  type ResponseContext,
  ServerConfiguration,
  setHeaderOptions,
  Watch,
  wrapHttpLibrary,
} from '@kubernetes/client-node';
import { Agent, type Dispatcher, ProxyAgent } from 'undici';

/** HTTP status of a client-node ApiException (or a watch error), if any. */
export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** True for 404 Not Found. */
export function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404;
}

/** True for 409 Conflict (a stale resourceVersion, or AlreadyExists). */
export function isConflict(err: unknown): boolean {
  return statusOf(err) === 409;
}

/** Request options that send a JSON merge patch. */
export const MERGE_PATCH: ConfigurationOptions = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * A metav1.MicroTime: RFC 3339 with exactly six fractional digits, as the apiserver parses it.
 * Returned as `Date` for client-node's types; the serializer passes strings through untouched.
 */
export function microTime(ms: number): Date {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}

/** A short, safe description of an error for logs (no bodies, which could echo objects). */
export function describeError(err: unknown): string {
  const status = statusOf(err);
  const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
  return status === undefined ? (message ?? 'error') : `HTTP ${status}: ${(message ?? '').slice(0, 200)}`;
}

/** The default deadline of one API request. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** Items per page of a paginated list (client-go's pager uses 500 too). */
export const LIST_PAGE_SIZE = 500;

/** Fences the requests of one client: `check` throws when nothing may be sent any more. */
export interface RequestGuard {
  /** Aborts every request in flight when it fires. */
  readonly signal: AbortSignal;
  /** Called before each request; throws to refuse sending it. */
  check(): void;
}

/** Options of {@link KubeClient}. */
export interface KubeClientOptions {
  /** Deadline of each request (watches excepted: they have an inactivity timeout); 5 s. */
  requestTimeoutMs?: number;
  /** The User-Agent header, e.g. `keyward-operator/<identity>`. */
  userAgent?: string;
}

/** How often the credentials of the kubeconfig are worked out again. */
const AUTH_REFRESH_MS = 10_000;

/** What every request carries, as last worked out from the kubeconfig. */
interface ResolvedAuth {
  at: number;
  headers: Array<[string, string]>;
  /** The pooled dispatcher; `socks` for client-node's own; undefined for none (plain HTTP). */
  dispatcher: Dispatcher | 'socks' | undefined;
}

type Constructor<T> = new (config: ReturnType<typeof createConfiguration>) => T;

/** See the module comment. */
export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly requestTimeoutMs: number;
  readonly #userAgent: string | undefined;
  readonly #fetch = new IsomorphicFetchHttpLibrary();
  #pool: { id: string; agent: Dispatcher } | undefined;
  #auth: ResolvedAuth | undefined;
  #closed = false;

  constructor(kubeConfig: KubeConfig, options: KubeClientOptions = {}) {
    const timeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!Number.isInteger(timeout) || timeout < 1)
      throw new RangeError('requestTimeoutMs must be a positive integer');
    this.kubeConfig = kubeConfig;
    this.requestTimeoutMs = timeout;
    this.#userAgent = options.userAgent;
  }

  /** An API client (CoreV1Api, CustomObjectsApi, ...) over the shared pool, with deadlines. */
  api<T extends ApiType>(type: Constructor<T>, guard?: RequestGuard): T {
    const cluster = this.kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const userAgent = this.#userAgent;
    const config = createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: {
        default: {
          getName: () => 'keyward pooled kubeconfig',
          applySecurityAuthentication: (ctx: RequestContext) => this.#authenticate(ctx),
        },
      },
      httpApi: wrapHttpLibrary({ send: (ctx) => this.#send(ctx, guard) }),
      promiseMiddleware:
        userAgent === undefined
          ? []
          : [
              {
                pre: async (ctx) => {
                  ctx.setHeaderParam('User-Agent', userAgent);
                  return ctx;
                },
                post: async (res) => res,
              },
            ],
    });
    return new type(config);
  }

  /**
   * A client-node ListWatch (the informer) whose watch shares the pool. `list` should page through
   * {@link listAll}. Not started.
   */
  informer<T extends KubernetesObject>(
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    labelSelector?: string,
    fieldSelector?: string,
  ): ListWatch<T> {
    // Watch reads only the current cluster and the authentication from its config.
    const config = {
      getCurrentCluster: () => this.kubeConfig.getCurrentCluster(),
      applySecurityAuthentication: (ctx: RequestContext) => this.#authenticate(ctx),
    } as unknown as KubeConfig;
    // client-node's ListWatch checks `stopped` only before its list: a stop while the list (or
    // the reconnect delay, or the watch's connect) is pending still opens a watch afterwards that
    // nothing ever aborts, which also held `close()` open. So no watch starts after stop(), and
    // one that connects after stop() is aborted at once. A stopped informer is never restarted.
    const watch = new Watch(config);
    let stopped = false;
    const guarded = {
      async watch(...args: Parameters<Watch['watch']>): Promise<AbortController> {
        if (stopped) return new AbortController();
        const controller = await watch.watch(...args);
        if (stopped) controller.abort();
        return controller;
      },
    } as Watch;
    const informer = new ListWatch<T>(path, guarded, list, false, labelSelector, fieldSelector);
    const stop = informer.stop.bind(informer);
    informer.stop = async () => {
      stopped = true;
      await stop();
    };
    return informer;
  }

  /**
   * True when the apiserver's `/readyz` answers 200 (its caches, RBAC's included, have synced).
   * A just-restarted apiserver serves requests before that, and answers authorization reviews
   * from empty caches; callers use this to tell such an answer from a real one.
   */
  async apiserverReady(): Promise<boolean> {
    const server = this.kubeConfig.getCurrentCluster()?.server;
    if (server === undefined) return false;
    const ctx = new RequestContext(`${server.replace(/\/+$/, '')}/readyz`, HttpMethod.GET);
    try {
      await this.#authenticate(ctx);
      const res = await this.#send(ctx, undefined);
      await res.body.text().catch(() => undefined);
      return res.httpStatusCode === 200;
    } catch {
      return false;
    }
  }

  /**
   * Closes the pooled connections: new requests fail, requests in flight get `graceMs` to finish,
   * then are cut (a watch never finishes by itself, and a shutdown must not wait for one).
   */
  async close(graceMs = 2_000): Promise<void> {
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    if (pool === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      // Rejected once destroy() below cuts it short: that is the expected end, not an error.
      pool.agent.close().then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (!closed) await pool.agent.destroy().catch(() => undefined);
  }

  async #send(ctx: RequestContext, guard: RequestGuard | undefined): Promise<ResponseContext> {
    guard?.check();
    const signals = [AbortSignal.timeout(this.requestTimeoutMs)];
    const own = ctx.getSignal();
    if (own !== undefined) signals.push(own as AbortSignal);
    if (guard !== undefined) signals.push(guard.signal);
    ctx.setSignal(AbortSignal.any(signals));
    return this.#fetch.send(ctx).toPromise();
  }

  /**
   * Headers from the kubeconfig (token, exec plugin, basic auth) and the pooled dispatcher. Worked
   * out at most every AUTH_REFRESH_MS (each time reads files, decodes certificates and hashes the
   * TLS identity), so a rotated token or certificate is picked up within that time.
   */
  async #authenticate(ctx: RequestContext): Promise<void> {
    let auth = this.#auth;
    if (auth === undefined || Date.now() - auth.at > AUTH_REFRESH_MS) {
      auth = await this.#resolveAuth();
      this.#auth = auth;
    }
    for (const [name, value] of auth.headers) ctx.setHeaderParam(name, value);
    if (auth.dispatcher === 'socks') {
      // Rare; client-node's own per-request dispatcher handles SOCKS proxies.
      await this.kubeConfig.applySecurityAuthentication(ctx);
    } else if (auth.dispatcher !== undefined) {
      ctx.setDispatcher(auth.dispatcher);
    }
  }

  async #resolveAuth(): Promise<ResolvedAuth> {
    const kc = this.kubeConfig;
    const headers: Array<[string, string]> = [];
    const opts: RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    for (const [name, value] of Object.entries(opts.headers ?? {})) {
      if (value !== undefined) headers.push([name, String(value)]);
    }
    if (typeof opts.auth === 'string' && opts.auth !== '') {
      headers.push(['Authorization', `Basic ${Buffer.from(opts.auth).toString('base64')}`]);
    }
    const cluster = kc.getCurrentCluster();
    const tls = {
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      pfx: opts.pfx,
      passphrase: opts.passphrase,
      rejectUnauthorized: opts.rejectUnauthorized,
      servername: opts.servername,
    };
    const wanted = kc.createDispatcherOptions(cluster, tls as AgentOptions);
    const at = Date.now();
    if (wanted.type === 'none') return { at, headers, dispatcher: undefined };
    if (wanted.type === 'socks') return { at, headers, dispatcher: 'socks' };
    return { at, headers, dispatcher: this.#dispatcher(cluster?.server ?? '', tls, wanted) };
  }

  #dispatcher(
    server: string,
    tls: Record<string, unknown>,
    wanted: ReturnType<KubeConfig['createDispatcherOptions']>,
  ): Dispatcher {
    if (this.#closed) throw new Error('the Kubernetes client is closed');
    const h = createHash('sha256').update(server);
    for (const [field, value] of Object.entries(tls)) {
      h.update(`|${field}=`);
      if (value !== undefined) h.update(Buffer.isBuffer(value) ? value : String(value));
    }
    const id = h.digest('hex');
    if (this.#pool?.id === id) return this.#pool.agent;
    const previous = this.#pool;
    // HTTP/1.1 only (see the module comment): undici offers h2, which the apiserver picks.
    const agent =
      wanted.type === 'proxy'
        ? new ProxyAgent({
            uri: wanted.uri,
            requestTls: wanted.requestTls,
            connect: wanted.connect,
            allowH2: false,
          })
        : new Agent({ connect: (wanted as { connect: Agent.Options['connect'] }).connect, allowH2: false });
    this.#pool = { id, agent };
    // Requests still running on the old identity finish; the old pool then closes.
    void previous?.agent.close().catch(() => undefined);
    return agent;
  }
}

/** A list call of one page: `continue` token in, a page out. */
export type ListPage<T extends KubernetesObject> = (page: {
  limit: number;
  _continue?: string;
}) => Promise<KubernetesListObject<T>>;

/**
 * Lists every item by pages of {@link LIST_PAGE_SIZE}, as client-go's pager does, so each request
 * stays small and within its deadline however many objects there are. Returns one list with the
 * resourceVersion of the snapshot (every page of a paginated list is served from one snapshot).
 */
export async function listAll<T extends KubernetesObject>(
  listPage: ListPage<T>,
): Promise<KubernetesListObject<T>> {
  const items: T[] = [];
  let token: string | undefined;
  let metadata: KubernetesListObject<T>['metadata'] = {};
  do {
    const page = await listPage({
      limit: LIST_PAGE_SIZE,
      ...(token === undefined ? {} : { _continue: token }),
    });
    items.push(...page.items);
    metadata = page.metadata ?? {};
    token = metadata._continue || undefined;
  } while (token !== undefined);
  return { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: metadata.resourceVersion }, items };
}
