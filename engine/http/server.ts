/**
 * The HTTP server: fastify with the routes of `routes.ts`, strict validation by `validate.ts`,
 * pluggable auth, Prometheus metrics, OpenAPI, health endpoints and uniform JSON errors.
 *
 * Unauthenticated on purpose: `/livez`, `/readyz` (probes), `/metrics` (scrapers; it holds key
 * names and counts, no material) and `/openapi.json` (public contract). Everything under `/v1`
 * needs a bearer token.
 */
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { KeywardError } from '../errors.ts';
import type { KeyBackend } from '../service/backend.ts';
import type { Authenticator } from './auth.ts';
import { errorHandler, sendError } from './errors.ts';
import { HttpMetrics } from './metrics.ts';
import { buildOpenApi } from './openapi.ts';
import { ROUTES, type RouteDef } from './routes.ts';
import { check, type Schema } from './validate.ts';

/** Options of `buildServer`. */
export interface ServerOptions {
  backend: KeyBackend;
  auth: Authenticator;
  logger: Logger;
  /** PEM key and certificate; plain HTTP when absent. */
  tls?: { key: string; cert: string };
  /**
   * True once the server is shutting down gracefully: `/readyz` then fails (so the Service stops
   * sending new connections), and every response says `connection: close` (so keep-alive
   * clients reconnect, through the Service, to a replica that stays) while requests are still
   * served normally.
   */
  isDraining?: () => boolean;
}

/** Namespaces are Kubernetes namespace names (DNS-1123 labels). */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const toFastifyPath = (path: string): string => path.replace(/\{(\w+)\}/g, ':$1');

type Params = { namespace?: string; name?: string };

/** Builds (does not start) the server. */
export function buildServer(opts: ServerOptions): { app: FastifyInstance; metrics: HttpMetrics } {
  const { backend, auth } = opts;
  const metrics = new HttpMetrics(() => backend.queueDepth());
  const app = Fastify({
    loggerInstance: opts.logger,
    // No per-request log lines: they would cost throughput and could carry URLs of key names
    // into logs at info level; failures are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ...(opts.tls ? { https: { key: opts.tls.key, cert: opts.tls.cert } } : {}),
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

  // JSON only, by our own parser: an empty body is `{}` (action routes accept it), bad JSON is a clear
  // 400, and nothing else is done to the input.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new KeywardError('INVALID_ARGUMENT', 'the body is not valid JSON', { field: 'body' }), undefined);
    }
  });
  // Every schema is checked by our validator (see validate.ts); querystrings are parsed by hand.
  app.setValidatorCompiler(({ schema, httpPart }) => {
    if (httpPart !== 'body') return () => true;
    return (data: unknown) => {
      const value = data === undefined || data === null ? {} : data;
      const err = check(schema as Schema, value);
      return err ? { error: err } : { value };
    };
  });
  // One logger for every request: a pino child per request (fastify's default) costs a copy of the
  // redaction setup on the hot path, and requests log nothing of their own.
  app.setChildLoggerFactory((logger) => logger);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    sendError(
      reply,
      new KeywardError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
    );
  });
  // Callback style, not async: this runs on every request and a promise per hook costs throughput.
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
  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  const openapi = buildOpenApi(ROUTES);
  app.get('/openapi.json', async () => openapi);

  for (const route of ROUTES) registerRoute(app, route, backend, auth, metrics);
  return { app, metrics };
}

function registerRoute(
  app: FastifyInstance,
  route: RouteDef,
  backend: KeyBackend,
  auth: Authenticator,
  metrics: HttpMetrics,
): void {
  const serializable = route.tag === 'crypto';
  app.route({
    method: route.method,
    url: toFastifyPath(route.path),
    bodyLimit: route.bodyLimit,
    schema: {
      ...(route.body ? { body: route.body } : {}),
      // fast-json-stringify for the hot single-operation routes.
      ...(serializable ? { response: { [route.status]: route.response } } : {}),
    },
    // Auth runs before the body is read: an anonymous caller learns nothing about the schema
    // and cannot make the server parse a large body.
    onRequest: async (request: FastifyRequest) => {
      const { namespace = '', name } = request.params as Params;
      if (!NAMESPACE.test(namespace)) {
        throw new KeywardError('INVALID_ARGUMENT', 'namespace must be a Kubernetes namespace name', {
          field: 'namespace',
        });
      }
      const principal = await auth.authenticate({ headers: request.headers, remoteAddress: request.ip });
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
      const key = `${namespace}/${name}`;
      const result = await route.handler({
        backend,
        namespace,
        name,
        body: (request.body ?? {}) as Record<string, unknown>,
        query: request.query as Record<string, unknown>,
        count: (operation, result, n = 1) => metrics.count(key, operation, result, n),
        observeBatch: (operation, size) => metrics.batchSize.observe({ operation }, size),
      });
      reply.code(route.status);
      return result;
    },
  });
}
