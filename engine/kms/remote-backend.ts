/**
 * The KMS plugin's remote backend: a key in a Keyward engine reached over its HTTPS API
 * (`KEYWARD_ADDR`), with a bearer token and the CA that signed the engine's certificate.
 *
 * Every request has a deadline (the plugin passes what is left of the apiserver's own gRPC
 * deadline, capped by `--timeout`), connections are kept alive, and TLS verification is never
 * turned off: plain `http://` is accepted on a loopback address only, where a token never crosses
 * a network. The token is read again from its file when it changes, so a projected
 * ServiceAccount token that the kubelet refreshes keeps working.
 */
import { readFileSync, statSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';
import { parseCiphertext } from '../crypto/format.ts';
import { type ErrorCode, HTTP_STATUS, KeywardError } from '../errors.ts';
import { isLoopback } from '../http/tls.ts';
import type { KeyView } from '../service/backend.ts';
import { errnoCode } from '../store/errno.ts';
import type { KeySnapshot, KmsBackend } from './backend.ts';

/** Where the bearer token comes from. */
export type TokenSource = { token: string } | { file: string };

/** Options of {@link RemoteBackend.create}. */
export interface RemoteBackendOptions {
  /** `https://host:port` (or `http://` on loopback). */
  url: string;
  namespace: string;
  name: string;
  token: TokenSource;
  /** PEM of extra trusted CAs (the engine's self-signed certificate, say). */
  ca?: string;
}

const KNOWN_CODES = new Set(Object.keys(HTTP_STATUS));
// Re-read the token file at most this often (a stat per request would be wasted work).
const TOKEN_CHECK_MS = 5_000;
// Error bodies are small; anything bigger is not the engine.
const MAX_RESPONSE_BYTES = 1024 * 1024;

/** Checks and normalizes the engine address; throws a one-line INVALID_ARGUMENT. */
export function parseEngineUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new KeywardError('INVALID_ARGUMENT', `the engine address ${JSON.stringify(text)} is not a URL`, {
      field: 'addr',
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new KeywardError('INVALID_ARGUMENT', 'the engine address must be https://HOST:PORT', {
      field: 'addr',
    });
  if (url.protocol === 'http:' && !isLoopback(url.hostname))
    throw new KeywardError(
      'INVALID_ARGUMENT',
      'plain http:// is allowed only on a loopback address; use https:// (and KEYWARD_CA_FILE) for a remote engine',
      { field: 'addr' },
    );
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '')
    throw new KeywardError('INVALID_ARGUMENT', 'the engine address must be just https://HOST:PORT[/PATH]', {
      field: 'addr',
    });
  return url;
}

/** See the module comment. */
export class RemoteBackend implements KmsBackend {
  readonly description: string;
  readonly #base: string;
  readonly #keyPath: string;
  readonly #https: boolean;
  readonly #agent: HttpAgent | HttpsAgent;
  readonly #tokenSource: TokenSource;
  #token: { value: string; stamp: string; checkedAt: number } | undefined;
  #snapshot: { value: KeySnapshot; at: number } | undefined;

  private constructor(opts: RemoteBackendOptions, url: URL) {
    this.#base = url.href.replace(/\/+$/, '');
    this.#keyPath = `/v1/namespaces/${encodeURIComponent(opts.namespace)}/keys/${encodeURIComponent(opts.name)}`;
    this.#https = url.protocol === 'https:';
    this.#agent = this.#https
      ? new HttpsAgent({
          keepAlive: true,
          maxSockets: 16,
          ...(opts.ca === undefined ? {} : { ca: [...rootCertificates, opts.ca] }),
        })
      : new HttpAgent({ keepAlive: true, maxSockets: 16 });
    this.#tokenSource = opts.token;
    this.description = `engine ${this.#base}`;
  }

  /** Validates the address and reads the token once, so a missing file stops the start. */
  static create(opts: RemoteBackendOptions): RemoteBackend {
    const backend = new RemoteBackend(opts, parseEngineUrl(opts.url));
    backend.#currentToken();
    return backend;
  }

  async snapshot(maxAgeMs: number, timeoutMs: number): Promise<KeySnapshot> {
    const cached = this.#snapshot;
    if (cached !== undefined && performance.now() - cached.at < maxAgeMs) return cached.value;
    const view = (await this.#call('GET', this.#keyPath, undefined, timeoutMs)) as KeyView;
    const value = toSnapshot(view);
    this.#snapshot = { value, at: performance.now() };
    return value;
  }

  async encrypt(
    _version: number,
    plaintext: Uint8Array,
    aad: Uint8Array,
    timeoutMs: number,
  ): Promise<{ ciphertext: string; version: number }> {
    const out = (await this.#call(
      'POST',
      `${this.#keyPath}/encrypt`,
      { plaintext: Buffer.from(plaintext).toString('base64'), aad: Buffer.from(aad).toString('base64') },
      timeoutMs,
    )) as { ciphertext?: unknown; keyVersion?: unknown };
    if (typeof out.ciphertext !== 'string' || typeof out.keyVersion !== 'number')
      throw new KeywardError(
        'UNAVAILABLE',
        `the engine at ${this.#base} answered encrypt without a ciphertext`,
      );
    // The version the ciphertext names is the one that counts; it must agree with keyVersion.
    const { version } = parseCiphertext(out.ciphertext);
    if (version !== out.keyVersion)
      throw new KeywardError('UNAVAILABLE', `the engine at ${this.#base} answered encrypt inconsistently`);
    return { ciphertext: out.ciphertext, version };
  }

  async decrypt(ciphertext: string, aad: Uint8Array, timeoutMs: number): Promise<Buffer> {
    const out = (await this.#call(
      'POST',
      `${this.#keyPath}/decrypt`,
      { ciphertext, aad: Buffer.from(aad).toString('base64') },
      timeoutMs,
    )) as { plaintext?: unknown };
    if (typeof out.plaintext !== 'string')
      throw new KeywardError(
        'UNAVAILABLE',
        `the engine at ${this.#base} answered decrypt without a plaintext`,
      );
    return Buffer.from(out.plaintext, 'base64');
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }

  #currentToken(): string {
    const source = this.#tokenSource;
    if ('token' in source) return source.token;
    const now = performance.now();
    const held = this.#token;
    if (held !== undefined && now - held.checkedAt < TOKEN_CHECK_MS) return held.value;
    let stamp: string;
    try {
      const st = statSync(source.file);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (held !== undefined && held.stamp === stamp) {
        held.checkedAt = now;
        return held.value;
      }
      const value = readFileSync(source.file, 'utf8').trim();
      if (value === '') throw new KeywardError('UNAUTHENTICATED', `the token file ${source.file} is empty`);
      this.#token = { value, stamp, checkedAt: now };
      return value;
    } catch (err) {
      if (err instanceof KeywardError) throw err;
      // A transient read failure keeps the token we had; none at all is a configuration error.
      if (held !== undefined) return held.value;
      throw new KeywardError(
        'UNAUTHENTICATED',
        `cannot read the token file ${source.file} (${errnoCode(err)})`,
      );
    }
  }

  /** One API call with a deadline; the engine's own errors come back as KeywardErrors. */
  #call(method: 'GET' | 'POST', path: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.#currentToken()}`,
      accept: 'application/json',
    };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const url = `${this.#base}${path}`;
    const send = this.#https ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const req = send(url, { method, headers, agent: this.#agent }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy();
            finish(() =>
              reject(new KeywardError('UNAVAILABLE', `the engine at ${this.#base} sent an oversized answer`)),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err) => finish(() => reject(this.#networkError(err))));
        res.on('end', () =>
          finish(() => {
            try {
              resolve(this.#parse(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
            } catch (err) {
              reject(err);
            }
          }),
        );
      });
      const timer = setTimeout(
        () => {
          finish(() =>
            reject(
              new KeywardError(
                'UNAVAILABLE',
                `the engine at ${this.#base} did not answer within ${Math.round(timeoutMs)} ms`,
              ),
            ),
          );
          req.destroy();
        },
        Math.max(1, timeoutMs),
      );
      req.on('error', (err) => finish(() => reject(this.#networkError(err))));
      req.end(payload);
    });
  }

  #parse(status: number, text: string): unknown {
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new KeywardError(
        'UNAVAILABLE',
        `the engine at ${this.#base} answered ${status} with a body that is not JSON`,
      );
    }
    if (status >= 200 && status < 300) return parsed;
    const e = (parsed as { error?: { code?: unknown; message?: unknown } }).error;
    const code =
      typeof e?.code === 'string' && KNOWN_CODES.has(e.code) ? (e.code as ErrorCode) : 'UNAVAILABLE';
    const message = typeof e?.message === 'string' ? e.message.slice(0, 300) : `HTTP ${status}`;
    throw new KeywardError(code, `the engine answered ${code}: ${message}`);
  }

  #networkError(err: unknown): KeywardError {
    const code = errnoCode(err);
    if (code.includes('CERT') || code.includes('SIGNATURE') || code.startsWith('ERR_TLS'))
      return new KeywardError(
        'UNAVAILABLE',
        `TLS verification of ${this.#base} failed (${code}); set KEYWARD_CA_FILE to the CA of the engine's certificate`,
      );
    return new KeywardError('UNAVAILABLE', `cannot reach the engine at ${this.#base} (${code})`);
  }
}

/** The snapshot of a key as the API shows it; a malformed view is the engine's fault. */
export function toSnapshot(view: KeyView): KeySnapshot {
  const bad = (): KeywardError => new KeywardError('UNAVAILABLE', 'the engine answered with a malformed key');
  if (typeof view !== 'object' || view === null || !Array.isArray(view.versions)) throw bad();
  const createdTime = Date.parse(view.createdTime);
  if (!Number.isFinite(createdTime) || !Number.isInteger(view.currentVersion)) throw bad();
  const versions = new Map<number, number>();
  for (const v of view.versions) {
    const t = Date.parse(v.createdTime);
    if (!Number.isInteger(v.version) || !Number.isFinite(t)) throw bad();
    versions.set(v.version, t);
  }
  return {
    namespace: view.namespace,
    name: view.name,
    usage: view.usage,
    convergent: view.convergent === true,
    state: view.state,
    createdTime,
    currentVersion: view.currentVersion,
    versions,
  };
}
