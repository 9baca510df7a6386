/**
 * A throwaway Kubernetes control plane for tests: etcd and kube-apiserver built from Go modules
 * (scripts/cluster/build.sh), run on free loopback ports with a fresh temporary data dir.
 *
 * `up` writes `<dir>/state.json` and `<dir>/kubeconfig` (both 0600: they hold the admin token)
 * and returns once `/readyz` answers. `down` stops both process groups and removes the data.
 * Both are idempotent. What is deliberately missing: kube-controller-manager and the scheduler,
 * so namespaces never finish deleting, garbage collection does not run and Pods never start.
 */
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePorts, groupMembers, httpGet, isGroupAlive, killGroup, sleep } from './proc.ts';

/** The repository root (two levels above this file). */
export const REPO_ROOT = resolve(import.meta.dirname, '../..');
/** Where build.sh puts etcd, kube-apiserver, kubectl and helm. */
export const BIN_DIR = process.env.KEYWARD_CP_BIN ?? join(REPO_ROOT, '.controlplane', 'bin');
/** The cluster folder of `npm run cluster -- up`. */
export const DEFAULT_CLUSTER_DIR = join(REPO_ROOT, '.cluster');

/** The audience that Keyward's engine asks TokenReview for (PRODUCT.md §6). */
export const KEYWARD_AUDIENCE = 'keyward';
const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const READY_TIMEOUT_MS = 180_000;

/** What `up` started, as recorded in `<dir>/state.json`. */
export interface ClusterState {
  version: 1;
  /** The cluster folder: state.json, kubeconfig, logs/. */
  dir: string;
  /** The temporary data dir (etcd data, certificates, service-account keys). */
  dataDir: string;
  /** The apiserver's URL, `https://127.0.0.1:<port>`. */
  server: string;
  kubeconfig: string;
  /** Static bearer token of user `keyward-admin` in group `system:masters`. */
  token: string;
  /** PEM of the apiserver's self-signed serving CA. */
  caPem: string;
  /** Process-group ids (each group is a watchdog shell and its binary). */
  etcd: { pgid: number; clientPort: number; peerPort: number };
  apiserver: { pgid: number; port: number };
  /** The process whose exit stops the cluster, when one was given. */
  ownerPid: number | null;
  startedAt: string;
}

/** Options of {@link up}. */
export interface UpOptions {
  /** Cluster folder; defaults to `.cluster`. */
  dir?: string;
  /** When this process exits, the cluster stops itself (used by the vitest global setup). */
  ownerPid?: number;
  /** Run build.sh first (a no-op when the binaries are current). Default true. */
  build?: boolean;
  /** Extra kube-apiserver flags, after the defaults (e.g. `--encryption-provider-config=...`). */
  apiserverArgs?: string[];
}

/** Reads `<dir>/state.json`, or null when there is none or it is unreadable. */
export function readState(dir: string = DEFAULT_CLUSTER_DIR): ClusterState | null {
  try {
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as ClusterState;
    return state.version === 1 ? state : null;
  } catch {
    return null;
  }
}

/** True when both process groups live and the apiserver answers `/readyz` with 200. */
export async function isHealthy(state: ClusterState): Promise<boolean> {
  if (!isGroupAlive(state.etcd.pgid, BIN_DIR) || !isGroupAlive(state.apiserver.pgid, BIN_DIR)) return false;
  const res = await httpGet(`${state.server}/readyz`, { token: state.token, ca: state.caPem }).catch(
    () => null,
  );
  return res?.status === 200;
}

/** Builds the control-plane binaries when missing or stale (build.sh decides). */
export function ensureBinaries(): void {
  execFileSync('bash', [join(REPO_ROOT, 'scripts', 'cluster', 'build.sh')], { stdio: 'inherit' });
}

/**
 * Starts etcd and kube-apiserver unless a healthy cluster already runs in `dir`, in which case it
 * returns that one untouched. A stale state (crashed processes) is cleaned up first.
 */
