/**
 * Starts the standalone engine: master key, file store, crypto engine, KeyService, admin token,
 * TLS and the HTTP server, then writes `<data-dir>/server.json` so CLI clients on this machine
 * find the server (URL and certificate to trust) without configuration.
 */

import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AuditLogHandle } from '../audit/audit-log.ts';
import { type AuditConfig, defaultAuditConfig } from '../audit/config.ts';
import { openAudit } from '../audit/http-audit.ts';
import { ScheduledActionRecords } from '../audit/scheduled-actions.ts';
import { AUDIT_DIR } from '../audit/verify-files.ts';
import { CryptoEngine } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import { validateRegion } from '../keys/spec.ts';
import { readKmsNonces } from '../kms/nonce-file.ts';
import { KeyService } from '../service/key-service.ts';
import { writeFileAtomic } from '../store/atomic-write.ts';
import { lockDataDir } from '../store/data-dir-lock.ts';
import { FileKeyStore } from '../store/file-key-store.ts';
import { ensureDataDir, openMasterKeys } from '../store/master-key.ts';
import { ADMIN_TOKEN_FILE, loadOrCreateAdminToken } from './admin-token.ts';
import { TokenAuthenticator } from './auth.ts';
import { makeDataDir } from './data-dir.ts';
import { listenMetrics, type MetricsListener } from './metrics-server.ts';
import { buildServer, RequestLoad } from './server.ts';
import { isLoopback, loadCertFiles, loadOrCreateAutoCert, type TlsMaterial, type TlsMode } from './tls.ts';

/** The default port of `keyward serve`. */
export const DEFAULT_PORT = 7443;

/** The file a running server describes itself in, inside the data dir. */
export const SERVER_INFO_FILE = 'server.json';

/** What `server.json` holds. No secrets: the token stays in its own 0600 file. */
export interface ServerInfo {
  url: string;
  /** Where `/metrics` is served (its own listener; absent when metrics are off). */
  metricsUrl?: string;
  pid: number;
  /** The certificate to trust, when it is self-signed (`--tls auto`) or given. */
  caFile?: string;
  fingerprint256?: string;
  startedAt: string;
}

/** Options of `startStandalone`. */
export interface StandaloneOptions {
  dataDir: string;
  host: string;
  port: number;
  tls: TlsMode;
  region?: string;
  deletionDelayMs?: number;
  logger: Logger;
  env?: Readonly<Record<string, string | undefined>>;
  /** Worker threads of the crypto pool. */
  threads?: number;
  /** The audit log (docs/audit.md); on by default, in `<data-dir>/audit`. */
  audit?: AuditConfig;
  /**
   * The `/metrics` listener: its host (default loopback) and port (default 0, any free port), or
   * false for none. Never the API port.
   */
  metrics?: { host?: string; port?: number } | false;
  /** Time a client has to send a whole request; tests shorten it. */
  requestTimeoutMs?: number;
  /** `--master-key-file`: the master key outside the data dir (else KEYWARD_MASTER_KEY_FILE, else <data-dir>/master.key). */
  masterKeyFile?: string;
  /** `--nonce-budget`: random-nonce encryptions per key version before it rotates (default 2^30). */
  nonceBudget?: number;
  /**
   * The engine's fast paths, both on by default (docs/performance.md): single operations inline on
   * this thread while the pool is idle, and whole batch requests parsed and answered in the
   * workers. Tests turn each off to run the same cases on the other path.
   */
  paths?: { inline?: boolean; workerBatches?: boolean };
}

/** A running standalone engine. */
export interface Standalone {
  url: string;
  /** The metrics URL, when metrics are served. */
  metricsUrl: string | undefined;
  app: FastifyInstance;
  service: KeyService;
  tls: TlsMaterial | undefined;
  token: { token: string; source: 'env' | 'file'; created: boolean };
  /** The audit log, unless disabled. */
  audit: AuditLogHandle | undefined;
  /** Stops accepting, drains, flushes usage, stops the workers, removes server.json. */
  close(): Promise<void>;
}

function tokenSource(dataDir: string, source: 'env' | 'file'): string {
  return source === 'env' ? 'KEYWARD_TOKEN' : join(dataDir, ADMIN_TOKEN_FILE);
}

function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** See the module comment. */
export async function startStandalone(opts: StandaloneOptions): Promise<Standalone> {
  const env = opts.env ?? process.env;
  if (opts.tls.mode === 'off' && !isLoopback(opts.host)) {
    throw new KeywardError(
      'INVALID_ARGUMENT',
      `--tls off is allowed only on a loopback address (127.0.0.1, ::1, localhost), not ${opts.host}`,
      { field: 'tls' },
    );
  }
  if (opts.region !== undefined) validateRegion(opts.region, 'region');
  await makeDataDir(opts.dataDir);
  await ensureDataDir(opts.dataDir);
  const unlock = await lockDataDir(opts.dataDir);
  try {
    return await startLocked(opts, env, unlock);
  } catch (err) {
    await unlock();
    throw err;
  }
}

