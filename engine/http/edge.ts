/**
 * The HTTP edge below the routes: the headers every answer carries, the time a client has to send
 * its request, the answer to a request Node's parser refuses before fastify sees it, and 405 for a
 * method a path does not have. Pure helpers; `server.ts` wires them in.
 */
import type { Socket } from 'node:net';
import { KeywardError } from '../errors.ts';

/**
 * Time a client has to send a whole request, headers and body, from its first byte. A client that
 * stalls mid-body is answered 408 and disconnected within this bound plus one connection check
 * (`CONNECTION_CHECK_MS`); 30 s carries a 16 MiB batch at 600 KB/s.
 */
export const REQUEST_TIMEOUT_MS = 30_000;

/** Time a client has to send the request headers. */
export const HEADERS_TIMEOUT_MS = 10_000;

/** How often Node checks the two timeouts above (its default is 30 s, which would double them). */
export const CONNECTION_CHECK_MS = 1_000;

/**
 * On every answer: nothing is cached (decrypt and data-key answers carry plaintext), nothing is
 * sniffed, framed or given a referrer. The API serves JSON only, so the CSP forbids everything.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
});

/** HSTS, added when the server speaks TLS. */
export const HSTS_HEADER = Object.freeze({ 'strict-transport-security': 'max-age=31536000' });

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  431: 'Request Header Fields Too Large',
};

/** The API error for a request Node's HTTP parser refused (`clientError`), with its status. */
export function clientErrorOf(err: NodeJS.ErrnoException): KeywardError {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new KeywardError(
        'INVALID_ARGUMENT',
        `the request was not received within ${REQUEST_TIMEOUT_MS / 1000} s`,
        { status: 408, field: 'body' },
      );
    case 'HPE_HEADER_OVERFLOW':
      return new KeywardError('INVALID_ARGUMENT', 'the request headers are too large', { status: 431 });
    default:
      return new KeywardError('INVALID_ARGUMENT', 'the HTTP request is malformed');
  }
}

/**
 * The `clientError` handler: answers in the API's error shape with the security headers, then
 * closes the connection (its framing is lost). Never echoes the request.
 */
export function writeClientError(err: NodeJS.ErrnoException, socket: Socket, tls: boolean): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  if (socket.writable) {
    const e = clientErrorOf(err);
    const body = JSON.stringify({ error: e.toJSON() });
    const headers = {
      ...SECURITY_HEADERS,
      ...(tls ? HSTS_HEADER : {}),
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      connection: 'close',
    };
    const head = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    socket.write(`HTTP/1.1 ${e.status} ${STATUS_TEXT[e.status] ?? 'Bad Request'}\r\n${head}\r\n${body}`);
  }
  socket.destroy();
}

/**
 * Which methods each path pattern has, to answer 405 with `Allow` for the others (fastify's
 * router answers 404 for a known path with an unknown method).
 */
export class MethodTable {
  readonly #entries: Array<{ path: string; pattern: RegExp; methods: Set<string> }> = [];

  /** Adds `method` for `path` (`/v1/namespaces/{namespace}/keys/{name}` style). */
  add(method: string, path: string): void {
    let entry = this.#entries.find((e) => e.path === path);
    if (entry === undefined) {
      const source = `^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\w+\}/g, '[^/]+')}$`;
      entry = { path, pattern: new RegExp(source), methods: new Set() };
      this.#entries.push(entry);
    }
    entry.methods.add(method);
    if (method === 'GET') entry.methods.add('HEAD');
  }

  /** The methods `path` has (sorted), or undefined when no route has this path. */
  allowed(path: string): string[] | undefined {
    const entry = this.#entries.find((e) => e.pattern.test(path));
    return entry === undefined ? undefined : [...entry.methods].sort();
  }
}
