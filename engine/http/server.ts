/**
 * The HTTP server: fastify with the routes of `routes.ts`, strict validation by `validate.ts`,
 * pluggable auth, OpenAPI, health endpoints and uniform JSON errors, with the edge rules of
 * `edge.ts` (security headers on every answer, a bounded request time, parse errors and unknown
 * methods in the API's error shape).
 *
 * Unauthenticated on purpose: `/livez`, `/readyz` (probes) and `/openapi.json` (public contract).
 * Everything under `/v1` needs a bearer token, and authentication comes before any other check.
 * `/metrics` has a listener of its own (`metrics-server.ts`), so the API port never serves it.
 */
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import type { HttpAudit } from '../audit/http-audit.ts';
import { KEY_NAME_PATTERN, NAMESPACE_PATTERN } from '../crypto/limits.ts';
import { invalidArgument, KeywardError } from '../errors.ts';
import type { KeyBackend } from '../service/backend.ts';
import { parseJsonBody } from '../wire/json-body.ts';
import { check, type Schema } from '../wire/validate.ts';
import type { Authenticator } from './auth.ts';
import {
  CONNECTION_CHECK_MS,
  HEADERS_TIMEOUT_MS,
  HSTS_HEADER,
  MethodTable,
  REQUEST_TIMEOUT_MS,
  SECURITY_HEADERS,
  writeClientError,
} from './edge.ts';
import { errorHandler, sendError } from './errors.ts';
import { HttpMetrics, UNKNOWN_KEY } from './metrics.ts';
import { buildOpenApi } from './openapi.ts';
import { releaseBuffer } from './release-buffer.ts';
import { ROUTES, type RouteDef } from './routes.ts';

/** Options of `buildServer`. */
export interface ServerOptions {
  backend: KeyBackend;
  auth: Authenticator;
  logger: Logger;
  /** PEM key and certificate; plain HTTP when absent. */
  tls?: { key: string; cert: string };
  /** The audit log's hooks (engine/audit/http-audit.ts); no audit records when absent. */
  audit?: HttpAudit;
  /** Time a client has to send a whole request (`REQUEST_TIMEOUT_MS`); tests shorten it. */
  requestTimeoutMs?: number;
  /** The region the engine serves, so `/openapi.json` states which Isolated keys it can create. */
  region?: string;
  /**
   * True once the server is shutting down gracefully: `/readyz` then fails (so the Service stops
   * sending new connections), and every response says `connection: close` (so keep-alive
   * clients reconnect, through the Service, to a replica that stays) while requests are still
   * served normally.
   */
  isDraining?: () => boolean;
  /**
   * Where batch requests are parsed, checked and serialized: `worker` (the default) hands the raw
   * body to a crypto worker (engine/pool/request-runner.ts); `main` does it on this thread. Both
   * give the same answers (tests run both).
   */
  batchParsing?: 'worker' | 'main';
  /** Kept up to date with the requests that arrive (the engine's inline path asks it; see inline.ts). */
  load?: RequestLoad;
}

/**
 * Whether a server has other work than the request at hand: other requests in flight (counted when
 * they arrive, uncounted when their response closes), or more than one request arriving in one
 * turn of the event loop, this turn or the last. A request handled from start to finish within
 * one turn (inline crypto makes it so) never overlaps another; several of them arriving per turn
 * is what load looks like then.
 */
export class RequestLoad {
  inFlight = 0;
  #thisTurn = 0;
  #lastTurn = 0;
  #turnScheduled = false;
  readonly #endTurn = (): void => {
    this.#lastTurn = this.#thisTurn;
    this.#thisTurn = 0;
    this.#turnScheduled = false;
  };

  /** Counts a request that arrives now. */
  arrived(): void {
    this.inFlight++;
    this.#thisTurn++;
    if (!this.#turnScheduled) {
      this.#turnScheduled = true;
      setImmediate(this.#endTurn);
    }
  }

  /** True while anything but the one request at hand is going on. */
  busy(): boolean {
    return this.inFlight > 1 || this.#thisTurn > 1 || this.#lastTurn > 1;
  }
}

const NAMESPACE = new RegExp(NAMESPACE_PATTERN);
const KEY_NAME = new RegExp(KEY_NAME_PATTERN);

const toFastifyPath = (path: string): string => path.replace(/\{(\w+)\}/g, ':$1');

type Params = { namespace?: string; name?: string };

