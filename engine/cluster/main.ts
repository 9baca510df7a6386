/**
 * The engine's cluster mode: `runClusterEngine(options)` serves the HTTP API of PRODUCT.md §6 from
 * Keys and material read through informers (read-only, any number of replicas), authenticates
 * callers with TokenReview and authorizes each operation with a SubjectAccessReview, and
 * publishes usage counters for the leader operator. Wired by the CLI as `keyward engine`.
 */
import { mkdtemp } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type AuditConfig, defaultAuditConfig } from '../audit/config.ts';
import { openAudit } from '../audit/http-audit.ts';
import { CryptoEngine } from '../engine.ts';
import { KeywardError } from '../errors.ts';
import type { Authenticator } from '../http/auth.ts';
import { createLogger } from '../http/logger.ts';
import { defaultMetricsPort, listenMetrics } from '../http/metrics-server.ts';
import { buildServer, RequestLoad } from '../http/server.ts';
import {
  isLoopback,
  loadCertFiles,
  loadOrCreateAutoCert,
  type TlsMaterial,
  type TlsMode,
} from '../http/tls.ts';
import { DEFAULT_NONCE_BUDGET } from '../keys/nonce-budget.ts';
import { KubeClient } from '../kube/client.ts';
import { ClusterKeyBackend } from './cluster-backend.ts';
import { InsecureNoAuth } from './insecure-auth.ts';
import { KeySources } from './key-sources.ts';
import { KubeAuthenticator, type KubeAuthOptions } from './kube-auth.ts';
import { NonceReservations } from './nonce-reservations.ts';
import { UsagePublisher } from './usage-publisher.ts';
import { UsageCounter } from './usage-report.ts';

/** The default port of `keyward engine`, as of `keyward serve`. */
export const DEFAULT_ENGINE_PORT = 7443;
/** The default namespace of the operator (material, master key) and of the engine. */
export const DEFAULT_ENGINE_NAMESPACE = 'keyward-system';

/** Options of {@link runClusterEngine}. */
export interface ClusterEngineOptions {
  /** A kubeconfig file; else `kubeConfig`; else the default (in-cluster, then ~/.kube/config). */
  kubeconfig?: string;
  kubeConfig?: KubeConfig;
  /** The operator's namespace (material Secrets, master key); usage reports are written here too. */
  namespace?: string;
  /** Listen address; 0.0.0.0 (a pod serves its Service). */
  host?: string;
  /** Listen port; 7443; 0 picks a free one. */
  port?: number;
  /** Port of the /metrics listener (same host, same TLS); 9464, or 0 when `port` is 0. */
  metricsPort?: number;
  /** TLS: auto (self-signed, written to `tlsDir`), off (loopback only) or certificate files. */
  tls?: TlsMode;
  /** Where `--tls auto` keeps its certificate; a fresh temporary directory by default. */
  tlsDir?: string;
  /** The region this engine serves (`--region`). */
  region?: string;
  /** No authentication at all: development on one machine; refused off loopback. */
  insecureNoAuth?: boolean;
  /** This replica, for its usage report ConfigMap; POD_NAME, else the host name. */
  identity?: string;
  /** How often usage counters are published; 15 s. */
  usageReportMs?: number;
  /** Crypto worker threads. */
  threads?: number;
  /** Name of the master-key Secret (the operator's default). */
  masterKeySecret?: string;
  /** How often the master-key Secret is read again (a restore, a rotation); 30 s. */
  masterKeyPollMs?: number;
  /** Namespace of the master-key Secret, when not `namespace` (its own namespace). */
  masterKeyNamespace?: string;
  /**
   * Random-nonce encryptions per key version (PRODUCT.md §4.4); 2^30. The operator must be given
   * the same value: it rotates at it, the engine refuses past it until then.
   */
  nonceBudget?: number;
  /** Deadline of every apiserver request; 5 s. */
  requestTimeoutMs?: number;
  /** Tuning of TokenReview/SAR caching and timeouts. */
  auth?: Omit<KubeAuthOptions, 'client' | 'log'>;
  /** The audit log (docs/audit.md): JSON lines on stdout, and segment files with `dir`; on by default. */
  audit?: AuditConfig;
  /**
   * How long {@link RunningClusterEngine.shutdown} keeps serving after readiness fails, so that
   * endpoint removal reaches every kube-proxy before the listener closes; 0 (the chart sets 5 s).
   */
  shutdownDelayMs?: number;
  /** Credentials for TokenReview and SAR when they differ from `kubeConfig` (tests use a dead one). */
  authKubeConfig?: KubeConfig;
  logger?: Logger;
}

