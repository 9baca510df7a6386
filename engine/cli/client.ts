/**
 * The CLI's API client. It finds the server and token from `KEYWARD_ADDR` / `KEYWARD_TOKEN`, or
 * from the data dir a local `keyward serve` wrote (`server.json`, `admin.token`), and trusts the
 * server's self-signed certificate from the data dir (or `KEYWARD_CA_FILE`) for this connection
 * only: TLS verification is never turned off.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { readAdminToken } from '../http/admin-token.ts';
import { SERVER_INFO_FILE, type ServerInfo } from '../http/standalone.ts';
import { autoCertPaths } from '../http/tls.ts';
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

/** Where the client connects and how it authenticates. */
export interface ClientConfig {
  url: string;
  token: string;
  ca?: string;
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Resolves the server address, token and CA (see the module comment). */
export async function resolveClientConfig(
  dataDir: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<ClientConfig> {
  let url = env.KEYWARD_ADDR;
  let caFile = env.KEYWARD_CA_FILE;
  if (url === undefined || url === '') {
    const text = readOptional(join(dataDir, SERVER_INFO_FILE));
    if (text === undefined) {
      throw new CliError(
        `no server found: set KEYWARD_ADDR, or start one with "keyward serve --data-dir ${dataDir}" (no ${join(dataDir, SERVER_INFO_FILE)})`,
      );
    }
    const info = JSON.parse(text) as ServerInfo;
    url = info.url;
    caFile ??= info.caFile;
  }
  caFile ??= autoCertPaths(dataDir).cert;
  const token = env.KEYWARD_TOKEN || (await readAdminToken(dataDir));
  if (token === undefined) {
    throw new CliError(
      `no token: set KEYWARD_TOKEN or run on the host whose data dir holds admin.token (${dataDir})`,
    );
  }
  const ca = url.startsWith('https:') ? readOptional(caFile) : undefined;
  return { url: url.replace(/\/+$/, ''), token, ...(ca ? { ca } : {}) };
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
    const req =
      url.protocol === 'https:'
        ? // The server's own certificate is trusted in addition to the public roots.
          httpsRequest(
            url,
            { ...options, ...(config.ca ? { ca: [...rootCertificates, config.ca] } : {}) },
            onResponse,
          )
        : httpRequest(url, options, onResponse);
    req.on('error', reject);
    req.end(payload);
  });
}
