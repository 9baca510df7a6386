/**
 * `/openapi.json`: an OpenAPI 3.1 document generated from the route table and the very schemas
 * the server validates with, so a generated client matches the server.
 */
import { NAMESPACE_PATTERN } from '../crypto/limits.ts';
import { BATCH_ITEM_COMPONENTS, batchItemSchemas, createKeyDocBody, keyNameParam } from '../wire/schemas.ts';
import type { Schema } from '../wire/validate.ts';
import { errorResponse } from './response-schemas.ts';
import type { RouteDef } from './routes.ts';

const ERROR_STATUSES: Record<string, string> = {
  '400':
    'INVALID_ARGUMENT: a malformed, unknown or out-of-range field (`field` names it), or a malformed HTTP request',
  '401': 'UNAUTHENTICATED: missing or invalid bearer token',
  '403': 'PERMISSION_DENIED',
  '404': 'KEY_NOT_FOUND',
  '405': 'METHOD_NOT_ALLOWED: admin routes in Kubernetes mode',
  '409': 'KEY_STATE (disabled, pending deletion, wrong usage, other region) or ALREADY_EXISTS',
  '408': 'INVALID_ARGUMENT: the request was not received in time (30 s for headers and body)',
  '413': 'PAYLOAD_TOO_LARGE: the body or a field is over its limit (`field` names it)',
  '429': 'OVERLOADED: retry after the Retry-After header',
  '503': 'OVERLOADED or UNAVAILABLE (shutting down, not ready)',
};

/** Only for routes that take a body. */
const BODY_ERROR_STATUSES: Record<string, string> = {
  '415': 'INVALID_ARGUMENT: the body is not application/json',
};

function errorResponses(withBody: boolean): Record<string, unknown> {
  const statuses = withBody ? { ...ERROR_STATUSES, ...BODY_ERROR_STATUSES } : ERROR_STATUSES;
  return Object.fromEntries(
    Object.entries(statuses).map(([status, description]) => [
      status,
      { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    ]),
  );
}

function parameters(route: RouteDef): unknown[] {
  const params: unknown[] = [
    {
      name: 'namespace',
      in: 'path',
      required: true,
      schema: { type: 'string', pattern: NAMESPACE_PATTERN },
      description: 'The key store; `default` standalone.',
    },
  ];
  if (route.path.includes('{name}')) {
    params.push({ name: 'name', in: 'path', required: true, schema: keyNameParam });
  }
  for (const [name, schema] of Object.entries(route.query ?? {})) {
    params.push({ name, in: 'query', required: false, schema });
  }
  return params;
}

/** Builds the OpenAPI 3.1 document for `routes`, on an engine serving `region` (if any). */
export function buildOpenApi(routes: readonly RouteDef[], engine: { region?: string } = {}): object {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const body: Schema | undefined =
      route.operationId === 'createKey' ? createKeyDocBody(engine.region) : (route.docBody ?? route.body);
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      tags: [route.tag],
      parameters: parameters(route),
      security: [{ bearer: [] }],
      responses: {
        [String(route.status)]: {
          description: 'OK',
          content: { 'application/json': { schema: route.response } },
        },
        ...errorResponses(body !== undefined),
      },
    };
    if (body) {
      // Required when an empty body would be refused: required fields, or at least one (PATCH).
      operation.requestBody = {
        required: (route.body?.required?.length ?? 0) > 0 || (route.body?.minProperties ?? 0) > 0,
        content: { 'application/json': { schema: body } },
      };
    }
    paths[route.path] ??= {};
    paths[route.path]![route.method.toLowerCase()] = operation;
  }
  const plain = (summary: string, schema: object) => ({
    get: {
      operationId: summary.replace(/\W/g, ''),
      summary,
      tags: ['health'],
      security: [],
      responses: { '200': { description: 'OK', content: { 'application/json': { schema } } } },
    },
  });
  paths['/livez'] = plain('livez', { type: 'object', properties: { status: { type: 'string' } } });
  paths['/readyz'] = plain('readyz', { type: 'object', properties: { status: { type: 'string' } } });
  return {
    openapi: '3.1.0',
    info: {
      title: 'Keyward',
      version: '1',
      description:
        'Key management: keys never leave the engine. Binary fields are standard base64 with padding; ciphertexts and signatures are `keyward:v<N>:<base64>`. Every answer carries `Cache-Control: no-store`; a method a path does not have is 405 with `Allow`. Prometheus metrics are served on a separate port (see docs/api.md), not here.',
    },
    servers: [{ url: '/' }],
    tags: [
      { name: 'keys', description: 'Key management (405 in Kubernetes mode)' },
      { name: 'crypto', description: 'Cryptographic operations' },
      { name: 'batch', description: 'Batches of 1 to 1000 items' },
      { name: 'health', description: 'Probes, unauthenticated' },
    ],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: errorResponse,
        ...Object.fromEntries(
          Object.entries(BATCH_ITEM_COMPONENTS).map(([op, name]) => [
            name,
            batchItemSchemas[op as keyof typeof batchItemSchemas],
          ]),
        ),
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
