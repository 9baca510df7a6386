/**
 * Harness for suites that run against the test control plane (the `cluster` vitest project:
 * test/cluster, test/operator, test/chart). The project's global setup starts etcd and
 * kube-apiserver; these helpers find them and drive them with the kubectl and helm built by
 * scripts/cluster/build.sh, never whatever happens to be on PATH.
 *
 * What this cluster is not: there is no kube-controller-manager and no scheduler. So
 * - a deleted namespace stays Terminating forever (namespaces are never finalized): give each
 *   suite its own namespace from {@link createNamespace} and do not wait for its deletion;
 * - garbage collection does not run: ownerReferences do not cascade, delete children yourself;
 * - no default ServiceAccount appears in a namespace, and ServiceAccount admission is off:
 *   create the ServiceAccounts a suite needs (TokenRequest, `kubectl create token`, works);
 * - Pods are stored but never scheduled or run: run the operator as a local process with
 *   {@link kubeconfigPath} instead.
 * RBAC is on; the admin token belongs to user `keyward-admin` in group `system:masters`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { BIN_DIR, type ClusterState, DEFAULT_CLUSTER_DIR, readState } from '../../scripts/cluster/cluster.ts';
import './provided.ts';

export type { ClusterState } from '../../scripts/cluster/cluster.ts';

/** Path of the kubectl built from k8s.io/kubernetes. */
export const KUBECTL = join(BIN_DIR, 'kubectl');
/** Path of the helm built from helm.sh/helm/v3. */
export const HELM = join(BIN_DIR, 'helm');

/**
 * The running cluster: the one the global setup provided, else one started by hand with
 * `npm run cluster -- up`. Throws when there is neither (a suite outside the cluster project).
 */
export function cluster(): ClusterState {
  const provided = inject('keywardCluster');
  if (provided) return provided;
  const state = readState(DEFAULT_CLUSTER_DIR);
  if (state) return state;
  throw new Error(
    'no test cluster: run this suite in the vitest "cluster" project, or `npm run cluster -- up`',
  );
}

/** Path of the admin kubeconfig (0600; it holds the admin token). */
export function kubeconfigPath(): string {
  return cluster().kubeconfig;
}

/** The static admin bearer token (user `keyward-admin`, group `system:masters`). */
export function adminToken(): string {
  return cluster().token;
}

/** The apiserver URL, `https://127.0.0.1:<port>`. */
export function apiserverUrl(): string {
  return cluster().server;
}

/** A @kubernetes/client-node KubeConfig for the admin user of the test cluster. */
export function makeKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath());
  return kc;
}

/** Output of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link kubectl} and {@link helm}. */
export interface RunOptions {
  /** Written to the command's stdin (a manifest for `apply -f -`, say). */
  input?: string;
  /** Resolve with a non-zero exit instead of throwing. */
  allowFailure?: boolean;
  /** Kill the command after this long; default 60 s. */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** Runs the built kubectl against the test cluster. Throws on a non-zero exit unless allowed. */
export function kubectl(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run(KUBECTL, ['--kubeconfig', kubeconfigPath(), ...args], options);
}

let helmHome: string | undefined;

/**
 * Runs the built helm against the test cluster, with its config, cache and data in a temporary
 * home of this test process so it never reads or writes the user's ~/.config/helm.
 */
export function helm(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  helmHome ??= mkdtempSync(join(tmpdir(), 'keyward-helm-'));
  const env = {
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_DATA_HOME: join(helmHome, 'data'),
    ...options.env,
  };
  return run(HELM, ['--kubeconfig', kubeconfigPath(), ...args], { ...options, env });
}

/**
 * Creates a namespace named `<prefix>-<random>` and returns its name. Namespaces are never
 * finalized on this cluster (no controller-manager), so names must not be reused.
 */
export async function createNamespace(prefix = 'kw'): Promise<string> {
  if (!/^[a-z][a-z0-9-]{0,40}$/.test(prefix))
    throw new Error(`bad namespace prefix ${JSON.stringify(prefix)}`);
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  const api = makeKubeConfig().makeApiClient(CoreV1Api);
  await api.createNamespace({ body: { metadata: { name, labels: { 'keyward.io/test': 'true' } } } });
  return name;
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((done) => setTimeout(done, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

function run(bin: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      bin,
      args,
      {
        env: { ...process.env, ...options.env },
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 32 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        if (code !== 0 && !options.allowFailure) {
          reject(new Error(`${bin} ${args.slice(2).join(' ')} exited ${code}: ${stderr.trim()}`));
          return;
        }
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

/** A TCP proxy in front of the apiserver that a test can cut, make refuse, or make hang. */
export interface TcpProxy {
  /** `https://127.0.0.1:<port>`: put it in a kubeconfig (see {@link kubeconfigVia}). */
  url: string;
  /** Destroys every open connection (watches included); returns how many there were. */
  cut(): number;
  /** pass: forward; refuse: close new connections at once; hang: accept and never answer. */
  mode(m: 'pass' | 'refuse' | 'hang'): void;
  close(): void;
}

/** Starts a {@link TcpProxy} to `target` (an https URL). */
export async function tcpProxy(target: string): Promise<TcpProxy> {
  const to = new URL(target);
  let current: 'pass' | 'refuse' | 'hang' = 'pass';
  const open = new Set<Socket>();
  const track = (s: Socket): void => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => undefined);
  };
  const server = createServer((client) => {
    track(client);
    if (current === 'refuse') return void client.destroy();
    if (current === 'hang') return;
    const upstream = connect(Number(to.port), to.hostname);
    track(upstream);
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const cut = (): number => {
    const n = open.size;
    for (const s of open) s.destroy();
    return n;
  };
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut,
    mode: (m) => {
      current = m;
      // Pooled keep-alive connections go too, as when the apiserver dies or hangs.
      if (m !== 'pass') cut();
    },
    close: () => {
      cut();
      server.close();
    },
  };
}

/** Writes a copy of kubeconfig `path` (0600) whose clusters point at `server`; returns its path. */
export function kubeconfigVia(path: string, server: string): string {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  const doc = JSON.parse(kc.exportConfig()) as { clusters: Array<{ cluster: { server: string } }> };
  for (const c of doc.clusters) c.cluster.server = server;
  const out = join(mkdtempSync(join(tmpdir(), 'kw-via-')), 'kubeconfig');
  writeFileSync(out, JSON.stringify(doc), { mode: 0o600 });
  return out;
}
