/**
 * `npm run cluster -- up --node`: a real single-node Kubernetes cluster on this machine, built
 * from Go modules and Debian packages by the project's own scripts: etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, kubelet, kube-proxy, containerd with CNI bridge
 * networking, and CoreDNS. It imports the Keyward image (`npm run image`) and writes the same
 * state.json and kubeconfig as the plain control plane (cluster.ts), plus a `node` section.
 *
 * Root only; one node per machine (node-lock.ts). `downNode` removes everything it made
 * (node-sweep.sh), also after a crash, and checks that nothing is left (node-host.ts).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { buildKeywardImage } from '../image/keyward-image.ts';
import {
  BIN_DIR,
  type ClusterState,
  DEFAULT_CLUSTER_DIR,
  KEYWARD_AUDIENCE,
  REPO_ROOT,
  readState,
  startGroup,
} from './cluster.ts';
import {
  containerdConfig,
  corednsManifests,
  kubeletConfig,
  kubeProxyConfig,
  tokenKubeconfig,
  upstreamResolvers,
} from './node-config.ts';
import { adminKubeconfig, writeNodeFiles } from './node-files.ts';
import {
  assertKernel,
  assertRoot,
  createBridge,
  installEgressGuard,
  nodeLeftovers,
  recordSysctls,
  setSysctl,
} from './node-host.ts';
import { buildNodeImages, ctrArgs, importImages } from './node-images.ts';
import { NODE, NODE_PATHS } from './node-layout.ts';
import {
  acquireNodeLock,
  assertLockFree,
  isSupervisor,
  type NodeHolder,
  readHolder,
  sweepAsHolder,
  sweepUnderLock,
} from './node-lock.ts';
import { freePorts, httpGet, isGroupAlive, sleep } from './proc.ts';

const runFile = promisify(execFile);
/** Every node process names a path under the node's folders; this marks them in /proc. */
const MARKER = 'keyward-node/';
const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** What the node adds to {@link ClusterState}. */
export interface NodeInfo {
  supervisorPid: number;
  nodeName: string;
  nodeIp: string;
  /** Process-group ids of each component (watchdog shell + binary). */
  groups: Record<string, number>;
  /** The Keyward image imported into the node (absent with `keywardImage: false`). */
  image: { ref: string; digest: string } | null;
  /** Seconds from the start of `up` (after builds) to each milestone. */
  timings: Record<string, number>;
}

/** The state of a node cluster: a {@link ClusterState} whose apiserver serves a real node. */
export interface NodeState extends ClusterState {
  node: NodeInfo;
}