async function startLocked(
  opts: StandaloneOptions,
  env: Readonly<Record<string, string | undefined>>,
  unlock: () => Promise<void>,
): Promise<Standalone> {
  // What can be refused cheaply comes first, before any worker thread starts.
  const token = await loadOrCreateAdminToken(opts.dataDir, env);
  const auth = new TokenAuthenticator(token.token, tokenSource(opts.dataDir, token.source));
  let tls: TlsMaterial | undefined;
  if (opts.tls.mode === 'auto') tls = await loadOrCreateAutoCert(opts.dataDir, opts.host);
  else if (opts.tls.mode === 'files') tls = await loadCertFiles(opts.tls.cert, opts.tls.key);

  const store = await FileKeyStore.open(opts.dataDir);
  const opened = await openMasterKeys({
    dataDir: opts.dataDir,
    env,
    records: await store.list(),
    ...(opts.masterKeyFile === undefined ? {} : { masterKeyFile: opts.masterKeyFile }),
  });
  for (const warning of opened.warnings) opts.logger.warn(warning);
  if (opened.created)
    opts.logger.info({ file: opened.location.path }, 'created a new master key; back it up');
  const master = opened.keys;
  // The inline path runs only while this server has no other request in flight (pool/inline.ts).
  const load = new RequestLoad();
  const engine = new CryptoEngine({
    ...(opts.threads === undefined ? {} : { threads: opts.threads }),
    inline: opts.paths?.inline === false ? false : { busy: () => load.busy() },
  });
  // Actions the service takes by itself (at start too, before the log is open) go to the log.
  const scheduled = new ScheduledActionRecords();
  let service: KeyService;
  try {
    service = await KeyService.start({
      store,
      master,
      engine,
      logger: opts.logger,
      ...(opts.region === undefined ? {} : { region: opts.region }),
      ...(opts.deletionDelayMs === undefined ? {} : { deletionDelayMs: opts.deletionDelayMs }),
      ...(opts.nonceBudget === undefined ? {} : { nonceBudget: opts.nonceBudget }),
      // A kms-plugin on this data dir counts its own encryptions beside the records.
      externalNonces: (record) => readKmsNonces(opts.dataDir, record),
      onScheduledAction: (action) => scheduled.record(action),
    });
  } catch (err) {
    await engine.close();
    throw err;
  }
  const auditConfig = { dir: join(opts.dataDir, AUDIT_DIR), ...(opts.audit ?? defaultAuditConfig()) };
  let audit: Awaited<ReturnType<typeof openAudit>>;
  try {
    // Checkpoints are keyed by the current master-key version (its key id names it; docs/audit.md).
    audit = await openAudit(auditConfig, {
      name: hostname(),
      masterKey: () => master.key(master.current),
      log: opts.logger,
      thread: true,
    });
  } catch (err) {
    await service.close();
    throw new KeywardError(
      'UNAVAILABLE',
      `cannot write the audit log in ${auditConfig.dir} (${(err as Error).message}); --no-audit runs without one`,
    );
  }
  if (audit) scheduled.attach(audit.log);
  const { app, metrics } = buildServer({
    backend: service,
    auth,
    logger: opts.logger,
    ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    ...(audit ? { audit: audit.http } : {}),
    ...(opts.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: opts.requestTimeoutMs }),
    ...(opts.region === undefined ? {} : { region: opts.region }),
    batchParsing: opts.paths?.workerBatches === false ? 'main' : 'worker',
    load,
  });
  let metricsListener: MetricsListener | undefined;
  try {
    await app.listen({ host: opts.host, port: opts.port });
    if (opts.metrics !== false) {
      metricsListener = await listenMetrics(metrics, {
        host: opts.metrics?.host ?? '127.0.0.1',
        port: opts.metrics?.port ?? 0,
        ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
      });
    }
  } catch (err) {
    await app.close();
    await audit?.log.close();
    await service.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  const connectHost = opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host === '::' ? '::1' : opts.host;
  const url = `${tls ? 'https' : 'http'}://${urlHost(connectHost)}:${port}`;
  const info: ServerInfo = {
    url,
    ...(metricsListener ? { metricsUrl: metricsListener.url } : {}),
    pid: process.pid,
    ...(tls ? { caFile: tls.certPath, fingerprint256: tls.fingerprint256 } : {}),
    startedAt: new Date().toISOString(),
  };
  const infoPath = join(opts.dataDir, SERVER_INFO_FILE);
  await writeFileAtomic(infoPath, `${JSON.stringify(info, null, 2)}\n`, 0o644);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await Promise.all([app.close(), metricsListener?.close()]);
      await audit?.log.close();
      await service.close();
      await rm(infoPath, { force: true });
      await unlock();
    })();
    return closing;
  };
  return { url, metricsUrl: metricsListener?.url, app, service, tls, token, audit: audit?.log, close };
}
