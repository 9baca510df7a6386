/**
 * The CLI's API client. It finds the server and token from `KEYWARD_ADDR` / `KEYWARD_TOKEN`, or
 * from the data dir a local `keyward serve` wrote (`server.json`, `admin.token`), and trusts the
 * server's self-signed certificate from the data dir (or `KEYWARD_CA_FILE`) for this connection
 * only: TLS verification is never turned off.
 *
 * The data dir's admin token goes only to the server that wrote that data dir: its URL from
 * `server.json`, and, over TLS, the very certificate `server.json` names (its SHA-256 fingerprint
 * is pinned). No token is ever sent over plain HTTP except to a loopback address.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { checkServerIdentity, type PeerCertificate, rootCertificates } from 'node:tls';
import { readAdminToken } from '../http/admin-token.ts';
import { SERVER_INFO_FILE, type ServerInfo } from '../http/standalone.ts';
import { autoCertPaths, isLoopback } from '../http/tls.ts';
import { withProgress } from './progress.ts';

/** A failure to show as one line, with the process exit code. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** How long one request may take without an answer (an RSA keygen takes well under this). */
const REQUEST_TIMEOUT_MS = 60_000;

/** Where the client connects and how it authenticates. */
export interface ClientConfig {
  url: string;
  token: string;
  ca?: string;
  /** The SHA-256 fingerprint the server's certificate must have (`AA:BB:...`), when pinned. */
  fingerprint256?: string;
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Reads and checks `server.json`, or undefined when there is none. */
function readServerInfo(dataDir: string): ServerInfo | undefined {
  const path = join(dataDir, SERVER_INFO_FILE);
  const text = readOptional(path);
  if (text === undefined) return undefined;
  let info: Partial<ServerInfo>;
  try {
    info = JSON.parse(text) as Partial<ServerInfo>;
  } catch {
    throw new CliError(`${path} is not valid JSON; restart "keyward serve" to write it again`);
  }
  if (typeof info !== 'object' || info === null || typeof info.url !== 'string' || !parseUrl(info.url)) {
    throw new CliError(`${path} holds no valid server url; restart "keyward serve" to write it again`);
  }
  return info as ServerInfo;
}

function parseUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** True when both name the same scheme, host and port. */
function sameOrigin(a: string, b: string): boolean {
  return parseUrl(a)?.origin === parseUrl(b)?.origin;
}

/** Resolves the server address, token and CA (see the module comment). */
export async function resolveClientConfig(
  dataDir: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<ClientConfig> {
  const addr = env.KEYWARD_ADDR || undefined;
  const caFile = env.KEYWARD_CA_FILE || undefined;
  const envToken = env.KEYWARD_TOKEN || undefined;
  if (addr !== undefined && !parseUrl(addr)) {
    throw new CliError(`KEYWARD_ADDR must be an http:// or https:// URL, not ${JSON.stringify(addr)}`);
  }
  let ca: string | undefined;
  if (caFile !== undefined) {
    ca = readOptional(caFile);
    if (ca === undefined) throw new CliError(`KEYWARD_CA_FILE names a file that does not exist: ${caFile}`);
  }
  // server.json is needed unless both the address and the token are given; then it only helps
  // (the certificate to trust when KEYWARD_ADDR is that server), and a damaged one is ignored.
  let info: ServerInfo | undefined;
  try {
    info = readServerInfo(dataDir);
  } catch (err) {
    if (addr === undefined || envToken === undefined) throw err;
  }
  const url = (addr ?? info?.url)?.replace(/\/+$/, '');
  if (url === undefined) {
    throw new CliError(
      `no server found: set KEYWARD_ADDR, or start one with "keyward serve --data-dir ${dataDir}" (no ${join(dataDir, SERVER_INFO_FILE)})`,
    );
  }
  let token = envToken;
  let fingerprint256: string | undefined;
  if (token === undefined) {
    token = await readAdminToken(dataDir);
    if (token === undefined) {
      throw new CliError(
        `no token: set KEYWARD_TOKEN or run on the host whose data dir holds admin.token (${dataDir})`,
      );
    }
    // The data dir's token belongs to the server that wrote server.json there, and to no other.
    if (info === undefined || !sameOrigin(url, info.url)) {
      throw new CliError(
        info === undefined
          ? `the admin token of ${dataDir} is sent only to the server that wrote ${join(dataDir, SERVER_INFO_FILE)}, and there is none; set KEYWARD_TOKEN to call ${url}`
          : `KEYWARD_ADDR (${url}) is not the server of ${dataDir} (${info.url}); its admin token goes only there: set KEYWARD_TOKEN to call another server`,
      );
    }
    if (url.startsWith('https:')) {
      fingerprint256 = info.fingerprint256;
      if (fingerprint256 === undefined) {
        throw new CliError(
          `${join(dataDir, SERVER_INFO_FILE)} names no certificate fingerprint to pin; restart "keyward serve"`,
        );
      }
      ca ??= readOptional(info.caFile ?? autoCertPaths(dataDir).cert);
    }
  } else if (
    url.startsWith('https:') &&
    ca === undefined &&
    info !== undefined &&
    sameOrigin(url, info.url)
  ) {
    ca = readOptional(info.caFile ?? autoCertPaths(dataDir).cert);
  }
  const host = new URL(url).hostname;
  if (url.startsWith('http:') && !isLoopback(host)) {
    throw new CliError(
      `refusing to send a token over plain HTTP to ${host}: use https://, or a loopback address (127.0.0.1, ::1, localhost)`,
    );
  }
  return {
    url,
    token,
    ...(url.startsWith('https:') && ca ? { ca } : {}),
    ...(fingerprint256 ? { fingerprint256 } : {}),
  };
}

/** The API error body. */
interface ApiError {
  error?: { code?: string; message?: string; field?: string };
}

/** One API call; resolves with the parsed body or throws a CliError naming the API error. */
export async function callApi<T>(
  config: ClientConfig,
  method: string,
  path: string,
  body?: unknown,
  opts: { waitSeconds?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.waitSeconds ?? 0) * 1000;
  const attempt = () => send(config, method, path, body);
  let result: { status: number; text: string };
  try {
    result = await attempt();
  } catch (err) {
    if (!isConnectionError(err) || Date.now() >= deadline) throw connectionError(config.url, err);
    result = await withProgress(`waiting for the server at ${config.url}`, async () => {
      for (;;) {
        await new Promise((r) => setTimeout(r, 250));
        try {
          return await attempt();
        } catch (e) {
          if (!isConnectionError(e) || Date.now() >= deadline) throw connectionError(config.url, e);
        }
      }
    });
  }
  let parsed: unknown;
  try {
    parsed = result.text === '' ? {} : JSON.parse(result.text);
  } catch {
    throw new CliError(`the server at ${config.url} answered ${result.status} with a body that is not JSON`);
  }
  if (result.status >= 400) {
    const e = (parsed as ApiError).error;
    const field = e?.field ? ` (field ${e.field})` : '';
    throw new CliError(`${e?.code ?? `HTTP ${result.status}`}: ${e?.message ?? 'request failed'}${field}`);
  }
  return parsed as T;
}

function isConnectionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ENOTFOUND' || code === 'EAI_AGAIN';
}

function connectionError(url: string, err: unknown): CliError {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ERR_TLS_CERT_PIN') {
    return new CliError(
      `the server at ${url} is not the one that wrote the data dir (its certificate differs from server.json's); the token was not sent`,
    );
  }
  if (e.code === 'ETIMEDOUT')
    return new CliError(`no answer from ${url} within ${REQUEST_TIMEOUT_MS / 1000} s`);
  if (isConnectionError(err))
    return new CliError(`cannot reach the server at ${url} (${e.code}); is "keyward serve" running?`);
  if (
    typeof e.code === 'string' &&
    (e.code.includes('CERT') || e.code.includes('SIGNATURE') || e.code.includes('TLS'))
  ) {
    return new CliError(
      `TLS verification of ${url} failed (${e.code}); set KEYWARD_CA_FILE to the server's certificate`,
    );
  }
  return new CliError(`request to ${url} failed: ${e.message}`);
}

