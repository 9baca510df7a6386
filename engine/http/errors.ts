/**
 * Maps every failure to the API's error body `{"error":{"code","message","field"}}`. Fastify's
 * own errors (body too large, bad JSON, wrong content type) become KeywardErrors; anything
 * unexpected becomes a bare INTERNAL with no stack trace or detail in the response.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { KeywardError } from '../errors.ts';

/** Turns any thrown value into a KeywardError safe to send. */
export function toKeywardError(err: unknown): KeywardError {
  if (err instanceof KeywardError) return err;
  const e = err as Partial<FastifyError>;
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new KeywardError('PAYLOAD_TOO_LARGE', 'the request body is too large', { field: 'body' });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new KeywardError('INVALID_ARGUMENT', 'Content-Type must be application/json', {
        field: 'content-type',
        status: 415,
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new KeywardError('INVALID_ARGUMENT', 'Content-Length does not match the body', {
        field: 'body',
      });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new KeywardError('INVALID_ARGUMENT', 'the body is not valid JSON', { field: 'body' });
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_ASYNC_CONSTRAINT':
      return new KeywardError('INVALID_ARGUMENT', 'the URL is malformed');
    default:
      break;
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    // A client error fastify raised (aborted body, ...): say so without echoing internals.
    return new KeywardError('INVALID_ARGUMENT', 'bad request', { status: e.statusCode });
  }
  return new KeywardError('INTERNAL', 'internal error');
}

/** Sends `err` as the API error body, with Retry-After when the caller should come back. */
export function sendError(reply: FastifyReply, err: KeywardError): FastifyReply {
  if (err.retryAfterSeconds !== undefined || err.code === 'OVERLOADED' || err.code === 'UNAVAILABLE') {
    reply.header('retry-after', String(Math.max(1, Math.ceil(err.retryAfterSeconds ?? 1))));
  }
  if (err.code === 'UNAUTHENTICATED') reply.header('www-authenticate', 'Bearer realm="keyward"');
  return reply.code(err.status).type('application/json; charset=utf-8').send({ error: err.toJSON() });
}

/** The fastify error handler: map, log server-side faults (never bodies), answer. */
export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const mapped = toKeywardError(err);
  if (mapped.status >= 500 && mapped.code === 'INTERNAL') {
    // The original error stays in the server log only (its message, never the request body).
    request.log.error({ err, route: request.routeOptions.url }, 'request failed');
  }
  return sendError(reply, mapped);
}
