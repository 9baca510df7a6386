/**
 * Where the real node lives and which addresses it uses. One node per machine: the bridge, the
 * pod and Service ranges, the kubelet's port, the KUBE-* iptables chains and the /kubepods
 * cgroups are host-wide, so these are fixed, not per checkout.
 */

/** Host-wide names and addresses of the node (see README, "A real node"). */
export const NODE = {
  /** Persistent data: etcd, certificates, containerd's content and snapshots, the kubelet's root. */
  root: '/var/lib/keyward-node',
  /** Run-time state: the lock, sockets, containerd's state (and its netns mounts), sysctls before up. */
  run: '/run/keyward-node',
  /** The Linux bridge that pods attach to; the node's address is its gateway. */
  bridge: 'kw-node0',
  /** The node's own address on that bridge: apiserver, kubelet, kube-proxy and CoreDNS bind here. */
  nodeIp: '10.244.0.1',
  podCidr: '10.244.0.0/24',
  serviceCidr: '10.0.0.0/24',
  /** ClusterIP of `default/kubernetes`. */
  apiServiceIp: '10.0.0.1',
  /** ClusterIP of `kube-system/kube-dns` (CoreDNS). */
  dnsServiceIp: '10.0.0.10',
  apiPort: 22443,
  kubeletPort: 10250,
  nodeName: 'keyward-node',
  clusterDomain: 'cluster.local',
  /** The containerd namespace the CRI uses. */
  containerdNamespace: 'k8s.io',
  /** Images the node itself runs (built by node-images.ts). */
  pauseImage: 'localhost/keyward-node/pause:1',
  corednsImage: 'localhost/keyward-node/coredns:1',
} as const;

/** Paths derived from {@link NODE}. */
export const NODE_PATHS = {
  lock: `${NODE.run}/lock`,
  holder: `${NODE.run}/holder.json`,
  sysctlsBefore: `${NODE.run}/sysctls-before`,
  sweepScript: `${NODE.run}/sweep.sh`,
  containerdConfig: `${NODE.run}/containerd.toml`,
  containerdState: `${NODE.run}/containerd`,
  containerdSocket: `${NODE.run}/containerd/containerd.sock`,
  runcRoot: `${NODE.run}/runc`,
  containerdRoot: `${NODE.root}/containerd`,
  etcdData: `${NODE.root}/etcd`,
  pki: `${NODE.root}/pki`,
  kubeletRoot: `${NODE.root}/kubelet`,
  podLogs: `${NODE.root}/pod-logs`,
  cniConf: `${NODE.root}/cni/net.d`,
  cniIpam: `${NODE.root}/cni/ipam`,
  config: `${NODE.root}/config`,
  cniBin: '/usr/lib/cni',
} as const;

/**
 * Kernel settings the node changes (the bridge plugin, kube-proxy and the kubelet set them). Their
 * values before `up` are recorded once and written back by `down`.
 */
export const NODE_SYSCTLS = [
  'net/ipv4/ip_forward',
  'net/bridge/bridge-nf-call-iptables',
  'net/bridge/bridge-nf-call-ip6tables',
  // The kubelet sets these when protectKernelDefaults is off (and refuses to start when on and
  // they differ), so the node sets them and down restores them.
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
] as const;

/** Prefixes of the iptables chains that the node's parts create (kube-proxy, kubelet, ours). */
export const NODE_CHAIN_PREFIXES = ['KUBE-', 'CNI-', 'KEYWARD-'] as const;