/** A running cluster engine. */
export interface RunningClusterEngine {
  url: string;
  /** Where /metrics is served (never on the API port). */
  metricsUrl: string;
  app: FastifyInstance;
  backend: ClusterKeyBackend;
  /** The Kubernetes authenticator (absent with `insecureNoAuth`). */
  auth: KubeAuthenticator | undefined;
  usage: UsagePublisher;
  tls: TlsMaterial | undefined;
  /** Stops accepting, drains, publishes usage, stops informers and workers. */
  close(): Promise<void>;
  /**
   * The graceful stop for SIGTERM: readiness fails at once and every response closes its
   * connection; requests keep being served for `shutdownDelayMs`; then {@link close}.
   */
  shutdown(): Promise<void>;
  /** True once {@link shutdown} has begun. */
  draining(): boolean;
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

async function closeClients(...clients: KubeClient[]): Promise<void> {
  await Promise.all([...new Set(clients)].map((c) => c.close()));
}

const urlHost = (host: string): string => (host.includes(':') && !host.startsWith('[') ? `[${host}]` : host);

/**
 * See the module comment. Resolves once listening; `/readyz` (and `backend.ready()`) turn ready
 * once the informers have synced and the master key is read.
 */
export async function runClusterEngine(options: ClusterEngineOptions = {}): Promise<RunningClusterEngine> {
  const log = options.logger ?? createLogger();
  const host = options.host ?? '0.0.0.0';
  const tlsMode = options.tls ?? { mode: 'auto' };
  if (options.insecureNoAuth === true && !isLoopback(host)) {
    throw new KeywardError(
      'INVALID_ARGUMENT',
      `--insecure-no-auth is allowed only on a loopback address (127.0.0.1, ::1, localhost), not ${host}`,
      { field: 'insecure-no-auth' },
    );
  }
  if (tlsMode.mode === 'off' && !isLoopback(host)) {
    throw new KeywardError(
      'INVALID_ARGUMENT',
      `--tls off is allowed only on a loopback address, not ${host}`,
      {
        field: 'tls',
      },
    );
  }
  const namespace = options.namespace ?? DEFAULT_ENGINE_NAMESPACE;
  const identity = options.identity ?? process.env.POD_NAME ?? hostname();
  // Pooled connections (every uncached review is on a request's path) and a deadline on every call.
  const clientOptions = {
    userAgent: `keyward-engine/${identity}`,
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
  };
  const client = new KubeClient(options.kubeConfig ?? loadKubeConfig(options.kubeconfig), clientOptions);
  const authClient =
    options.authKubeConfig === undefined ? client : new KubeClient(options.authKubeConfig, clientOptions);

  let tls: TlsMaterial | undefined;
  if (tlsMode.mode === 'auto') {
    tls = await loadOrCreateAutoCert(
      options.tlsDir ?? (await mkdtemp(join(tmpdir(), 'keyward-engine-'))),
      host,
    );
  } else if (tlsMode.mode === 'files') {
    tls = await loadCertFiles(tlsMode.cert, tlsMode.key);
  }

  const counter = new UsageCounter();
  const usage = new UsagePublisher({
    core: client.api(CoreV1Api),
    namespace,
    identity,
    counter,
    log,
    ...(options.usageReportMs === undefined ? {} : { intervalMs: options.usageReportMs }),
  });
  const nonces = new NonceReservations(
    {
      source: usage.source,
      record: (ns, name, uid, version, reserved) => counter.reserveNonces(ns, name, uid, version, reserved),
      flush: () => usage.flush(),
    },
    options.nonceBudget ?? DEFAULT_NONCE_BUDGET,
  );
  // The inline path runs only while this server has no other request in flight (pool/inline.ts).
  const load = new RequestLoad();
  const engine = new CryptoEngine({
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    inline: { busy: () => load.busy() },
    onWorkerError: (err) => log.error({ err: err.message }, 'a crypto worker died; it was replaced'),
  });
  let backend: ClusterKeyBackend | undefined;
  const sources = new KeySources({
    client,
    namespace,
    ...(options.masterKeySecret === undefined ? {} : { masterKeySecret: options.masterKeySecret }),
    onChange: (type, kind, obj) => backend?.onChange(type, kind, obj),
    onMasterKeyChange: () => backend?.onMasterKeyChange(),
    ...(options.masterKeyPollMs === undefined ? {} : { masterKeyPollMs: options.masterKeyPollMs }),
    ...(options.masterKeyNamespace === undefined ? {} : { masterKeyNamespace: options.masterKeyNamespace }),
    log,
  });
  backend = new ClusterKeyBackend({
    sources,
    engine,
    counter,
    nonces,
    log,
    ...(options.region === undefined ? {} : { region: options.region }),
  });
  const kubeAuth =
    options.insecureNoAuth === true
      ? undefined
      : new KubeAuthenticator({ ...options.auth, client: authClient, log });
  if (kubeAuth === undefined) log.warn('--insecure-no-auth: every local caller may use every key');
  const auth: Authenticator = kubeAuth ?? new InsecureNoAuth();

  // Each replica keeps its own chain, named after it; checkpoints wait for the master key.
  const audit = await openAudit(options.audit ?? { ...defaultAuditConfig(), stdout: true }, {
    name: identity,
    masterKey: () => sources.master(),
    log,
    thread: true,
  });
  let draining = false;
  const { app, metrics } = buildServer({
    backend,
    auth,
    logger: log,
    isDraining: () => draining,
    ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    ...(audit ? { audit: audit.http } : {}),
    load,
  });
  const apiPort = options.port ?? DEFAULT_ENGINE_PORT;
  let metricsListener: Awaited<ReturnType<typeof listenMetrics>> | undefined;
  try {
    metricsListener = await listenMetrics(metrics, {
      host,
      port: options.metricsPort ?? defaultMetricsPort(apiPort),
      ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    });
    // Serve /livez at once; /readyz says not ready until the informers have listed and the
    // master key is read. Neither is awaited: a missing CRD or master key (the operator not
    // installed yet) keeps the engine unready, not stuck before listening.
    await app.listen({ host, port: apiPort });
    void sources.start();
  } catch (err) {
    await app.close();
    await metricsListener?.close();
    await audit?.log.close();
    await sources.stop();
    await engine.close();
    await closeClients(client, authClient);
    throw err;
  }
  usage.start();
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const connectHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const url = `${tls ? 'https' : 'http'}://${urlHost(connectHost)}:${port}`;
  log.info({ url, namespace, identity, region: options.region ?? null }, 'cluster engine listening');

  const b = backend;
  const metricsServer = metricsListener;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await app.close();
      await audit?.log.close();
      await metricsServer.close();
      await usage.stop();
      await sources.stop();
      await engine.close();
      b.close();
      await closeClients(client, authClient);
    })();
    return closing;
  };
  const delayMs = options.shutdownDelayMs ?? 0;
  let shuttingDown: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    shuttingDown ??= (async () => {
      draining = true;
      log.info({ delayMs }, 'shutting down: not ready; serving until endpoints are updated');
      if (delayMs > 0) await new Promise((done) => setTimeout(done, delayMs));
      await close();
      log.info('stopped');
    })();
    return shuttingDown;
  };
  return {
    url,
    metricsUrl: metricsServer.url,
    app,
    backend: b,
    auth: kubeAuth,
    usage,
    tls,
    close,
    shutdown,
    draining: () => draining,
  };
}