export async function up(options: UpOptions = {}): Promise<ClusterState> {
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  const existing = readState(dir);
  if (existing && (await isHealthy(existing))) return existing;
  if (existing) await down({ dir });
  if (options.build !== false) ensureBinaries();
  for (const bin of ['etcd', 'kube-apiserver']) {
    if (!existsSync(join(BIN_DIR, bin))) throw new Error(`missing ${join(BIN_DIR, bin)}: run build.sh`);
  }

  mkdirSync(join(dir, 'logs'), { recursive: true, mode: 0o700 });
  const dataDir = mkdtempSync(join(tmpdir(), 'keyward-cluster-'));
  const [clientPort, peerPort, apiPort] = await freePorts(3);
  if (clientPort === undefined || peerPort === undefined || apiPort === undefined)
    throw new Error('no ports');
  const token = randomBytes(32).toString('hex');
  const ownerPid = options.ownerPid ?? null;
  const files = writeSecrets(dataDir, token);

  const etcdPgid = startGroup(join(dir, 'logs', 'etcd.log'), ownerPid, dataDir, join(BIN_DIR, 'etcd'), [
    '--name=default',
    `--data-dir=${join(dataDir, 'etcd')}`,
    `--listen-client-urls=http://127.0.0.1:${clientPort}`,
    `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
    // A throwaway store: fsync buys nothing and costs the shared disk a lot.
    '--unsafe-no-fsync',
    '--log-level=warn',
  ]);
  const partial = { dir, dataDir, etcdPgid };
  try {
    await waitUntil('etcd', READY_TIMEOUT_MS, etcdPgid, join(dir, 'logs', 'etcd.log'), async () => {
      const res = await httpGet(`http://127.0.0.1:${clientPort}/health`).catch(() => null);
      return res?.status === 200;
    });
  } catch (error) {
    await cleanup(partial);
    throw error;
  }

  const apiLog = join(dir, 'logs', 'apiserver.log');
  const apiPgid = startGroup(apiLog, ownerPid, null, join(BIN_DIR, 'kube-apiserver'), [
    `--etcd-servers=http://127.0.0.1:${clientPort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--cert-dir=${join(dataDir, 'certs')}`,
    '--authorization-mode=RBAC',
    `--token-auth-file=${files.tokens}`,
    `--service-account-issuer=${SA_ISSUER}`,
    `--service-account-key-file=${files.saPublic}`,
    `--service-account-signing-key-file=${files.saPrivate}`,
    `--api-audiences=${SA_ISSUER},${KEYWARD_AUDIENCE}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    // No controller-manager creates the default ServiceAccount, so this plugin would refuse
    // Pods; suites create the ServiceAccounts they need explicitly.
    '--disable-admission-plugins=ServiceAccount',
    '--allow-privileged=true',
    '--profiling=false',
    ...(options.apiserverArgs ?? []),
  ]);
  const server = `https://127.0.0.1:${apiPort}`;
  const certFile = join(dataDir, 'certs', 'apiserver.crt');
  try {
    await waitUntil('kube-apiserver', READY_TIMEOUT_MS, apiPgid, apiLog, async () => {
      if (!existsSync(certFile)) return false;
      const ca = readFileSync(certFile, 'utf8');
      const res = await httpGet(`${server}/readyz`, { token, ca }).catch(() => null);
      return res?.status === 200;
    });
  } catch (error) {
    await cleanup({ ...partial, apiPgid });
    throw error;
  }

  const state: ClusterState = {
    version: 1,
    dir,
    dataDir,
    server,
    kubeconfig: join(dir, 'kubeconfig'),
    token,
    caPem: readFileSync(certFile, 'utf8'),
    etcd: { pgid: etcdPgid, clientPort, peerPort },
    apiserver: { pgid: apiPgid, port: apiPort },
    ownerPid,
    startedAt: new Date().toISOString(),
  };
  writeFileSync(state.kubeconfig, kubeconfigYaml(state), { mode: 0o600 });
  writeFileSync(join(dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  return state;
}

/** Stops the cluster of `dir` and removes its data. Returns false when nothing was recorded. */
export async function down(options: { dir?: string } = {}): Promise<boolean> {
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  const state = readState(dir);
  if (!state) return false;
  await cleanup({ dir, dataDir: state.dataDir, etcdPgid: state.etcd.pgid, apiPgid: state.apiserver.pgid });
  return true;
}

async function cleanup(p: {
  dir: string;
  dataDir: string;
  etcdPgid: number;
  apiPgid?: number;
}): Promise<void> {
  // The apiserver first, so it does not spend its last seconds retrying a dead etcd.
  if (p.apiPgid !== undefined) await killGroup(p.apiPgid, BIN_DIR);
  await killGroup(p.etcdPgid, BIN_DIR);
  rmSync(p.dataDir, { recursive: true, force: true });
  for (const name of ['state.json', 'kubeconfig']) rmSync(join(p.dir, name), { force: true });
}

function writeSecrets(
  dataDir: string,
  token: string,
): { tokens: string; saPublic: string; saPrivate: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const files = {
    tokens: join(dataDir, 'tokens.csv'),
    saPublic: join(dataDir, 'sa.pub'),
    saPrivate: join(dataDir, 'sa.key'),
  };
  // token,user,uid,"group1,group2"
  writeFileSync(files.tokens, `${token},keyward-admin,keyward-admin-uid,"system:masters"\n`, { mode: 0o600 });
  writeFileSync(files.saPublic, publicKey, { mode: 0o600 });
  writeFileSync(files.saPrivate, privateKey, { mode: 0o600 });
  return files;
}

function kubeconfigYaml(state: ClusterState): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'keyward-test',
        cluster: {
          server: state.server,
          'certificate-authority-data': Buffer.from(state.caPem).toString('base64'),
        },
      },
    ],
    users: [{ name: 'keyward-admin', user: { token: state.token } }],
    contexts: [
      {
        name: 'keyward-test',
        context: { cluster: 'keyward-test', user: 'keyward-admin', namespace: 'default' },
      },
    ],
    'current-context': 'keyward-test',
  });
}