/** Builds (does not start) the server. */
export function buildServer(opts: ServerOptions): { app: FastifyInstance; metrics: HttpMetrics } {
  const { backend, auth } = opts;
  const metrics = new HttpMetrics(
    () => backend.queueDepth(),
    () => backend.workerErrors?.() ?? 0,
    backend.poolMemory === undefined ? undefined : () => backend.poolMemory!(),
  );
  const requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  // Node checks both timeouts every CONNECTION_CHECK_MS; the headers bound never exceeds the whole.
  const nodeServer = {
    headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeout),
    connectionsCheckingInterval: Math.min(CONNECTION_CHECK_MS, requestTimeout),
  };
  const tls = opts.tls !== undefined;
  const headers = tls ? { ...SECURITY_HEADERS, ...HSTS_HEADER } : SECURITY_HEADERS;
  const app = Fastify({
    loggerInstance: opts.logger,
    // No per-request log lines: they would cost throughput and could carry URLs of key names
    // into logs at info level; failures are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    requestTimeout,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ...(opts.tls
      ? { https: { key: opts.tls.key, cert: opts.tls.cert, ...nodeServer } }
      : { http: nodeServer }),
    clientErrorHandler: (err, socket) => writeClientError(err, socket, tls),
    frameworkErrors: (err, _req, reply) => {
      sendError(
        reply as FastifyReply,
        new KeywardError(
          'INVALID_ARGUMENT',
          err.code === 'FST_ERR_BAD_URL' ? 'the URL is malformed' : 'bad request',
        ),
      );
    },
  }) as unknown as FastifyInstance;

  // JSON only, by our own parser (json-body.ts): an empty body is `{}` (action routes accept it), bad
  // JSON is a clear 400, and nothing else is done to the input. Every body is an object, so a JSON
  // `null` is refused here (fastify hands a missing body to the validator as null too, so it could
  // not tell them apart).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    let value: unknown;
    try {
      value = parseJsonBody(body as string);
    } catch (err) {
      return done(err as Error, undefined);
    }
    done(null, value);
  });
  // Every schema is checked by our validator (see validate.ts); querystrings are parsed by hand.
  app.setValidatorCompiler(({ schema, httpPart }) => {
    if (httpPart !== 'body') return () => true;
    return (data: unknown) => {
      // No body at all is `{}` (a JSON null never gets here); anything sent is checked as sent.
      const value = data === undefined || data === null ? {} : data;
      const err = check(schema as Schema, value);
      return err ? { error: err } : { value };
    };
  });
  // One logger for every request: a pino child per request (fastify's default) costs a copy of the
  // redaction setup on the hot path, and requests log nothing of their own.
  app.setChildLoggerFactory((logger) => logger);

  const methods = new MethodTable();
  for (const route of ROUTES) methods.add(route.method, route.path);
  for (const path of ['/livez', '/readyz', '/openapi.json']) methods.add('GET', path);
  const notFound = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const path = request.url.split('?')[0]!.slice(0, 256);
    const allowed = methods.allowed(path);
    if (allowed !== undefined && !allowed.includes(request.method)) {
      reply.header('allow', allowed.join(', '));
      return sendError(
        reply,
        new KeywardError(
          'METHOD_NOT_ALLOWED',
          `${request.method} is not allowed here; use ${allowed.join(', ')}`,
        ),
      );
    }
    return sendError(reply, new KeywardError('NOT_FOUND', `no route ${request.method} ${path}`));
  };
  // A request with no route that fails before the not-found handler (a QUERY without a content
  // type, an unparsable body) still gets the not-found answer: 405 or 404, never a body error.
  app.setErrorHandler((err, request, reply) =>
    request.is404 ? notFound(request, reply) : errorHandler(err, request, reply),
  );
  app.setNotFoundHandler(notFound);
  // Callback style, not async: these run on every request and a promise per hook costs throughput.
  const load = opts.load;
  if (load === undefined) {
    app.addHook('onRequest', (_request, reply, done) => {
      reply.headers(headers);
      done();
    });
  } else {
    // 'close' comes exactly once per response, sent or abandoned.
    const uncount = (): void => {
      load.inFlight--;
    };
    app.addHook('onRequest', (_request, reply, done) => {
      load.arrived();
      reply.raw.once('close', uncount);
      reply.headers(headers);
      done();
    });
  }
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url;
    if (route !== undefined) {
      metrics.latency.observe(
        { route, method: request.method, status: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    }
    done();
  });

  const isDraining = opts.isDraining;
  if (isDraining) {
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (isDraining()) reply.header('connection', 'close');
      done(null, payload);
    });
  }

  app.get('/livez', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    if (isDraining?.()) return sendError(reply, new KeywardError('UNAVAILABLE', 'shutting down'));
    if (!backend.ready()) return sendError(reply, new KeywardError('UNAVAILABLE', 'not ready'));
    return { status: 'ok' };
  });
  const openapi = buildOpenApi(ROUTES, opts.region === undefined ? {} : { region: opts.region });
  app.get('/openapi.json', async () => openapi);

  opts.audit?.install(app, metrics.registry);
  const workerBatches = opts.batchParsing !== 'main';
  for (const route of ROUTES) {
    if (!(workerBatches && route.tag === 'batch'))
      registerRoute(app, route, backend, auth, metrics, opts.audit);
  }
  if (workerBatches) {
    // Batch routes take their body raw: a worker parses and checks it (json-body.ts and the same
    // schemas), so this thread never touches the items. Their own context, so only they do.
    app.register(async (batches) => {
      batches.removeAllContentTypeParsers();
      batches.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
        done(null, body);
      });
      for (const route of ROUTES) {
        if (route.tag === 'batch') registerRoute(batches, route, backend, auth, metrics, opts.audit, true);
      }
    });
  }
  return { app, metrics };
}

