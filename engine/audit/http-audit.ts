/**
 * The audit log's hooks in the HTTP server (engine/http/server.ts installs them and reports each
 * caller's identity through {@link HttpAudit.identify}). One record per request to an API route,
 * served or refused (401 and 403 included, with whatever identity was established).
 *
 * Cost: the route's handler notes the key version or batch counts from its result
 * (`noteResult`), and an onSend hook queues the record (reading an error's code from its body: the
 * error path only). There is no preSerialization hook: it would cost every request a hook runner
 * more (docs/performance.md, "Audit log", third pass). With
 * `required` (`--audit-required`) the response waits until the record is written, and a request
 * that cannot be recorded gets 503 instead of its result; while the log is failing, requests are
 * refused before they are served (and /readyz answers 503, so a Service stops routing here).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { Principal } from '../http/auth.ts';
import { ROUTES } from '../http/routes.ts';
import type { AuditLogHandle } from './audit-log.ts';
import { type AuditConfig, type OpenAuditOptions, openAuditLog } from './config.ts';
import { auditUnavailable } from './errors.ts';
import { registerAuditMetrics } from './metrics.ts';
import { type AuditPrincipal, fieldText, MAX_GROUPS, type RequestEvent } from './record.ts';

/** What the hooks learn about one request. */
interface RequestFacts {
  principal: AuditPrincipal | undefined;
  version: number | undefined;
  outcome: string | undefined;
  batch: { ok: number; failed: number } | undefined;
  /** Set once the record is queued: the error path after a refused write must not record twice. */
  done: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    keywardAudit: RequestFacts | null;
  }
}

interface RouteInfo {
  operation: string;
  batch: boolean;
}

/** A caller's `x-request-id` kept in the record: 1 to 128 visible ASCII characters. */
const CLIENT_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** The version in a `keyward:v<version>:...` ciphertext or signature. */
const VERSION_PREFIX = /^keyward:v([1-9][0-9]{0,8}):/;

const facts = (request: FastifyRequest): RequestFacts => {
  let f = request.keywardAudit;
  if (f === null) {
    f = { principal: undefined, version: undefined, outcome: undefined, batch: undefined, done: false };
    request.keywardAudit = f;
  }
  return f;
};

function principalOf(p: Principal): AuditPrincipal {
  const out: AuditPrincipal = { name: fieldText(p.name) };
  if (p.uid !== undefined) out.uid = fieldText(p.uid);
  if (p.groups !== undefined) out.groups = p.groups.slice(0, MAX_GROUPS).map(fieldText);
  return out;
}

function versionFromBody(body: unknown): number | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as { ciphertext?: unknown; signature?: unknown };
  const text = typeof b.ciphertext === 'string' ? b.ciphertext : b.signature;
  if (typeof text !== 'string') return undefined;
  const m = VERSION_PREFIX.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The `error.code` of an error response's body (errors.ts `sendError`), if it has one. */