/** Options of {@link upNode}. */
export interface NodeUpOptions {
  /** Cluster folder (state.json, kubeconfig, logs); `.cluster`. */
  dir?: string;
  /** When this process exits, the node tears itself down (the test tier's global setup). */
  ownerPid?: number;
  /** Install packages, build binaries and images first (each a no-op when current); default true. */
  build?: boolean;
  /** Build and import the Keyward image; default true. */
  keywardImage?: boolean;
  /** Wait this long for another node's lock instead of failing at once. */
  waitForLockMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** True when a state describes a node (not the plain etcd + apiserver plane). */
export function isNodeState(state: ClusterState | null): state is NodeState {
  return state !== null && typeof (state as Partial<NodeState>).node === 'object';
}

/** True when every component lives, the supervisor holds the lock and the apiserver is ready. */
export async function isNodeHealthy(state: NodeState): Promise<boolean> {
  if (!isSupervisor(state.node.supervisorPid)) return false;
  for (const pgid of Object.values(state.node.groups)) if (!isGroupAlive(pgid, MARKER)) return false;
  const res = await httpGet(`${state.server}/readyz`, { token: state.token, ca: state.caPem }).catch(
    () => null,
  );
  return res?.status === 200;
}

/**
 * Starts the node (see the module comment) and resolves once the node is Ready, the `default`
 * ServiceAccount exists and CoreDNS is Ready. A healthy node already recorded in `dir` is
 * returned untouched. On failure everything started is torn down again.
 */
export async function upNode(options: NodeUpOptions = {}): Promise<NodeState> {
  const log = options.log ?? (() => {});
  assertRoot();
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  const existing = readState(dir);
  if (isNodeState(existing) && (await isNodeHealthy(existing))) return existing;
  if (existing && !isNodeState(existing) && existsSync(join(dir, 'state.json')))
    throw new Error(`a plain control plane is recorded in ${dir}: run \`npm run cluster -- down\` first`);

  // Refuse at once rather than after the builds (the real check is acquireNodeLock below).
  if (!options.waitForLockMs) assertLockFree();
  const builds = performance.now();
  if (options.build !== false) {
    execFileSync('bash', [join(REPO_ROOT, 'scripts', 'cluster', 'node-packages.sh')], { stdio: 'inherit' });
  }
  assertKernel();
  if (options.build !== false) {
    execFileSync('bash', [join(REPO_ROOT, 'scripts', 'cluster', 'build.sh'), '--node'], { stdio: 'inherit' });
  }
  for (const bin of [
    'etcd',
    'kube-apiserver',
    'kube-controller-manager',
    'kube-scheduler',
    'kubelet',
    'kube-proxy',
  ]) {
    if (!existsSync(join(BIN_DIR, bin)))
      throw new Error(`missing ${join(BIN_DIR, bin)}: run scripts/cluster/build.sh --node`);
  }
  const archives = buildNodeImages();
  const keyward =
    options.keywardImage === false ? null : buildKeywardImage({ log: (l) => log(`image: ${l}`) });
  if (keyward) archives.push(keyward.archive);
  log(`packages, binaries and images ready in ${((performance.now() - builds) / 1000).toFixed(1)} s`);

  const holder = await acquireNodeLock({
    ownerPid: options.ownerPid ?? null,
    dir,
    ...(options.waitForLockMs === undefined ? {} : { waitMs: options.waitForLockMs }),
    onWait: (h) =>
      log(`waiting for the node lock: ${h ? `held by pid ${h.startedBy} from ${h.repo}` : 'held'}`),
  });
  try {
    return await start(dir, holder, archives, keyward, log);
  } catch (error) {
    log(`start failed; tearing down: ${(error as Error).message.split('\n')[0]}`);
    await sweepUnderLock().catch(() => {});
    throw error;
  }
}

async function start(
  dir: string,
  holder: NodeHolder,
  archives: string[],
  keyward: { ref: string; digest: string } | null,
  log: (line: string) => void,
): Promise<NodeState> {
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const mark = (name: string) => {
    timings[name] = Math.round((performance.now() - t0) / 100) / 10;
    log(`${name} after ${timings[name]} s`);
  };
  const swept = sweepAsHolder(holder.supervisorPid);
  if (swept) log(`cleaned up after an earlier node:\n${swept}`);
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true, mode: 0o700 });
  for (const d of [
    NODE.root,
    NODE_PATHS.pki,
    NODE_PATHS.config,
    NODE_PATHS.cniConf,
    NODE_PATHS.containerdState,
  ])
    mkdirSync(d, { recursive: true, mode: 0o700 });

  recordSysctls();
  setSysctl('net/ipv4/ip_forward', '1');
  setSysctl('net/bridge/bridge-nf-call-iptables', '1');
  setSysctl('net/bridge/bridge-nf-call-ip6tables', '1');
  createBridge();
  installEgressGuard();

  const files = writeNodeFiles();
  const groups: Record<string, number> = {};
  const owner = holder.supervisorPid;
  const startComponent = (name: string, bin: string, args: string[]): number => {
    const pgid = startGroup(join(logs, `${name}.log`), owner, null, bin, args);
    groups[name] = pgid;
    return pgid;
  };

  const [etcdClient, etcdPeer] = await freePorts(2);
  startComponent('etcd', join(BIN_DIR, 'etcd'), [
    '--name=default',
    `--data-dir=${NODE_PATHS.etcdData}`,
    `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
    `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
    `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
    `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
    '--unsafe-no-fsync',
    '--log-level=warn',
  ]);
  await waitFor(
    'etcd',
    groups,
    logs,
    async () => (await httpGet(`http://127.0.0.1:${etcdClient}/health`).catch(() => null))?.status === 200,
  );

  const server = `https://${NODE.nodeIp}:${NODE.apiPort}`;
  const certDir = join(NODE_PATHS.pki, 'apiserver');
  startComponent('apiserver', join(BIN_DIR, 'kube-apiserver'), [
    `--etcd-servers=http://127.0.0.1:${etcdClient}`,
    `--bind-address=${NODE.nodeIp}`,
    `--advertise-address=${NODE.nodeIp}`,
    `--secure-port=${NODE.apiPort}`,
    `--cert-dir=${certDir}`,
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--token-auth-file=${files.tokens}`,
    `--service-account-issuer=${SA_ISSUER}`,
    `--service-account-key-file=${files.saPublic}`,
    `--service-account-signing-key-file=${files.saPrivate}`,
    `--api-audiences=${SA_ISSUER},${KEYWARD_AUDIENCE}`,
    `--service-cluster-ip-range=${NODE.serviceCidr}`,
    `--kubelet-client-certificate=${files.kubeletClientCert}`,
    `--kubelet-client-key=${files.kubeletClientKey}`,
    '--kubelet-preferred-address-types=InternalIP,Hostname',
    '--allow-privileged=true',
    '--profiling=false',
  ]);
  const caFile = join(certDir, 'apiserver.crt');
  await waitFor('kube-apiserver', groups, logs, async () => {
    if (!existsSync(caFile)) return false;
    const ca = readFileSync(caFile, 'utf8');
    return (
      (await httpGet(`${server}/readyz`, { token: files.adminToken, ca }).catch(() => null))?.status === 200
    );
  });
  const caPem = readFileSync(caFile, 'utf8');
  mark('apiserver ready');
  const api = (path: string) =>
    httpGet(`${server}${path}`, { token: files.adminToken, ca: caPem }).catch(() => null);

  const kubeconfig = (user: string, token: string, name: string): string => {
    const path = join(NODE_PATHS.config, `${name}.kubeconfig`);
    writeFileSync(path, tokenKubeconfig(server, caFile, user, token), { mode: 0o600 });
    return path;
  };
  writeFileSync(NODE_PATHS.containerdConfig, containerdConfig(), { mode: 0o600 });
  startComponent('containerd', '/usr/bin/containerd', ['--config', NODE_PATHS.containerdConfig]);
  await waitFor('containerd', groups, logs, async () => {
    try {
      await runFile('ctr', ctrArgs('version'), { timeout: 5000 });
      return true;
    } catch {
      return false;
    }
  });
  const imported = importImages(archives).then(() => mark('images imported'));

  startComponent('controller-manager', join(BIN_DIR, 'kube-controller-manager'), [
    `--kubeconfig=${kubeconfig('system:kube-controller-manager', files.tokensByName.controllerManager, 'controller-manager')}`,
    '--secure-port=0',
    '--leader-elect=false',
    // Each controller with its own ServiceAccount, as kubeadm does: the controller-manager's own
    // identity may not create EndpointSlices, and rollouts would hang.
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${files.saPrivate}`,
    `--root-ca-file=${caFile}`,
    `--cluster-name=keyward-node`,
    '--profiling=false',
  ]);
  startComponent('scheduler', join(BIN_DIR, 'kube-scheduler'), [
    `--kubeconfig=${kubeconfig('system:kube-scheduler', files.tokensByName.scheduler, 'scheduler')}`,
    '--secure-port=0',
    '--leader-elect=false',
    '--profiling=false',
  ]);
  writeFileSync(join(NODE_PATHS.config, 'kubelet.yaml'), kubeletConfig(), { mode: 0o600 });
  startComponent('kubelet', join(BIN_DIR, 'kubelet'), [
    `--config=${join(NODE_PATHS.config, 'kubelet.yaml')}`,
    `--kubeconfig=${kubeconfig(`system:node:${NODE.nodeName}`, files.tokensByName.kubelet, 'kubelet')}`,
    `--root-dir=${NODE_PATHS.kubeletRoot}`,
    `--cert-dir=${join(NODE_PATHS.kubeletRoot, 'pki')}`,
    `--hostname-override=${NODE.nodeName}`,
    `--node-ip=${NODE.nodeIp}`,
  ]);
  // kube-proxy exits when its config file changes under it: written once, before it starts.
  writeFileSync(
    join(NODE_PATHS.config, 'kube-proxy.yaml'),
    kubeProxyConfig(kubeconfig('system:kube-proxy', files.tokensByName.proxy, 'kube-proxy')),
    { mode: 0o600 },
  );
  startComponent('kube-proxy', join(BIN_DIR, 'kube-proxy'), [
    `--config=${join(NODE_PATHS.config, 'kube-proxy.yaml')}`,
  ]);

  await waitFor('node Ready', groups, logs, async () => {
    const res = await api(`/api/v1/nodes/${NODE.nodeName}`);
    if (res?.status !== 200) return false;
    const node = JSON.parse(res.body) as { status?: { conditions?: { type: string; status: string }[] } };
    return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
  });
  mark('node Ready');
  await waitFor(
    'the default ServiceAccount',
    groups,
    logs,
    async () => (await api('/api/v1/namespaces/default/serviceaccounts/default'))?.status === 200,
  );
  await imported;

  const state: NodeState = {
    version: 1,
    dir,
    dataDir: NODE.root,
    server,
    kubeconfig: join(dir, 'kubeconfig'),
    token: files.adminToken,
    caPem,
    etcd: { pgid: groups.etcd as number, clientPort: etcdClient as number, peerPort: etcdPeer as number },
    apiserver: { pgid: groups.apiserver as number, port: NODE.apiPort },
    ownerPid: holder.ownerPid,
    startedAt: new Date().toISOString(),
    node: {
      supervisorPid: holder.supervisorPid,
      nodeName: NODE.nodeName,
      nodeIp: NODE.nodeIp,
      groups,
      image: keyward,
      timings,
    },
  };
  writeFileSync(state.kubeconfig, adminKubeconfig(state), { mode: 0o600 });

  const resolvers = upstreamResolvers(
    existsSync('/etc/resolv.conf') ? readFileSync('/etc/resolv.conf', 'utf8') : '',
  );
  execFileSync(join(BIN_DIR, 'kubectl'), ['--kubeconfig', state.kubeconfig, 'apply', '-f', '-'], {
    input: corednsManifests(resolvers),
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  await waitFor('CoreDNS Ready', groups, logs, async () => {
    const res = await api('/apis/apps/v1/namespaces/kube-system/deployments/coredns');
    if (res?.status !== 200) return false;
    return (
      ((JSON.parse(res.body) as { status?: { readyReplicas?: number } }).status?.readyReplicas ?? 0) >= 1
    );
  });
  mark('CoreDNS Ready');
  writeFileSync(join(dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  return state;
}

const READY_TIMEOUT_MS = 300_000;

async function waitFor(
  what: string,
  groups: Record<string, number>,
  logs: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await ready()) return;
    for (const [name, pgid] of Object.entries(groups)) {
      if (!isGroupAlive(pgid, MARKER))
        throw new Error(`${name} exited while waiting for ${what}:\n${tail(join(logs, `${name}.log`))}`);
    }
    await sleep(250);
  }
  throw new Error(`${what}: not after ${READY_TIMEOUT_MS / 1000} s (logs in ${logs})`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-25).join('\n');
  } catch {
    return '(no log)';
  }
}

/** What {@link downNode} found and did. */
export interface NodeDownResult {
  /** False when there was nothing at all to remove. */
  wasRunning: boolean;
  /** The sweep's report. */
  report: string;
}

/**
 * Stops the node and removes everything it made (also after a crash; twice is harmless), then
 * checks that nothing is left. Refuses a node that another checkout started while it runs.
 */
export async function downNode(options: { dir?: string } = {}): Promise<NodeDownResult> {
  assertRoot('down of a node');
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  const state = readState(dir);
  const holder = readHolder();
  const live = holder !== null && isSupervisor(holder.supervisorPid);
  if (live && holder.repo !== REPO_ROOT)
    throw new Error(
      `the node on this machine was started from ${holder.repo}: run \`npm run cluster -- down\` there`,
    );
  const found = nodeLeftovers();
  if (!live && found.length === 0 && !isNodeState(state)) return { wasRunning: false, report: '' };
  const report = await sweepUnderLock();
  if (isNodeState(state))
    for (const name of ['state.json', 'kubeconfig']) rmSync(join(dir, name), { force: true });
  const left = nodeLeftovers();
  if (left.length > 0) throw new Error(`down left ${left.length} things behind:\n  ${left.join('\n  ')}`);
  return { wasRunning: true, report };
}