/**
 * Watchdog shell: runs the binary in a new session (so `down` can signal the whole group), and
 * stops it when the owner process is gone, so a killed test run leaves nothing behind. After an
 * owner's death it also removes `$2` (the data dir), since no `down` will come to do it.
 */
const WATCHDOG = `
owner="$1"; leftover="$2"; shift 2
"$@" & child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
while kill -0 "$child" 2>/dev/null; do
  if [ "$owner" != none ] && ! kill -0 "$owner" 2>/dev/null; then break; fi
  sleep 1 & wait $!
done
kill -TERM "$child" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || break; sleep 1; done
kill -KILL "$child" 2>/dev/null
if [ "$owner" != none ] && [ "$leftover" != none ] && ! kill -0 "$owner" 2>/dev/null; then
  sleep 2; rm -rf -- "$leftover"
fi
`;

/**
 * Starts `bin` under the watchdog shell in a new session and returns the process-group id. With
 * an owner pid, the group stops itself once the owner is gone (and removes `leftover`).
 */
export function startGroup(
  logFile: string,
  ownerPid: number | null,
  leftover: string | null,
  bin: string,
  args: string[],
  append = false,
): number {
  const log = openSync(logFile, append ? 'a' : 'w', 0o600);
  try {
    const child = spawn(
      'bash',
      ['-c', WATCHDOG, 'keyward-cp-watchdog', String(ownerPid ?? 'none'), leftover ?? 'none', bin, ...args],
      {
        detached: true,
        stdio: ['ignore', log, log],
      },
    );
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${bin}`);
    return child.pid;
  } finally {
    closeSync(log);
  }
}

// ---- faults: stopping, hanging and restarting one component (the fault suite, test/fault) ------

/** The control-plane processes `up` starts. */
export type Component = 'etcd' | 'apiserver';

const COMPONENT_BIN: Record<Component, string> = { etcd: 'etcd', apiserver: 'kube-apiserver' };

/** A component killed by {@link killComponent}: what {@link startComponent} needs to start it again. */
export interface StoppedComponent {
  component: Component;
  /** The binary's command line (argv[0] is the binary). */
  argv: string[];
}

function groupOf(state: ClusterState, component: Component): number {
  return component === 'etcd' ? state.etcd.pgid : state.apiserver.pgid;
}

/** The pid of the component's binary (not its watchdog shell), or undefined when it is not running. */
export function componentPid(state: ClusterState, component: Component): number | undefined {
  const bin = join(BIN_DIR, COMPONENT_BIN[component]);
  return groupMembers(groupOf(state, component), bin).find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === bin;
    } catch {
      return false;
    }
  });
}

/** Sends `signal` (SIGSTOP, SIGCONT, SIGTERM, ...) to the component's binary only. */
export function signalComponent(state: ClusterState, component: Component, signal: NodeJS.Signals): void {
  const pid = componentPid(state, component);
  if (pid === undefined) throw new Error(`${component} is not running`);
  process.kill(pid, signal);
}

/**
 * Kills the component's binary with SIGKILL (its watchdog shell then exits on its own) and
 * resolves once it is gone, with its command line for {@link startComponent}. Data stay.
 */
export async function killComponent(state: ClusterState, component: Component): Promise<StoppedComponent> {
  const pid = componentPid(state, component);
  if (pid === undefined) throw new Error(`${component} is not running`);
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    .split('\0')
    .filter((a) => a !== '');
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && isGroupAlive(groupOf(state, component), BIN_DIR); i++) await sleep(50);
  return { component, argv };
}

/**
 * Starts a killed component again with the same flags (so the same ports, certificates and data),
 * waits until it answers, and records its new process group in `state` and `<dir>/state.json`.
 */
export async function startComponent(state: ClusterState, stopped: StoppedComponent): Promise<void> {
  const [bin, ...args] = stopped.argv;
  if (bin === undefined) throw new Error('no command line');
  const logFile = join(state.dir, 'logs', stopped.component === 'etcd' ? 'etcd.log' : 'apiserver.log');
  const leftover = stopped.component === 'etcd' ? state.dataDir : null;
  const pgid = startGroup(logFile, state.ownerPid, leftover, bin, args, true);
  if (stopped.component === 'etcd') {
    state.etcd.pgid = pgid;
    await waitUntil('etcd', READY_TIMEOUT_MS, pgid, logFile, async () => {
      const res = await httpGet(`http://127.0.0.1:${state.etcd.clientPort}/health`).catch(() => null);
      return res?.status === 200;
    });
  } else {
    state.apiserver.pgid = pgid;
    await waitUntil('kube-apiserver', READY_TIMEOUT_MS, pgid, logFile, async () => {
      const res = await httpGet(`${state.server}/readyz`, { token: state.token, ca: state.caPem }).catch(
        () => null,
      );
      return res?.status === 200;
    });
  }
  writeFileSync(join(state.dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

async function waitUntil(
  what: string,
  timeoutMs: number,
  pgid: number,
  logFile: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ready()) return;
    if (!isGroupAlive(pgid, BIN_DIR)) throw new Error(`${what} exited during start:\n${tail(logFile)}`);
    await sleep(250);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms:\n${tail(logFile)}`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}
