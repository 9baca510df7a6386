/**
 * Starts a real standalone server in-process on 127.0.0.1 (random port, plain HTTP on loopback)
 * over a fresh temp data dir, and calls it with fetch. No mocks: the store, engine, workers and
 * HTTP stack are the production ones.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { type Standalone, startStandalone } from '../../engine/http/standalone.ts';
import type { TlsMode } from '../../engine/http/tls.ts';

export interface TestServer {
  url: string;
  token: string;
  dataDir: string;
  server: Standalone;
  /** Calls the API with the admin token; returns status, parsed JSON body and headers. */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Reply>;
  stop(): Promise<void>;
}

export interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  body: any;
  headers: Headers;
}

export async function startTestServer(
  opts: {
    dataDir?: string;
    region?: string;
    deletionDelayMs?: number;
    nonceBudget?: number;
    tls?: TlsMode;
    requestTimeoutMs?: number;
    /** The engine's fast paths (both on by default); tests run the same cases with each off. */
    paths?: { inline?: boolean; workerBatches?: boolean };
    threads?: number;
  } = {},
): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'keyward-http-')));
  const server = await startStandalone({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    tls: opts.tls ?? { mode: 'off' },
    logger: pino({ level: 'silent' }),
    env: {},
    threads: opts.threads ?? 1,
    ...(opts.paths === undefined ? {} : { paths: opts.paths }),
    ...(opts.region === undefined ? {} : { region: opts.region }),
    ...(opts.deletionDelayMs === undefined ? {} : { deletionDelayMs: opts.deletionDelayMs }),
    ...(opts.nonceBudget === undefined ? {} : { nonceBudget: opts.nonceBudget }),
    ...(opts.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: opts.requestTimeoutMs }),
  });
  const token = server.token.token;
  const call = async (
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Reply> => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (metrics)
    }
    return { status: res.status, body: parsed, headers: res.headers };
  };
  return {
    url: server.url,
    token,
    dataDir,
    server,
    call,
    stop: async () => {
      await server.close();
    },
  };
}

/** Removes a temp data dir. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64');
export const KEYS = '/v1/namespaces/default/keys';