function registerRoute(
  app: FastifyInstance,
  route: RouteDef,
  backend: KeyBackend,
  auth: Authenticator,
  metrics: HttpMetrics,
  audit: HttpAudit | undefined,
  raw = false,
): void {
  const serializable = route.tag === 'crypto';
  app.route({
    method: route.method,
    url: toFastifyPath(route.path),
    bodyLimit: route.bodyLimit,
    schema: {
      // A raw body is checked where it is parsed (in a worker), against the same schema.
      ...(route.body && !raw ? { body: route.body } : {}),
      // fast-json-stringify for the hot single-operation routes.
      ...(serializable ? { response: { [route.status]: route.response } } : {}),
    },
    // Auth runs before the body is read: an anonymous caller learns nothing about the schema
    // and cannot make the server parse a large body.
    onRequest: async (request: FastifyRequest) => {
      const principal = await auth.authenticate({ headers: request.headers, remoteAddress: request.ip });
      audit?.identify(request, principal);
      const { namespace = '', name } = request.params as Params;
      if (!NAMESPACE.test(namespace)) {
        throw invalidArgument('namespace', 'namespace must be a Kubernetes namespace name');
      }
      // Before any lookup: a name that is not a key name never reaches a store or a label.
      if (name !== undefined && !KEY_NAME.test(name)) {
        throw invalidArgument('name', `name must match ${KEY_NAME_PATTERN}`);
      }
      await auth.authorize(principal, route.verb, namespace, name);
      if (route.admin && backend.admin === undefined) {
        throw new KeywardError(
          'METHOD_NOT_ALLOWED',
          'keys are managed through Key resources in this mode; this route is not available',
        );
      }
    },
    handler: async (request, reply) => {
      const { namespace = '', name = '' } = request.params as Params;
      // Series per key only for keys that exist, by their stored name; the rest share one label.
      const label = (): string => backend.metricsKey(namespace, name) ?? UNKNOWN_KEY;
      const result = await route.handler({
        backend,
        namespace,
        name,
        body: raw ? {} : ((request.body ?? {}) as Record<string, unknown>),
        ...(raw ? { raw: (request.body as Buffer | undefined) ?? Buffer.alloc(0) } : {}),
        query: request.query as Record<string, unknown>,
        count: (operation, result, n = 1) => metrics.count(label(), operation, result, n),
        observeBatch: (operation, size) => metrics.batchSize.observe({ operation }, size),
        noteBatch: (ok, failed) => audit?.noteBatch(request, { ok, failed }),
        releaseAfterSend: (bytes, o) => {
          // Runs on `finish` and again on `close`; filling a freed buffer would throw.
          let done = false;
          const release = (): void => {
            if (done) return;
            done = true;
            if (o.wipe) bytes.fill(0);
            releaseBuffer(bytes);
          };
          reply.raw.once('finish', release);
          reply.raw.once('close', release);
        },
      });
      audit?.noteResult(request, result);
      reply.code(route.status);
      if (Buffer.isBuffer(result)) reply.type('application/json; charset=utf-8');
      return result;
    },
  });
}
