/**
 * The configuration files of the real node's components, as pure functions of the layout (no
 * I/O), so that tests can read exactly what the node runs with. Every choice that differs from a
 * default has its reason beside it; REAL-NODE.md (shared/brief) has the errors behind several.
 */
import { stringify } from 'yaml';
import { NODE, NODE_PATHS } from './node-layout.ts';

/** containerd 1.6 (config version 2), private to the node: its own root, state and socket. */
export function containerdConfig(): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "${NODE_PATHS.containerdRoot}"
state = "${NODE_PATHS.containerdState}"
# Snapshotters and plugins this node never uses; fewer plugins, faster start, quieter logs.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${NODE_PATHS.containerdSocket}"

[ttrpc]
  address = "${NODE_PATHS.containerdSocket}.ttrpc"

[${cri}]
  # Built here (node-images.ts) and imported before the kubelet starts: there is no registry.
  sandbox_image = "${NODE.pauseImage}"
  # These VMs lack CAP_SYS_RESOURCE, so a negative oom_score_adj (the CRI gives the pause
  # container -998) fails every sandbox with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Network namespaces under our state dir rather than the host-wide /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [${cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [${cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${NODE_PATHS.runcRoot}"
  [${cri}.cni]
    bin_dir = "${NODE_PATHS.cniBin}"
    conf_dir = "${NODE_PATHS.cniConf}"
    max_conf_num = 1
`;
}

/**
 * The pod network: the bridge the node made (pods reach the node, hence the apiserver, on its
 * gateway address) and host-local addresses. No masquerading: pods must reach nothing beyond
 * the node, which the egress guard (node-host.ts) enforces on top.
 */
export function cniConfig(): string {
  return `${JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'keyward',
      plugins: [
        {
          type: 'bridge',
          bridge: NODE.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: NODE_PATHS.cniIpam,
            ranges: [[{ subnet: NODE.podCidr, gateway: NODE.nodeIp }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
      ],
    },
    null,
    2,
  )}\n`;
}

/** The kubelet's config file. */
export function kubeletConfig(): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: NODE.nodeIp,
    port: NODE.kubeletPort,
    readOnlyPort: 0,
    healthzBindAddress: NODE.nodeIp,
    healthzPort: 10248,
    // The apiserver reaches the kubelet (logs, exec, port-forward) with a client certificate of
    // the node's CA; nothing else may: no anonymous access, no webhook.
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: `${NODE_PATHS.pki}/ca.crt` },
    },
    authorization: { mode: 'AlwaysAllow' },
    containerRuntimeEndpoint: `unix://${NODE_PATHS.containerdSocket}`,
    // containerd 1.6 has no RuntimeConfig RPC, so the driver is not discovered.
    cgroupDriver: 'cgroupfs',
    // These VMs run cgroup v1; 1.35 refuses it unless told.
    failCgroupV1: false,
    failSwapOn: false,
    podLogsDir: NODE_PATHS.podLogs,
    clusterDNS: [NODE.dnsServiceIp],
    clusterDomain: NODE.clusterDomain,
    resolvConf: '/etc/resolv.conf',
    // Images come from imports, never pulls: a garbage-collected image could not come back.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    // A shared test machine: evict only when nearly out of everything.
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': '1%',
      'nodefs.inodesFree': '1%',
      'imagefs.available': '1%',
    },
    serializeImagePulls: false,
    maxPods: 60,
    // Faster reaction in tests: status every 4 s, pod sync on changes.
    nodeStatusUpdateFrequency: '4s',
    nodeStatusReportFrequency: '1m',
    syncFrequency: '10s',
    fileCheckFrequency: '10s',
    shutdownGracePeriod: '0s',
    protectKernelDefaults: false,
    rotateCertificates: false,
    serverTLSBootstrap: false,
    featureGates: {},
  });
}

