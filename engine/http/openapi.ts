/**
 * `/openapi.json`: an OpenAPI 3.1 document generated from the route table and the very schemas
 * the server validates with, so a generated client matches the server.
 */
import type { RouteDef } from './routes.ts';
import { errorResponse } from './schemas.ts';
import type { Schema } from './validate.ts';

const ERROR_STATUSES: Record<string, string> = {
  '400': 'INVALID_ARGUMENT: a malformed, unknown or out-of-range field (`field` names it)',
  '401': 'UNAUTHENTICATED: missing or invalid bearer token',
  '403': 'PERMISSION_DENIED',
  '404': 'KEY_NOT_FOUND',
  '405': 'METHOD_NOT_ALLOWED: admin routes in Kubernetes mode',
  '409': 'KEY_STATE (disabled, pending deletion, wrong usage, other region) or ALREADY_EXISTS',
  '413': 'PAYLOAD_TOO_LARGE',
  '429': 'OVERLOADED: retry after the Retry-After header',
  '503': 'OVERLOADED or UNAVAILABLE (shutting down, not ready)',
};

function errorResponses(): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(ERROR_STATUSES).map(([status, description]) => [
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
      schema: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' },
      description: 'The key store; `default` standalone.',
    },
  ];
  if (route.path.includes('{name}')) {
    params.push({ name: 'name', in: 'path', required: true, schema: { type: 'string' } });
  }
  for (const [name, schema] of Object.entries(route.query ?? {})) {
    params.push({ name, in: 'query', required: false, schema });
  }
  return params;
}

/** Builds the OpenAPI 3.1 document for `routes`. */
export function buildOpenApi(routes: readonly RouteDef[]): object {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const body: Schema | undefined = route.docBody ?? route.body;
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
        ...errorResponses(),
      },
    };
    if (body) {
      operation.requestBody = {
        required: route.body?.required !== undefined && route.body.required.length > 0,
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
  paths['/metrics'] = {
    get: {
      operationId: 'metrics',
      summary: 'Prometheus metrics (text exposition format)',
      tags: ['health'],
      security: [],
      responses: { '200': { description: 'OK', content: { 'text/plain': { schema: { type: 'string' } } } } },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Keyward',
      version: '1',
      description:
        'Key management: keys never leave the engine. Binary fields are standard base64 with padding; ciphertexts and signatures are `keyward:v<N>:<base64>`.',
    },
    servers: [{ url: '/' }],
    tags: [
      { name: 'keys', description: 'Key management (405 in Kubernetes mode)' },
      { name: 'crypto', description: 'Cryptographic operations' },
      { name: 'batch', description: 'Batches of 1 to 1000 items' },
      { name: 'health', description: 'Probes and metrics, unauthenticated' },
    ],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: errorResponse },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
