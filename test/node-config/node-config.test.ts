// The real node's settings that this machine kind needs (shared/brief/REAL-NODE.md, "Problems
// hit"), each pinned by the error it prevents, and the preflight's pure checks. The node tier
// (test/node) shows them working; these say why each one is there.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  cniConfig,
  containerdConfig,
  corednsManifests,
  kubeletConfig,
  kubeProxyConfig,
  tokenFile,
  upstreamResolvers,
} from '../../scripts/cluster/node-config.ts';
import { rangeClash, runProbe } from '../../scripts/cluster/node-host.ts';
import { NODE, NODE_PATHS } from '../../scripts/cluster/node-layout.ts';

/** Just the fields these tests read. */
interface Manifest {
  kind: string;
  spec: { clusterIP?: string; template: { spec: { hostNetwork?: boolean } } };
  data: { Corefile: string };
}

describe('node configuration', () => {
  it('containerd clamps oom_score_adj (no CAP_SYS_RESOURCE here: every sandbox failed with "can\'t get final child\'s PID from pipe")', () => {
    const toml = containerdConfig();
    expect(toml).toMatch(/^\s*restrict_oom_score_adj = true$/m);
    expect(toml).toMatch(/^\s*SystemdCgroup = false$/m);
    expect(toml).toContain(`sandbox_image = "${NODE.pauseImage}"`);
    // Host-wide paths stay untouched: netns, runc state and the socket live under the node's folders.
    expect(toml).toMatch(/^\s*netns_mounts_under_state_dir = true$/m);
    expect(toml).toContain(`Root = "${NODE_PATHS.runcRoot}"`);
    expect(toml).toContain(`address = "${NODE_PATHS.containerdSocket}"`);
  });

  it('the kubelet starts on cgroup v1 with the cgroupfs driver, and never garbage-collects imported images', () => {
    const k = parse(kubeletConfig()) as Record<string, unknown>;
    expect(k).toMatchObject({
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      failSwapOn: false,
      imageGCHighThresholdPercent: 100,
      address: NODE.nodeIp,
      clusterDNS: [NODE.dnsServiceIp],
      authentication: { anonymous: { enabled: false }, webhook: { enabled: false } },
    });
  });

  it('kube-proxy leaves conntrack settings alone and opens NodePorts on the node address only', () => {
    const p = parse(kubeProxyConfig('/x.kubeconfig')) as Record<string, unknown>;
    expect(p).toMatchObject({
      mode: 'iptables',
      conntrack: { maxPerCore: 0, min: 0 },
      iptables: { localhostNodePorts: false },
      nodePortAddresses: [`${NODE.nodeIp}/32`],
      clusterCIDR: NODE.podCidr,
    });
  });

  it('pods use the bridge the node made, with addresses from the pod range and no masquerading', () => {
    const c = JSON.parse(cniConfig()) as { plugins: Record<string, unknown>[] };
    expect(c.plugins[0]).toMatchObject({
      type: 'bridge',
      bridge: NODE.bridge,
      ipMasq: false,
      isGateway: true,
    });
    expect(JSON.stringify(c.plugins[0])).toContain(NODE.podCidr);
  });

  it('each component has the identity that default RBAC binds (the kubelet in system:nodes for the Node authorizer)', () => {
    const lines = tokenFile({ admin: 'a', controllerManager: 'c', scheduler: 's', kubelet: 'k', proxy: 'p' })
      .trim()
      .split('\n');
    expect(lines).toEqual([
      'a,keyward-admin,keyward-admin-uid,"system:masters"',
      'c,system:kube-controller-manager,kcm-uid,""',
      's,system:kube-scheduler,scheduler-uid,""',
      `k,system:node:${NODE.nodeName},kubelet-uid,"system:nodes"`,
      'p,system:kube-proxy,proxy-uid,""',
    ]);
  });

  it('CoreDNS runs on the host network, binds the node address, and forwards only to non-loopback resolvers', () => {
    expect(upstreamResolvers('# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nsearch a\n')).toEqual([
      '10.255.255.53',
    ]);
    const docs = corednsManifests(['10.255.255.53'])
      .split('---\n')
      .map((d) => parse(d) as Manifest);
    const deployment = docs.find((d) => d.kind === 'Deployment');
    expect(deployment?.spec.template.spec.hostNetwork).toBe(true);
    const corefile = docs.find((d) => d.kind === 'ConfigMap')?.data.Corefile ?? '';
    expect(corefile).toContain(`bind ${NODE.nodeIp}`);
    expect(corefile).toContain('forward . 10.255.255.53');
    expect(corednsManifests([]).includes('forward .')).toBe(false);
    expect(docs.find((d) => d.kind === 'Service')?.spec.clusterIP).toBe(NODE.dnsServiceIp);
  });
});

describe('the preflight refuses ranges that collide with the machine', () => {
  it('passes the routes of this machine kind', () => {
    expect(
      rangeClash(
        'default via 192.0.2.1 dev eth0\n192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n',
      ),
    ).toBeNull();
  });
  it("ignores the node's own bridge route", () => {
    expect(
      rangeClash(`${NODE.podCidr} dev ${NODE.bridge} proto kernel scope link src ${NODE.nodeIp}`),
    ).toBeNull();
  });
  it('names the range and the route that overlap', () => {
    expect(rangeClash('10.0.0.0/8 dev eth1 proto kernel scope link src 10.1.2.3')).toMatch(
      /^10\.244\.0\.0\/24 \(the node's pod range\) overlaps this machine's route 10\.0\.0\.0\/8 dev eth1/,
    );
    expect(rangeClash('10.0.0.128/25 via 192.0.2.1 dev eth0')).toMatch(/Service range/);
    expect(rangeClash('10.0.1.0/24 via 192.0.2.1 dev eth0')).toBeNull();
  });
});

describe("the preflight's probes say why a command failed", () => {
  // A machine without iptables on PATH once got "iptables does not work (kube-proxy needs it): "
  // and nothing after it: the spawn error was dropped.
  it('names a command that is not installed', () => {
    const r = runProbe('keyward-no-such-command', ['-S']);
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/^keyward-no-such-command is not installed or not on PATH \(/);
  });
  it('gives up on a command that hangs', () => {
    expect(runProbe('sleep', ['10'], 200)).toEqual({ ok: false, out: 'sleep did not answer within 0.2 s' });
  });
  it("reports a failing command's own output", () => {
    expect(runProbe('sh', ['-c', 'echo no chain >&2; exit 1'])).toEqual({ ok: false, out: 'no chain' });
    expect(runProbe('sh', ['-c', 'echo ok'])).toEqual({ ok: true, out: 'ok' });
  });
});