/** kube-proxy's config: iptables mode, bound to the node's address, host settings left alone. */
export function kubeProxyConfig(kubeconfig: string): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'iptables',
    clientConnection: { kubeconfig },
    hostnameOverride: NODE.nodeName,
    bindAddress: NODE.nodeIp,
    healthzBindAddress: `${NODE.nodeIp}:10256`,
    metricsBindAddress: `${NODE.nodeIp}:10249`,
    clusterCIDR: NODE.podCidr,
    // Leave the host's conntrack table size and timeouts as they are.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    // NodePorts only on the node's own bridge address: never capture ports of other processes
    // on this machine, and no route_localnet.
    iptables: { localhostNodePorts: false, masqueradeAll: false, syncPeriod: '30s', minSyncPeriod: '0s' },
    nodePortAddresses: [`${NODE.nodeIp}/32`],
  });
}

/** A kubeconfig with a static bearer token (each component has its own identity). */
export function tokenKubeconfig(server: string, caFile: string, user: string, token: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'keyward-node', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'keyward-node', context: { cluster: 'keyward-node', user } }],
    'current-context': 'keyward-node',
  });
}

/** The static identities of the node's components: `token,user,uid,"groups"` lines. */
export interface ComponentTokens {
  admin: string;
  controllerManager: string;
  scheduler: string;
  kubelet: string;
  proxy: string;
}

/** The apiserver's --token-auth-file. The users are the ones Kubernetes' default RBAC binds. */
export function tokenFile(t: ComponentTokens): string {
  return [
    `${t.admin},keyward-admin,keyward-admin-uid,"system:masters"`,
    `${t.controllerManager},system:kube-controller-manager,kcm-uid,""`,
    `${t.scheduler},system:kube-scheduler,scheduler-uid,""`,
    `${t.kubelet},system:node:${NODE.nodeName},kubelet-uid,"system:nodes"`,
    `${t.proxy},system:kube-proxy,proxy-uid,""`,
    '',
  ].join('\n');
}

/**
 * CoreDNS: a Deployment on the host network (so that its queries to the machine's resolver are
 * the host's own, and the egress guard can refuse every packet that pods send off the node),
 * listening on the node's address only, behind the kube-dns Service.
 */
export function corednsManifests(upstream: string[]): string {
  const labels = { 'k8s-app': 'kube-dns' };
  const corefile = `.:53 {
    bind ${NODE.nodeIp}
    errors
    health ${NODE.nodeIp}:8080
    ready ${NODE.nodeIp}:8181
    kubernetes ${NODE.clusterDomain} in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    ${upstream.length > 0 ? `forward . ${upstream.join(' ')}` : '# no upstream resolver on this machine'}
    cache 30
    loop
    reload
}
`;
  const docs = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: 'kube-system' } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns' },
      rules: [
        {
          apiGroups: [''],
          resources: ['endpoints', 'services', 'pods', 'namespaces'],
          verbs: ['list', 'watch'],
        },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }],
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'coredns', namespace: 'kube-system' },
      data: { Corefile: corefile },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'coredns', namespace: 'kube-system', labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'coredns',
            hostNetwork: true,
            dnsPolicy: 'Default',
            priorityClassName: 'system-cluster-critical',
            containers: [
              {
                name: 'coredns',
                image: NODE.corednsImage,
                imagePullPolicy: 'Never',
                args: ['-conf', '/etc/coredns/Corefile'],
                ports: [
                  { name: 'dns', containerPort: 53, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
                ],
                readinessProbe: {
                  httpGet: { host: NODE.nodeIp, path: '/ready', port: 8181 },
                  periodSeconds: 2,
                },
                livenessProbe: {
                  httpGet: { host: NODE.nodeIp, path: '/health', port: 8080 },
                  periodSeconds: 10,
                },
                resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '170Mi' } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] },
                },
                volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels },
      spec: {
        clusterIP: NODE.dnsServiceIp,
        selector: labels,
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        ],
      },
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

/**
 * The resolvers CoreDNS may forward to: the machine's own, from /etc/resolv.conf text. Loopback
 * resolvers are left out (inside the host network they would be CoreDNS itself or unreachable).
 */
export function upstreamResolvers(resolvConf: string): string[] {
  const out: string[] = [];
  for (const line of resolvConf.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m?.[1] && !m[1].startsWith('127.') && m[1] !== '::1') out.push(m[1]);
  }
  return out;
}