function errorCode(body: string): string | undefined {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/** See the module comment. */
export class HttpAudit {
  readonly log: AuditLogHandle;
  readonly required: boolean;
  readonly #routes = new Map<string, RouteInfo>();
  readonly #boot = randomBytes(4).toString('hex');
  #counter = 0;

  constructor(log: AuditLogHandle, options: { required: boolean }) {
    this.log = log;
    this.required = options.required;
    for (const r of ROUTES) {
      const url = r.path.replace(/\{(\w+)\}/g, ':$1');
      this.#routes.set(`${r.method} ${url}`, { operation: r.verb, batch: r.tag === 'batch' });
    }
  }

  /** Records who the caller is, once authenticated (before authorization, so a 403 names them). */
  identify(request: FastifyRequest, principal: Principal): void {
    facts(request).principal = principalOf(principal);
  }

  /**
   * Records a batch's item counts, for a batch whose response body was serialized elsewhere (a
   * worker): the preSerialization hook never sees such a body.
   */
  noteBatch(request: FastifyRequest, counts: { ok: number; failed: number }): void {
    facts(request).batch = counts;
  }

  /** Records what a route's result tells: its key version, or a batch's item counts. */
  noteResult(request: FastifyRequest, result: unknown): void {
    if (typeof result !== 'object' || result === null || Buffer.isBuffer(result)) return;
    const r = result as { keyVersion?: unknown; currentVersion?: unknown; results?: unknown };
    if (typeof r.keyVersion === 'number') facts(request).version = r.keyVersion;
    else if (typeof r.currentVersion === 'number') facts(request).version = r.currentVersion;
    if (Array.isArray(r.results)) {
      let failed = 0;
      for (const item of r.results) if ((item as { error?: unknown }).error !== undefined) failed++;
      facts(request).batch = { ok: r.results.length - failed, failed };
    }
  }

  /** Adds the hooks to `app` (before its routes are registered) and the metrics to `registry`. */
  install(app: FastifyInstance, registry?: Registry): void {
    app.decorateRequest('keywardAudit', null);
    if (this.required) {
      app.addHook('onRequest', (request, _reply, done) => {
        const url = request.routeOptions.url;
        const audited =
          url !== undefined && (url === '/readyz' || this.#routes.has(`${request.method} ${url}`));
        done(audited && !this.log.healthy ? auditUnavailable() : undefined);
      });
    }
    app.addHook('onSend', (request, reply, payload, done) => {
      const url = request.routeOptions.url;
      const route = url === undefined ? undefined : this.#routes.get(`${request.method} ${url}`);
      const f = request.keywardAudit;
      if (route === undefined || f?.done === true) return done(null, payload);
      if (reply.statusCode >= 400 && typeof payload === 'string') facts(request).outcome = errorCode(payload);
      const event = this.#event(request, reply, route, request.keywardAudit);
      facts(request).done = true;
      reply.header('x-request-id', event.requestId);
      if (!this.required) {
        this.log.record(event);
        return done(null, payload);
      }
      // The caller gets its result only once the record is written; else 503 (Vault's rule).
      this.log.write(event).then(
        () => done(null, payload),
        () => done(auditUnavailable()),
      );
    });
    if (registry !== undefined) this.#metrics(registry);
  }

  #event(
    request: FastifyRequest,
    reply: FastifyReply,
    route: RouteInfo,
    f: RequestFacts | null,
  ): RequestEvent {
    const params = request.params as { namespace?: string; name?: string };
    let key = params.name;
    if (key === undefined && route.operation === 'create') {
      const name = (request.body as { name?: unknown } | undefined)?.name;
      if (typeof name === 'string') key = name;
    }
    const status = reply.statusCode;
    const event: RequestEvent = {
      type: 'request',
      requestId: `${this.#boot}-${(++this.#counter).toString(36)}`,
      source: fieldText(request.ip ?? ''),
      operation: route.operation,
      outcome: status < 400 ? 'ok' : (f?.outcome ?? `HTTP_${status}`),
      status,
      latencyUs: Math.round(reply.elapsedTime * 1000),
    };
    const clientId = request.headers['x-request-id'];
    if (typeof clientId === 'string' && CLIENT_REQUEST_ID.test(clientId)) event.clientRequestId = clientId;
    if (f?.principal !== undefined) event.principal = f.principal;
    if (params.namespace !== undefined) event.namespace = fieldText(params.namespace);
    if (key !== undefined) event.key = fieldText(key);
    const version = f?.version ?? (status < 400 ? versionFromBody(request.body) : undefined);
    if (version !== undefined) event.version = version;
    if (route.batch && f?.batch !== undefined) event.batch = f.batch;
    return event;
  }

  #metrics(registry: Registry): void {
    registerAuditMetrics(this.log, registry);
  }
}

/** An open audit log and its HTTP hooks. */
export interface OpenAudit {
  log: AuditLogHandle;
  http: HttpAudit;
}

/** Opens the audit log `config` describes and its HTTP hooks (undefined when disabled). */
export async function openAudit(config: AuditConfig, o: OpenAuditOptions): Promise<OpenAudit | undefined> {
  const log = await openAuditLog(config, o);
  return log === undefined ? undefined : { log, http: new HttpAudit(log, { required: config.required }) };
}