function send(
  config: ClientConfig,
  method: string,
  path: string,
  body: unknown,
): Promise<{ status: number; text: string }> {
  const url = new URL(path, `${config.url}/`);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string> = {
    authorization: `Bearer ${config.token}`,
    accept: 'application/json',
  };
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const options = { method, headers };
    const onResponse = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    };
    const pin = config.fingerprint256;
    const req =
      url.protocol === 'https:'
        ? // The server's own certificate is trusted in addition to the public roots; with a pin,
          // it must also be exactly the certificate server.json names.
          httpsRequest(
            url,
            {
              ...options,
              ...(config.ca ? { ca: [...rootCertificates, config.ca] } : {}),
              ...(pin
                ? {
                    checkServerIdentity: (hostname: string, cert: PeerCertificate) =>
                      checkServerIdentity(hostname, cert) ??
                      (cert.fingerprint256 === pin
                        ? undefined
                        : Object.assign(
                            new Error('the server certificate is not the one server.json names'),
                            {
                              code: 'ERR_TLS_CERT_PIN',
                            },
                          )),
                  }
                : {}),
            },
            onResponse,
          )
        : httpRequest(url, options, onResponse);
    req.setTimeout(REQUEST_TIMEOUT_MS, () =>
      req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    req.end(payload);
  });
}
